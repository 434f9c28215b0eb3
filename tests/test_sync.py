"""Incremental sync: batches, checkpoints and their stores, OrderSync, reconcile."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import client_for, serve_inclusive_end

from connexi_async import (
    ConfigurationError,
    ConnexiClient,
    NewOrder,
    OutcomeUnknownError,
    WindowError,
)
from connexi_async._windows import merge_periods
from connexi_async.sandbox import FaultKind, Sandbox
from connexi_async.sync import (
    Checkpoint,
    CheckpointConflictError,
    CheckpointStore,
    JSONFileCheckpoints,
    OrderSync,
    SQLiteCheckpoints,
    SyncBatch,
    SyncError,
    SyncLockedError,
)
from connexi_async.sync._checkpoint import (
    advance,
    checkpoint_from_json,
    checkpoint_to_json,
    prune,
)

OCT1 = datetime(2026, 10, 1, tzinfo=UTC)
H = timedelta(hours=1)


def make_store(kind: str, tmp_path: Path) -> CheckpointStore:
    if kind == "json":
        return JSONFileCheckpoints(tmp_path / "state.json")
    return SQLiteCheckpoints(tmp_path / "state.db")


STORES = ["json", "sqlite"]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def drain(sync: OrderSync, *, commit: bool = True) -> list[int]:
    ids: list[int] = []
    async with sync.run_once() as run:
        async for batch in run:
            ids += [o.id for o in batch.records]
            if commit:
                await batch.commit()
    return ids


# -- pure rules --------------------------------------------------------------------------

instants = st.integers(0, 200).map(lambda n: OCT1 + n * H)


@given(st.sets(st.integers(0, 30)), st.integers(1, 30))
def test_advance_is_the_contiguous_prefix(done_indices: set[int], count: int) -> None:
    done = {OCT1 + i * H: OCT1 + (i + 1) * H for i in done_indices if i < count}
    prefix = 0
    while prefix in done_indices and prefix < count:
        prefix += 1
    assert advance(OCT1, done) == OCT1 + prefix * H


@given(
    st.lists(st.tuples(instants, st.lists(st.integers(1, 10**6), max_size=20)), max_size=20),
    instants,
    st.integers(0, 100),
)
def test_prune_keeps_the_newest_the_lookback_can_read(
    delivered: list[tuple[datetime, list[int]]], keep_from: datetime, max_ids: int
) -> None:
    entries = [(end, tuple(ids)) for end, ids in delivered]
    kept, dropped = prune(entries, keep_from, max_ids)
    assert all(end >= keep_from for end, _ in kept)
    assert sum(len(ids) for _, ids in kept) <= max_ids
    eligible = sum(len(ids) for end, ids in entries if end >= keep_from)
    assert sum(len(ids) for _, ids in kept) + dropped == eligible
    # What is let go is always older than what is kept.
    if kept and dropped:
        dropped_ends = sorted(e for e, _ in entries if e >= keep_from)[: len(entries)]
        assert min(end for end, _ in kept) >= dropped_ends[0]


@given(st.lists(st.tuples(instants, instants), max_size=30))
def test_merge_periods_covers_the_same_instants(pairs: list[tuple[datetime, datetime]]) -> None:
    periods = [(a, b) for a, b in pairs if a < b]
    merged = merge_periods(periods)
    for (_, end), (start, _) in itertools.pairwise(merged):
        assert end < start  # disjoint, not touching, sorted
    for hour in range(0, 201):
        t = OCT1 + hour * H
        assert any(a <= t < b for a, b in periods) == any(a <= t < b for a, b in merged)


@given(
    instants,
    st.integers(0, 10**6),
    st.lists(st.tuples(instants, st.lists(st.integers(0, 2**63 - 1), max_size=5)), max_size=5),
)
def test_checkpoint_json_round_trip(
    watermark: datetime, version: int, delivered: list[tuple[datetime, list[int]]]
) -> None:
    checkpoint = Checkpoint(
        watermark=watermark,
        version=version,
        delivered=tuple((e, tuple(ids)) for e, ids in delivered),
        meta={"output_bytes": 12},
    )
    text = json.dumps(checkpoint_to_json(checkpoint))
    assert checkpoint_from_json(json.loads(text), "here") == checkpoint


@pytest.mark.parametrize(
    "value",
    [
        None,
        [],
        {"version": -1, "watermark": "2026-10-01T00:00:00Z"},
        {"version": True, "watermark": "2026-10-01T00:00:00Z"},
        {"version": 1, "watermark": "yesterday"},
        {"version": 1, "watermark": "2026-10-01T00:00:00Z", "delivered": [["x", [1]]]},
        {
            "version": 1,
            "watermark": "2026-10-01T00:00:00Z",
            "delivered": [["2026-10-01T00:00:00Z", ["1"]]],
        },
        {"version": 1, "watermark": "2026-10-01T00:00:00Z", "meta": []},
    ],
)
def test_unreadable_checkpoint_is_a_sync_error(value: object) -> None:
    with pytest.raises(SyncError, match="state.json"):
        checkpoint_from_json(value, "state.json")


# -- batches -----------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
async def test_batches_hold_what_the_record_stream_holds(
    ordered: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a server whose ``end`` is inclusive (boundary orders come twice)."""
    inclusive = serve_inclusive_end(monkeypatch)
    next(inclusive)
    since, until = OCT1, OCT1 + timedelta(days=3)
    async with Sandbox(orders=2_000, days=3) as sandbox, client_for(sandbox) as client:
        records = [o.id async for o in client.orders(since, until, window=H, ordered=ordered)]
        windows = []
        ids = []
        async with client.orders(since, until, window=H, ordered=ordered) as stream:
            async for batch in stream.batches():
                windows.append(batch.window)
                ids += [o.id for o in batch.records]
                assert len(batch) == len(batch.records)
            assert stream.stats.duplicates_dropped > 0
        next(inclusive, None)
        expected = sandbox.order_ids(since, until)
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(records) == sorted(expected)
    assert len(windows) == 72
    if ordered:
        assert windows == sorted(windows)
        assert ids == records


async def test_a_split_window_is_one_batch() -> None:
    burst = OCT1 + timedelta(days=1, hours=5)
    sandbox = Sandbox(orders=500, days=3, burst_at=burst, burst_orders=2_000, cap=300)
    async with sandbox, client_for(sandbox) as client:
        since, until = OCT1, OCT1 + timedelta(days=3)
        stream = client.orders(since, until, window=timedelta(days=1), page_cap=300)
        async with stream:
            batches = [b async for b in stream.batches()]
        assert [b.window.start for b in batches] == [OCT1 + timedelta(days=d) for d in range(3)]
        assert stream.stats.windows_split > 0
        assert [o.id for b in batches for o in b.records] == sandbox.order_ids(since, until)


async def test_a_stream_is_read_one_way() -> None:
    sandbox = Sandbox(orders=100, days=2)
    async with sandbox, client_for(sandbox) as client:
        stream = client.orders(OCT1, OCT1 + timedelta(days=2))
        async with stream:
            batches = stream.batches()
            await batches.__anext__()
            with pytest.raises(RuntimeError, match="by batches"):
                await stream.__anext__()


async def test_completed_until_moves_when_the_next_batch_is_asked_for() -> None:
    async with Sandbox(orders=300, days=3) as sandbox, client_for(sandbox) as client:
        async with client.orders(OCT1, OCT1 + timedelta(days=3)) as stream:
            seen = []
            async for batch in stream.batches():
                seen.append(stream.completed_until)
                assert (
                    stream.completed_until is None or stream.completed_until <= batch.window.start
                )
        assert seen == [None, OCT1 + timedelta(days=1), OCT1 + timedelta(days=2)]
        assert stream.completed_until == OCT1 + timedelta(days=3)


# -- stores ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STORES)
async def test_store_compare_and_set(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, tmp_path)
    assert await store.load("a") is None
    first = Checkpoint(watermark=OCT1, version=1, delivered=((OCT1, (1, 2)),), meta={"k": 1})
    await store.save("a", first)
    assert await store.load("a") == first
    with pytest.raises(CheckpointConflictError) as info:
        await store.save("a", first)  # version 1 again: someone else's stale view
    assert (info.value.expected, info.value.found) == (0, 1)
    second = Checkpoint(watermark=OCT1 + H, version=2)
    await store.save("a", second)
    await store.save("b", Checkpoint(watermark=OCT1, version=1))
    assert await store.load("a") == second
    assert (await store.load("b")) == Checkpoint(watermark=OCT1, version=1)


async def test_json_store_refuses_a_file_it_did_not_write(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"something": "else"}')
    store = JSONFileCheckpoints(path)
    with pytest.raises(SyncError, match="not a checkpoint file"):
        await store.load("a")
    with pytest.raises(SyncError):
        await store.save("a", Checkpoint(watermark=OCT1, version=1))
    assert path.read_text() == '{"something": "else"}'  # left as it was


async def test_json_store_cannot_join_your_transaction(tmp_path: Path) -> None:
    store = JSONFileCheckpoints(tmp_path / "s.json")
    with pytest.raises(Exception, match="SQLiteCheckpoints"):
        await store.save("a", Checkpoint(watermark=OCT1, version=1), write=lambda db: None)


async def test_sqlite_write_and_commit_happen_together(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    # closing(): a connection's own `with` commits but does not close (3.13 warns).
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    store = SQLiteCheckpoints(path)

    def good(db: sqlite3.Connection) -> None:
        db.executemany("INSERT INTO orders VALUES (?)", [(1,), (2,)])

    def bad(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO orders VALUES (3)")
        raise ValueError("the consumer's own failure")

    await store.save("k", Checkpoint(watermark=OCT1, version=1), write=good)
    with pytest.raises(ValueError, match="own failure"):
        await store.save("k", Checkpoint(watermark=OCT1 + H, version=2), write=bad)
    with pytest.raises(CheckpointConflictError):  # the write is rolled back with it
        await store.save("k", Checkpoint(watermark=OCT1 + H, version=5), write=good)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert [r[0] for r in db.execute("SELECT id FROM orders ORDER BY id")] == [1, 2]
    checkpoint = await store.load("k")
    assert checkpoint is not None
    assert checkpoint.version == 1


@pytest.mark.parametrize("kind", STORES)
async def test_one_worker_per_key(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, tmp_path)
    async with store.lock("store-7"):
        with pytest.raises(SyncLockedError, match="store-7") as info:
            async with store.lock("store-7"):
                pass
        assert f"pid {__import__('os').getpid()}" in info.value.holder
        async with store.lock("store-8"):  # another key is free
            pass
    async with store.lock("store-7"):  # released
        pass


async def test_lock_wait_waits_for_the_holder(tmp_path: Path) -> None:
    store = JSONFileCheckpoints(tmp_path / "s.json")
    order = []

    async def holder() -> None:
        async with store.lock("k"):
            order.append("first in")
            await asyncio.sleep(0.3)
            order.append("first out")

    task = asyncio.create_task(holder())
    await asyncio.sleep(0.05)
    async with store.lock("k", wait=10):
        order.append("second in")
    await task
    assert order == ["first in", "first out", "second in"]


async def test_a_lock_held_by_another_process(tmp_path: Path) -> None:
    import sys

    store = SQLiteCheckpoints(tmp_path / "s.db")
    script = (
        "import asyncio, sys\n"
        "from connexi_async.sync import SQLiteCheckpoints\n"
        "async def main():\n"
        f"    async with SQLiteCheckpoints({str(tmp_path / 's.db')!r}).lock('k'):\n"
        "        print('held', flush=True)\n"
        "        await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"held\n"
        with pytest.raises(SyncLockedError, match="already running"):
            async with store.lock("k"):
                pass
    finally:
        process.kill()
        await process.wait()
    async with store.lock("k", wait=5):  # the holder died: the lock went with it
        pass


# -- OrderSync ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STORES)
async def test_runs_deliver_each_order_once(kind: str, tmp_path: Path) -> None:
    clock = Clock(OCT1 + timedelta(days=4))
    async with Sandbox(orders=3_000, days=8) as sandbox, client_for(sandbox) as client:
        sync = OrderSync(
            client, make_store(kind, tmp_path), key="s", start=OCT1, now=clock, window=3 * H
        )
        first = await drain(sync)
        until = clock.now - timedelta(minutes=2)
        assert first == sandbox.order_ids(OCT1, until)
        checkpoint = await sync.checkpoint()
        assert checkpoint is not None
        assert checkpoint.watermark == until
        # Only the ids a lookback can read again are kept.
        assert 0 < checkpoint.remembered() < len(first) / 10
        assert all(end >= until - timedelta(hours=2) for end, _ in checkpoint.delivered)

        ids = list(first)
        for _ in range(5):  # cycles every 7 hours
            clock.now += 7 * H
            ids += await drain(sync)
        assert sorted(ids) == sandbox.order_ids(OCT1, clock.now - timedelta(minutes=2))
        assert len(ids) == len(set(ids))
        assert sync.stats.cycles == 6
        assert sync.stats.lag == timedelta(minutes=2)
        assert sync.stats.records == len(ids)


def new_order(n: int) -> NewOrder:
    return NewOrder(remote_order_id=f"late-{n}", marketplace_code="shpe", order_number=f"L{n}")


async def test_late_arrivals_inside_the_lookback_are_delivered_once(tmp_path: Path) -> None:
    clock = Clock(OCT1 + timedelta(days=2))
    async with Sandbox(orders=1_000, days=4) as sandbox, client_for(sandbox) as client:
        sync = OrderSync(
            client,
            SQLiteCheckpoints(tmp_path / "s.db"),
            key="s",
            start=OCT1,
            now=clock,
            lookback=2 * H,
        )
        first = await drain(sync)
        watermark = clock.now - timedelta(minutes=2)
        # Filed late, under earlier times: 30 min and 90 min before the watermark (inside
        # the lookback) and 3 h before it (outside: documented as missed).
        inside = sandbox.add_orders([new_order(1)], created_at=watermark - timedelta(minutes=30))
        inside += sandbox.add_orders([new_order(2)], created_at=watermark - timedelta(minutes=90))
        outside = sandbox.add_orders([new_order(3)], created_at=watermark - 3 * H)
        clock.now += timedelta(minutes=5)
        second = await drain(sync)
        clock.now += timedelta(minutes=5)
        third = await drain(sync)
    assert {o.id for o in inside} <= set(second)
    assert not set(second) & set(first)
    assert outside[0].id not in first + second + third
    assert not set(third) & {o.id for o in inside}


async def test_out_of_order_commits_never_move_the_watermark_past_a_gap(tmp_path: Path) -> None:
    clock = Clock(OCT1 + timedelta(days=3))
    sandbox = Sandbox(orders=3_000, days=4, latency_ms=5)
    async with sandbox, client_for(sandbox) as client:
        sync = OrderSync(
            client,
            JSONFileCheckpoints(tmp_path / "s.json"),
            key="s",
            start=OCT1,
            now=clock,
            window=3 * H,
            ordered=False,
            concurrency=8,
        )
        skipped: SyncBatch | None = None
        watermarks = []
        async with sync.run_once() as run:
            async for batch in run:
                if batch.window.start == OCT1 + 9 * H:
                    skipped = batch  # never committed
                    continue
                await batch.commit()
                checkpoint = await sync.checkpoint()
                assert checkpoint is not None
                watermarks.append(checkpoint.watermark)
        assert skipped is not None
        assert run.uncommitted == 1
        assert max(watermarks) == skipped.window.start
        assert watermarks == sorted(watermarks)
        with pytest.raises(SyncError, match="is closed"):
            await skipped.commit()
        # The next run delivers the gap, and only the gap.
        again = await drain(sync)
        assert sorted(again) == sorted(o.id for o in skipped.records)
        checkpoint = await sync.checkpoint()
        assert checkpoint is not None
        assert checkpoint.watermark == clock.now - timedelta(minutes=2)


async def test_two_syncs_on_one_key(tmp_path: Path) -> None:
    clock = Clock(OCT1 + timedelta(days=2))
    async with Sandbox(orders=500, days=3) as sandbox, client_for(sandbox) as client:
        store = SQLiteCheckpoints(tmp_path / "s.db")
        one = OrderSync(client, store, key="s", start=OCT1, now=clock)
        two = OrderSync(client, store, key="s", start=OCT1, now=clock)
        async with one.run_once() as run:
            async for batch in run:
                with pytest.raises(SyncLockedError):
                    await drain(two)
                await batch.commit()
        assert await drain(two) == []  # after the first: nothing left
        # run_forever stands by while another worker holds the key.
        async with one.run_once():
            await two.run_forever(_never_called, interval=timedelta(milliseconds=10), max_cycles=3)
        assert two.stats.errors == 0


async def _never_called(batch: SyncBatch) -> None:
    raise AssertionError("no batch while another worker holds the key")


async def test_run_forever_rides_out_failures_and_stops_on_bad_credentials(
    tmp_path: Path,
) -> None:
    clock = Clock(OCT1 + timedelta(days=2))
    async with (
        Sandbox(orders=500, days=3) as sandbox,
        client_for(sandbox, max_attempts=2) as client,
    ):
        sync = OrderSync(
            client, JSONFileCheckpoints(tmp_path / "s.json"), key="s", start=OCT1, now=clock
        )
        sandbox.faults.script(
            "GET /v1/order",
            "unavailable",
            "unavailable",
            when=lambda query: query.get("start") == "2026-10-01T00:00:00Z",
        )
        got: list[int] = []

        async def handle(batch: SyncBatch) -> None:
            got.extend(o.id for o in batch.records)

        await sync.run_forever(
            handle,
            interval=timedelta(milliseconds=10),
            backoff_max=timedelta(milliseconds=10),
            max_cycles=2,
        )
        assert sync.stats.errors == 1
        assert "503" in sync.stats.last_error
        assert sorted(got) == sandbox.order_ids(OCT1, clock.now - timedelta(minutes=2))
        assert sync.stats.cycles == 1

    async with (
        Sandbox(orders=10, days=3, api_secret="another") as sandbox,
        ConnexiClient(
            api_key=sandbox.credentials["api_key"], api_secret="wrong", base_url=sandbox.base_url
        ) as client,
    ):
        sync = OrderSync(
            client, JSONFileCheckpoints(tmp_path / "t.json"), key="s", start=OCT1, now=clock
        )
        with pytest.raises(WindowError, match="401"):
            await sync.run_forever(handle, interval=timedelta(milliseconds=10), max_cycles=5)


async def test_cancelling_run_forever_abandons_the_batch_and_frees_the_key(tmp_path: Path) -> None:
    clock = Clock(OCT1 + timedelta(days=2))
    async with Sandbox(orders=500, days=3) as sandbox, client_for(sandbox) as client:
        store = JSONFileCheckpoints(tmp_path / "s.json")
        sync = OrderSync(client, store, key="s", start=OCT1, now=clock, window=6 * H)
        entered = asyncio.Event()
        handled = 0

        async def slow(batch: SyncBatch) -> None:
            nonlocal handled
            handled += 1
            if handled == 3:
                entered.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(sync.run_forever(slow, interval=timedelta(minutes=5)))
        await asyncio.wait_for(entered.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        checkpoint = await store.load("s")
        assert checkpoint is not None
        assert checkpoint.version == 2  # two batches committed, the third abandoned
        async with store.lock("s"):  # released
            pass


# -- finding out what a create did ---------------------------------------------------------


def shop_orders(prefix: str, count: int) -> list[NewOrder]:
    return [
        NewOrder(
            remote_order_id=f"{prefix}-{n}", marketplace_code="tkpd", order_number=f"{prefix}{n}"
        )
        for n in range(count)
    ]


async def test_reconcile_then_resend_only_the_missing() -> None:
    async with Sandbox(orders=200, days=3) as sandbox, client_for(sandbox) as client:
        processed, lost = shop_orders("a", 30), shop_orders("b", 20)
        sandbox.faults.script("POST /v1/order", FaultKind.DISCONNECT_AFTER)
        with pytest.raises(OutcomeUnknownError) as first:
            await client.create_orders(processed)
        sandbox.faults.script("POST /v1/order", FaultKind.DISCONNECT)
        with pytest.raises(OutcomeUnknownError) as second:
            await client.create_orders(lost)
        assert first.value.orders == tuple(processed)
        assert first.value.sent_at is not None
        assert first.value.failed_at is not None
        assert first.value.sent_at <= first.value.failed_at

        one = await client.reconcile(first.value)
        two = await client.reconcile(second.value)
        assert [new for new, _ in one.created] == processed
        assert not one.missing
        assert list(two.missing) == lost
        assert not two.created
        assert all(o.remote_order_id == n.remote_order_id for n, o in one.created)

        await client.create_orders(two.missing)
        now = datetime.now(UTC)
        remote = [
            o.remote_order_id
            async for o in client.orders(now - timedelta(hours=1), now + timedelta(minutes=1))
        ]
    assert sorted(remote) == sorted(o.remote_order_id for o in processed + lost)


async def test_reconcile_refuses_what_it_cannot_use() -> None:
    async with Sandbox(orders=10, days=1) as sandbox, client_for(sandbox) as client:
        with pytest.raises(Exception, match="create_orders"):
            await client.reconcile(OutcomeUnknownError("no orders here"))
        result = await client.find_created([NewOrder(order_number="no keys")], around=(OCT1, OCT1))
        assert len(result.unidentifiable) == 1
        with pytest.raises(Exception, match="order_date"):
            await client.find_created(shop_orders("x", 1))
        dated = NewOrder(remote_order_id="x", marketplace_code="tkpd", order_date=OCT1)
        assert (await client.find_created([dated])).missing == (dated,)


async def test_outcome_unknown_error_keeps_its_orders_through_pickle() -> None:
    import pickle

    error = OutcomeUnknownError(
        "m",
        method="POST",
        path="/v1/order",
        orders=shop_orders("p", 2),
        sent_at=OCT1,
        failed_at=OCT1,
    )
    copy = pickle.loads(pickle.dumps(error))
    assert copy.orders == error.orders
    assert copy.sent_at == OCT1


async def test_a_run_does_not_keep_the_batches_it_handed_out(tmp_path: Path) -> None:
    """Regression: a run kept every batch (for its count of uncommitted ones), so a long
    first run held the whole period's orders in memory."""
    import gc
    import weakref

    clock = Clock(OCT1 + timedelta(days=3))
    async with Sandbox(orders=2_000, days=3) as sandbox, client_for(sandbox) as client:
        sync = OrderSync(
            client, JSONFileCheckpoints(tmp_path / "s.json"), key="s", start=OCT1, now=clock
        )
        handed: list[weakref.ref[SyncBatch]] = []
        async with sync.run_once() as run:
            async for batch in run:
                handed.append(weakref.ref(batch))
                await batch.commit()
                del batch
                gc.collect()
                assert all(ref() is None for ref in handed[:-1])
        assert len(handed) > 20
        assert run.uncommitted == 0


# -- regressions found by review ---------------------------------------------------------


async def test_sqlite_refuses_an_async_write_instead_of_dropping_it(tmp_path: Path) -> None:
    store = SQLiteCheckpoints(tmp_path / "s.db")

    async def write(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE never (id INTEGER)")

    with pytest.raises(ConfigurationError, match="plain function"):
        await store.save("k", Checkpoint(watermark=OCT1, version=1), write=write)
    # A callable that returns an awaitable is caught in the transaction, rolled back.
    with pytest.raises(ConfigurationError, match="plain function"):
        await store.save("k", Checkpoint(watermark=OCT1, version=1), write=lambda db: write(db))
    assert await store.load("k") is None


async def test_commits_after_the_loop_count_until_the_run_is_closed(tmp_path: Path) -> None:
    clock = Clock(OCT1 + timedelta(days=2))
    async with Sandbox(orders=600, days=2) as sandbox, client_for(sandbox) as client:
        sync = OrderSync(
            client, JSONFileCheckpoints(tmp_path / "s.json"), key="s", start=OCT1, now=clock
        )
        async with sync.run_once() as run:
            batches = [batch async for batch in run]
            # Committed in background tasks, after the loop, out of order.
            await asyncio.gather(*(b.commit() for b in reversed(batches)))
        checkpoint = await sync.checkpoint()
        assert checkpoint is not None
        assert checkpoint.watermark == clock.now - timedelta(minutes=2)
        assert run.uncommitted == 0


async def test_a_window_skipped_while_a_commit_is_saved_stays_done(tmp_path: Path) -> None:
    """Regression: a commit replaced the run's map of done windows when its save ended,
    forgetting empty windows skipped meanwhile (the watermark lagged)."""
    release = asyncio.Event()

    class SlowStore(JSONFileCheckpoints):
        async def save(self, key: str, checkpoint: Checkpoint, *, write: object = None) -> None:
            await release.wait()
            await super().save(key, checkpoint)

    clock = Clock(OCT1 + timedelta(days=1))
    async with Sandbox(orders=3, days=1) as sandbox, client_for(sandbox) as client:
        sync = OrderSync(client, SlowStore(tmp_path / "s.json"), key="s", start=OCT1, now=clock)
        # The saves are held back while the run goes on past the empty hours (the run's
        # end waits for commits under way, so they are let go on a timer).
        asyncio.get_running_loop().call_later(0.3, release.set)
        async with sync.run_once() as run:
            commits = []
            async for batch in run:  # three orders, most hours empty
                commits.append(asyncio.create_task(batch.commit()))
                await asyncio.sleep(0)
            await asyncio.gather(*commits)
        checkpoint = await sync.checkpoint()
    assert checkpoint is not None
    assert checkpoint.watermark == clock.now - timedelta(minutes=2)


async def test_a_later_start_never_skips_the_gap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(OCT1 + timedelta(days=1))
    async with Sandbox(orders=1_000, days=4) as sandbox, client_for(sandbox) as client:
        store = SQLiteCheckpoints(tmp_path / "s.db")
        first = await drain(OrderSync(client, store, key="s", start=OCT1, now=clock))
        clock.now = OCT1 + timedelta(days=3)
        later = OrderSync(client, store, key="s", start=OCT1 + timedelta(days=2), now=clock)
        second = await drain(later)
    assert sorted(first + second) == sandbox.order_ids(OCT1, clock.now - timedelta(minutes=2))
    assert "start applies to a first run only" in caplog.text


async def test_run_forever_raises_what_the_handler_raised_and_stops_on_a_broken_store(
    tmp_path: Path,
) -> None:
    from connexi_async import BadRequestError

    clock = Clock(OCT1 + timedelta(days=1))
    async with Sandbox(orders=100, days=1) as sandbox, client_for(sandbox) as client:
        sync = OrderSync(
            client, JSONFileCheckpoints(tmp_path / "s.json"), key="s", start=OCT1, now=clock
        )

        async def handler(batch: SyncBatch) -> None:
            raise BadRequestError(status=400, method="PATCH", path="/v1/order")

        with pytest.raises(BadRequestError):
            await sync.run_forever(handler, interval=timedelta(milliseconds=10), max_cycles=3)
        assert sync.stats.errors == 0

        (tmp_path / "t.json").write_text("{broken")
        broken = OrderSync(
            client, JSONFileCheckpoints(tmp_path / "t.json"), key="s", start=OCT1, now=clock
        )
        with pytest.raises(SyncError, match="not a checkpoint file"):
            await broken.run_forever(
                _never_called, interval=timedelta(milliseconds=10), max_cycles=3
            )
