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
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

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
_MAX_SHOWN = 20
_SLICE = 64  # records checked between two yields (a few hundred microseconds)  # problems listed in one message (all are in .errors)


def _refuse(problems: list[FieldError], what: str) -> EncodeError:
    shown = "; ".join(str(p) for p in problems[:_MAX_SHOWN])
    more = f" (and {len(problems) - _MAX_SHOWN} more)" if len(problems) > _MAX_SHOWN else ""
    error = EncodeError(f"{what}: nothing was sent ({len(problems)} problems): {shown}{more}")
    error.errors = problems  # type: ignore[attr-defined]
    return error


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


def _missing(record: object, names: Iterable[str], path: str, problems: list[FieldError]) -> None:
    for name in names:
        value = getattr(record, name)
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append(FieldError(f"{path}.{name}", "required field is missing"))


def _aware(value: object, path: str, problems: list[FieldError]) -> None:
    if value is None:
        problems.append(FieldError(path, "required field is missing"))
    elif not isinstance(value, datetime):
        problems.append(FieldError(path, f"expected a datetime, got {type(value).__name__}"))
    elif value.utcoffset() is None:
        problems.append(
            FieldError(path, "a naive datetime is refused: pass an aware one (tzinfo=UTC)")
        )


def _amount(value: object, path: str, problems: list[FieldError], *, required: bool) -> None:
    if value is None:
        if required:
            problems.append(FieldError(path, "required field is missing"))
    elif isinstance(value, float):
        problems.append(
            FieldError(path, "binary floats are not exact: pass a Decimal (Decimal(str(x)))")
        )
    elif isinstance(value, Decimal) and value.is_finite() and value < 0:
        problems.append(FieldError(path, f"must not be negative, got {value}"))


def _count(value: object, path: str, problems: list[FieldError], *, low: int = 0) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        problems.append(FieldError(path, f"expected a whole number, got {type(value).__name__}"))
    elif value < low:
        problems.append(FieldError(path, f"must be at least {low}, got {value}"))


def check_new_orders(orders: object) -> Steps[list[NewPartnerOrder]]:
    """The orders to create, each with every field the documentation requires; one
    :class:`EncodeError` naming every problem otherwise (``.errors`` lists them).
    Steps (see _cooperative): 50,000 orders are checked without holding the loop."""
    items = records_of(orders, NewPartnerOrder, "orders")
    problems: list[FieldError] = []
    seen: dict[str, int] = {}
    for index, order in enumerate(items):
        if index % _SLICE == _SLICE - 1:
            yield
        path = f"orders[{index}]"
        _missing(order, _ORDER_REQUIRED, path, problems)
        _aware(order.order_date, f"{path}.order_date", problems)
        if isinstance(order.order_id, str) and order.order_id.strip():
            first = seen.setdefault(order.order_id, index)
            if first != index:
                problems.append(
                    FieldError(
                        f"{path}.order_id",
                        f"{order.order_id!r} is also orders[{first}]: one order_id, one order",
                    )
                )
        status = order.status
        if isinstance(status, str) and status.strip() and status.strip().lower() not in _STATUSES:
            problems.append(
                FieldError(f"{path}.status", f"{status!r} is not one of {', '.join(_STATUSES)}")
            )
        for name in ("discount_total", "shipping_total"):
            _amount(getattr(order, name), f"{path}.{name}", problems, required=False)
        lines = order.line_items
        if not isinstance(lines, tuple | list) or not lines:
            problems.append(FieldError(f"{path}.line_items", "at least one line item is required"))
            continue
        for number, line in enumerate(lines):
            where = f"{path}.line_items[{number}]"
            if not isinstance(line, NewPartnerLineItem):
                problems.append(
                    FieldError(where, f"expected NewPartnerLineItem, got {type(line).__name__}")
                )
                continue
            _missing(line, ("sku", "name"), where, problems)
            _count(line.quantity, f"{where}.quantity", problems, low=1)
            _amount(line.raw_price, f"{where}.raw_price", problems, required=True)
            _amount(line.discount, f"{where}.discount", problems, required=False)
    if problems:
        raise _refuse(problems, "orders to create")
    return items


def check_products(products: object) -> Steps[list[NewProduct]]:
    """The products to create, each complete (every field is required). Steps."""
    items = records_of(products, NewProduct, "products")
    problems: list[FieldError] = []
    seen: dict[str, int] = {}
    for index, product in enumerate(items):
        if index % _SLICE == _SLICE - 1:
            yield
        path = f"products[{index}]"
        _missing(product, _PRODUCT_REQUIRED, path, problems)
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
            _missing(variant, ("variant_sku", "variant_name"), f"{path}.partner_variant", problems)
        for name in _PRODUCT_AMOUNTS:
            _amount(getattr(product, name), f"{path}.{name}", problems, required=True)
        if isinstance(product.sku, str) and product.sku.strip():
            first = seen.setdefault(product.sku, index)
            if first != index:
                problems.append(
                    FieldError(f"{path}.sku", f"{product.sku!r} is also products[{first}]")
                )
    if problems:
        raise _refuse(problems, "products to create")
    return items


def check_changes(changes: object) -> Steps[list[Any]]:
    """Status changes, each with an ``updated_at`` and what its kind requires, at most
    one per order (a second change to one order would meet the first's new
    ``updated_at`` and fail)."""
    items: list[Any] = records_of(changes, CHANGE_TYPES, "changes")
    problems: list[FieldError] = []
    seen: dict[int, int] = {}
    for index, change in enumerate(items):
        if index % _SLICE == _SLICE - 1:
            yield
        path = f"changes[{index}]"
        if not isinstance(change.id, int) or isinstance(change.id, bool) or change.id < 1:
            problems.append(FieldError(f"{path}.id", f"expected an order id, got {change.id!r}"))
        else:
            first = seen.setdefault(change.id, index)
            if first != index:
                problems.append(
                    FieldError(
                        f"{path}.id",
                        f"order {change.id} is also changes[{first}]: one change per order "
                        "per call",
                    )
                )
        _aware(change.updated_at, f"{path}.updated_at", problems)
        if isinstance(change, Pack):
            _missing(change, ("airwaybill_number",), path, problems)
    if problems:
        raise _refuse(problems, "status changes")
    return items


def check_stock_update(update: object) -> StockUpdate:
    """A stock update with non-negative counts, ``buffer_stock <= available_stock`` and
    one entry per channel."""
    if not isinstance(update, StockUpdate):
        raise EncodeError(f"expected a StockUpdate, got {type(update).__name__}")
    problems: list[FieldError] = []
    _missing(update, ("sku", "warehouse"), "update", problems)
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
    if not isinstance(update.sync_stock, bool):
        problems.append(FieldError("update.sync_stock", "expected True or False"))
    channels = update.channel_stock
    if not isinstance(channels, tuple | list):
        problems.append(FieldError("update.channel_stock", "expected a list of ChannelStock"))
        channels = ()
    seen: set[str] = set()
    for index, channel in enumerate(channels):
        path = f"update.channel_stock[{index}]"
        if not isinstance(channel, ChannelStock):
            problems.append(
                FieldError(path, f"expected ChannelStock, got {type(channel).__name__}")
            )
            continue
        _missing(channel, ("code",), path, problems)
        _count(channel.qty, f"{path}.qty", problems)
        if channel.code in seen:
            problems.append(FieldError(f"{path}.code", f"channel {channel.code!r} appears twice"))
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
    """The result of one PATCH, the retry trap resolved.

    ``retried``: the PATCH went out more than once, so an earlier attempt may have done
    the change and lost its answer; the re-sent one then carries a stale ``updated_at``
    and fails. A failure whose current status is the one asked for is then a success
    (with the order's current ``updated_at``). An order the answer does not mention at
    all is a failure that says so. Steps."""
    asked = {change.id: change.status for change in changes}
    ok = list(succeeded)
    refused = []
    for index, failure in enumerate(failed):
        if index % _SLICE == _SLICE - 1:
            yield
        wanted = asked.get(failure.id)
        if retried and wanted is not None and failure.status.strip().lower() == wanted:
            logger.info(
                "order %d: the re-sent change to %s was refused, but the order is %s: an "
                "earlier attempt did it (its answer was lost)",
                failure.id,
                wanted,
                wanted,
            )
            ok.append(
                StatusSuccess(id=failure.id, status=failure.status, updated_at=failure.updated_at)
            )
        else:
            refused.append(failure)
    answered = {s.id for s in ok} | {f.id for f in refused}
    yield
    for change in changes:
        if change.id not in answered:
            refused.append(
                StatusFailure(
                    id=change.id,
                    message="the server's answer does not mention this order (neither "
                    "changed nor refused): read it again to learn its status",
                )
            )
    return StatusResult(succeeded=tuple(ok), failed=tuple(refused))
