"""``ConnexiClient``: the public calls, wiring transport, streams and conversion."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Hashable, Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import TypeVar

import aiohttp
from yarl import URL

from ._convert import decode_locations, decode_orders, encode_new_orders, encode_status_updates
from ._errors import ConfigurationError, DecodeError, format_instant
from ._models import Location, NewOrder, Order, StatusUpdate
from ._retry import RetryPolicy
from ._stream import Fetch, RecordStream
from ._transport import DEFAULTS, Timeouts, Transport
from ._windows import Window, plan_windows, whole_second

__all__ = ["DEFAULT_BASE_URL", "ConnexiClient"]

DEFAULT_BASE_URL = "https://api2.connexi.id"
T = TypeVar("T")
logger = logging.getLogger("connexi_async")


class ConnexiClient:
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
      ``max_retry_after`` (60 s): see the README's section on retries.
    * ``max_connections`` (32): the pool of our own session.
    * ``requests_per_second``: an optional client-side limit shared by every request.
    """

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
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
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        random: Callable[[], float] | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
            ("timeout", timeout),
        ):
            if value <= 0:
                raise ConfigurationError(f"{name} must be positive, got {value}")
        try:
            retry = RetryPolicy(
                max_attempts=max_attempts,
                backoff_base=backoff_base,
                backoff_max=backoff_max,
                max_retry_after=max_retry_after,
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self._transport = Transport(
            api_key=api_key,
            api_secret=api_secret,
            base_url=base_url,
            session=session,
            timeouts=Timeouts(connect=connect_timeout, read=read_timeout, total=timeout),
            retry=retry,
            max_connections=max_connections,
            requests_per_second=requests_per_second,
            allow_insecure_http=allow_insecure_http,
            clock=clock or DEFAULTS["clock"],  # type: ignore[arg-type]
            sleep=sleep or DEFAULTS["sleep"],  # type: ignore[arg-type]
            random=random or DEFAULTS["random"],  # type: ignore[arg-type]
            wall_clock=wall_clock or DEFAULTS["wall_clock"],  # type: ignore[arg-type]
        )

    @classmethod
    def from_env(cls, **options: object) -> ConnexiClient:
        """A client from ``CONNEXI_API_KEY``, ``CONNEXI_API_SECRET`` and, optionally,
        ``CONNEXI_BASE_URL``; other options as keyword arguments."""
        values = {}
        for variable, option in (
            ("CONNEXI_API_KEY", "api_key"),
            ("CONNEXI_API_SECRET", "api_secret"),
        ):
            value = os.environ.get(variable)
            if not value:
                raise ConfigurationError(
                    f"the environment variable {variable} is not set; export it or pass {option}="
                )
            values[option] = value
        base_url = os.environ.get("CONNEXI_BASE_URL")
        if base_url:
            values["base_url"] = base_url
        return cls(**values, **options)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<ConnexiClient {self._transport.base_url}>"

    @property
    def base_url(self) -> URL:
        return self._transport.base_url

    # -- lifecycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the client's own session (a session you passed in stays open)."""
        await self._transport.aclose()

    async def __aenter__(self) -> ConnexiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- writes ----------------------------------------------------------------------

    async def create_orders(self, orders: Iterable[NewOrder]) -> list[Order]:
        """Create orders (POST /v1/order) and return what the server says it created.

        Never sent twice on our own: after a failure that may have reached the server,
        :class:`OutcomeUnknownError` says so. A 2xx with an empty or unreadable body
        returns ``[]`` (the orders were created; the body only echoes them).
        """
        body = encode_new_orders(list(orders))
        response = await self._transport.request("POST", "/v1/order", body=body)
        return self._lenient_orders(response.body, "POST /v1/order")

    async def update_order_statuses(
        self, updates: Iterable[StatusUpdate | tuple[int, str]]
    ) -> list[Order]:
        """Set order statuses (PATCH /v1/order); retried safely, setting a status is idempotent.

        >>> await client.update_order_statuses([StatusUpdate(id=111, status="accepted")])
        """
        items = [
            u if isinstance(u, StatusUpdate) else StatusUpdate(id=u[0], status=u[1])
            for u in updates
        ]
        response = await self._transport.request(
            "PATCH", "/v1/order", body=encode_status_updates(items)
        )
        return self._lenient_orders(response.body, "PATCH /v1/order")

    @staticmethod
    def _lenient_orders(body: bytes, context: str) -> list[Order]:
        if not body.strip():
            return []
        try:
            return decode_orders(body, context=context)
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
        window = Window(whole_second(start, "start"), whole_second(end, "end"))
        records, _, _ = await self._fetch_orders_window(window)
        return records

    async def fetch_locations(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[Location]:
        """The stock location trees (GET /v1/product/stocks), for a window or all of them."""
        if (start is None) != (end is None):
            raise ConfigurationError("pass both start and end, or neither")
        if start is None or end is None:
            response = await self._transport.request("GET", "/v1/product/stocks")
            return decode_locations(response.body, context="GET /v1/product/stocks")
        window = Window(whole_second(start, "start"), whole_second(end, "end"))
        records, _, _ = await self._fetch_locations_window(window)
        return records

    async def _fetch_orders_window(self, window: Window) -> tuple[list[Order], int, int]:
        params = {"start": format_instant(window.start), "end": format_instant(window.end)}
        response = await self._transport.request("GET", "/v1/order", params=params)
        orders = decode_orders(response.body, context=f"GET /v1/order {window}")
        return orders, len(response.body), response.attempts

    async def _fetch_locations_window(self, window: Window) -> tuple[list[Location], int, int]:
        params = {"start": format_instant(window.start), "end": format_instant(window.end)}
        response = await self._transport.request("GET", "/v1/product/stocks", params=params)
        locations = decode_locations(response.body, context=f"GET /v1/product/stocks {window}")
        return locations, len(response.body), response.attempts

    # -- streams ---------------------------------------------------------------------

    def _concurrency(self, concurrency: int) -> int:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(
                f"concurrency must be a whole number of at least 1, got {concurrency!r}"
            )
        limit = self._transport.pool_limit
        return min(concurrency, limit) if limit else concurrency

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
        if page_cap is not None and page_cap < 1:
            raise ConfigurationError(f"page_cap must be at least 1, got {page_cap}")
        return self._windowed(
            self._fetch_orders_window,
            _order_id,
            since,
            until,
            window,
            concurrency,
            ordered,
            page_cap,
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

            async def fetch_all(_: Window) -> tuple[list[Location], int, int]:
                response = await self._transport.request("GET", "/v1/product/stocks")
                body = response.body
                return (
                    decode_locations(body, context="GET /v1/product/stocks"),
                    len(body),
                    response.attempts,
                )

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
    ) -> RecordStream[T]:
        count, windows = plan_windows(since, until, window)
        return RecordStream(
            window_count=count,
            windows=windows,
            fetch=fetch,
            key=key,
            concurrency=self._concurrency(concurrency),
            ordered=ordered,
            page_cap=page_cap,
        )


def _order_id(order: Order) -> int:
    return order.id


def _identity(location: Location) -> Location:
    return location
