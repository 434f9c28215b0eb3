"""Sync under SIGKILL: workers and store writers killed at random points, then resumed.

These run real subprocesses against a sandbox served by the test's own loop; they take
some tens of seconds together.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import cli_env

from connexi_async.sandbox import FaultKind, Sandbox
from connexi_async.sync import JSONFileCheckpoints, SQLiteCheckpoints

OCT1 = datetime(2026, 10, 1, tzinfo=UTC)
WORKERS = Path(__file__).parent / "workers"
FAULTS = [
    FaultKind.SERVER_ERROR,
    FaultKind.UNAVAILABLE,
    FaultKind.DISCONNECT,
    FaultKind.TRUNCATE,
    FaultKind.RATE_LIMIT,
]
KILLS = 22


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


async def progressed(process: asyncio.subprocess.Process, watched: Path, lines: int) -> bool:
    """Wait until ``watched`` has grown by ``lines`` lines; False if the process ended first."""
    target = count_lines(watched) + lines
    while count_lines(watched) < target:
        try:
            await asyncio.wait_for(process.wait(), 0.005)
            return False
        except TimeoutError:
            pass
    return True


async def kill_after_progress(
    process: asyncio.subprocess.Process, watched: Path, lines: int, rng: random.Random
) -> bool:
    """SIGKILL ``process`` once ``watched`` has grown by ``lines`` lines, plus a random
    sliver of time, so kills land anywhere: mid-request, mid-write, mid-commit. False if
    the process ended first."""
    if not await progressed(process, watched, lines):
        return False
    await asyncio.sleep(rng.random() * 0.02)
    if process.returncode is not None:
        return False
    process.send_signal(signal.SIGKILL)
    await process.wait()
    return True


@pytest.mark.parametrize("store", ["state.db"])
async def test_a_worker_killed_again_and_again_loses_nothing(tmp_path: Path, store: str) -> None:
    now = OCT1 + timedelta(days=10)
    log = tmp_path / "delivered.jsonl"
    rng = random.Random(2026)
    async with Sandbox(orders=12_000, days=10, latency_ms=15, retry_after=0) as sandbox:
        sandbox.faults.rate("GET /v1/order", 0.1, kinds=FAULTS, seed=11)
        args = [
            str(WORKERS / "sync_worker.py"),
            sandbox.base_url,
            sandbox.credentials["api_key"],
            sandbox.credentials["api_secret"],
            str(tmp_path / store),
            str(log),
            now.isoformat(),
        ]
        kills = 0
        finished = False
        for _ in range(200):
            process = await asyncio.create_subprocess_exec(sys.executable, *args)
            if kills < KILLS:
                killed = await kill_after_progress(process, log, rng.randint(1, 12), rng)
                if killed:
                    kills += 1
                    continue
            assert await asyncio.wait_for(process.wait(), 300) == 0
            finished = True
            break
        assert finished
        expected = sandbox.order_ids(OCT1, now - timedelta(minutes=2))
        faults = sum(sandbox.recorder.faults.values())

    batches: list[dict[str, object]] = []
    committed: set[tuple[int, str]] = set()
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if "committed" in entry:
            committed.add((entry["pid"], entry["committed"]))
        else:
            batches.append(entry)
    by_pid: dict[int, list[dict[str, object]]] = {}
    for batch in batches:
        by_pid.setdefault(batch["pid"], []).append(batch)  # type: ignore[arg-type]

    # Only a process's last batch can lack its commit: the one it was killed over.
    unconfirmed = []
    for pid, own in by_pid.items():
        for batch in own[:-1]:
            assert (pid, batch["window"]) in committed
        if (pid, own[-1]["window"]) not in committed:
            unconfirmed.append(own[-1])
    assert len(unconfirmed) <= kills

    delivered = Counter(i for b in batches for i in b["ids"])  # type: ignore[attr-defined]
    confirmed = Counter(
        i
        for b in batches
        if (b["pid"], b["window"]) in committed
        for i in b["ids"]  # type: ignore[attr-defined]
    )
    assert sorted(delivered) == expected  # nothing lost, nothing foreign
    assert max(confirmed.values()) == 1  # a committed order is never delivered again
    duplicates = sum(delivered.values()) - len(delivered)
    at_risk = sum(len(b["ids"]) for b in unconfirmed)  # type: ignore[arg-type]
    assert duplicates <= at_risk
    print(
        f"{kills} kills, {faults} faults, {len(expected)} orders, "
        f"{duplicates} delivered twice (at most {at_risk} at risk)"
    )
    assert kills >= 20


@pytest.mark.parametrize("name", ["state.json", "state.db"])
async def test_a_store_killed_mid_write_stays_readable_and_never_goes_back(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    store = JSONFileCheckpoints(path) if name.endswith(".json") else SQLiteCheckpoints(path)
    rng = random.Random(7)
    last = 0
    for _ in range(15):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKERS / "store_writer.py"),
            str(path),
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 60) == b"ready\n"
        await asyncio.sleep(rng.uniform(0.01, 0.25))
        process.send_signal(signal.SIGKILL)
        await process.wait()
        checkpoint = await store.load("k")
        assert checkpoint is not None
        version = checkpoint.version
        assert version >= last
        # Every part of it belongs to one and the same save.
        assert checkpoint.meta == {"version": version}
        assert checkpoint.watermark == OCT1 + timedelta(seconds=version)
        ((end, ids),) = checkpoint.delivered
        assert end == checkpoint.watermark
        assert ids == tuple(range(version * 10_000, version * 10_000 + 5_000))
        last = version
    assert last > 15
    leftovers = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert len(leftovers) <= 1  # at most the temp file of the write a kill cut short


# -- the command line ----------------------------------------------------------------------


async def sync_cli(
    sandbox: Sandbox, *args: str, stderr: int | None = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connexi_async", "sync", *args,
        stdout=asyncio.subprocess.PIPE, stderr=stderr, env=cli_env(sandbox),
    )  # fmt: skip


def committed_bytes(checkpoint_file: Path) -> int:
    state = json.loads(checkpoint_file.read_text())
    size: int = state["keys"]["orders"]["meta"]["output_bytes"]
    return size


async def test_cli_sync_file_always_matches_its_checkpoint(tmp_path: Path) -> None:
    """Killed with SIGKILL, stopped with SIGTERM, resumed: every order in the file once."""
    output, checkpoint = tmp_path / "orders.jsonl", tmp_path / "state.json"
    args = ["--checkpoint", str(checkpoint), "-o", str(output), "--since", "2026-10-01"]
    args += ["--window", "2h", "--concurrency", "2"]
    rng = random.Random(3)
    async with Sandbox(orders=6_000, days=6, latency_ms=10) as sandbox:
        sandbox.faults.rate("GET /v1/order", 0.1, kinds=FAULTS, seed=5)
        kills = 0
        for _ in range(40):
            process = await sync_cli(sandbox, *args, stderr=asyncio.subprocess.DEVNULL)
            if not await kill_after_progress(process, output, rng.randint(100, 2_000), rng):
                break
            kills += 1
            if kills == 6:
                break
        # SIGTERM: stops after the window under way, file and checkpoint in agreement.
        process = await sync_cli(sandbox, *args)
        if await progressed(process, output, 300):
            process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode in (143, 0), err
        if process.returncode == 143:
            assert b"agree" in err
        assert output.stat().st_size == committed_bytes(checkpoint)

        process = await sync_cli(sandbox, *args)
        _, err = await asyncio.wait_for(process.communicate(), 300)
        assert process.returncode == 0, err
        assert output.stat().st_size == committed_bytes(checkpoint)
        ids = [json.loads(line)["id"] for line in output.read_text().splitlines()]
        expected = sandbox.order_ids(OCT1, datetime.now(UTC) - timedelta(minutes=2))

        # Late orders filed inside the lookback come with the next run, once.
        late = sandbox.add_orders(
            [__import__("connexi_async").NewOrder(remote_order_id="late", marketplace_code="shpe")],
            created_at=datetime.now(UTC) - timedelta(hours=1),
        )
        process = await sync_cli(sandbox, *args)
        _, err = await asyncio.wait_for(process.communicate(), 300)
        assert process.returncode == 0, err
        assert b"1 new order appended" in err
    assert kills >= 3
    assert sorted(ids) == expected
    lines = output.read_text().splitlines()
    assert json.loads(lines[-1])["id"] == late[0].id
    assert len(lines) == len(expected) + 1


async def test_a_cancellation_during_the_append_leaves_the_file_as_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a SIGTERM (a cancellation) that came while a window was being appended
    in its thread left the window in the file, uncommitted, while the command said file
    and checkpoint agree."""
    from connexi_async import Order
    from connexi_async.cli._sync import SyncOutput

    output = SyncOutput(str(tmp_path / "orders.jsonl"), str(tmp_path / "state.json"), "orders")
    real_append = SyncOutput._append
    started = threading.Event()

    def slow_append(self: SyncOutput, data: bytes) -> None:
        started.set()
        time.sleep(0.3)  # the cancellation arrives meanwhile
        real_append(self, data)

    monkeypatch.setattr(SyncOutput, "_append", slow_append)

    class Batch:
        def __init__(self) -> None:
            self.records = [Order(id=n) for n in range(1, 50)]
            self.committed = False

        async def commit(self, meta: object) -> None:  # pragma: no cover - never reached
            self.committed = True

    task = asyncio.create_task(output.write(Batch()))  # type: ignore[arg-type]
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert os.path.getsize(output.path) == 0  # noqa: ASYNC240 - cut back to what is committed
    assert output.size == 0
