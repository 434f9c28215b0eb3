"""Concurrent window fetching as an async iterator: bounded, ordered, de-duplicated.

One task per planned window, at most ``concurrency`` of them started ahead of the
consumer (backpressure), and a semaphore so requests in flight never exceed it, splits
included. Records are de-duplicated against the neighbouring windows only (the only
place a boundary order can appear twice), so memory does not grow with the period.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Generic, TypeVar

import attrs

from ._cooperative import SLICE_SECONDS
from ._errors import ConnexiError, WindowError, WindowTooDenseError
from ._windows import Window, split_window

__all__ = ["RecordStream", "StreamStats"]

T = TypeVar("T")
_clock = time.perf_counter

# What fetching one window gives: the records, the bytes read, the attempts made.
Fetch = Callable[[Window], Awaitable[tuple[list[T], int, int]]]


@attrs.define
class StreamStats:
    """Live counters of a stream, readable while it runs and after."""

    windows_planned: int = 0
    windows_fetched: int = 0
    windows_split: int = 0
    windows_done: int = 0
    retries: int = 0
    records_yielded: int = 0
    duplicates_dropped: int = 0
    bytes_read: int = 0


class RecordStream(Generic[T]):
    """An async iterator of records over a planned period. Close it when you stop early.

    >>> async def main(client):
    ...     async with client.orders(since, until) as stream:
    ...         async for order in stream:
    ...             ...
    ...     print(stream.stats.records_yielded)
    """

    def __init__(
        self,
        *,
        window_count: int,
        windows: Iterator[Window],
        fetch: Fetch[T],
        key: Callable[[T], Hashable],
        concurrency: int,
        ordered: bool,
        page_cap: int | None,
        windowed: bool = True,
    ) -> None:
        self.stats = StreamStats(windows_planned=window_count)
        self._windowed = windowed
        self.concurrency = concurrency
        self.ordered = ordered
        self.page_cap = page_cap
        self._windows = windows
        self._fetch = fetch
        self._key = key
        self._semaphore = asyncio.Semaphore(concurrency)
        self._agen = self._run()
        # Every record created before this instant has been yielded: where to resume from.
        self.completed_until: datetime | None = None

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<RecordStream windows {s.windows_done}/{s.windows_planned} "
            f"records={s.records_yielded} concurrency={self.concurrency}>"
        )

    def __aiter__(self) -> AsyncGenerator[T, None]:
        # ``async for`` drives the generator itself: one hop less per record.
        return self._agen

    async def __anext__(self) -> T:
        return await self._agen.__anext__()

    async def aclose(self) -> None:
        """Stop: cancel and await every request in flight. Safe to call twice."""
        await self._agen.aclose()

    async def __aenter__(self) -> RecordStream[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- fetching --------------------------------------------------------------------

    async def _fetch_split(self, window: Window) -> list[T]:
        """One window's records; a full window is split and its halves fetched."""
        async with self._semaphore:
            records, size, attempts = await self._fetch(window)
        stats = self.stats
        stats.windows_fetched += 1
        stats.bytes_read += size
        stats.retries += attempts - 1
        if self.page_cap is None or len(records) < self.page_cap:
            return records
        halves = split_window(window)
        if halves is None:
            raise WindowTooDenseError(window.start, window.end, self.page_cap)
        stats.windows_split += 1
        del records  # the halves fetch all of it again; hold no more than needed
        async with asyncio.TaskGroup() as group:
            left_task = group.create_task(self._fetch_split(halves[0]))
            right_task = group.create_task(self._fetch_split(halves[1]))
        left, right = left_task.result(), right_task.result()
        seen = {self._key(r) for r in left}
        kept = [r for r in right if self._key(r) not in seen]
        stats.duplicates_dropped += len(right) - len(kept)
        left.extend(kept)
        return left

    async def _fetch_window(self, window: Window) -> list[T]:
        try:
            return await self._fetch_split(window)
        except (ConnexiError, ExceptionGroup) as exc:
            # Splits run in task groups: the first real failure is the one to report.
            cause: BaseException = exc
            while isinstance(cause, BaseExceptionGroup):
                cause = cause.exceptions[0]
            if isinstance(cause, WindowError):
                raise cause from None
            if isinstance(cause, ConnexiError):
                if not self._windowed:
                    raise cause from None  # one request, no window to name
                raise WindowError(window.start, window.end, str(cause)) from cause
            raise

    # -- the iterator ----------------------------------------------------------------

    async def _run(self) -> AsyncGenerator[T, None]:
        pending: dict[int, tuple[Window, asyncio.Task[list[T]]]] = {}
        seen: dict[int, set[Hashable]] = {}
        delivered: set[int] = set()
        planned = self.stats.windows_planned
        next_index = 0
        finished_ends: dict[int, datetime] = {}  # windows done, beyond the contiguous prefix
        prefix = 0

        def start_more() -> None:
            nonlocal next_index
            while len(pending) < self.concurrency:
                window = next(self._windows, None)
                if window is None:
                    return
                task = asyncio.ensure_future(self._fetch_window(window))
                pending[next_index] = (window, task)
                next_index += 1

        def settled(index: int) -> bool:
            return (index - 1 < 0 or index - 1 in delivered) and (
                index + 1 >= planned or index + 1 in delivered
            )

        try:
            start_more()
            while pending:
                if self.ordered:
                    index = min(pending)
                    await asyncio.wait([pending[index][1]])
                else:
                    await asyncio.wait(
                        [task for _, task in pending.values()],
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    index = min(i for i, (_, task) in pending.items() if task.done())
                window, task = pending.pop(index)
                records = task.result()  # a WindowError propagates from here
                start_more()  # keep fetching while the consumer works on this window

                # De-duplicate against the neighbours already delivered.
                neighbours = [seen[j] for j in (index - 1, index + 1) if j in seen]
                keyed = [self._key(r) for r in records]  # each key computed once
                if neighbours:
                    fresh = [
                        r
                        for r, k in zip(records, keyed, strict=True)
                        if not any(k in n for n in neighbours)
                    ]
                    self.stats.duplicates_dropped += len(records) - len(fresh)
                    records = fresh
                seen[index] = set(keyed)
                delivered.add(index)
                for j in (index - 1, index, index + 1):
                    if j in seen and settled(j):
                        del seen[j]
                self.stats.windows_done += 1
                del task
                # Records go out without a suspension in between, so a consumer's per-record
                # work would hold the loop for the whole window: every few dozen records,
                # if a slice has passed, the loop gets a turn.
                slice_started = _clock()
                for count, record in enumerate(records, 1):
                    self.stats.records_yielded += 1
                    yield record
                    if not count & 31 and _clock() - slice_started >= SLICE_SECONDS:
                        await asyncio.sleep(0)
                        slice_started = _clock()
                # The consumer asked for more after this window's last record: it is done.
                finished_ends[index] = window.end
                while prefix in finished_ends:
                    self.completed_until = finished_ends.pop(prefix)
                    prefix += 1
        finally:
            tasks = [task for _, task in pending.values()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
