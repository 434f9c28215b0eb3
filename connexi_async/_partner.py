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
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar, Unpack

import attrs

from ._auth import PartnerAuth, _Secret
from ._client import ClientOptions, _BaseClient, hide_secrets
from ._convert import build_partner, page_steps
from ._cooperative import run_sliced
from ._errors import ConfigurationError, ConnexiError, format_instant
from ._models import PartnerOrder, ProductStock, StockUpdateRecord
from ._stream import RecordStream
from ._transport import check_count
from ._windows import Window, whole_second

__all__ = ["MAX_PAGE_SIZE", "PagesShiftedError", "PartnerClient"]

MAX_PAGE_SIZE = 100  # the documented maximum of ``limit``
MAX_READS = 4  # readings of a window whose pages disagree before giving up
T = TypeVar("T")
logger = logging.getLogger("connexi_async")


class PagesShiftedError(ConnexiError):
    """A window's pages kept disagreeing (its orders changed while it was paged, on every
    reading). Raised as the cause of the stream's :class:`WindowError`."""


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
        super().__init__(auth, **hide_secrets(options))

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

        def in_period(order: Any) -> bool:
            date = order.order_date
            return date is None or low <= date < high

        async def fetch(window: Window, slot: asyncio.Semaphore) -> tuple[list[Any], int, int]:
            listing = _Listing(
                path="/v1/partner/order",
                params={"since": format_instant(window.start), "until": format_instant(window.end)},
                extra={"withDO": "true" if with_delivery_orders else "false"},
                cls=PartnerOrder,
                size=size,
                what=str(window),
            )
            return await self._paged(listing, slot, in_period)

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
        async with slot:
            response = await self._transport.request("GET", listing.path, params=query)
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
            pages, problem, size_read, tries = await self._read_pages(listing, slot)
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
        seen: set[int] = set()
        records = []
        for page in pages:
            for record in page:
                if record.id in seen or (keep is not None and not keep(record)):
                    continue  # a repeat across pages, or outside the period
                seen.add(record.id)
                records.append(record)
        # Counted as one request per page in the stats: attempts beyond the pages are retries.
        return records, read, attempts - len(pages) + 1

    async def _read_pages(
        self, listing: _Listing, slot: asyncio.Semaphore
    ) -> tuple[list[list[Any]], str | None, int, int]:
        """One reading: the pages, and why they disagree (``None`` if they do not)."""
        size = listing.size
        first, total, read, attempts = await self._page(listing, 0, slot)
        pages = [first]
        if total is None:
            # No total announced: page on until a short page (one after another).
            offset = size
            while len(pages[-1]) == size:
                page, _, more, tries = await self._page(listing, offset, slot)
                pages.append(page)
                read += more
                attempts += tries
                offset += size
            return pages, None, read, attempts
        if len(first) != min(size, total):
            return pages, f"the first page held {len(first)} records of {total}", read, attempts
        offsets = range(size, total, size)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._page(listing, o, slot)) for o in offsets]
        problem = None
        for offset, task in zip(offsets, tasks, strict=True):
            page, announced, more, tries = task.result()
            pages.append(page)
            read += more
            attempts += tries
            if problem is not None:
                continue
            if announced != total:
                problem = (
                    f"total_record was {total} on the first page and {announced} at offset {offset}"
                )
            elif len(page) != min(size, total - offset):
                problem = (
                    f"the page at offset {offset} held {len(page)} records where "
                    f"total_record={total} says {min(size, total - offset)}"
                )
        return pages, problem, read, attempts


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
