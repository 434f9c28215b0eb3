"""``ConnexiClient``: the public calls, wiring transport, streams and conversion."""

from __future__ import annotations

import asyncio
import difflib
import logging
import operator
import os
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Hashable, Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypedDict, TypeVar, Unpack

import aiohttp
from yarl import URL

from ._auth import Auth, V1Auth, _Secret
from ._chunks import Body
from ._convert import (
    build_order,
    locations_steps,
    new_orders_body_steps,
    orders_steps,
    status_updates_body_steps,
)
from ._cooperative import Steps, run_sliced
from ._errors import (
    ConfigurationError,
    DecodeError,
    EncodeError,
    OutcomeUnknownError,
    format_instant,
)
from ._models import Location, NewOrder, Order, OrderStatus, Reconciliation, StatusUpdate
from ._retry import RetryPolicy
from ._stream import Fetch, RecordStream
from ._transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULTS,
    Timeouts,
    Transport,
    check_count,
    check_seconds,
)
from ._windows import Window, merge_periods, plan_windows, whole_second
from ._writes import iterable, records_of

__all__ = ["DEFAULT_BASE_URL", "ClientOptions", "ConnexiClient"]

DEFAULT_BASE_URL = "https://api2.connexi.id"
# Orders in one Create Order POST: a real server answered 413 to 200,000.
DEFAULT_MAX_BATCH = 1_000
T = TypeVar("T")
logger = logging.getLogger("connexi_async")


class ClientOptions(TypedDict, total=False):
    """The options every client takes (keyword-only; see :class:`ConnexiClient`)."""

    base_url: str | URL
    session: aiohttp.ClientSession | None
    connect_timeout: float
    read_timeout: float
    timeout: float
    max_attempts: int
    backoff_base: float
    backoff_max: float
    max_retry_after: float
    max_connections: int
    requests_per_second: float | None
    allow_insecure_http: bool
    max_response_bytes: int
    max_batch: int
    ssl: ssl_module.SSLContext | str | os.PathLike[str] | None
    proxy: str | URL | None
    trust_env: bool | None
    clock: Callable[[], float] | None
    sleep: Callable[[float], Awaitable[None]] | None
    random: Callable[[], float] | None
    wall_clock: Callable[[], datetime] | None


def hide_secrets(options: ClientOptions) -> ClientOptions:
    """The options checked by name (a misspelt one is named, with the closest known one),
    and a proxy URL (it may carry a password) made a _Secret in the options dict every
    frame of ours holds: tracebacks that show locals never show it."""
    known = ClientOptions.__annotations__
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise ConfigurationError(
                f"unknown option {name!r}"
                + (f"; did you mean {close[0]!r}?" if close else "")
                + " (see the client's docstring for its options)"
            )
    proxy = options.get("proxy")
    if isinstance(proxy, str) and not isinstance(proxy, _Secret):
        options["proxy"] = _Secret(proxy)
    return options


class _BaseClient:
    """What the v1 and the partner clients share: options, the one transport, the
    lifecycle and windowed streams. Only the credentials (and so the auth) differ."""

    # (environment variable, option) of the credentials, for from_env().
    _CREDENTIALS_ENV: tuple[tuple[str, str], ...] = ()
    # Where from_env() reads a base URL (each API its own: one shell may hold both).
    _BASE_URL_ENV = "CONNEXI_BASE_URL"

    def __init__(
        self,
        auth: Auth,
        *,
        base_url: str | URL = DEFAULT_BASE_URL,
        session: aiohttp.ClientSession | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        timeout: float = 120.0,
        max_attempts: int = 5,
        backoff_base: float = 0.25,
        backoff_max: float = 8.0,
        max_retry_after: float = 60.0,
        max_connections: int = 32,
        requests_per_second: float | None = None,
        allow_insecure_http: bool = False,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_batch: int = DEFAULT_MAX_BATCH,
        ssl: ssl_module.SSLContext | str | os.PathLike[str] | None = None,
        proxy: str | URL | None = None,
        trust_env: bool | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        random: Callable[[], float] | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        timeouts = Timeouts(
            connect=check_seconds("connect_timeout", connect_timeout, allow_inf=True),
            read=check_seconds("read_timeout", read_timeout, allow_inf=True),
            total=check_seconds("timeout", timeout, allow_inf=True),
        )
        retry = RetryPolicy(
            max_attempts=check_count("max_attempts", max_attempts, high=100),
            backoff_base=check_seconds("backoff_base", backoff_base),
            backoff_max=check_seconds("backoff_max", backoff_max),
            max_retry_after=check_seconds("max_retry_after", max_retry_after, allow_inf=True),
        )
        self.max_batch = max_batch
        self._transport = Transport(
            auth=auth,
            base_url=base_url,
            session=session,
            timeouts=timeouts,
            retry=retry,
            max_connections=max_connections,
            requests_per_second=requests_per_second,
            allow_insecure_http=allow_insecure_http,
            max_response_bytes=check_count("max_response_bytes", max_response_bytes, high=2**40),
            ssl=ssl,
            proxy=proxy,
            trust_env=trust_env,
            clock=clock or DEFAULTS["clock"],  # type: ignore[arg-type]
            sleep=sleep or DEFAULTS["sleep"],  # type: ignore[arg-type]
            random=random or DEFAULTS["random"],  # type: ignore[arg-type]
            wall_clock=wall_clock or DEFAULTS["wall_clock"],  # type: ignore[arg-type]
        )

    @classmethod
    def from_env(cls, **options: Any) -> Self:
        """A client from its credentials' environment variables and, optionally, its
        base URL's (``CONNEXI_BASE_URL``; the partner client's is
        ``CONNEXI_PARTNER_BASE_URL``); other options as keyword arguments."""
        values: dict[str, Any] = {}
        for variable, option in cls._CREDENTIALS_ENV:
            value = os.environ.get(variable)
            if not value:
                raise ConfigurationError(
                    f"the environment variable {variable} is not set; export it or pass {option}="
                )
            values[option] = value
        base_url = os.environ.get(cls._BASE_URL_ENV)
        if base_url:
            values["base_url"] = base_url
        # The subclass's own signature takes its credentials by name.
        make: Callable[..., Self] = cls
        return make(**values, **options)

    def __repr__(self) -> str:
        # Safe on a half-built client too (tracebacks that show locals call it).
        transport = getattr(self, "_transport", None)
        return f"<{type(self).__name__} {transport.base_url if transport else 'not configured'}>"

    @property
    def max_batch(self) -> int:
        """The most records one write request carries (checked when set, too)."""
        return self._max_batch

    @max_batch.setter
    def max_batch(self, value: int) -> None:
        self._max_batch = check_count("max_batch", value, high=1_000_000)

    @property
    def base_url(self) -> URL:
        return self._transport.base_url

    # -- lifecycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the client's own session (a session you passed in stays open)."""
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- streams ---------------------------------------------------------------------

    def _concurrency(self, concurrency: int) -> int:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(
                f"concurrency must be a whole number of at least 1, got {concurrency!r}"
            )
        limit = self._transport.pool_limit
        return min(concurrency, limit) if limit else concurrency

    def _windowed(
        self,
        fetch: Fetch[T],
        key: Callable[[T], Hashable],
        since: datetime,
        until: datetime,
        window: timedelta,
        concurrency: int,
        ordered: bool,
        page_cap: int | None,
        *,
        build: Callable[[Any], T] | None = None,
    ) -> RecordStream[T]:
        if not isinstance(ordered, bool):
            raise ConfigurationError(f"ordered must be True or False, got {ordered!r}")
        count, windows = plan_windows(since, until, window)
        return RecordStream(
            window_count=count,
            windows=windows,
            fetch=fetch,
            key=key,
            concurrency=self._concurrency(concurrency),
            ordered=ordered,
            page_cap=page_cap,
            build=build,
        )


class ConnexiClient(_BaseClient):
    """The asyncio client for the Connexi v1 API.

    >>> async def main():
    ...     async with ConnexiClient(api_key="...", api_secret="...") as client:
    ...         async for order in client.orders(since, until):
    ...             print(order.id, order.total)

    Options (keyword-only):

    * ``base_url``: ``https://api2.connexi.id``; plain http only for loopback hosts or
      with ``allow_insecure_http=True``.
    * ``session``: your own ``aiohttp.ClientSession``, used as it is and never closed
      here; by default the client makes its own on first use and closes it on exit.
    * ``connect_timeout`` (10 s), ``read_timeout`` (30 s), ``timeout`` (120 s, the whole
      call with its retries).
    * ``max_attempts`` (5), ``backoff_base`` (0.25 s), ``backoff_max`` (8 s),
      ``max_retry_after`` (60 s): see docs/writing.md, "Retries: what is retried, and why".
    * ``max_connections`` (32): the pool of our own session.
    * ``requests_per_second``: an optional client-side limit shared by every request.
    * ``max_response_bytes`` (256 MiB): a body growing past it (decompressed) raises
      :class:`ResponseTooLargeError`; ask for narrower windows.
    * ``max_batch`` (1,000): the most orders one POST carries; ``create_orders`` refuses
      more, ``update_order_statuses`` sends several PATCHes.
    * ``ssl``: an ``ssl.SSLContext``, or the path of a CA bundle to trust (a corporate
      TLS-inspecting gateway's, a private CA's); by default the system trust store.
      Certificate checks cannot be turned off.
    * ``proxy``: ``http://[user:password@]proxy:3128``; its credentials are never logged
      or shown.
    * ``trust_env`` (False): honour ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (and
      ``~/.netrc`` for proxy credentials), as aiohttp does; see docs/networks.md for why it is
      off by default.

    ``ssl``, ``proxy`` and ``trust_env`` configure the client's own session: with
    ``session=`` they are a :class:`ConfigurationError` (your session keeps its settings).

    Timeouts and ``max_retry_after`` may be ``math.inf`` (no limit); every other number
    must be positive and finite, and a bad option is a :class:`ConfigurationError`.
    """

    _CREDENTIALS_ENV = (("CONNEXI_API_KEY", "api_key"), ("CONNEXI_API_SECRET", "api_secret"))

    def __init__(self, *, api_key: str, api_secret: str, **options: Unpack[ClientOptions]) -> None:
        auth = V1Auth(api_key, _Secret(api_secret) if isinstance(api_secret, str) else api_secret)
        del api_secret  # no frame of ours keeps it in clear (tracebacks show locals)
        super().__init__(auth, **hide_secrets(options))

    # -- writes ----------------------------------------------------------------------

    async def create_orders(self, orders: Iterable[NewOrder]) -> list[Order]:
        """Create orders (POST /v1/order) and return what the server says it created.

        Never sent twice on our own: after a failure that may have reached the server,
        :class:`OutcomeUnknownError` says so. A 2xx with an empty or unreadable body
        returns ``[]`` (the orders were created; the body only echoes them). No orders,
        no request. More than ``max_batch`` orders is an :class:`EncodeError`: send
        them in batches, each with its own outcome.

        If *you* cancel the call (``asyncio.timeout``, ``task.cancel()``) after the POST
        went out, the orders may still be created: the cancellation is logged at WARNING
        and, as with :class:`OutcomeUnknownError`, look them up before sending again.
        """
        items = records_of(orders, NewOrder, "orders")
        if not items:
            return []
        if len(items) > self.max_batch:
            raise EncodeError(
                f"{len(items):,} orders in one create_orders call, more than "
                f"max_batch={self.max_batch:,}: send them in batches of at most "
                f"{self.max_batch:,} (each POST has its own outcome, so catch "
                "OutcomeUnknownError per batch), or raise max_batch if your server takes more"
            )
        body = await run_sliced(new_orders_body_steps(items))
        sent_at = self._transport.wall_clock()
        try:
            response = await self._transport.request("POST", "/v1/order", body=body)
        except OutcomeUnknownError as exc:
            # What reconcile() needs to find out what happened.
            exc.orders = tuple(items)
            exc.sent_at = sent_at
            exc.failed_at = self._transport.wall_clock()
            raise
        except asyncio.CancelledError:
            logger.warning(
                "create_orders was cancelled while its POST of %d orders was under way: "
                "the server may have received it and created them; look for their "
                "remote_order_id values before sending them again",
                len(items),
            )
            raise
        return await self._lenient_orders(response.body, "POST /v1/order")

    async def update_order_statuses(
        self, updates: Iterable[StatusUpdate | tuple[int, str]]
    ) -> list[Order]:
        """Set order statuses (PATCH /v1/order); retried safely, setting a status is idempotent.

        More than ``max_batch`` updates go out as several PATCHes. An empty status is an
        :class:`EncodeError`; a status the API does not document is sent (new ones
        appear) and logged at WARNING.

        >>> await client.update_order_statuses([StatusUpdate(id=111, status="accepted")])
        """
        items = []
        for index, update in enumerate(iterable(updates, "updates")):
            items.append(_status_update(update, index))
            if index % 256 == 255:
                await asyncio.sleep(0)  # 50,000 updates are checked without holding the loop
        if not items:
            return []
        changed: list[Order] = []
        for first in range(0, len(items), self.max_batch):
            body = await run_sliced(
                status_updates_body_steps(items[first : first + self.max_batch])
            )
            response = await self._transport.request("PATCH", "/v1/order", body=body)
            changed += await self._lenient_orders(response.body, "PATCH /v1/order")
        return changed

    async def reconcile(
        self,
        error: OutcomeUnknownError,
        *,
        margin: timedelta = timedelta(minutes=15),
    ) -> Reconciliation:
        """Which orders of a ``create_orders`` call that raised ``error`` exist on the
        server, and which are missing (safe to send again).

        >>> try:
        ...     await client.create_orders(batch)
        ... except OutcomeUnknownError as exc:
        ...     result = await client.reconcile(exc)
        ...     await client.create_orders(result.missing)

        Reads the windows around the time of the request and around each order's
        ``order_date`` (``margin`` either side, for clock differences) and matches
        ``remote_order_id`` + ``marketplace_code``. See :meth:`find_created`.
        """
        if not isinstance(error, OutcomeUnknownError) or error.sent_at is None:
            raise ConfigurationError(
                "reconcile() takes the OutcomeUnknownError raised by create_orders "
                f"(it carries the attempted orders); got {type(error).__name__}"
            )
        orders = records_of(error.orders, NewOrder, "error.orders")
        return await self.find_created(
            orders, around=(error.sent_at, error.failed_at or error.sent_at), margin=margin
        )

    async def find_created(
        self,
        orders: Iterable[NewOrder],
        *,
        around: tuple[datetime, datetime] | None = None,
        margin: timedelta = timedelta(minutes=15),
        window: timedelta = timedelta(hours=1),
    ) -> Reconciliation:
        """Look ``orders`` up on the server by ``remote_order_id`` + ``marketplace_code``.

        The API has no lookup by those keys, so the periods where the server would have
        filed them are read: ``around`` (when the create was sent; the sandbox files an
        order under its ``created_at``) and each order's ``order_date``, both widened by
        ``margin``. An order found nowhere there is in ``missing``; one without the two
        keys is in ``unidentifiable``.
        """
        items = records_of(orders, NewOrder, "orders")
        if not isinstance(margin, timedelta) or margin < timedelta(0):
            raise ConfigurationError(f"margin must be a timedelta of zero or more, got {margin!r}")
        periods = []
        if around is not None:
            low, high = whole_second(around[0], "around[0]"), whole_second(around[1], "around[1]")
            periods.append((low - margin, high + margin + timedelta(seconds=1)))
        wanted: dict[tuple[str, str], list[NewOrder]] = {}
        unidentifiable = []
        for order in items:
            if not order.remote_order_id or not order.marketplace_code:
                unidentifiable.append(order)
                continue
            wanted.setdefault((order.remote_order_id, order.marketplace_code), []).append(order)
            if order.order_date is not None:
                date = whole_second(order.order_date, "order_date")
                periods.append((date - margin, date + margin + timedelta(seconds=1)))
        if wanted and not periods:
            raise ConfigurationError(
                "these orders have no order_date: pass around=(sent_at, failed_at), the "
                "period in which they were sent"
            )
        found: dict[tuple[str, str], Order] = {}
        for since, until in merge_periods(periods):
            async with self.orders(since, until, window=window) as stream:
                async for record in stream:
                    key = (record.remote_order_id, record.marketplace_code)
                    if key in wanted:
                        found.setdefault(key, record)
            if len(found) == len(wanted):
                break
        created = []
        missing = []
        for key, attempted in wanted.items():
            for order in attempted:
                if key in found:
                    created.append((order, found[key]))
                else:
                    missing.append(order)
        return Reconciliation(
            created=tuple(created), missing=tuple(missing), unidentifiable=tuple(unidentifiable)
        )

    @staticmethod
    async def _lenient_orders(body: Body, context: str) -> list[Order]:
        if len(body) <= 64 and not body.whole().strip():
            return []
        try:
            return await run_sliced(orders_steps(body, context))
        except DecodeError as exc:
            # The write happened: never raise (a caller would retry and duplicate it). The
            # log names where the body was unreadable, never its values (customer data).
            paths = ", ".join(e.path for e in exc.errors[:5])
            logger.warning(
                "%s succeeded, but its response body was not read (at %s)", context, paths
            )
            return []

    # -- single windows --------------------------------------------------------------

    async def fetch_orders(self, start: datetime, end: datetime) -> list[Order]:
        """The orders of one window ``[start, end)`` (GET /v1/order), in the server's order.

        One request, no splitting and no de-duplication: see :meth:`orders` for periods.
        """
        window = _one_window(start, end)
        params = {"start": format_instant(window.start), "end": format_instant(window.end)}
        response = await self._transport.request("GET", "/v1/order", params=params)
        return await run_sliced(orders_steps(response.body, f"GET /v1/order {window}"))

    async def fetch_locations(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[Location]:
        """The stock location trees (GET /v1/product/stocks), for a window or all of them."""
        if (start is None) != (end is None):
            raise ConfigurationError("pass both start and end, or neither")
        if start is None or end is None:
            response = await self._transport.request("GET", "/v1/product/stocks")
            return await run_sliced(locations_steps(response.body, "GET /v1/product/stocks"))
        records, _, _ = await self._fetch_locations_window(
            _one_window(start, end), asyncio.Semaphore()
        )
        return await run_sliced(records)

    async def _fetch_orders_window(
        self, window: Window, slot: asyncio.Semaphore
    ) -> tuple[Steps[list[Any]], int, int]:
        """GET one window; its records come back still to decode, and then to build
        (see RecordStream)."""
        params = {"start": format_instant(window.start), "end": format_instant(window.end)}
        async with slot:
            response = await self._transport.request("GET", "/v1/order", params=params)
        steps = orders_steps(response.body, f"GET /v1/order {window}", built=False)
        return steps, len(response.body), response.attempts

    async def _fetch_locations_window(
        self, window: Window, slot: asyncio.Semaphore
    ) -> tuple[Steps[list[Location]], int, int]:
        params = {"start": format_instant(window.start), "end": format_instant(window.end)}
        async with slot:
            response = await self._transport.request("GET", "/v1/product/stocks", params=params)
        steps = locations_steps(response.body, f"GET /v1/product/stocks {window}")
        return steps, len(response.body), response.attempts

    # -- streams ---------------------------------------------------------------------

    def orders(
        self,
        since: datetime,
        until: datetime,
        *,
        window: timedelta = timedelta(days=1),
        concurrency: int = 8,
        ordered: bool = True,
        page_cap: int | None = None,
    ) -> RecordStream[Order]:
        """Every order created in ``[since, until)``, each exactly once.

        The period is cut into windows of ``window``, fetched ``concurrency`` at a time
        (never more than the connection pool allows). ``ordered=True`` yields windows in
        time order; ``False`` yields each as it arrives. ``page_cap``: the most orders the
        server puts in one response; a window that comes back that full is split.

        >>> async with client.orders(since, until, window=timedelta(hours=6)) as stream:
        ...     async for order in stream:
        ...         ...
        """
        if page_cap is not None:
            check_count("page_cap", page_cap, high=10_000_000)
        return self._windowed(
            self._fetch_orders_window,
            _order_id,
            since,
            until,
            window,
            concurrency,
            ordered,
            page_cap,
            build=build_order,
        )

    def stock_locations(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        window: timedelta = timedelta(days=1),
        concurrency: int = 8,
        ordered: bool = True,
    ) -> RecordStream[Location]:
        """Stock location trees: all of them (one request), or per window of a period.

        With a period, each window's trees are yielded as they arrive; a tree identical
        to its neighbour window's is yielded once.
        """
        if (since is None) != (until is None):
            raise ConfigurationError("pass both since and until, or neither")
        if since is None or until is None:

            async def fetch_all(
                _: Window, slot: asyncio.Semaphore
            ) -> tuple[Steps[list[Location]], int, int]:
                async with slot:
                    response = await self._transport.request("GET", "/v1/product/stocks")
                body = response.body
                return locations_steps(body, "GET /v1/product/stocks"), len(body), response.attempts

            marker = Window(datetime.min, datetime.min)
            return RecordStream(
                window_count=1,
                windows=iter([marker]),
                fetch=fetch_all,
                key=_identity,
                concurrency=1,
                ordered=True,
                page_cap=None,
                windowed=False,
            )
        return self._windowed(
            self._fetch_locations_window,
            _identity,
            since,
            until,
            window,
            concurrency,
            ordered,
            None,
        )


# A C-level getter: the stream computes a key per record of every window (on the
# prepared records, which have an ``id`` as the models do).
_order_id: Callable[[Order], int] = operator.attrgetter("id")


def _identity(location: Location) -> Location:
    return location


_KNOWN_STATUSES = frozenset({*(s.value for s in OrderStatus), "canceled"})


def _status_update(value: object, index: int) -> StatusUpdate:
    if isinstance(value, StatusUpdate):
        update = value
    elif isinstance(value, tuple | list) and len(value) == 2:
        update = StatusUpdate(id=value[0], status=value[1])
    else:
        raise EncodeError(
            f"updates[{index}]: expected a StatusUpdate or an (id, status) pair, got {value!r:.60}"
        )
    if not isinstance(update.status, str) or not update.status.strip():
        raise EncodeError(f"updates[{index}]: the status must be a non-empty string")
    if update.status.strip().lower() not in _KNOWN_STATUSES:
        logger.warning(
            "updates[%d]: %r is not a status the API documents; sending it as it is",
            index,
            update.status,
        )
    return update


def _one_window(start: datetime, end: datetime) -> Window:
    window = Window(whole_second(start, "start"), whole_second(end, "end"))
    if window.start >= window.end:
        raise ConfigurationError(
            f"start ({format_instant(window.start)}) must be before end "
            f"({format_instant(window.end)}), at least a second apart"
        )
    return window
