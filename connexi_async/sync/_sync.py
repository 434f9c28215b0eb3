"""``OrderSync``: incremental sync of orders into your system, from a durable checkpoint.

A run reads ``[watermark - lookback, now - settle)`` window by window (the client's
stream, in batches), leaves out the orders already delivered in the lookback range, and
hands out one :class:`SyncBatch` per window with new orders. ``batch.commit()`` records
the window as done; the watermark moves over the contiguous prefix of done windows only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from .._cooperative import SLICE_SECONDS
from .._errors import (
    AuthenticationError,
    CheckpointConflictError,
    CheckpointStoreUnavailableError,
    ConfigurationError,
    ConnexiError,
    PermissionDeniedError,
    SyncError,
    SyncLockedError,
    format_instant,
)
from .._models import Order
from .._windows import Window, whole_second
from ._checkpoint import Checkpoint, advance, lookback_start, prune
from ._stores import CheckpointStore, Write

if TYPE_CHECKING:
    from .._client import ConnexiClient

__all__ = ["OrderSync", "SyncBatch", "SyncRun", "SyncStats"]

logger = logging.getLogger("connexi_async.sync")

# A worker gives up on these at once: retrying cannot help until a person acts.
_FATAL = (ConfigurationError, AuthenticationError, PermissionDeniedError)


def _fatal(exc: BaseException) -> bool:
    """A worker stops on these; the rest of ConnexiError is retried next cycle. A store
    it cannot read stops it too (a person must look), unlike a lost compare-and-set."""
    if isinstance(exc, SyncError) and not isinstance(
        exc, CheckpointConflictError | CheckpointStoreUnavailableError
    ):
        return True
    return isinstance(exc, _FATAL) or isinstance(exc.__cause__, _FATAL)


async def _yours(step: Awaitable[object], yours: list[BaseException]) -> None:
    """Await the user's code, noting what it raised (a ConnexiError of theirs, say a
    failed update_order_statuses, is raised to them, not retried as a failed cycle)."""
    try:
        await step
    except BaseException as exc:
        yours.append(exc)
        raise


async def to_completion(work: Awaitable[Any]) -> bool:
    """Run ``work`` to its end even if the caller is cancelled meanwhile (a write that
    has begun is finished, so what the caller believes matches what is on disk); whether
    a cancellation came. Its own error, if it failed, is raised."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    task.result()
    return cancelled


@attrs.define
class SyncStats:
    """What a sync has done, readable while it runs: for health checks and metrics."""

    cycles: int = 0  # runs finished
    batches: int = 0  # batches committed
    records: int = 0  # orders committed
    errors: int = 0  # cycles that failed (run_forever retries them)
    watermark: datetime | None = None  # the last committed watermark
    lag: timedelta | None = None  # how far the watermark is behind now, as last seen
    last_error: str = ""
    ids_dropped: int = 0  # remembered ids let go over max_remembered (see OrderSync)


class SyncBatch:
    """The new orders of one window. Write them, then ``await batch.commit()``.

    ``records`` leaves out the orders an earlier run already delivered (the lookback
    reads them again). Commit once your write is durable; until then the window is
    not done, and a crash delivers it again.
    """

    __slots__ = ("__weakref__", "_run", "committed", "records", "window")

    def __init__(self, run: _RunState, window: Window, records: list[Order]) -> None:
        self._run = run
        self.window: Window = window
        self.records: list[Order] = records
        self.committed: bool = False

    def __repr__(self) -> str:
        return (
            f"<SyncBatch {self.window} records={len(self.records)}"
            f"{' committed' if self.committed else ''}>"
        )

    def __len__(self) -> int:
        return len(self.records)

    async def commit(
        self, *, meta: Mapping[str, Any] | None = None, write: Write | None = None
    ) -> None:
        """Record this window as done; the watermark moves past it once every window
        before it is done too. Committing again is a no-op.

        ``meta``: a JSON-able mapping of yours, stored with the checkpoint (read it back
        with ``await sync.checkpoint()``). ``write``: your own write, run by the store in
        the same transaction (``SQLiteCheckpoints`` gets a ``sqlite3.Connection``): both
        happen or neither does, which makes delivery exactly once.
        """
        await self._run.commit(self, meta, write)


@attrs.define(kw_only=True, eq=False)
class _RunState:
    """One run's view of its checkpoint; commits go through here, one at a time."""

    sync: OrderSync
    checkpoint: Checkpoint
    since: datetime
    floor: datetime  # where the sync began: no lookback reads before it
    done: dict[datetime, datetime] = attrs.field(factory=dict)
    ended: bool = False
    handed: int = 0  # batches handed out (counted, not kept: a run never holds them all)
    committed: int = 0
    lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)

    def next_checkpoint(
        self,
        done: dict[datetime, datetime],
        new: tuple[datetime, tuple[int, ...]] | None,
        meta: Mapping[str, Any] | None,
    ) -> Checkpoint:
        sync = self.sync
        old = self.checkpoint
        watermark = max(old.watermark, advance(self.since, done))
        delivered = old.delivered + ((new,) if new is not None else ())
        kept, dropped = prune(
            delivered, lookback_start(watermark, sync.lookback, self.floor), sync.max_remembered
        )
        if dropped:
            sync.stats.ids_dropped += dropped
            logger.warning(
                "sync %r: %d delivered ids over max_remembered=%d were let go; if a "
                "lookback reads them again they are delivered again",
                sync.key,
                dropped,
                sync.max_remembered,
            )
        return Checkpoint(
            watermark=watermark,
            version=old.version + 1,
            start=self.floor,
            delivered=kept,
            meta=old.meta if meta is None else dict(meta),
        )

    async def commit(
        self, batch: SyncBatch, meta: Mapping[str, Any] | None, write: Write | None
    ) -> None:
        async with self.lock:
            if batch.committed:
                return
            if self.ended:
                raise SyncError(
                    f"the run that delivered {batch.window} is closed: commit before "
                    "leaving `async with sync.run_once()` (this window's orders will be "
                    "delivered again by the next run)"
                )
            done = {**self.done, batch.window.start: batch.window.end}
            ids = tuple(o.id for o in batch.records)
            checkpoint = self.next_checkpoint(done, (batch.window.end, ids), meta)
            cancelled = await self.save(checkpoint, write)
            # Saved: this run's view follows, even if a cancellation came meanwhile. Added
            # to the live map: windows skipped during the save stay done.
            self.done[batch.window.start] = batch.window.end
            batch.committed = True
            self.committed += 1
            stats = self.sync.stats
            stats.batches += 1
            stats.records += len(ids)
            if cancelled:
                raise asyncio.CancelledError

    def skip(self, window: Window) -> None:
        """A window with nothing new: done without a save of its own."""
        self.done[window.start] = window.end

    async def save(self, checkpoint: Checkpoint, write: Write | None = None) -> bool:
        """Save ``checkpoint``; whether a cancellation arrived while it was saved (the
        caller records what was saved, then raises it)."""
        sync = self.sync
        # A save is never abandoned halfway: what this run believes must match what is
        # stored. A cancellation waits for it, then goes on.
        cancelled = await to_completion(sync.store.save(sync.key, checkpoint, write=write))
        self.checkpoint = checkpoint
        sync.stats.watermark = checkpoint.watermark
        sync.stats.lag = sync.now() - checkpoint.watermark
        return cancelled

    async def commit_meta(self, meta: Mapping[str, Any]) -> None:
        async with self.lock:
            if self.ended:
                raise SyncError("this run is closed: its checkpoint can no longer change")
            if await self.save(self.next_checkpoint(self.done, None, meta)):
                raise asyncio.CancelledError

    async def finish(self) -> None:
        """Save what windows with nothing new moved (no batch commit carried it)."""
        async with self.lock:
            if advance(self.since, self.done) > self.checkpoint.watermark and await self.save(
                self.next_checkpoint(self.done, None, None)
            ):
                raise asyncio.CancelledError


class SyncRun:
    """One run of a sync: an async iterator of :class:`SyncBatch`. Use it with
    ``async with``: the lock on the sync's key is held from :meth:`start` (called for
    you) until the run ends or is closed.

    After ``start``: ``checkpoint`` is the stored checkpoint the run began from (``None``
    on a first run), and ``since``/``until`` the period it reads.
    """

    def __init__(self, sync: OrderSync) -> None:
        self._sync = sync
        self._lock: contextlib.AbstractAsyncContextManager[None] | None = None
        self._agen: AsyncGenerator[SyncBatch, None] | None = None
        self._run: _RunState | None = None
        self._already: set[int] = set()
        self._entered = False  # used with `async with`: ends at its exit, not the loop's
        self._closed = False
        self.checkpoint: Checkpoint | None = None
        self.since: datetime | None = None
        self.until: datetime | None = None
        self.uncommitted: int = 0  # batches handed out and never committed

    def __repr__(self) -> str:
        period = str(Window(self.since, self.until)) if self.since and self.until else ""
        return f"<SyncRun {self._sync.key!r} {period or 'not started'}>"

    async def start(self) -> None:
        """Take the lock and read the checkpoint (raises :class:`SyncLockedError` if
        another worker runs this key). Safe to call twice."""
        if self._lock is not None or self._closed:
            return
        sync = self._sync
        lock = sync.store.lock(sync.key, wait=sync.lock_wait)
        await lock.__aenter__()
        self._lock = lock
        try:
            self.checkpoint = await sync.store.load(sync.key)
            stored = self.checkpoint
            floor = sync.start
            if stored is not None and stored.start is not None:
                floor = stored.start
                if sync.start != floor:
                    logger.warning(
                        "sync %r: start=%s differs from the %s this sync began at; start "
                        "applies to a first run only, the checkpoint goes on from %s",
                        sync.key,
                        format_instant(sync.start),
                        format_instant(floor),
                        format_instant(stored.watermark),
                    )
            state = stored or Checkpoint(watermark=floor, start=floor)
            self.since = lookback_start(state.watermark, sync.lookback, floor)
            self.until = whole_second(sync.now() - sync.settle, "now - settle")
            self._run = _RunState(sync=sync, checkpoint=state, since=self.since, floor=floor)
            # The ids a lookback may meet again, gathered window by window: 200,000 of
            # them in one go would hold the loop.
            already: set[int] = set()
            began = time.perf_counter()
            for _, ids in state.delivered:
                already.update(ids)
                if time.perf_counter() - began > SLICE_SECONDS:
                    await asyncio.sleep(0)
                    began = time.perf_counter()
            self._already = already
        except BaseException:
            await self.aclose()
            raise
        sync.stats.watermark = state.watermark

    async def commit_meta(self, meta: Mapping[str, Any]) -> None:
        """Save ``meta`` (yours, JSON-able) in the checkpoint now, without a batch: to
        claim a resource before the first batch (the command line records its output
        file this way), or to keep state of your own."""
        await self.start()
        if self._run is None:
            raise SyncError("this run is closed: its checkpoint can no longer change")
        await self._run.commit_meta(meta)

    def __aiter__(self) -> SyncRun:
        return self

    async def __anext__(self) -> SyncBatch:
        if self._closed:
            raise StopAsyncIteration
        await self.start()
        if self._agen is None:
            self._agen = self._batches()
        try:
            return await self._agen.__anext__()
        except StopAsyncIteration:
            if not self._entered:
                await self.aclose()  # plain `async for`: the lock goes at once
            raise
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """End the run: stop its requests and release the lock. Batches not committed by
        now are delivered again by the next run. Safe to call twice."""
        self._closed = True
        try:
            if self._agen is not None:
                await self._agen.aclose()
        finally:
            run, self._run = self._run, None
            if run is not None:
                async with run.lock:  # a commit under way finishes first
                    run.ended = True
                self.uncommitted = run.handed - run.committed
                if self.uncommitted:
                    logger.warning(
                        "sync %r: %d batches were not committed; the next run delivers them again",
                        self._sync.key,
                        self.uncommitted,
                    )
            lock, self._lock = self._lock, None
            if lock is not None:
                await lock.__aexit__(None, None, None)

    async def __aenter__(self) -> SyncRun:
        self._entered = True
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _batches(self) -> AsyncGenerator[SyncBatch, None]:
        sync, run = self._sync, self._run
        since, until = self.since, self.until
        assert run is not None
        assert since is not None
        assert until is not None
        if until - since < timedelta(seconds=1):
            logger.debug("sync %r: nothing to read before %s", sync.key, until)
            sync.stats.cycles += 1
            return
        already = self._already
        committed_before = sync.stats.records
        async with sync.client.orders(
            since,
            until,
            window=sync.window,
            concurrency=sync.concurrency,
            ordered=sync.ordered,
            page_cap=sync.page_cap,
        ) as stream:
            async for batch in stream.batches():
                records = batch.records
                if already:
                    records = [o for o in records if o.id not in already]
                if not records:
                    run.skip(batch.window)
                    continue
                run.handed += 1
                yield SyncBatch(run, batch.window, records)
                del batch, records
        await run.finish()
        sync.stats.cycles += 1
        sync.stats.lag = sync.now() - run.checkpoint.watermark
        logger.info(
            "sync %r: read %s, committed %d orders; watermark %s, %s behind",
            sync.key,
            Window(since, until),
            sync.stats.records - committed_before,
            format_instant(run.checkpoint.watermark),
            sync.stats.lag,
        )


class OrderSync:
    """Incremental sync of a seller's orders, resumable from a durable checkpoint.

    >>> store = SQLiteCheckpoints("sync-state.db")
    >>> sync = OrderSync(client, store, key="store-7", start=datetime(2026, 1, 1, tzinfo=UTC))
    >>> async with sync.run_once() as run:      # from the checkpoint to now - settle
    ...     async for batch in run:
    ...         await write(batch.records)
    ...         await batch.commit()             # the watermark moves past this window

    Options (keyword-only):

    * ``key``: names this sync in the store (one per seller account, say).
    * ``start``: where the first run begins; later runs start from the checkpoint.
    * ``lookback`` (2 h): how far before the watermark each run reads again, for orders
      filed late under an earlier time. Orders filed later than that are missed.
    * ``settle`` (2 min): how far from "now" a run stops, where the server may still be
      writing.
    * ``window`` (1 h), ``concurrency`` (8), ``ordered`` (True), ``page_cap``: as for
      ``client.orders``.
    * ``max_remembered`` (200,000): the most delivered ids kept for the lookback; over
      it the oldest are let go (they could be delivered again, never lost).
    * ``lock_wait`` (0 s): how long to wait for another worker's lock before
      :class:`SyncLockedError`.
    """

    def __init__(
        self,
        client: ConnexiClient,
        store: CheckpointStore,
        *,
        key: str,
        start: datetime,
        lookback: timedelta = timedelta(hours=2),
        settle: timedelta = timedelta(minutes=2),
        window: timedelta = timedelta(hours=1),
        concurrency: int = 8,
        ordered: bool = True,
        page_cap: int | None = None,
        max_remembered: int = 200_000,
        lock_wait: float = 0.0,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(store, CheckpointStore):
            raise ConfigurationError(
                f"store must implement CheckpointStore (load, save, lock), got {store!r:.60}"
            )
        for name, value in (("lookback", lookback), ("settle", settle)):
            if not isinstance(value, timedelta) or value < timedelta(0):
                raise ConfigurationError(
                    f"{name} must be a timedelta of zero or more, got {value!r}"
                )
        if not isinstance(max_remembered, int) or max_remembered < 0:
            raise ConfigurationError(f"max_remembered must be 0 or more, got {max_remembered!r}")
        self.client = client
        self.store = store
        self.key = key
        self.start: datetime = whole_second(start, "start")
        self.lookback = lookback
        self.settle = settle
        self.window = window
        self.concurrency = concurrency
        self.ordered = ordered
        self.page_cap = page_cap
        self.max_remembered = max_remembered
        self.lock_wait = lock_wait
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(UTC))
        self.stats: SyncStats = SyncStats()

    def __repr__(self) -> str:
        return f"<OrderSync {self.key!r} store={self.store!r}>"

    async def checkpoint(self) -> Checkpoint | None:
        """The stored checkpoint of this sync's key (``None`` before the first commit)."""
        return await self.store.load(self.key)

    def run_once(self) -> SyncRun:
        """One run, from the checkpoint to ``now - settle``, in batches to commit."""
        return SyncRun(self)

    async def run_forever(
        self,
        handler: Callable[[SyncBatch], Awaitable[object]],
        *,
        interval: timedelta = timedelta(minutes=5),
        jitter: float = 0.1,
        backoff_max: timedelta | None = None,
        max_cycles: int | None = None,
        on_run: Callable[[SyncRun], Awaitable[object]] | None = None,
    ) -> None:
        """Run every ``interval`` (± ``jitter`` of it), passing each batch to ``handler``
        and committing it when the handler returns (unless the handler committed it).
        ``on_run``, if given, is awaited at the start of each run, with the lock held and
        ``run.checkpoint`` read: the place to bring a sink that is not transactional back
        in line with the checkpoint (the command line truncates its output file there).

        Failures of the API (after the client's own retries) are logged and retried
        with backoff, up to ``backoff_max`` (the interval by default) apart; a bad
        configuration or credentials stop it (raised). Another worker holding the lock
        makes this one stand by and try again each interval. An exception from your
        handler is raised, with its batch not committed. Cancel the task to stop: the
        batch under way is abandoned (never half-committed) and the lock released.
        """
        if not isinstance(interval, timedelta) or interval <= timedelta(0):
            raise ConfigurationError(f"interval must be a positive timedelta, got {interval!r}")
        if not 0 <= jitter < 1:
            raise ConfigurationError(f"jitter must be in [0, 1), got {jitter!r}")
        ceiling = (backoff_max or interval).total_seconds()
        loop = asyncio.get_running_loop()
        failures = 0
        cycles = 0
        while max_cycles is None or cycles < max_cycles:
            began = loop.time()
            delay = interval.total_seconds()
            yours: list[BaseException] = []  # raised by your handler or on_run: not ours to retry
            try:
                async with self.run_once() as run:
                    if on_run is not None:
                        await _yours(on_run(run), yours)
                    async for batch in run:
                        await _yours(handler(batch), yours)
                        if not batch.committed:
                            await batch.commit()
                failures = 0
            except SyncLockedError as exc:
                logger.info("sync %r: standing by: %s", self.key, exc)
            except ConnexiError as exc:
                if _fatal(exc) or exc in yours:
                    raise
                failures += 1
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                delay = min(ceiling, 2.0 ** min(failures, 30))
                logger.error(
                    "sync %r: cycle failed (%d in a row), next try in %.3g s: %s",
                    self.key,
                    failures,
                    delay,
                    exc,
                )
            cycles += 1
            if max_cycles is not None and cycles >= max_cycles:
                return
            spread = delay * jitter * (2 * random.random() - 1)
            await asyncio.sleep(max(0.0, began + delay + spread - loop.time()))
