"""Concurrent window fetching as an async iterator: bounded, ordered, de-duplicated.

One task per planned window, at most ``concurrency`` of them started ahead of the
consumer (backpressure), and a semaphore so requests in flight never exceed it, splits
included. Records are de-duplicated against the neighbouring windows only (the only
place a boundary order can appear twice), so memory does not grow with the period.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, TypeVar

import attrs

from ._cooperative import SLICE_SECONDS, Steps, run_sliced
from ._errors import ConnexiError, WindowError, WindowTooDenseError
from ._windows import Window, split_window

__all__ = ["Batch", "RecordStream", "StreamStats"]

T = TypeVar("T")
_clock = time.perf_counter

R = TypeVar("R")
# A window's records: decoded, or the decoder's steps still to run (see _cooperative).
Records = list[T] | Steps[list[T]]
# What fetching one window gives: its records, the bytes read, the attempts made. It is
# given the stream's in-flight bound and holds it around each request it sends (one, or
# a window's pages), so windows and pages share it.
Fetch = Callable[[Window, asyncio.Semaphore], Awaitable[tuple[Records[T], int, int]]]


async def _decoded(records: Records[T]) -> list[T]:
    return records if isinstance(records, list) else await run_sliced(records)


@attrs.frozen
class Batch(Generic[T]):
    """One window's records, as :meth:`RecordStream.batches` hands them out.

    ``window`` is the planned window (a window split because it came back full is still
    one batch); ``records`` are its records not already given out in a neighbour window,
    in the server's order. Write them and record ``window.end`` in one transaction, and a
    resumed run knows exactly where to start.
    """

    window: Window
    records: list[T]

    def __len__(self) -> int:
        return len(self.records)


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
        build: Callable[[Any], T] | None = None,
    ) -> None:
        self.stats: StreamStats = StreamStats(windows_planned=window_count)
        self._windowed = windowed
        self.concurrency = concurrency
        self.ordered = ordered
        self.page_cap = page_cap
        self._windows = windows
        self._fetch = fetch
        self._key = key
        # Records may come from ``fetch`` in a prepared form and be made into what the
        # consumer gets only as they are handed out (see _convert's two phases).
        self._build = build
        self._semaphore = asyncio.Semaphore(concurrency)
        # Made on first use: records one by one (``async for``) or per window (batches()).
        self._agen: AsyncGenerator[Any, None] | None = None
        self._mode = ""
        # Every record created before this instant has been yielded: where to resume from.
        self.completed_until: datetime | None = None

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<RecordStream windows {s.windows_done}/{s.windows_planned} "
            f"records={s.records_yielded} concurrency={self.concurrency}>"
        )

    def _generator(self, mode: str) -> AsyncGenerator[Any, None]:
        if self._agen is None:
            self._mode = mode
            self._agen = self._run() if mode == "records" else self._run_batches()
        elif self._mode != mode:
            how = "record by record" if self._mode == "records" else "by batches()"
            raise RuntimeError(
                f"this stream is already read {how}; read a stream one way, not both"
            )
        return self._agen

    def __aiter__(self) -> AsyncGenerator[T, None]:
        # ``async for`` drives the generator itself: one hop less per record.
        return self._generator("records")

    async def __anext__(self) -> T:
        record: T = await self._generator("records").__anext__()
        return record

    def batches(self) -> AsyncGenerator[Batch[T], None]:
        """The records window by window, as :class:`Batch` objects, in time order (or as
        they arrive with ``ordered=False``). De-duplication across neighbouring windows
        is the same as record by record; ``completed_until`` moves past a batch's window
        when the next batch is asked for.

        >>> async with client.orders(since, until) as stream:
        ...     async for batch in stream.batches():
        ...         await save(batch.records, resume_from=batch.window.end)
        """
        return self._generator("batches")

    async def aclose(self) -> None:
        """Stop: cancel and await every request in flight. Safe to call twice."""
        if self._agen is not None:
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

    async def _fetch_split(self, window: Window) -> Records[T]:
        """One window's records, still encoded unless the window had to be counted; a
        full window is split and its halves fetched."""
        result, size, attempts = await self._fetch(window, self._semaphore)
        stats = self.stats
        stats.windows_fetched += 1
        stats.bytes_read += size
        stats.retries += attempts - 1
        if self.page_cap is None:
            return result  # decoded when its turn to be delivered comes
        records = await _decoded(result)
        if len(records) < self.page_cap:
            return records
        halves = split_window(window)
        if halves is None:
            raise WindowTooDenseError(window.start, window.end, self.page_cap)
        stats.windows_split += 1
        del records  # the halves fetch all of it again; hold no more than needed
        async with asyncio.TaskGroup() as group:
            left_task = group.create_task(self._fetch_split(halves[0]))
            right_task = group.create_task(self._fetch_split(halves[1]))
        left, right = await _decoded(left_task.result()), await _decoded(right_task.result())
        seen = {self._key(r) for r in left}
        kept = [r for r in right if self._key(r) not in seen]
        stats.duplicates_dropped += len(right) - len(kept)
        left.extend(kept)
        return left

    async def _failed_as_window_error(self, window: Window, step: Awaitable[R]) -> R:
        try:
            return await step
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

    async def _fetch_window(self, window: Window) -> Records[T]:
        return await self._failed_as_window_error(window, self._fetch_split(window))

    # -- the iterator ----------------------------------------------------------------

    async def _deliveries(self) -> AsyncGenerator[tuple[Window, list[Any]], None]:
        """Each window's records, de-duplicated against its neighbours, as its turn comes.

        A window counts as done (``completed_until``) when the consumer asks for the
        next one: by then every record of it has been handed out."""
        pending: dict[int, tuple[Window, asyncio.Task[Records[T]]]] = {}
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
                start_more()  # keep fetching while this window is decoded and consumed
                # Decoded only now, at its turn: windows fetched ahead wait as bytes, so
                # the objects alive at once (and each garbage collection's work) stay
                # those of about one window, whatever the concurrency.
                records = await self._failed_as_window_error(window, _decoded(task.result()))
                del task

                # De-duplicate against the neighbours already delivered.
                # Set operations in C first: a Python loop over a dense window only when
                # a neighbour really shares a record.
                keyed = list(map(self._key, records))  # each key computed once
                neighbours = [
                    seen[j]
                    for j in (index - 1, index + 1)
                    if j in seen and not seen[j].isdisjoint(keyed)
                ]
                if neighbours:
                    shared = set().union(*neighbours)
                    fresh = [r for r, k in zip(records, keyed, strict=True) if k not in shared]
                    self.stats.duplicates_dropped += len(records) - len(fresh)
                    records = fresh
                seen[index] = set(keyed)
                delivered.add(index)
                for j in (index - 1, index, index + 1):
                    if j in seen and settled(j):
                        del seen[j]
                self.stats.windows_done += 1
                yield window, records
                del records
                # The consumer asked for more after this window: it is done.
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

    async def _run(self) -> AsyncGenerator[T, None]:
        async with contextlib.aclosing(self._deliveries()) as deliveries:
            async for _, records in deliveries:
                # Records go out without a suspension in between, so a consumer's
                # per-record work would hold the loop for the whole window: every few
                # dozen records, if a slice has passed, the loop gets a turn.
                # Each record is let go of as it is handed out, so a window's records
                # are freed one by one as the consumer drops them, not all at once
                # (freeing a dense window's objects in one go is a stall of its own).
                slice_started = _clock()
                build = self._build
                for count in range(1, len(records) + 1):
                    record = records[count - 1]
                    records[count - 1] = None
                    self.stats.records_yielded += 1
                    yield record if build is None else build(record)
                    del record
                    if not count & 31 and _clock() - slice_started >= SLICE_SECONDS:
                        await asyncio.sleep(0)
                        slice_started = _clock()
                del records

    async def _run_batches(self) -> AsyncGenerator[Batch[T], None]:
        async with contextlib.aclosing(self._deliveries()) as deliveries:
            async for window, records in deliveries:
                build = self._build
                if build is not None:
                    # Built in slices: a dense window is 10,000 models.
                    slice_started = _clock()
                    for count in range(len(records)):
                        records[count] = build(records[count])
                        if not count & 31 and _clock() - slice_started >= SLICE_SECONDS:
                            await asyncio.sleep(0)
                            slice_started = _clock()
                self.stats.records_yielded += len(records)
                yield Batch(window, records)
                del records
