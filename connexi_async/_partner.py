"""``PartnerClient``: SIRCLO's partner API, read side, on the client's shared machinery.

The transport, the retry policy, the stream and the conversion rules are the v1
client's; what differs is the auth (an HMAC over each request's target and body, see
``_auth``) and the pagination: offset pages inside each date window. A window asks for
offset 0, learns ``total_record``, fetches the remaining pages concurrently under the
stream's one in-flight bound, and re-reads the window if the pages disagree (orders
inserted or removed while it was paged shift the offsets).
"""

from __future__ import annotations

import asyncio
import logging
import operator
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, Unpack

import attrs
import msgspec

from ._auth import PartnerAuth, _Secret
from ._client import ClientOptions, _BaseClient, hide_secrets
from ._convert import (
    build_partner,
    new_partner_orders_body_steps,
    new_products_body_steps,
    page_steps,
    partial_steps,
    status_changes_body_steps,
    stock_update_body,
)
from ._cooperative import Steps, run_sliced
from ._errors import (
    ConfigurationError,
    ConnexiError,
    DecodeError,
    FieldError,
    OutcomeUnknownError,
    PagesShiftedError,
    PagingError,
    StockUpdateTimeoutError,
    format_instant,
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
from ._stream import RecordStream
from ._transport import check_count, check_seconds
from ._windows import Window, merge_periods, whole_second
from ._writes import (
    check_changes,
    check_new_orders,
    check_products,
    check_stock_update,
    status_result,
)

__all__ = [
    "DEFAULT_PARTNER_BASE_URL",
    "MAX_PAGE_SIZE",
    "PartnerClient",
]

# The partner documentation's production host (its signing examples use it too).
DEFAULT_PARTNER_BASE_URL = "https://api.connexi.id"

MAX_PAGE_SIZE = 100  # the documented maximum of ``limit``
MAX_READS = 4  # readings of a window whose pages disagree before giving up
MAX_LISTING_RECORDS = 10_000_000  # more in one window or listing: a server gone wrong
_PAGE_WORKERS = 16  # pages of one reading asked for at once (the stream's bound applies too)
T = TypeVar("T")
logger = logging.getLogger("connexi_async")


class PartnerClient(_BaseClient):
    """The asyncio client for SIRCLO's partner API: every request signed.

    >>> async with PartnerClient(partner_id="B98KL87", partner_secret="...") as client:
    ...     async for order in client.orders(since, until, with_delivery_orders=True):
    ...         print(order.order_id, order.status, order.delivery_orders)

    Options: those of :class:`ConnexiClient` (timeouts, retries, ``session=``, rate
    limit, ``max_connections``, ``ssl``, ``proxy``...), and ``sign_leading_slash``
    (True): sign the request target from its leading ``/``, as the documentation's GET
    example does; ``False`` signs it without, as its Create Order example does.
    """

    _CREDENTIALS_ENV = (
        ("CONNEXI_PARTNER_ID", "partner_id"),
        ("CONNEXI_PARTNER_SECRET", "partner_secret"),
    )
    _BASE_URL_ENV = "CONNEXI_PARTNER_BASE_URL"

    def __init__(
        self,
        *,
        partner_id: str,
        partner_secret: str,
        sign_leading_slash: bool = True,
        **options: Unpack[ClientOptions],
    ) -> None:
        if not isinstance(sign_leading_slash, bool):
            raise ConfigurationError("sign_leading_slash must be True or False")
        secret = _Secret(partner_secret) if isinstance(partner_secret, str) else partner_secret
        del partner_secret  # no frame of ours keeps it in clear (tracebacks show locals)
        auth = PartnerAuth(partner_id, secret, leading_slash=sign_leading_slash)
        options.setdefault("base_url", DEFAULT_PARTNER_BASE_URL)
        super().__init__(auth, **hide_secrets(options))
        # When each transaction code this client got was sent: where its job's history
        # starts (wait_for_stock_update).
        self._stock_jobs: OrderedDict[str, datetime] = OrderedDict()

    # -- streams ---------------------------------------------------------------------

    def orders(
        self,
        since: datetime,
        until: datetime,
        *,
        window: timedelta = timedelta(days=1),
        concurrency: int = 8,
        ordered: bool = True,
        page_size: int = MAX_PAGE_SIZE,
        with_delivery_orders: bool = False,
    ) -> RecordStream[PartnerOrder]:
        """Every partner order whose ``order_date`` is in ``[since, until)``, each once.

        Windows of ``window``, each read as offset pages of ``page_size`` (1-100): the
        first page, then the rest concurrently; windows and pages share one bound of
        ``concurrency`` requests in flight. ``ordered=True`` yields in (window, offset)
        order. An order the server returns outside the period is not yielded, so runs
        over ``[a, b)`` and ``[b, c)`` never yield one order twice.

        >>> async with client.orders(since, until, page_size=100) as stream:
        ...     async for order in stream:
        ...         ...
        """
        size = _page_size(page_size)
        if not isinstance(with_delivery_orders, bool):
            raise ConfigurationError("with_delivery_orders must be True or False")
        low, high = whole_second(since, "since"), whole_second(until, "until")

        async def fetch(window: Window, slot: asyncio.Semaphore) -> tuple[list[Any], int, int]:
            # Kept: orders dated inside this window (its end included: an order exactly on
            # a boundary is also in the neighbour, and the stream de-duplicates the two)
            # and inside the period. One the server returns from another window is not
            # yielded from this one: only neighbours are de-duplicated.
            first, last = max(low, window.start), window.end

            def in_window(order: Any) -> bool:
                date = order.order_date
                return date is None or (first <= date <= last and date < high)

            listing = _Listing(
                path="/v1/partner/order",
                params={"since": format_instant(window.start), "until": format_instant(window.end)},
                extra={"withDO": "true" if with_delivery_orders else "false"},
                cls=PartnerOrder,
                size=size,
                what=str(window),
            )
            return await self._paged(listing, slot, in_window)

        return self._windowed(
            fetch,
            _record_id,
            since,
            until,
            window,
            concurrency,
            ordered,
            None,
            build=build_partner(PartnerOrder),
        )

    def product_stocks(
        self, *, page_size: int = MAX_PAGE_SIZE, concurrency: int = 8
    ) -> RecordStream[ProductStock]:
        """Every product's stock: the first page, then the rest concurrently."""
        size = _page_size(page_size)

        listing = _Listing("/v1/partner/product/stock", {}, {}, ProductStock, size, "all products")

        async def fetch(_: Window, slot: asyncio.Semaphore) -> tuple[list[Any], int, int]:
            return await self._paged(listing, slot)

        return self._listing(fetch, concurrency, build_partner(ProductStock))

    def stock_update_history(
        self,
        updated_since: datetime | None = None,
        *,
        page_size: int = MAX_PAGE_SIZE,
        concurrency: int = 8,
    ) -> RecordStream[StockUpdateRecord]:
        """The stock update jobs (inventory history), those updated since
        ``updated_since`` if given; paged as :meth:`product_stocks`."""
        size = _page_size(page_size)
        params = {}
        if updated_since is not None:
            params["updated_at"] = format_instant(whole_second(updated_since, "updated_since"))

        listing = _Listing(
            "/v1/partner/inventory/history", params, {}, StockUpdateRecord, size, "the history"
        )

        async def fetch(_: Window, slot: asyncio.Semaphore) -> tuple[list[Any], int, int]:
            return await self._paged(listing, slot)

        return self._listing(fetch, concurrency, build_partner(StockUpdateRecord))

    def _listing(self, fetch: Any, concurrency: int, build: Callable[[Any], T]) -> RecordStream[T]:
        """A stream over one paged listing (no date windows)."""
        marker = Window(datetime.min, datetime.min)
        return RecordStream(
            window_count=1,
            windows=iter([marker]),
            fetch=fetch,
            key=_record_id,
            concurrency=self._concurrency(concurrency),
            ordered=True,
            page_cap=None,
            windowed=False,
            build=build,
        )

    # -- writes ----------------------------------------------------------------------

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

        Every field the documentation requires is checked first: one
        :class:`EncodeError` names each missing one, and nothing is sent. More than
        ``max_batch`` orders go out as several POSTs, each with the guarantees below.

        A POST is never re-sent blindly. When its outcome is unknown (the connection
        failed after sending, a 5xx, an unreadable 2xx answer):

        * ``on_unknown="raise"`` (default): :class:`OutcomeUnknownError` with
          ``orders`` (that batch), ``result`` (the batches before it) and ``unsent``;
        * ``on_unknown="reconcile"``: the orders are looked up by ``order_id`` in the
          windows around their ``order_date`` (``margin`` either side); those found are
          reported as created, with the server's records, and only the missing ones are
          sent again. An "already exists" refusal of a re-sent order is looked up the
          same way: it was ours. Every order then exists exactly once.
        """
        items = await run_sliced(check_new_orders(orders))
        _check_on_unknown(on_unknown)
        if not isinstance(margin, timedelta) or margin < timedelta(0):
            raise ConfigurationError(f"margin must be a timedelta of zero or more, got {margin!r}")

        async def find(wanted: list[NewPartnerOrder]) -> dict[str, PartnerOrder]:
            return await self._find_orders(wanted, margin)

        result = await self._create(items, _ORDER_CREATION, on_unknown, find)
        return CreateResult(created=tuple(result[0]), failed=tuple(result[1]))

    async def create_products(
        self, products: Iterable[NewProduct], *, on_unknown: str = "raise"
    ) -> ProductResult:
        """Create products (POST /v1/partner/product): a partial success, as orders.

        Every field is required and checked first. With ``on_unknown="reconcile"`` a
        POST whose outcome is unknown is resolved by reading the product listing and
        matching ``sku`` (Connexi's SKU, which the server refuses twice); only the
        missing products are sent again.
        """
        items = await run_sliced(check_products(products))
        _check_on_unknown(on_unknown)

        async def find(wanted: list[NewProduct]) -> dict[str, CreatedProduct]:
            skus = {product.sku for product in wanted}
            found: dict[str, CreatedProduct] = {}
            async with self.product_stocks() as stream:
                async for stock in stream:
                    if stock.sku in skus:
                        found[stock.sku] = CreatedProduct(
                            id=stock.id,
                            sku=stock.sku,
                            partner_sku=stock.partner_sku,
                            partner_variant_sku=stock.partner_variant_sku,
                            name=stock.name,
                        )
            return found

        result = await self._create(items, _PRODUCT_CREATION, on_unknown, find)
        return ProductResult(created=tuple(result[0]), failed=tuple(result[1]))

    async def reconcile(
        self, error: OutcomeUnknownError, *, margin: timedelta = timedelta(minutes=15)
    ) -> CreateResult:
        """Finish a ``create_orders`` that raised ``error`` (``on_unknown="raise"``):
        look its orders up, send only the missing ones, and return what became of all of
        them (the batches before it, in ``error.result``, included; ``error.unsent`` is
        still yours to send)."""
        if not isinstance(error, OutcomeUnknownError) or not error.orders:
            raise ConfigurationError(
                "reconcile() takes the OutcomeUnknownError raised by create_orders "
                f"(it carries the attempted orders); got {type(error).__name__}"
            )
        items = await run_sliced(check_new_orders(error.orders))

        async def find(wanted: list[NewPartnerOrder]) -> dict[str, PartnerOrder]:
            return await self._find_orders(wanted, margin)

        found = await find(items)
        created = [found[o.order_id] for o in items if o.order_id in found]
        missing = [o for o in items if o.order_id not in found]
        ok, failed = (
            await self._create(missing, _ORDER_CREATION, "reconcile", find, resent=True)
            if missing
            else ([], [])
        )
        before = error.result if isinstance(error.result, CreateResult) else CreateResult()
        return CreateResult(
            created=(*before.created, *created, *ok), failed=(*before.failed, *failed)
        )

    async def change_statuses(self, changes: Iterable[StatusChange]) -> StatusResult:
        """Change order statuses (PATCH /v1/partner/order/status), per order.

        >>> result = await client.change_statuses([Accept.of(order), Pack(id, "AWB1", at)])
        >>> result.succeeded  # StatusSuccess(id, status, updated_at)
        >>> result.failed     # StatusFailure(id, current status, message, current updated_at)

        Each change carries the order's ``updated_at`` as last read: the server refuses
        it if the order changed since (optimistic concurrency), and ``failed`` then says
        what the order is now. A PATCH whose answer was lost is sent again; its changes
        then meet their own first attempt's ``updated_at`` and fail, so an order whose
        current status is the one asked for counts as succeeded. More than
        ``max_batch`` changes go out as several PATCHes.
        """
        items = await run_sliced(check_changes(changes))
        succeeded: list[StatusSuccess] = []
        failed: list[StatusFailure] = []
        for first in range(0, len(items), self.max_batch):
            batch = items[first : first + self.max_batch]
            body = await run_sliced(status_changes_body_steps(batch))
            try:
                response = await self._transport.request("PATCH", _STATUS_PATH, body=body)
            except ConnexiError as exc:
                if first:
                    exc.add_note(
                        f"the first {first} changes went out in earlier PATCHes and were "
                        "answered; read those orders again to see them"
                    )
                raise
            context = f"PATCH {_STATUS_PATH}"
            try:
                ok, bad = await run_sliced(
                    partial_steps(response.body, StatusSuccess, StatusFailure, context)
                )
            except DecodeError as exc:
                raise OutcomeUnknownError(
                    f"{context} was answered (HTTP {response.status}) with a body that could "
                    "not be read: which changes were made is unknown; read the orders again "
                    "before sending changes with their current updated_at",
                    method="PATCH",
                    path=_STATUS_PATH,
                    orders=batch,
                ) from exc
            part = await run_sliced(status_result(batch, ok, bad, retried=response.attempts > 1))
            succeeded += part.succeeded
            failed += part.failed
        return StatusResult(succeeded=tuple(succeeded), failed=tuple(failed))

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
                    "error.sent_at) before sending it again."
                ),
            )
        except OutcomeUnknownError as exc:
            exc.orders = (checked,)
            exc.sent_at = sent_at
            exc.failed_at = self._transport.wall_clock()
            raise
        code = _transaction_code(response.body.whole())
        if code is None:
            raise DecodeError(
                [FieldError("$.transaction_code", "required field is missing")],
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
        ``max_interval``. The history is read from ``since`` (by default a minute
        before this client sent the update, or a day back for a code it did not send).
        Raises :class:`StockUpdateTimeoutError` (with the code and the last record seen)
        after ``timeout`` seconds.
        """
        if not isinstance(transaction_code, str) or not transaction_code.strip():
            raise ConfigurationError("transaction_code must be the code update_stock returned")
        timeout = check_seconds("timeout", timeout, allow_inf=True)
        delay = check_seconds("poll_interval", poll_interval)
        ceiling = max(delay, check_seconds("max_interval", max_interval))
        if since is None:
            sent = self._stock_jobs.get(transaction_code)
            now = self._transport.wall_clock()
            since = (sent if sent is not None else now - timedelta(days=1)) - timedelta(minutes=1)
        clock, sleep = self._transport.clock, self._transport.sleep
        deadline = clock() + timeout
        last: StockUpdateRecord | None = None
        while True:
            async with self.stock_update_history(since) as stream:
                async for record in stream:
                    if record.transaction_code == transaction_code:
                        last = record
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
                )
            await sleep(min(delay, remaining))
            delay = min(delay * 2, ceiling)

    # -- creation, exactly once ------------------------------------------------------

    async def _create(
        self,
        items: list[Any],
        spec: _Creation,
        on_unknown: str,
        find: Callable[[list[Any]], Awaitable[dict[str, Any]]],
        *,
        resent: bool = False,
    ) -> tuple[list[Any], list[Any]]:
        """Every batch of ``items`` created: (created records, failures)."""
        created: list[Any] = []
        failed: list[Any] = []
        for first in range(0, len(items), self.max_batch):
            batch = items[first : first + self.max_batch]
            try:
                ok, bad = await self._create_batch(batch, spec, on_unknown, find, resent)
            except OutcomeUnknownError as exc:
                exc.result = spec.result(created=tuple(created), failed=tuple(failed))
                exc.unsent = tuple(items[first + len(batch) :])
                raise
            created += ok
            failed += bad
        return created, failed

    async def _create_batch(
        self,
        batch: list[Any],
        spec: _Creation,
        on_unknown: str,
        find: Callable[[list[Any]], Awaitable[dict[str, Any]]],
        resent: bool,
    ) -> tuple[list[Any], list[Any]]:
        created: list[Any] = []
        pending = batch
        for attempt in range(1, _MAX_SENDS + 1):
            sent_at = self._transport.wall_clock()
            try:
                ok, bad = await self._send_creation(pending, spec)
            except OutcomeUnknownError as exc:
                exc.orders = tuple(pending)
                exc.sent_at = sent_at
                exc.failed_at = self._transport.wall_clock()
                if on_unknown == "raise" or attempt == _MAX_SENDS:
                    raise
                logger.warning(
                    "POST %s: the outcome of %d %s is unknown (%s); looking them up",
                    spec.path,
                    len(pending),
                    spec.noun,
                    exc,
                )
                found = await find(pending)
                created += _found(pending, found, spec)
                pending = [item for item in pending if spec.key(item) not in found]
                resent = True
                if not pending:
                    return created, []
                continue
            created += ok
            # An order the answer does not mention, and (when re-sent) one refused as
            # existing: a lost earlier attempt may have made it; look.
            made = {spec.created_key(record) for record in ok}
            refused = {spec.failed_key(failure) for failure in bad}
            doubtful = [
                item
                for item in pending
                if spec.key(item) not in made and spec.failed_key_of(item) not in refused
            ]
            ours = [f for f in bad if resent and f.already_exists]
            if not doubtful and not ours:
                return created, bad
            if on_unknown == "raise" and not ours:
                reason = "not in the server's answer (neither created nor refused)"
                return created, [*bad, *(spec.failure(item, reason) for item in doubtful)]
            keys = {spec.failed_key(f) for f in ours}
            look = [*doubtful, *(i for i in pending if spec.failed_key_of(i) in keys)]
            found = await find(look)
            created += _found(look, found, spec)
            still = {spec.failed_key_of(i) for i in look if spec.key(i) not in found}
            failures = [f for f in bad if f not in ours or spec.failed_key(f) in still]
            failures += [
                spec.failure(item, "not in the server's answer, and not found on the server")
                for item in doubtful
                if spec.key(item) not in found
            ]
            return created, failures
        raise AssertionError("unreachable")  # pragma: no cover

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

    async def _find_orders(
        self, orders: list[NewPartnerOrder], margin: timedelta
    ) -> dict[str, PartnerOrder]:
        """The server's records of these orders, by ``order_id``, read from the windows
        around their ``order_date``."""
        periods = []
        for order in orders:
            assert order.order_date is not None  # checked before sending
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

    # -- offset pages ----------------------------------------------------------------

    async def _page(
        self, listing: _Listing, offset: int, slot: asyncio.Semaphore
    ) -> tuple[list[Any], int | None, int, int]:
        """One page: its records (prepared), the total it announces, bytes, attempts."""
        query = {
            **listing.params,
            "limit": str(listing.size),
            "offset": str(offset),
            **listing.extra,
        }
        try:
            async with slot:
                response = await self._transport.request("GET", listing.path, params=query)
        except ConnexiError as exc:
            exc.add_note(f"while reading {listing.what} at offset {offset}")
            raise
        context = f"GET {listing.path} {listing.what} offset {offset}"
        steps = page_steps(response.body, listing.cls, context, built=False)
        records, total = await run_sliced(steps)
        return records, total, len(response.body), response.attempts

    async def _paged(
        self,
        listing: _Listing,
        slot: asyncio.Semaphore,
        keep: Callable[[Any], bool] | None = None,
    ) -> tuple[list[Any], int, int]:
        """Every record of one listing (a window, or all products), read as offset pages
        and checked for shifts: (records, bytes, attempts)."""
        read = attempts = 0
        reason = ""
        for reading in range(1, MAX_READS + 1):
            records, problem, size_read, tries, pages = await self._read_pages(listing, slot)
            read += size_read
            attempts += tries
            if problem is None:
                break
            reason = problem
            logger.warning(
                "GET %s %s: %s; reading it again (%d of %d)",
                listing.path,
                listing.what,
                problem,
                reading,
                MAX_READS,
            )
        else:
            raise PagesShiftedError(
                f"its records kept changing while it was paged ({reason}), {MAX_READS} "
                "readings in a row; offset pages could skip or repeat records, so none is "
                "returned: try again later, or a narrower window"
            )
        if keep is not None:
            kept = [record for record in records if keep(record)]
            if len(kept) < len(records):
                logger.warning(
                    "GET %s %s: %d records dated outside it were left out (yielded from "
                    "their own window)",
                    listing.path,
                    listing.what,
                    len(records) - len(kept),
                )
            records = kept
        # Counted as one request per page in the stats: attempts beyond the pages are retries.
        return records, read, attempts - pages + 1

    async def _read_pages(
        self, listing: _Listing, slot: asyncio.Semaphore
    ) -> tuple[list[Any], str | None, int, int, int]:
        """One reading of a listing: (records, why the pages disagree or None, bytes,
        attempts, pages).

        Pages overlap by one record (offsets 0, s-1, 2(s-1)...): each must begin with the
        record the one before it ended with, so records that moved while the listing was
        paged show at a seam, whatever moved them (an insertion, a removal, both). Pages
        after the first are asked for a few at a time, and no more once one disagrees;
        paging goes on past ``total_record`` while pages come back full (a total that
        understates), and stops at the first short page."""
        size = listing.size
        stride = size - 1 if size > 1 else 1
        first, total, read, attempts = await self._page(listing, 0, slot)
        _check_page(listing, 0, first)
        pages: dict[int, list[Any]] = {0: first}
        problems: list[str] = []
        if total is not None:
            if total > MAX_LISTING_RECORDS:
                raise PagingError(
                    f"total_record={total:,}: more than {MAX_LISTING_RECORDS:,} records in "
                    "one window is not what a server means; use a narrower window"
                )
            if len(first) < size and len(first) != total:
                problems.append(f"the first page held {len(first)} records of {total}")
            elif len(first) == size:
                planned = iter(range(stride, max(total - 1, 0), stride))

                async def worker() -> None:
                    nonlocal read, attempts
                    for offset in planned:
                        if problems:
                            return  # one disagreement is enough: this reading is over
                        page, announced, more, tries = await self._page(listing, offset, slot)
                        read += more
                        attempts += tries
                        _check_page(listing, offset, page, first)
                        pages[offset] = page
                        expected = min(size, total - offset)
                        if announced != total:
                            problems.append(
                                f"total_record was {total} on the first page and "
                                f"{announced} at offset {offset}"
                            )
                        elif len(page) < expected:
                            problems.append(
                                f"the page at offset {offset} held {len(page)} records where "
                                f"total_record={total} says {expected}"
                            )

                workers = min(_PAGE_WORKERS, max(0, -(-(total - 1 - stride) // stride)))
                async with asyncio.TaskGroup() as group:
                    for _ in range(workers):
                        group.create_task(worker())
        # On while the last page is full: no total, or one that understates.
        offset = max(pages)
        while not problems and len(pages[offset]) == size:
            offset += stride
            if offset > MAX_LISTING_RECORDS:
                raise PagingError(
                    f"more than {MAX_LISTING_RECORDS:,} records and still full pages: the "
                    "server may not honour offset; use a narrower window"
                )
            page, _, more, tries = await self._page(listing, offset, slot)
            read += more
            attempts += tries
            _check_page(listing, offset, page, first)
            pages[offset] = page
        records, seam = _join(pages, size)
        if seam is not None:
            problems.append(seam)
        if not problems and total is not None and len(records) != total:
            if len(records) > total:
                raise PagingError(
                    f"{len(records)} records where every page said total_record={total}: "
                    "the server caps or understates total_record; use a narrower window"
                )
            problems.append(f"{len(records)} records where total_record says {total}")
        return records, (problems[0] if problems else None), read, attempts, len(pages)


def _check_page(listing: _Listing, offset: int, page: list[Any], first: Sequence[Any] = ()) -> None:
    """What no reading again can mend: a page longer than ``limit``, or one that repeats
    the first page (a server that ignores ``offset``)."""
    if len(page) > listing.size:
        raise PagingError(
            f"the page at offset {offset} held {len(page)} records for limit={listing.size}: "
            "the server does not honour limit"
        )
    if offset and len(page) > 1 and [r.id for r in page] == [r.id for r in first[: len(page)]]:
        raise PagingError(
            f"the page at offset {offset} repeats the first page: the server does not honour offset"
        )


def _join(pages: dict[int, list[Any]], size: int) -> tuple[list[Any], str | None]:
    """The records of overlapping pages, each once, and where a seam did not hold."""
    records: list[Any] = []
    seen: set[int] = set()
    previous: list[Any] | None = None
    for offset in sorted(pages):
        page = pages[offset]
        if previous is not None and size > 1:
            if not previous:
                break
            if not page or page[0].id != previous[-1].id:
                return records, (
                    f"the page at offset {offset} does not begin with the record the page "
                    "before it ended with (records moved while it was paged)"
                )
            page = page[1:]
        for record in page:
            if record.id in seen:
                return records, f"record {record.id} came twice (at offset {offset})"
            seen.add(record.id)
            records.append(record)
        previous = pages[offset]
    return records, None


_STATUS_PATH = "/v1/partner/order/status"
_STOCK_PATH = "/v1/partner/inventory/updatestocks"
_MAX_SENDS = 3  # sends of one batch whose outcome stays unknown, lookups in between
_transaction_codes = msgspec.json.Decoder(dict[str, Any])


def _transaction_code(body: bytes) -> str | None:
    try:
        value = _transaction_codes.decode(body).get("transaction_code")
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, str) and value.strip() else None


def _check_on_unknown(value: object) -> None:
    if value not in ("raise", "reconcile"):
        raise ConfigurationError(f'on_unknown must be "raise" or "reconcile", got {value!r}')


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
    result: Callable[..., Any]
    failure: Callable[[Any, str], Any]  # a failure of ours for a record to create
    unknown_hint: str


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
        'the orders may or may not have been created. Pass on_unknown="reconcile" (or '
        "call client.reconcile(error)) to look them up by order_id and send only the "
        "missing ones."
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
        'the products may or may not have been created. Pass on_unknown="reconcile" to '
        "look them up by sku and send only the missing ones."
    ),
)


def _found(items: list[Any], found: dict[str, Any], spec: _Creation) -> list[Any]:
    """The server's records of the items found, each once."""
    records = []
    seen = set()
    for item in items:
        key = spec.key(item)
        if key in found and key not in seen:
            seen.add(key)
            records.append(found[key])
    return records


@attrs.frozen
class _Listing:
    """One paged listing: where it is, its fixed query, what its records are."""

    path: str
    params: Mapping[str, str]
    extra: Mapping[str, str]  # sent after limit and offset (withDO, as documented)
    cls: type
    size: int
    what: str  # how messages name it: a window, "all products"


def _page_size(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PAGE_SIZE:
        raise ConfigurationError(
            f"page_size must be a whole number from 1 to {MAX_PAGE_SIZE} (the API's "
            f"maximum limit), got {value!r}"
        )
    return check_count("page_size", value, high=MAX_PAGE_SIZE)


_record_id: Callable[[Any], int] = operator.attrgetter("id")
