"""Windowed streams against the sandbox: exactly once, bounded, ordered, cancellable."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
from datetime import UTC, datetime, timedelta

import pytest
from support import client_for, serve_inclusive_end

from connexi_async import (
    ConnexiClient,
    Location,
    Order,
    WindowError,
    WindowTooDenseError,
)
from connexi_async.sandbox import RETRYABLE_FAULTS, FaultKind, Sandbox

OCT1 = datetime(2026, 10, 1, tzinfo=UTC)


def pin_orders_to(sandbox: Sandbox, edges: list[datetime]) -> None:
    """Move the first order at or after each edge exactly onto it (order stays sorted)."""
    instants = sandbox.dataset.instants
    for edge in edges:
        micros = int(edge.timestamp()) * 1_000_000
        index = bisect.bisect_left(instants, micros)
        if index < len(instants):
            instants[index] = micros


async def collect(stream: object) -> list[Order]:
    async with stream as s:  # type: ignore[attr-defined]
        return [o async for o in s]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(
    ("width", "concurrency", "ordered"),
    [
        (timedelta(days=1), 8, True),
        (timedelta(hours=1), 16, False),
        (timedelta(hours=5), 1, True),
        (timedelta(minutes=90), 4, False),
    ],
)
async def test_exactly_once(seed: int, width: timedelta, concurrency: int, ordered: bool) -> None:
    since, until = OCT1 + timedelta(hours=3), OCT1 + timedelta(days=9, hours=1)
    async with Sandbox(orders=3_000, seed=seed, days=10) as sandbox, client_for(sandbox) as client:
        pin_orders_to(
            sandbox, [since + k * width for k in range(1, 500) if since + k * width < until]
        )
        stream = client.orders(since, until, window=width, concurrency=concurrency, ordered=ordered)
        ids = [o.id for o in await collect(stream)]
        expected = sandbox.order_ids(since, until)
        assert len(ids) == len(set(ids))
        if ordered:
            assert ids == expected
        else:
            assert sorted(ids) == sorted(expected)
        assert stream.stats.records_yielded == len(expected)
        assert stream.stats.windows_done == stream.stats.windows_planned
        # Orders sitting exactly on window edges are among them.
        edges = {since + k * width for k in range(1, 500)}
        on_edge = [o for o in sandbox.dataset.between(since, until) if o.created_at in edges]
        assert on_edge
        assert {o.id for o in on_edge} <= set(ids)


async def test_inclusive_end_server_duplicates_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that treats ``end`` as inclusive sends boundary orders twice: yielded once."""
    inclusive = serve_inclusive_end(monkeypatch)
    next(inclusive)
    since, until = OCT1, OCT1 + timedelta(days=5)
    async with Sandbox(orders=2_000, days=5) as sandbox, client_for(sandbox) as client:
        for ordered in (True, False):
            stream = client.orders(since, until, window=timedelta(hours=1), ordered=ordered)
            ids = [o.id for o in await collect(stream)]
            assert len(ids) == len(set(ids))
            assert stream.stats.duplicates_dropped > 0
        next(inclusive, None)
        assert sorted(ids) == sorted(sandbox.order_ids(since, until))


async def test_page_cap_splits_a_dense_hour() -> None:
    burst = OCT1 + timedelta(days=2, hours=5)
    async with Sandbox(
        orders=2_000, days=5, burst_at=burst, burst_orders=5_000, cap=500
    ) as sandbox:
        async with client_for(sandbox) as client:
            since, until = OCT1, OCT1 + timedelta(days=5)
            stream = client.orders(
                since, until, window=timedelta(days=1), page_cap=500, concurrency=4
            )
            ids = [o.id for o in await collect(stream)]
        assert ids == sandbox.order_ids(since, until)
        assert len(ids) == 7_000
        assert stream.stats.windows_split > 0
        assert sandbox.recorder.max_in_flight <= 4


async def test_window_still_full_at_one_second_is_an_error() -> None:
    async with Sandbox(orders=100, days=1, cap=1) as sandbox, client_for(sandbox) as client:
        # Two orders in the same second cannot be told apart with a cap of one.
        sandbox.dataset.instants[1] = sandbox.dataset.instants[0]
        first = sandbox.dataset.get(1)
        assert first is not None
        assert first.created_at is not None
        since = first.created_at.replace(microsecond=0)
        with pytest.raises(WindowTooDenseError) as info:
            await collect(client.orders(since, since + timedelta(seconds=4), page_cap=1))
        assert info.value.end - info.value.start == timedelta(seconds=1)
        assert "minimum width of one second" in str(info.value)


async def test_fault_rate_gives_the_fault_free_result() -> None:
    since, until = OCT1, OCT1 + timedelta(days=10)
    async with Sandbox(orders=3_000, days=10, stall_seconds=0.6) as sandbox:
        async with client_for(sandbox) as client:
            clean = [o async for o in client.orders(since, until, window=timedelta(hours=12))]
        sandbox.faults.rate("GET", 0.1, kinds=RETRYABLE_FAULTS, seed=42)
        async with client_for(sandbox, read_timeout=0.2, max_attempts=8) as client:
            stream = client.orders(since, until, window=timedelta(hours=12), ordered=False)
            faulty = await collect(stream)
        assert sorted(faulty, key=lambda o: o.id) == sorted(clean, key=lambda o: o.id)
        assert sum(sandbox.recorder.faults.values()) > 0
        assert stream.stats.retries == sum(sandbox.recorder.faults.values())


@pytest.mark.parametrize("concurrency", [1, 3, 8])
async def test_concurrency_bound_holds(concurrency: int) -> None:
    async with (
        Sandbox(orders=2_000, days=10, latency_ms=20) as sandbox,
        client_for(sandbox) as client,
    ):
        await collect(
            client.orders(
                OCT1, OCT1 + timedelta(days=10), window=timedelta(hours=6), concurrency=concurrency
            )
        )
        assert sandbox.recorder.max_in_flight == concurrency


async def test_concurrency_never_exceeds_the_pool() -> None:
    async with Sandbox(orders=500, days=5, latency_ms=20) as sandbox:
        async with client_for(sandbox, max_connections=2) as client:
            stream = client.orders(
                OCT1, OCT1 + timedelta(days=5), window=timedelta(hours=6), concurrency=16
            )
            assert stream.concurrency == 2
            await collect(stream)
        assert sandbox.recorder.max_in_flight <= 2


async def test_backpressure_slow_consumer_does_not_fetch_ahead() -> None:
    async with Sandbox(orders=2_000, days=20) as sandbox, client_for(sandbox) as client:
        async with client.orders(OCT1, OCT1 + timedelta(days=20), concurrency=2) as stream:
            async for _ in stream:
                await asyncio.sleep(0.05)  # a slow consumer, still on the first window
                break_point = sandbox.recorder.count("GET")
                break
        # Only the windows allowed in flight were requested: not the whole period.
        assert break_point <= 3


def stream_tasks() -> int:
    """Tasks of our streams still alive (the sandbox's own server tasks share the loop)."""
    return sum(
        1
        for task in asyncio.all_tasks()
        if "RecordStream" in getattr(task.get_coro(), "__qualname__", "")
    )


def _connections(client: ConnexiClient) -> int:
    session = client._transport._own_session
    if session is None or session.connector is None:
        return 0
    connector = session.connector
    return len(connector._acquired)  # connections checked out right now


async def test_early_break_leaves_nothing_running() -> None:
    async with (
        Sandbox(orders=3_000, days=10, latency_ms=30) as sandbox,
        client_for(sandbox) as client,
    ):
        before = 0
        async with client.orders(
            OCT1, OCT1 + timedelta(days=10), window=timedelta(hours=2)
        ) as stream:
            async for _ in stream:
                break
        await asyncio.sleep(0)
        assert stream_tasks() == before
        assert _connections(client) == 0
        # An exception in the consumer's own loop, via contextlib.aclosing.
        with pytest.raises(RuntimeError, match="consumer failed"):
            async with contextlib.aclosing(client.orders(OCT1, OCT1 + timedelta(days=10))) as s:
                async for _ in s:
                    raise RuntimeError("consumer failed")
        assert stream_tasks() == before
        # The client stays usable.
        assert len(await collect(client.orders(OCT1, OCT1 + timedelta(days=1)))) > 0


async def test_plain_break_without_context_is_cleaned_up() -> None:
    async with (
        Sandbox(orders=1_000, days=5, latency_ms=30) as sandbox,
        client_for(sandbox) as client,
    ):
        before = 0
        async for _ in client.orders(OCT1, OCT1 + timedelta(days=5), window=timedelta(hours=2)):
            break
        gc.collect()
        for _ in range(20):
            await asyncio.sleep(0.01)
            if stream_tasks() == before:
                break
        assert stream_tasks() == before


async def test_cancellation_under_asyncio_timeout() -> None:
    async with (
        Sandbox(orders=1_000, days=5, latency_ms=200) as sandbox,
        client_for(sandbox) as client,
    ):
        before = 0
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await collect(
                    client.orders(OCT1, OCT1 + timedelta(days=5), window=timedelta(hours=2))
                )
        assert stream_tasks() == before
        assert _connections(client) == 0
        sandbox.latency_ms = 0
        assert await collect(client.orders(OCT1, OCT1 + timedelta(days=1)))


async def test_task_cancellation_of_the_consumer() -> None:
    async with (
        Sandbox(orders=1_000, days=5, latency_ms=100) as sandbox,
        client_for(sandbox) as client,
    ):
        before = 0
        consumer = asyncio.create_task(collect(client.orders(OCT1, OCT1 + timedelta(days=5))))
        await asyncio.sleep(0.05)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert stream_tasks() == before


async def test_failing_window_propagates_with_its_bounds() -> None:
    async with (
        Sandbox(orders=1_000, days=5) as sandbox,
        client_for(sandbox, max_attempts=2) as client,
    ):
        sandbox.faults.script("GET", *[FaultKind.UNAVAILABLE] * 2)
        before = 0
        got: list[Order] = []
        with pytest.raises(WindowError) as info:
            async with client.orders(OCT1, OCT1 + timedelta(days=5), concurrency=1) as stream:
                async for order in stream:
                    got.append(order)
        assert got == []
        assert info.value.start == OCT1
        assert info.value.end == OCT1 + timedelta(days=1)
        assert "[2026-10-01T00:00:00Z, 2026-10-02T00:00:00Z)" in str(info.value)
        assert info.value.__cause__ is not None
        assert "503" in str(info.value)
        assert stream_tasks() == before


async def test_stock_locations_whole_and_windowed() -> None:
    async with Sandbox(orders=100, days=10) as sandbox, client_for(sandbox) as client:
        (tree,) = [loc async for loc in client.stock_locations()]
        assert isinstance(tree, Location)
        assert tree.find("ID-JK0101") is not None
        stream = client.stock_locations(OCT1, OCT1 + timedelta(days=10), window=timedelta(days=2))
        trees = await collect(stream)
        districts = {
            loc.location_code for t in trees for loc in t.walk() if len(loc.location_code) == 9
        }
        all_districts = {loc.location_code for loc in tree.walk() if len(loc.location_code) == 9}
        assert districts == all_districts
        assert stream.stats.windows_done == 5


async def test_stats_count_bytes_and_windows() -> None:
    async with Sandbox(orders=500, days=3) as sandbox, client_for(sandbox) as client:
        stream = client.orders(OCT1, OCT1 + timedelta(days=3))
        assert stream.stats.windows_planned == 3
        orders = await collect(stream)
        assert stream.stats.windows_fetched == 3
        assert stream.stats.records_yielded == len(orders) == 500
        assert stream.stats.bytes_read > 500 * 1000
        assert "windows 3/3" in repr(stream)


async def test_completed_until_tracks_the_contiguous_prefix() -> None:
    async with Sandbox(orders=500, days=4) as sandbox, client_for(sandbox) as client:
        for ordered in (True, False):
            async with client.orders(OCT1, OCT1 + timedelta(days=4), ordered=ordered) as stream:
                assert stream.completed_until is None
                async for _ in stream:
                    pass
                assert stream.completed_until == OCT1 + timedelta(days=4)
        async with client.orders(OCT1, OCT1 + timedelta(days=4), concurrency=1) as stream:
            first_day = len(sandbox.order_ids(OCT1, OCT1 + timedelta(days=1)))
            seen = 0
            async for _ in stream:
                seen += 1
                if seen == first_day + 1:  # the first record of the second day
                    break
            assert stream.completed_until == OCT1 + timedelta(days=1)


async def test_whole_tree_failure_is_the_plain_error() -> None:
    from connexi_async import ServerError

    async with Sandbox(orders=10) as sandbox, client_for(sandbox, max_attempts=1) as client:
        sandbox.faults.script("GET /v1/product/stocks", FaultKind.UNAVAILABLE)
        with pytest.raises(ServerError):
            await collect(client.stock_locations())
