"""``PartnerClient``: SIRCLO's partner API on the client's shared machinery (its writes
are in ``_partner_writes``, mixed in).

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
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, Unpack

import attrs

from ._auth import PartnerAuth, _Secret
from ._client import ClientOptions, _BaseClient, hide_secrets
from ._convert import (
    build_partner,
    page_steps,
)
from ._cooperative import run_sliced
from ._errors import (
    ConfigurationError,
    ConnexiError,
    PagesShiftedError,
    PagingError,
    format_instant,
)
from ._models import (
    PartnerOrder,
    ProductStock,
    StockUpdateRecord,
)
from ._partner_writes import PartnerWrites
from ._stream import RecordStream
from ._transport import check_count
from ._windows import Window, whole_second

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


class PartnerClient(PartnerWrites, _BaseClient):
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
