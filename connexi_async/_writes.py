"""Pure rules of the partner API's writes: what is checked before sending, and how an
answer is read into a result. No I/O here (the client in ``_partner`` sends and reads).

* Required fields are checked on every record at once, so one :class:`EncodeError`
  names each missing field of each record (``orders[2].line_items[0].raw_price``).
* A status change re-sent after a lost response carries a stale ``updated_at``, so the
  server answers with a conflict although the first attempt did the change:
  :func:`status_result` counts such an order as succeeded when its current status is
  the one asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ._convert import (
    _BOOL,
    _DEC,
    _INT,
    _ODEC,
    _STR,
    _TS,
    _encode_decimal,
    _encode_int,
    _encode_str,
    _encode_timestamp,
    _fields,
)
from ._cooperative import Steps
from ._errors import EncodeError, FieldError
from ._models import (
    Accept,
    Cancel,
    ChannelStock,
    Complete,
    NewPartnerLineItem,
    NewPartnerOrder,
    NewProduct,
    Pack,
    PartnerVariant,
    StatusFailure,
    StatusResult,
    StatusSuccess,
    StockUpdate,
)

__all__ = [
    "CHANGE_TYPES",
    "check_changes",
    "check_new_orders",
    "check_products",
    "check_stock_update",
    "iterable",
    "records_of",
    "status_result",
]

T = TypeVar("T")
logger = logging.getLogger("connexi_async")

CHANGE_TYPES = (Accept, Pack, Complete, Cancel)
_ORDER_REQUIRED = (
    "order_id",
    "order_date",
    "customer_reference",
    "delivery_street_address",
    "delivery_city",
    "delivery_region",
    "delivery_suburb",
    "delivery_country",
    "delivery_post_code",
    "delivery_method",
    "payment_method",
)
_PRODUCT_REQUIRED = ("sku", "partner_sku", "name", "description", "currency")
_PRODUCT_AMOUNTS = ("price", "weight", "height", "length", "width")
# What a new order may start as (empty: pending).
_STATUSES = ("pending", "accepted", "packed", "completed", "cancelled")
_YEARS = (1970, 9998)  # an order_date outside them is a typo (and its window unreadable)
_MAX_SHOWN = 20
MAX_CHANNELS = 1_000  # marketplace channels in one stock update
_SLICE = 64  # records checked between two yields (a few hundred microseconds)  # problems listed in one message (all are in .errors)


def _refuse(problems: list[FieldError], what: str) -> EncodeError:
    shown = "; ".join(str(p) for p in problems[:_MAX_SHOWN])
    more = f" (and {len(problems) - _MAX_SHOWN} more)" if len(problems) > _MAX_SHOWN else ""
    count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
    return EncodeError(f"{what}: nothing was sent ({count}): {shown}{more}", errors=problems)


def iterable(values: object, name: str) -> Iterable[object]:
    """``values`` if it is a list of records (a str, bytes or dict is not)."""
    if values is None or isinstance(values, str | bytes | dict) or not hasattr(values, "__iter__"):
        raise EncodeError(f"{name} must be a list of records, got {type(values).__name__}")
    return values


def records_of(values: object, cls: type[T] | tuple[type, ...], name: str) -> list[T]:
    """The records to send as a list, each of the right model (checked before sending)."""
    items = list(iterable(values, name))
    for index, item in enumerate(items):
        if not isinstance(item, cls):
            names = cls.__name__ if isinstance(cls, type) else " or ".join(c.__name__ for c in cls)
            raise EncodeError(
                f"{name}[{index}]: expected {names}, got {type(item).__name__}"
                + (f" (build it with {names}(**...))" if isinstance(item, dict) else "")
            )
    return items  # type: ignore[return-value]


def _encoder_says(rule: Callable[[object, str], str], value: object, path: str) -> str | None:
    """What the encoder's own rule says of a value (one set of rules), or None."""
    try:
        rule(value, path)
    except EncodeError as exc:
        return str(exc).removeprefix(f"field {path}: ")
    return None


def _values(
    record: object,
    path: str,
    problems: list[FieldError],
    *,
    required: Iterable[str] = (),
    keys: Iterable[str] = (),
) -> None:
    """Every plain field of a record by the rules the encoder applies (types, bounds,
    surrogates, NaN, naive datetimes), then ``required`` ones set, ``keys`` (natural keys)
    without surrounding spaces, amounts not negative."""
    wanted = set(required)
    model: Any = type(record)
    for field in _fields(model):
        value: Any = getattr(record, field.name)
        where = f"{path}.{field.name}"
        problem: str | None = None
        if field.kind == _STR:
            problem = _encoder_says(_encode_str, value, where)
            if problem is None and field.name in wanted and not value.strip():
                problem = "required field is missing"
            elif problem is None and field.name in keys and value != value.strip():
                problem = f"{value!r} has spaces around it: a key is sent exactly as given"
        elif field.kind == _INT:
            problem = _encoder_says(_encode_int, value, where)
        elif field.kind in (_DEC, _ODEC):
            if value is None and field.kind == _DEC:
                problem = "expected a Decimal, got None (leave it out for zero)"
            elif value is None:
                problem = "required field is missing" if field.name in wanted else None
            else:
                problem = _encoder_says(_encode_decimal, value, where)
                if problem is None and value < 0:
                    problem = f"must not be negative, got {value}"
        elif field.kind == _TS:
            if value is None:
                problem = "required field is missing" if field.name in wanted else None
            else:
                problem = _encoder_says(_encode_timestamp, value, where)
                if problem is None and not _YEARS[0] <= value.year <= _YEARS[1]:
                    problem = f"{value.isoformat()} is outside the years {_YEARS[0]}-{_YEARS[1]}"
        elif field.kind == _BOOL and value is not True and value is not False:
            problem = f"expected True or False, got {type(value).__name__}"
        if problem is not None:
            problems.append(FieldError(where, problem))


def _each(
    values: Iterable[Any], cls: type[T], path: str, problems: list[FieldError]
) -> Iterator[tuple[str, T]]:
    """The nested records of the right model, with their paths; a problem for others."""
    for index, value in enumerate(values):
        where = f"{path}[{index}]"
        if isinstance(value, cls):
            yield where, value
        else:
            problems.append(
                FieldError(where, f"expected {cls.__name__}, got {type(value).__name__}")
            )


def _count(value: object, path: str, problems: list[FieldError], *, low: int = 0) -> None:
    """A count's minimum (its type is the encoder's rule, checked by _values)."""
    if isinstance(value, int) and not isinstance(value, bool) and value < low:
        problems.append(FieldError(path, f"must be at least {low}, got {value}"))


def _once(
    value: object, index: int, seen: dict[Any, int], path: str, what: str, why: str
) -> FieldError | None:
    """A second record with the same key, named with the first."""
    if not isinstance(value, str | int) or isinstance(value, bool) or value in ("", 0):
        return None
    first = seen.setdefault(value, index)
    if first == index:
        return None
    return FieldError(path, f"{value!r} is also {what}[{first}]: {why}")


def check_new_orders(orders: object) -> Steps[list[NewPartnerOrder]]:
    """The orders to create, each with every field the documentation requires and every
    value one the encoder takes; one :class:`EncodeError` naming every problem otherwise
    (``.errors`` lists them). Steps (see _cooperative): 50,000 orders are checked without
    holding the loop."""
    items = records_of(orders, NewPartnerOrder, "orders")
    problems: list[FieldError] = []
    seen: dict[Any, int] = {}
    work = 0  # records checked since the last yield, line items included
    for index, order in enumerate(items):
        lines = order.line_items
        work += 1 + (len(lines) if isinstance(lines, tuple | list) else 0)
        if work >= _SLICE:
            work = 0
            yield
        path = f"orders[{index}]"
        _values(order, path, problems, required=_ORDER_REQUIRED, keys=("order_id",))
        twice = _once(
            order.order_id, index, seen, f"{path}.order_id", "orders", "one order_id, one order"
        )
        if twice is not None:
            problems.append(twice)
        status = order.status
        if isinstance(status, str) and status.strip() and status.strip().lower() not in _STATUSES:
            problems.append(
                FieldError(f"{path}.status", f"{status!r} is not one of {', '.join(_STATUSES)}")
            )
        if not isinstance(lines, tuple | list) or not lines:
            problems.append(FieldError(f"{path}.line_items", "at least one line item is required"))
            continue
        for where, line in _each(lines, NewPartnerLineItem, f"{path}.line_items", problems):
            _values(line, where, problems, required=("sku", "name", "raw_price"))
            _count(line.quantity, f"{where}.quantity", problems, low=1)
    if problems:
        raise _refuse(problems, "orders to create")
    return items


def check_products(products: object) -> Steps[list[NewProduct]]:
    """The products to create, each complete (every field is required). Steps."""
    items = records_of(products, NewProduct, "products")
    problems: list[FieldError] = []
    seen: dict[Any, int] = {}
    for index, product in enumerate(items):
        if index % _SLICE == _SLICE - 1:
            yield
        path = f"products[{index}]"
        _values(
            product,
            path,
            problems,
            required=(*_PRODUCT_REQUIRED, *_PRODUCT_AMOUNTS),
            keys=("sku", "partner_sku"),
        )
        variant = product.partner_variant
        if variant is None:
            problems.append(FieldError(f"{path}.partner_variant", "required field is missing"))
        elif not isinstance(variant, PartnerVariant):
            problems.append(
                FieldError(
                    f"{path}.partner_variant",
                    f"expected PartnerVariant, got {type(variant).__name__}",
                )
            )
        else:
            _values(
                variant,
                f"{path}.partner_variant",
                problems,
                required=("variant_sku", "variant_name"),
                keys=("variant_sku",),
            )
        twice = _once(product.sku, index, seen, f"{path}.sku", "products", "one sku, one product")
        if twice is not None:
            problems.append(twice)
    if problems:
        raise _refuse(problems, "products to create")
    return items


def check_changes(changes: object) -> Steps[list[Any]]:
    """Status changes, each with an ``updated_at`` and what its kind requires, at most
    one per order (a second change to one order would meet the first's new
    ``updated_at`` and fail). Steps."""
    items: list[Any] = records_of(changes, CHANGE_TYPES, "changes")
    problems: list[FieldError] = []
    seen: dict[Any, int] = {}
    for index, change in enumerate(items):
        if index % _SLICE == _SLICE - 1:
            yield
        path = f"changes[{index}]"
        required = (
            ("updated_at", "airwaybill_number") if isinstance(change, Pack) else ("updated_at",)
        )
        _values(change, path, problems, required=required)
        if not isinstance(change.id, int) or isinstance(change.id, bool) or change.id < 1:
            problems.append(FieldError(f"{path}.id", f"expected an order id, got {change.id!r}"))
        else:
            twice = _once(
                change.id, index, seen, f"{path}.id", "changes", "one change per order per call"
            )
            if twice is not None:
                problems.append(twice)
    if problems:
        raise _refuse(problems, "status changes")
    return items


def check_stock_update(update: object) -> StockUpdate:
    """A stock update with non-negative counts, ``buffer_stock <= available_stock`` and
    one entry per channel."""
    if not isinstance(update, StockUpdate):
        raise EncodeError(f"expected a StockUpdate, got {type(update).__name__}")
    problems: list[FieldError] = []
    _values(update, "update", problems, required=("sku", "warehouse"), keys=("sku",))
    _count(update.available_stock, "update.available_stock", problems)
    _count(update.buffer_stock, "update.buffer_stock", problems)
    if (
        not problems
        and isinstance(update.buffer_stock, int)
        and update.buffer_stock > update.available_stock
    ):
        problems.append(
            FieldError(
                "update.buffer_stock",
                f"{update.buffer_stock} is more than available_stock={update.available_stock}",
            )
        )
    channels = update.channel_stock
    if not isinstance(channels, tuple | list):
        problems.append(FieldError("update.channel_stock", "expected a list of ChannelStock"))
        channels = ()
    if len(channels) > MAX_CHANNELS:
        problems.append(
            FieldError(
                "update.channel_stock",
                f"{len(channels):,} channels: more than {MAX_CHANNELS:,} is no one SKU's stock",
            )
        )
        channels = ()
    seen: set[str] = set()
    for path, channel in _each(channels, ChannelStock, "update.channel_stock", problems):
        _values(channel, path, problems, required=("code",), keys=("code",))
        _count(channel.qty, f"{path}.qty", problems)
        if isinstance(channel.code, str):
            if channel.code in seen:
                problems.append(
                    FieldError(f"{path}.code", f"channel {channel.code!r} appears twice")
                )
            seen.add(channel.code)
    if problems:
        raise _refuse(problems, "stock update")
    return update


def status_result(
    changes: Sequence[Any],
    succeeded: Sequence[StatusSuccess],
    failed: Sequence[StatusFailure],
    *,
    retried: bool,
) -> Steps[StatusResult]:
    """The result of one PATCH, held to what was asked, the retry trap resolved.

    ``retried``: an earlier attempt of the PATCH may have been processed (it failed
    after it was sent), so it may have done the change and lost its answer; the re-sent
    one then carries a stale ``updated_at`` and fails. A failure whose current status
    is the one asked for is then a success (with the order's current ``updated_at``).
    The answer is held to what was asked: each order once, none that was not asked (it
    is logged), an order both changed and refused counted as changed, and one the answer
    does not mention at all a failure that says so. Steps."""
    asked = {change.id: change.status for change in changes}
    ok: list[StatusSuccess] = []
    done: set[int] = set()
    for index, success in enumerate(succeeded):
        if index % _SLICE == _SLICE - 1:
            yield
        if success.id not in asked:
            logger.warning("the PATCH answer changed order %r, which was not asked", success.id)
        elif success.id not in done:
            done.add(success.id)
            ok.append(success)
    refused: list[StatusFailure] = []
    for index, failure in enumerate(failed):
        if index % _SLICE == _SLICE - 1:
            yield
        wanted = asked.get(failure.id)
        if wanted is None:
            logger.warning("the PATCH answer refused order %r, which was not asked", failure.id)
            continue
        if failure.id in done:
            continue
        done.add(failure.id)
        if retried and failure.status.strip().lower() == wanted:
            logger.info(
                "order %d: the re-sent change to %s was refused, but the order is %s: an "
                "earlier attempt did it (its answer was lost)",
                failure.id,
                wanted,
                wanted,
            )
            ok.append(StatusSuccess(id=failure.id, status=wanted, updated_at=failure.updated_at))
        else:
            refused.append(failure)
    yield
    for change in changes:
        if change.id not in done:
            refused.append(
                StatusFailure(
                    id=change.id,
                    message="the server's answer does not mention this order (neither "
                    "changed nor refused): read it again to learn its status",
                )
            )
    return StatusResult(succeeded=tuple(ok), failed=tuple(refused))
