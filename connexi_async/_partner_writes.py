"""The partner API's writes, as ``PartnerClient`` methods (a mixin of the client).

Creates succeed partially and have no idempotency key, but ``order_id`` (and a product's
``sku``) is a natural key the server refuses twice: after an unknown outcome the records
are looked up, and only those missing are sent again (:meth:`_create_batch`). A status
change carries ``updated_at`` (optimistic concurrency), so a PATCH re-sent after a lost
answer meets its own first attempt's change: see ``_writes.status_result``. A stock
update has no key at all and is never sent twice. The pure rules are in ``_writes``.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import msgspec

from ._convert import (
    new_partner_orders_body_steps,
    new_products_body_steps,
    partial_steps,
    status_changes_body_steps,
    stock_update_body,
)
from ._cooperative import Steps, run_sliced
from ._errors import (
    APIError,
    ConfigurationError,
    ConnexiError,
    DecodeError,
    FieldError,
    OutcomeUnknownError,
    ServerError,
    StockUpdateTimeoutError,
    TransportError,
    WindowError,
)
from ._models import (
    CreatedProduct,
    CreateFailure,
    CreateResult,
    NewPartnerOrder,
    NewProduct,
    PartnerOrder,
    ProductFailure,
    ProductResult,
    ProductStock,
    StatusChange,
    StatusFailure,
    StatusResult,
    StatusSuccess,
    StockUpdate,
    StockUpdateRecord,
)
from ._transport import Transport, check_seconds
from ._windows import merge_periods, whole_second
from ._writes import (
    check_changes,
    check_new_orders,
    check_products,
    check_stock_update,
    status_result,
)

if TYPE_CHECKING:
    from ._stream import RecordStream

__all__ = ["PartnerWrites"]

logger = logging.getLogger("connexi_async")

_STATUS_PATH = "/v1/partner/order/status"
_STOCK_PATH = "/v1/partner/inventory/updatestocks"
_MAX_SENDS = 3  # sends of one batch whose outcome stays unknown, lookups in between
_LOOKUP_WAITS = (0.5, 1.0, 2.0)  # a listing that lags behind writes: look again after these
_TRANSACTION_ANSWER = 64 * 1024  # an Update Stocks answer is a few dozen bytes
# The clock difference allowed between us and the server when reading the history by
# time (the order lookups' default margin, too).
_CLOCK_MARGIN = timedelta(minutes=15)
_TRANSACTION_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}", re.ASCII)

# A lookup's findings: natural key -> (the server's record, why it cannot be ours: made
# before the call, or not what was sent; "" when it can be).
Found = dict[str, tuple[Any, str]]
Find = Callable[[list[Any], datetime], Awaitable[Found]]


class _TransactionAnswer(msgspec.Struct):
    transaction_code: str | None = None


_transaction_answer = msgspec.json.Decoder(_TransactionAnswer)


def _check_on_unknown(value: object) -> None:
    if value not in ("raise", "reconcile"):
        raise ConfigurationError(f'on_unknown must be "raise" or "reconcile", got {value!r}')


def _check_margin(value: object) -> timedelta:
    if not isinstance(value, timedelta) or not timedelta(0) <= value <= timedelta(days=7):
        raise ConfigurationError(f"margin must be a timedelta from zero to 7 days, got {value!r}")
    return value


@attrs.frozen
class _Creation:
    """What differs between creating orders and creating products."""

    path: str
    noun: str
    body: Callable[[list[Any]], Steps[list[bytes]]]
    ok_cls: type
    failed_cls: type
    key: Callable[[Any], str]  # a record to create: its natural key
    created_key: Callable[[Any], str]  # the same key on a created record
    failed_key: Callable[[Any], str]  # the key a failure names
    failed_key_of: Callable[[Any], str]  # that key on a record to create
    result: type[CreateResult] | type[ProductResult]
    failure: Callable[[Any, str], Any]  # a failure of ours for a record to create
    unknown_hint: str
    # A failure's key may be shared by several records to create (products: variants
    # share a partner_sku), so they go out in different POSTs.
    shared_failure_keys: bool = False


_ORDER_CREATION = _Creation(
    path="/v1/partner/order",
    noun="orders",
    body=new_partner_orders_body_steps,
    ok_cls=PartnerOrder,
    failed_cls=CreateFailure,
    key=operator.attrgetter("order_id"),
    created_key=operator.attrgetter("order_id"),
    failed_key=operator.attrgetter("order_id"),
    failed_key_of=operator.attrgetter("order_id"),
    result=CreateResult,
    failure=lambda order, reason: CreateFailure(order_id=order.order_id, reason=reason),
    unknown_hint=(
        'the orders may or may not have been created. Pass on_unknown="reconcile" (or call '
        "client.reconcile(error)) to look them up by order_id and send only the missing ones."
    ),
)
_PRODUCT_CREATION = _Creation(
    path="/v1/partner/product",
    noun="products",
    body=new_products_body_steps,
    ok_cls=CreatedProduct,
    failed_cls=ProductFailure,
    key=operator.attrgetter("sku"),
    created_key=operator.attrgetter("sku"),
    failed_key=operator.attrgetter("partner_sku"),
    failed_key_of=operator.attrgetter("partner_sku"),
    result=ProductResult,
    failure=lambda product, reason: ProductFailure(partner_sku=product.partner_sku, reason=reason),
    unknown_hint=(
        'the products may or may not have been created. Pass on_unknown="reconcile" (or call '
        "client.reconcile_products(error)) to look them up by sku and send only the missing "
        "ones."
    ),
    shared_failure_keys=True,
)


def _attempted(error: object, call: str) -> tuple[object, ...]:
    """The records a creation's ``OutcomeUnknownError`` carries, or a clear refusal."""
    if not isinstance(error, OutcomeUnknownError) or not error.orders:
        raise ConfigurationError(
            f"this takes the OutcomeUnknownError raised by {call} (it carries the attempted "
            f"records); got {type(error).__name__}"
        )
    return error.orders


def _existed_before(record: Any, why: str) -> str:
    return (
        f"already existed before this call ({why}): found while settling an unknown "
        "outcome, so not reported as created"
    )


def _batches(items: list[Any], spec: _Creation, size: int) -> list[list[Any]]:
    """``items`` in batches of ``size``, no two of one batch sharing the key a failure
    names (products: variants share a ``partner_sku``, and a refusal names only that,
    so the k-th variant of each goes out in the k-th round of POSTs)."""
    if not spec.shared_failure_keys:
        return [items[first : first + size] for first in range(0, len(items), size)]
    rounds: list[list[Any]] = []
    seen: dict[str, int] = {}
    for item in items:
        key = spec.failed_key_of(item)
        number = seen.get(key, 0)
        seen[key] = number + 1
        if number == len(rounds):
            rounds.append([])
        rounds[number].append(item)
    return [group[first : first + size] for group in rounds for first in range(0, len(group), size)]


def _carry(
    exc: ConnexiError,
    spec: _Creation,
    created: list[Any],
    failed: list[Any],
    unsent: tuple[Any, ...],
) -> None:
    """What is known, on an error leaving a creation: the records of the batches before
    it and what its own batch settled (``result``), and what was not sent (``unsent``:
    a batch refused whole, or not sent for a rate limit, is in it too)."""
    known = getattr(exc, "result", None)
    if not isinstance(known, spec.result):
        known = spec.result()
    result = spec.result(created=(*created, *known.created), failed=(*failed, *known.failed))
    not_sent = (*getattr(exc, "unsent", ()), *unsent)
    exc.result = result  # type: ignore[attr-defined]
    exc.unsent = not_sent  # type: ignore[attr-defined]
    if not isinstance(exc, OutcomeUnknownError):
        exc.add_note(
            f"{len(result.created)} {spec.noun} were created before this error "
            f"(error.result), {len(not_sent)} were not sent (error.unsent)"
        )


def _answered(
    pending: list[Any], ok: list[Any], bad: list[Any], spec: _Creation
) -> Steps[tuple[list[Any], list[Any]]]:
    """An answer held to what was sent: each record once, none for a key not sent (one
    log line says how many), and a key both created and refused counted as created (the
    record exists). Steps: an answer of 100,000 records is checked in slices."""
    sent = {spec.key(item) for item in pending}
    covering: dict[str, list[str]] = {}  # a failure's key -> the keys of what it names
    for item in pending:
        covering.setdefault(spec.failed_key_of(item), []).append(spec.key(item))
    yield
    created: list[Any] = []
    made: set[str] = set()
    strays = 0
    for index, record in enumerate(ok):
        if index % 1024 == 1023:
            yield
        key = spec.created_key(record)
        if key not in sent:
            strays += 1
        elif key not in made:
            made.add(key)
            created.append(record)
    refused: list[Any] = []
    seen: set[str] = set()
    for index, failure in enumerate(bad):
        if index % 1024 == 1023:
            yield
        key = spec.failed_key(failure)
        covered = covering.get(key)
        if covered is None:
            strays += 1
        elif key not in seen and not all(k in made for k in covered):
            seen.add(key)
            refused.append(failure)
    if strays:
        logger.warning(
            "POST %s: the answer names %d %s that were not sent; left out",
            spec.path,
            strays,
            spec.noun,
        )
    return created, refused


class PartnerWrites:
    """The partner client's writes (mixed into :class:`PartnerClient`)."""

    _transport: Transport
    max_batch: int
    _stock_jobs: OrderedDict[str, datetime]

    if TYPE_CHECKING:

        def orders(self, since: datetime, until: datetime) -> RecordStream[PartnerOrder]: ...

        def product_stocks(self) -> RecordStream[ProductStock]: ...

        def stock_update_history(
            self, updated_since: datetime | None = None
        ) -> RecordStream[StockUpdateRecord]: ...

    # -- orders ----------------------------------------------------------------------

    async def create_orders(
        self,
        orders: Iterable[NewPartnerOrder],
        *,
        on_unknown: str = "raise",
        margin: timedelta = timedelta(minutes=15),
    ) -> CreateResult:
        """Create orders (POST /v1/partner/order): a partial success is a result.

        >>> result = await client.create_orders(orders, on_unknown="reconcile")
        >>> result.created   # the server's PartnerOrder records
        >>> result.failed    # CreateFailure(order_id, reason), e.g. an order_id taken

        Every field the documentation requires, and every value, is checked first: one
        :class:`EncodeError` names each problem, and nothing is sent. More than
        ``max_batch`` orders go out as several POSTs, each with the guarantees below.

        A POST is never re-sent blindly. When its outcome is unknown (the connection
        failed after sending, a 5xx, an unreadable answer, orders the answer does not
        mention):

        * ``on_unknown="raise"`` (default): :class:`OutcomeUnknownError` with
          ``orders`` (those of unknown outcome), ``result`` (what is known, the batches
          before included), ``unsent`` and ``sent_at``;
        * ``on_unknown="reconcile"``: the orders are looked up by ``order_id`` in the
          windows around their ``order_date`` (``margin`` either side, which is also the
          clock difference allowed); those found are created, with the server's records,
          and only the missing ones are sent again. A re-sent order refused as existing
          was made by the first send: it is looked up (again after a pause, for a
          listing that lags) and reported as created. An order found that is older than
          the call (by more than ``margin``) or differs from what was sent existed
          before: a failure. If the lookups cannot settle it, :class:`OutcomeUnknownError`.
        """
        items = await run_sliced(check_new_orders(orders))
        _check_on_unknown(on_unknown)
        margin = _check_margin(margin)
        if not items:
            return CreateResult()
        created, failed = await self._create(
            items, _ORDER_CREATION, on_unknown, self._order_finder(margin), margin
        )
        return CreateResult(created=tuple(created), failed=tuple(failed))

    async def reconcile(
        self, error: OutcomeUnknownError, *, margin: timedelta = timedelta(minutes=15)
    ) -> CreateResult:
        """Settle a ``create_orders`` that raised ``error``: look its orders up, send
        only the missing ones, and return what became of all of them (``error.result``
        included; ``error.unsent`` is still yours to send).

        >>> try:
        ...     result = await client.create_orders(batch)
        ... except OutcomeUnknownError as error:
        ...     result = await client.reconcile(error)
        """
        margin = _check_margin(margin)
        items = await run_sliced(check_new_orders(_attempted(error, "create_orders")))
        result = await self._settle(
            error, items, _ORDER_CREATION, self._order_finder(margin), margin
        )
        return CreateResult(created=result.created, failed=result.failed)  # type: ignore[arg-type]

    async def reconcile_products(self, error: OutcomeUnknownError) -> ProductResult:
        """Settle a ``create_products`` that raised ``error``, as :meth:`reconcile` does
        for orders (products are looked up in the listing by ``sku``)."""
        items = await run_sliced(check_products(_attempted(error, "create_products")))
        result = await self._settle(
            error, items, _PRODUCT_CREATION, self._product_finder(), _CLOCK_MARGIN
        )
        return ProductResult(created=result.created, failed=result.failed)  # type: ignore[arg-type]

    async def _settle(
        self,
        error: OutcomeUnknownError,
        items: list[Any],
        spec: _Creation,
        find: Find,
        margin: timedelta,
    ) -> CreateResult | ProductResult:
        """What the creation that raised ``error`` did, the missing records sent."""
        sent_at = error.sent_at or self._transport.wall_clock()
        before = error.result if isinstance(error.result, spec.result) else spec.result()
        try:
            created, failed = await self._create_batch(
                items,
                spec,
                "reconcile",
                find,
                sent_at - margin,
                unknown=True,
                sent_at=sent_at,
            )
        except ConnexiError as exc:
            # Raised again with everything the first error knew (its send time above all:
            # a later reconcile tells our records from older ones by it).
            _carry(exc, spec, list(before.created), list(before.failed), error.unsent)
            raise
        return spec.result(created=(*before.created, *created), failed=(*before.failed, *failed))

    def _order_finder(self, margin: timedelta) -> Find:
        async def find(wanted: list[NewPartnerOrder], not_before: datetime) -> Found:
            sent = {order.order_id: order for order in wanted}
            found: Found = {}
            for key, record in (await self._find_orders(wanted, margin)).items():
                made, date, order = record.created_at, record.order_date, sent[key]
                assert order.order_date is not None  # checked before sending
                why = ""
                if made is not None and made < not_before:
                    why = f"created at {made.isoformat()}, before this call"
                elif date is None or abs(date - order.order_date) >= timedelta(seconds=1):
                    why = f"its order_date is {date.isoformat() if date else 'not set'}"
                elif record.customer_reference.strip() != order.customer_reference.strip():
                    why = f"its customer_reference is {record.customer_reference!r}"
                found[key] = (record, why)
            return found

        return find

    async def _find_orders(
        self, orders: list[NewPartnerOrder], margin: timedelta
    ) -> dict[str, PartnerOrder]:
        """The server's records of these orders, by ``order_id``, read from the windows
        around their ``order_date``."""
        periods = []
        for order in orders:
            assert order.order_date is not None  # checked before sending (years 1970-9998)
            date = whole_second(order.order_date, "order_date")
            periods.append((date - margin, date + margin + timedelta(seconds=1)))
        wanted = {order.order_id for order in orders}
        found: dict[str, PartnerOrder] = {}
        for since, until in merge_periods(periods):
            async with self.orders(since, until) as stream:
                async for record in stream:
                    if record.order_id in wanted:
                        found.setdefault(record.order_id, record)
            if len(found) == len(wanted):
                break
        return found

    # -- products --------------------------------------------------------------------

    async def create_products(
        self, products: Iterable[NewProduct], *, on_unknown: str = "raise"
    ) -> ProductResult:
        """Create products (POST /v1/partner/product): a partial success, as orders.

        Every field is required and checked first. With ``on_unknown="reconcile"`` a
        POST whose outcome is unknown is settled by reading the product listing and
        matching ``sku`` (Connexi's SKU, which the server refuses twice); only the
        missing products are sent again.
        """
        items = await run_sliced(check_products(products))
        _check_on_unknown(on_unknown)
        if not items:
            return ProductResult()
        created, failed = await self._create(
            items, _PRODUCT_CREATION, on_unknown, self._product_finder(), _CLOCK_MARGIN
        )
        return ProductResult(created=tuple(created), failed=tuple(failed))

    # -- creation, exactly once ------------------------------------------------------

    def _product_finder(self) -> Find:
        async def find(wanted: list[NewProduct], not_before: datetime) -> Found:
            sent = {product.sku: product for product in wanted}
            found: Found = {}
            async with self.product_stocks() as stream:
                async for stock in stream:
                    product = sent.get(stock.sku)
                    if product is None:
                        continue
                    made = stock.created_at
                    why = ""
                    if made is not None and made < not_before:
                        why = f"created at {made.isoformat()}, before this call"
                    elif stock.partner_sku != product.partner_sku:
                        why = f"its partner_sku is {stock.partner_sku!r}"
                    record = CreatedProduct(
                        id=stock.id,
                        sku=stock.sku,
                        partner_sku=stock.partner_sku,
                        partner_variant_sku=stock.partner_variant_sku,
                        name=stock.name,
                    )
                    found[stock.sku] = (record, why)
            return found

        return find

    async def _create(
        self,
        items: list[Any],
        spec: _Creation,
        on_unknown: str,
        find: Find,
        margin: timedelta,
    ) -> tuple[list[Any], list[Any]]:
        """Every batch of ``items`` created: (created records, failures). An error
        carries what is known: ``result`` (the batches before, and what its own batch
        settled) and ``unsent`` (what was not sent)."""
        created: list[Any] = []
        failed: list[Any] = []
        batches = _batches(items, spec, self.max_batch)
        for number, batch in enumerate(batches):
            not_before = self._transport.wall_clock() - margin
            try:
                ok, bad = await self._create_batch(batch, spec, on_unknown, find, not_before)
            except ConnexiError as exc:
                later = tuple(item for rest in batches[number + 1 :] for item in rest)
                _carry(exc, spec, created, failed, later)
                raise
            created += ok
            failed += bad
        return created, failed

    async def _create_batch(
        self,
        batch: list[Any],
        spec: _Creation,
        on_unknown: str,
        find: Find,
        not_before: datetime,
        *,
        unknown: bool = False,
        sent_at: datetime | None = None,
    ) -> tuple[list[Any], list[Any]]:
        """One batch created, exactly once: (created records, failures). ``unknown``:
        the batch was sent already with no known outcome (reconcile): look first.

        Each round either sends the pending records or looks them up. A lookup's
        findings are final (created, or existed before); records not found are sent
        (again). A re-sent record refused as existing is looked up with patience; one
        that cannot be found then is an :class:`OutcomeUnknownError`, as is a batch
        whose outcome stays unknown after ``_MAX_SENDS`` sends."""
        created: list[Any] = []
        failed: list[Any] = []
        pending = batch
        resent = unknown

        def unknown_error(
            message: str, orders: list[Any], cause: BaseException | None = None
        ) -> OutcomeUnknownError:
            error = OutcomeUnknownError(
                f"POST {spec.path} {message}; {spec.unknown_hint}",
                method="POST",
                path=spec.path,
                orders=orders,
                sent_at=sent_at,
                failed_at=self._transport.wall_clock(),
                result=spec.result(created=tuple(created), failed=tuple(failed)),
            )
            error.__cause__ = cause
            return error

        async def settle(items: list[Any], *, patient: bool) -> list[Any]:
            """Look ``items`` up; the findings go to created or failed; returns those
            not found."""
            try:
                found = await self._look_up(items, spec, find, not_before, patient=patient)
            except ConnexiError as exc:
                raise unknown_error(
                    f"had an unknown outcome, and looking the {spec.noun} up failed ({exc})",
                    items,
                    exc,
                ) from exc
            for item in items:
                entry = found.get(spec.key(item))
                if entry is None:
                    continue
                record, why = entry
                if not why:
                    created.append(record)
                else:
                    failed.append(spec.failure(item, _existed_before(record, why)))
            return [item for item in items if spec.key(item) not in found]

        if unknown:
            pending = await settle(pending, patient=False)
        sends = 0
        while pending:
            if sends == _MAX_SENDS:
                raise unknown_error(
                    f"left {len(pending)} {spec.noun} of unknown outcome after {sends} sends "
                    "and lookups",
                    pending,
                )
            sends += 1
            sent_at = sent_at or self._transport.wall_clock()
            try:
                ok, bad = await self._send_creation(pending, spec)
            except OutcomeUnknownError as exc:
                if on_unknown == "raise":
                    exc.orders = tuple(pending)
                    exc.sent_at = sent_at
                    exc.failed_at = self._transport.wall_clock()
                    exc.result = spec.result(created=tuple(created), failed=tuple(failed))
                    raise
                logger.warning(
                    "POST %s: the outcome of %d %s is unknown (%s); looking them up",
                    spec.path,
                    len(pending),
                    spec.noun,
                    exc,
                )
                pending = await settle(pending, patient=False)
                resent = True
                continue
            except ConnexiError as exc:
                # Refused whole (a 400), or not sent (a rate limit past its retries): not
                # created; what this batch settled before stays known.
                exc.result = spec.result(  # type: ignore[attr-defined]
                    created=tuple(created), failed=tuple(failed)
                )
                exc.unsent = tuple(pending)  # type: ignore[attr-defined]
                raise
            ok, bad = await run_sliced(_answered(pending, ok, bad, spec))
            created += ok
            made = {spec.created_key(record) for record in ok}
            refused = {spec.failed_key(failure) for failure in bad}
            silent = [
                item
                for item in pending
                if spec.key(item) not in made and spec.failed_key_of(item) not in refused
            ]
            # Refused after a send of ours whose outcome was unknown: perhaps made by it
            # (whatever words the refusal uses), so looked up before it counts.
            ours = [failure for failure in bad if resent]
            theirs = {id(failure) for failure in ours}
            failed += [failure for failure in bad if id(failure) not in theirs]
            if silent and on_unknown == "raise":
                raise unknown_error(
                    f"was answered, but the answer does not mention {len(silent)} "
                    f"{spec.noun} (neither created nor refused): their outcome is unknown",
                    silent,
                )
            if ours:
                keys = {spec.failed_key(failure) for failure in ours}
                existing = {spec.failed_key(f) for f in ours if f.already_exists}
                claimed = [item for item in pending if spec.failed_key_of(item) in keys]
                missing = await settle(claimed, patient=bool(existing))
                # Not found: a refusal for its own reasons stands; "already exists" for
                # something the listing does not show cannot be settled.
                lost = [i for i in missing if spec.failed_key_of(i) in existing]
                gone = {spec.failed_key_of(i) for i in missing} - existing
                failed += [f for f in ours if spec.failed_key(f) in gone]
                if lost:
                    raise unknown_error(
                        f"refused {len(lost)} re-sent {spec.noun} as existing, but the "
                        "server's listing does not show them (a listing that lags behind, "
                        "or files them elsewhere): whether they are the ones sent is unknown",
                        lost,
                    )
            # Not mentioned: looked up, and those not found are sent again.
            pending = await settle(silent, patient=False) if silent else []
            resent = resent or bool(pending)
        return created, failed

    async def _look_up(
        self, items: list[Any], spec: _Creation, find: Find, not_before: datetime, *, patient: bool
    ) -> Found:
        """The lookup; with ``patience``, again after pauses while some are missing (a
        server that said they exist, but whose listing lags behind its writes)."""
        found = await find(items, not_before)
        waits = _LOOKUP_WAITS if patient else ()
        for wait in waits:
            if len(found) >= len({spec.key(item) for item in items}):
                break
            await self._transport.sleep(wait)
            found = await find(items, not_before)
        return found

    async def _send_creation(
        self, items: list[Any], spec: _Creation
    ) -> tuple[list[Any], list[Any]]:
        body = await run_sliced(spec.body(items))
        response = await self._transport.request(
            "POST", spec.path, body=body, unknown_hint=spec.unknown_hint
        )
        context = f"POST {spec.path}"
        try:
            return await run_sliced(
                partial_steps(response.body, spec.ok_cls, spec.failed_cls, context)
            )
        except DecodeError as exc:
            raise OutcomeUnknownError(
                f"{context} was answered (HTTP {response.status}) with a body that could not be "
                f"read: which {spec.noun} were created is unknown; {spec.unknown_hint}",
                method="POST",
                path=spec.path,
            ) from exc

    # -- status changes --------------------------------------------------------------

    async def change_statuses(self, changes: Iterable[StatusChange]) -> StatusResult:
        """Change order statuses (PATCH /v1/partner/order/status), per order.

        >>> result = await client.change_statuses([Accept.of(order), Pack(id, "AWB1", at)])
        >>> result.succeeded  # StatusSuccess(id, status, updated_at)
        >>> result.failed     # StatusFailure(id, current status, message, current updated_at)

        Each change carries the order's ``updated_at`` as last read: the server refuses
        it if the order changed since (optimistic concurrency), and ``failed`` then says
        what the order is now. A PATCH whose answer was lost is sent again; its changes
        then meet their own first attempt's ``updated_at`` and fail, so when an earlier
        attempt may have been processed, an order whose current status is the one asked
        for counts as succeeded. More than ``max_batch`` changes go out as several
        PATCHes; if one fails, the error carries what the earlier ones did (``result``
        on an :class:`OutcomeUnknownError`, a note on any).
        """
        items = await run_sliced(check_changes(changes))
        succeeded: list[StatusSuccess] = []
        failed: list[StatusFailure] = []
        context = f"PATCH {_STATUS_PATH}"
        for first in range(0, len(items), self.max_batch):
            batch = items[first : first + self.max_batch]
            try:
                body = await run_sliced(status_changes_body_steps(batch))
                response = await self._transport.request("PATCH", _STATUS_PATH, body=body)
                try:
                    ok, bad = await run_sliced(
                        partial_steps(response.body, StatusSuccess, StatusFailure, context)
                    )
                except DecodeError as exc:
                    raise OutcomeUnknownError(
                        f"{context} was answered (HTTP {response.status}) with a body that "
                        "could not be read: which changes were made is unknown; read the "
                        "orders again before sending changes with their current updated_at",
                        method="PATCH",
                        path=_STATUS_PATH,
                        orders=batch,
                    ) from exc
            except ConnexiError as exc:
                if isinstance(exc, TransportError | ServerError):
                    exc.add_note(
                        "these changes may or may not have been made: read the orders again "
                        "(their status and updated_at) before sending them again"
                    )
                if first:
                    done = StatusResult(succeeded=tuple(succeeded), failed=tuple(failed))
                    if isinstance(exc, OutcomeUnknownError):
                        exc.result = done
                    exc.add_note(
                        f"the first {first} changes went out in earlier PATCHes: "
                        f"{len(succeeded)} succeeded, {len(failed)} were refused"
                    )
                raise
            part = await run_sliced(status_result(batch, ok, bad, retried=response.resent))
            succeeded += part.succeeded
            failed += part.failed
        return StatusResult(succeeded=tuple(succeeded), failed=tuple(failed))

    # -- stock -----------------------------------------------------------------------

    async def update_stock(self, update: StockUpdate) -> str:
        """Send a stock update (POST /v1/partner/inventory/updatestocks): an
        asynchronous job; returns its transaction code.

        >>> code = await client.update_stock(StockUpdate(sku="TOP0001-S", available_stock=100))
        >>> record = await client.wait_for_stock_update(code, timeout=60)

        Checked first: counts are non-negative, ``buffer_stock <= available_stock``.
        Never sent twice: nothing identifies a job but the code its answer carries, so
        a lost answer is an :class:`OutcomeUnknownError` (look for a job of that SKU in
        :meth:`stock_update_history` since ``error.sent_at`` before sending it again).
        """
        checked = check_stock_update(update)
        body = stock_update_body(checked)
        sent_at = self._transport.wall_clock()
        try:
            response = await self._transport.request(
                "POST",
                _STOCK_PATH,
                body=body,
                unknown_hint=(
                    f"the stock update of {checked.sku!r} may or may not have been accepted. "
                    "Look for a job of that SKU in client.stock_update_history(updated_since="
                    "error.sent_at - timedelta(minutes=15)) (the server's clock may differ) "
                    "before sending it again."
                ),
            )
        except OutcomeUnknownError as exc:
            exc.orders = (checked,)
            exc.sent_at = sent_at
            exc.failed_at = self._transport.wall_clock()
            raise
        code = _transaction_code(response.body.slice(0, _TRANSACTION_ANSWER + 1))
        if code is None:
            raise DecodeError(
                [FieldError("$.transaction_code", "required field is missing or unreadable")],
                context=f"POST {_STOCK_PATH} was accepted (HTTP {response.status}), but its "
                "answer names no job: do not send it again; find the job in "
                "stock_update_history()",
            )
        self._stock_jobs[code] = sent_at
        while len(self._stock_jobs) > 4096:
            self._stock_jobs.popitem(last=False)
        return code

    async def wait_for_stock_update(
        self,
        transaction_code: str,
        *,
        # A deadline of our own: the call raises a typed error that carries the code,
        # which asyncio.timeout around it could not.
        timeout: float = 120.0,  # noqa: ASYNC109
        poll_interval: float = 0.5,
        max_interval: float = 8.0,
        since: datetime | None = None,
    ) -> StockUpdateRecord:
        """Poll the inventory history until the job ``transaction_code`` has finished,
        and return its record: ``items`` holds each channel's outcome (``channel``,
        ``success``, ``message``).

        Polls every ``poll_interval`` seconds at first, doubling up to
        ``max_interval``; a poll that fails (a 5xx, a network error) is logged and
        polled again. The history is read from ``since`` (by default 15 minutes before
        this client sent the update, for clock differences, or a day back for a code it
        did not send). Raises
        :class:`StockUpdateTimeoutError` (with the code, the last record seen, and the
        last poll's error as its cause) once ``timeout`` seconds have passed, whatever
        a poll was doing then.
        """
        if not isinstance(transaction_code, str) or not transaction_code.strip():
            raise ConfigurationError("transaction_code must be the code update_stock returned")
        timeout = check_seconds("timeout", timeout, allow_inf=True)
        delay = check_seconds("poll_interval", poll_interval)
        ceiling = max(delay, check_seconds("max_interval", max_interval))
        if since is None:
            sent = self._stock_jobs.get(transaction_code)
            now = self._transport.wall_clock()
            since = (sent if sent is not None else now - timedelta(days=1)) - _CLOCK_MARGIN
        clock, sleep = self._transport.clock, self._transport.sleep
        deadline = clock() + timeout
        last: StockUpdateRecord | None = None
        problem: ConnexiError | None = None
        while True:
            remaining = deadline - clock()
            try:
                async with asyncio.timeout(
                    None if remaining == float("inf") else max(remaining, 0)
                ):
                    last = await self._poll(transaction_code, since) or last
                problem = None
            except TimeoutError:
                pass
            except (TransportError, WindowError, APIError) as exc:
                if isinstance(exc, APIError) and 400 <= exc.status < 500 and exc.status != 429:
                    raise  # a request the server refuses: not what another poll mends
                problem = exc
                logger.warning("polling the stock update %s failed: %s", transaction_code, exc)
            if last is not None and last.finished_at is not None:
                return last
            remaining = deadline - clock()
            if remaining <= 0:
                state = "not listed yet" if last is None else "still in progress"
                raise StockUpdateTimeoutError(
                    f"the stock update {transaction_code} did not finish within {timeout:g} s "
                    f"({state}); wait again, or look it up in stock_update_history()",
                    transaction_code=transaction_code,
                    last_seen=last,
                ) from problem
            await sleep(min(delay, remaining))
            delay = min(delay * 2, ceiling)

    async def _poll(self, transaction_code: str, since: datetime) -> StockUpdateRecord | None:
        found = None
        async with self.stock_update_history(since) as stream:
            async for record in stream:
                if record.transaction_code == transaction_code:
                    found = record
        return found


def _transaction_code(body: bytes) -> str | None:
    """The code of an Update Stocks answer, read without building anything else (an
    answer larger than any such answer is not one)."""
    if len(body) > _TRANSACTION_ANSWER:
        return None
    try:
        code = _transaction_answer.decode(body).transaction_code
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    # A code is printed, logged and pasted into commands: no spaces, no control bytes.
    return code if code is not None and _TRANSACTION_CODE.fullmatch(code) else None
