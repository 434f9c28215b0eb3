"""The event loop stays responsive: no step of ours holds it long, whatever the density.

The sandbox runs in this same loop here (as in the pytest plugin and ``--sandbox``), so
serving, encoding and decoding all share it with a 2 ms ticker. The bounds are generous
(100 ms against a design of a few ms): they catch a whole window decoded in one go, not
a slow machine. The figures themselves are measured by ``make bench``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connexi_async import (
    Accept,
    ConnexiClient,
    NewLineItem,
    NewOrder,
    NewPartnerOrder,
    PartnerClient,
)
from connexi_async.sandbox import Sandbox

OCT1 = datetime(2026, 10, 1, tzinfo=UTC)
GENEROUS = 0.100


@asynccontextmanager
async def ticker(period: float = 0.002) -> AsyncIterator[list[float]]:
    """Lateness of a periodic task in this loop, one sample per tick."""
    lateness: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        due = time.perf_counter() + period
        while not stop.is_set():
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            now = time.perf_counter()
            lateness.append(now - due)
            due = now + period

    task = asyncio.create_task(tick())
    try:
        yield lateness
    finally:
        stop.set()
        await task


@pytest.fixture
def frozen_heap() -> Iterator[None]:
    """What the test process already holds (other tests' objects, imports) is frozen out
    of the garbage collector's walks: a collection walks every live object, so its pause
    measures the heap, not a step of ours (docs/web-apps.md)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.usefixtures("frozen_heap")
async def test_a_dense_period_never_stalls_the_loop() -> None:
    async with Sandbox(orders=16_000, days=2) as sandbox:
        async with ConnexiClient(**sandbox.credentials) as client, ticker() as lateness:
            ids = [o.id async for o in client.orders(OCT1, OCT1 + timedelta(days=2))]
            orders = await client.fetch_orders(OCT1, OCT1 + timedelta(days=1))
            trees = [t async for t in client.stock_locations(OCT1, OCT1 + timedelta(days=2))]
        assert ids == sandbox.order_ids(OCT1, OCT1 + timedelta(days=2))
        assert len(orders) > 7_000
        assert trees
    assert len(lateness) > 100
    assert max(lateness) < GENEROUS, f"the loop stalled {max(lateness) * 1000:.0f} ms"


@pytest.mark.usefixtures("frozen_heap")
async def test_dense_batches_and_a_sync_never_stall_the_loop(tmp_path: Path) -> None:
    """Batches are built in slices, checkpoints are (de)serialised off the loop."""
    from connexi_async.sync import OrderSync, SQLiteCheckpoints

    async with Sandbox(orders=16_000, days=2) as sandbox:
        async with ConnexiClient(**sandbox.credentials) as client, ticker() as lateness:
            since, until = OCT1, OCT1 + timedelta(days=2)
            # A batch holds its window's models at once: windows of hundreds of orders
            # (see docs/web-apps.md on batch sizes), as the sync's default of an hour gives.
            async with client.orders(since, until, window=timedelta(hours=2)) as stream:
                sizes = [len(b) async for b in stream.batches()]
            sync = OrderSync(
                client,
                SQLiteCheckpoints(tmp_path / "s.db"),
                key="s",
                start=OCT1,
                now=lambda: until + timedelta(minutes=2),
                window=timedelta(hours=2),
                lookback=timedelta(days=1),
            )
            async with sync.run_once() as run:
                async for batch in run:
                    await batch.commit()
        assert sum(sizes) == 16_000
        assert sync.stats.records == 16_000
    assert max(lateness) < GENEROUS, f"the loop stalled {max(lateness) * 1000:.0f} ms"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_the_command_line_writing_a_dense_period_never_stalls_the_loop(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``connexi-async orders`` in this loop (as with ``--sandbox``), to a file."""
    from connexi_async.cli import build_parser

    target = tmp_path / f"orders.{fmt}"
    async with Sandbox(orders=16_000, days=2) as sandbox:
        credentials = sandbox.credentials
        args = build_parser().parse_args(
            ["orders", "--since", "2026-10-01", "--until", "2026-10-03", "--format", fmt,
             "-o", str(target), "--base-url", credentials["base_url"],
             "--api-key", credentials["api_key"], "--api-secret", credentials["api_secret"]]
        )  # fmt: skip
        async with ticker() as lateness:
            code = await args.handler(args)
    assert code == 0, capsys.readouterr().err
    lines = target.read_text().splitlines()
    assert len(lines) == 16_000 + (fmt == "csv")  # a CSV has its header too
    assert len(lateness) > 100
    assert max(lateness) < GENEROUS, f"the loop stalled {max(lateness) * 1000:.0f} ms"


@pytest.mark.usefixtures("frozen_heap")
async def test_large_write_batches_never_stall_the_loop() -> None:
    batch = [
        NewOrder(
            remote_order_id=f"R{i}",
            marketplace_code="bklp",
            delivery_name="Budi Santoso",
            line_items=(NewLineItem(sku="KAOS-01", name="Kaos Polos", quantity=2),),
        )
        for i in range(5_000)
    ]
    async with (
        Sandbox(orders=100, days=1) as sandbox,
        ConnexiClient(**sandbox.credentials, max_batch=5_000, timeout=600) as client,
        ticker() as lateness,
    ):
        created = await client.create_orders(batch)
        updated = await client.update_order_statuses([(o.id, "accepted") for o in created])
    assert len(created) == len(updated) == 5_000
    assert max(lateness) < GENEROUS, f"the loop stalled {max(lateness) * 1000:.0f} ms"


@pytest.fixture
def collector_paused() -> Iterator[None]:
    """The garbage collector paused: what is measured is our steps. Its collections walk
    every object alive, whatever triggered them (docs/web-apps.md says how to keep
    them short); a test that creates thousands of models would
    measure the heap, not a step of ours."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("collector_paused")
async def test_large_partner_writes_never_stall_the_loop() -> None:
    """2,000 partner orders created (and, after a lost answer, looked up and settled)
    and 2,000 status changes, the sandbox serving in the same loop."""
    from test_partner_writes import new_order

    def batch(prefix: str) -> list[NewPartnerOrder]:
        return [
            new_order(i, order_id=f"{prefix}-{i}", when=OCT1 + timedelta(seconds=i))
            for i in range(2_000)
        ]

    async with (
        Sandbox(orders=100, days=1) as sandbox,
        PartnerClient(**sandbox.partner_credentials, max_batch=2_000, timeout=600) as client,
    ):
        first, second = batch("BIG"), batch("LOST")
        async with ticker() as lateness:
            created = await client.create_orders(first)
        assert len(created.created) == 2_000
        assert max(lateness) < GENEROUS, f"create stalled {max(lateness) * 1000:.0f} ms"
        changes = [Accept.of(order) for order in created.created]
        async with ticker() as lateness:
            changed = await client.change_statuses(changes)
        assert len(changed.succeeded) == 2_000
        assert max(lateness) < GENEROUS, f"changes stalled {max(lateness) * 1000:.0f} ms"
        sandbox.faults.script("POST /v1/partner/order", "disconnect_after")
        async with ticker() as lateness:
            settled = await client.create_orders(second, on_unknown="reconcile")
        assert len(settled.created) == 2_000
        assert max(lateness) < GENEROUS, f"reconcile stalled {max(lateness) * 1000:.0f} ms"


# The heap frozen as for the tests above: on Python 3.13 a full collection walking what
# the earlier tests left alive took 84 ms inside one of this test's steps (it passed alone
# and with the collector off).
@pytest.mark.usefixtures("frozen_heap")
async def test_asyncio_debug_mode_sees_no_slow_step(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.05
    caplog.set_level(logging.WARNING, logger="asyncio")
    try:
        async with (
            Sandbox(orders=8_000, days=1) as sandbox,
            ConnexiClient(**sandbox.credentials) as client,
        ):
            count = 0
            async for _ in client.orders(OCT1, OCT1 + timedelta(days=1)):
                count += 1
        assert count == 8_000
    finally:
        loop.set_debug(False)
    slow = [r.getMessage() for r in caplog.records if "Executing" in r.getMessage()]
    assert slow == []
