"""``make bench``: connexi-async against hand-written aiohttp code, side by side.

The sandbox runs in a separate process (pinned to its own core when the machine has two),
so client and server do not share one core's time slices. Every figure is the median of
several rounds with min and max; every ratio is taken inside this run. Results go to
``benchmarks/results.json`` and a table on stdout.

    .venv/bin/python benchmarks/run.py            # everything (a few minutes)
    .venv/bin/python benchmarks/run.py --quick    # fewer rounds, smaller memory run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))

import decode as decode_bench
from fleet import workload_fleet
from report import markdown, table

from connexi_async import ConnexiClient, Order, decode_orders
from connexi_async.sandbox import RETRYABLE_FAULTS

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
AUTH = {"api_key": "sandbox-key", "api_secret": "sandbox-secret"}
RESULTS = Path(__file__).parent / "results.json"


# -- the sandbox in its own process ----------------------------------------------------


class Server:
    """``python -m connexi_async.sandbox`` in a child process, on a core of its own."""

    def __init__(self, orders: int, days: float = DAYS, **flags: object) -> None:
        args = [sys.executable, "-m", "connexi_async.sandbox", "--port", "0"]
        args += ["--orders", str(orders), "--days", str(days), "--seed", "7"]
        args += ["--cache-mb", "1024"]  # every window encoded once, then served from memory
        for name, value in flags.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.process.stdout is not None
        lines = [self.process.stdout.readline() for _ in range(4)]
        self.base_url = next(
            line.split("=", 1)[1].strip() for line in lines if line.startswith("CONNEXI_BASE_URL=")
        )
        self.orders = orders
        if CPUS >= 2:
            os.sched_setaffinity(self.process.pid, {1})

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)


CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def placement() -> str:
    if CPUS >= 2:
        os.sched_setaffinity(0, {0})
        return "sandbox process pinned to CPU 1, benchmark client pinned to CPU 0"
    return "sandbox and client share the only CPU (results understate the client)"


# -- windows and contenders -------------------------------------------------------------


def windows(count: int) -> list[tuple[datetime, datetime]]:
    width = timedelta(days=DAYS) / count
    return [(START + i * width, START + (i + 1) * width) for i in range(count)]


def _param(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _get(
    session: aiohttp.ClientSession, base: str, window: tuple[datetime, datetime]
) -> bytes:
    params = {"start": _param(window[0]), "end": _param(window[1])}
    async with session.get(base + "/v1/order", params=params, headers=AUTH) as response:
        response.raise_for_status()
        return await response.read()


async def hand_written(
    base: str, plan: list[tuple[datetime, datetime]], concurrency: int, typed: bool
) -> AsyncIterator[Any]:
    """What a careful user writes: a bounded sliding window of tasks, yielded in order."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        pending: deque[asyncio.Task[bytes]] = deque()
        todo = iter(plan)
        for window in todo:
            pending.append(asyncio.ensure_future(_get(session, base, window)))
            if len(pending) >= concurrency:
                break
        while pending:
            body = await pending.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(asyncio.ensure_future(_get(session, base, nxt)))
            for record in json.loads(body)["orders"]:
                yield decode_bench.hand_written_order(record) if typed else record


async def naive_sequential(
    base: str, plan: list[tuple[datetime, datetime]]
) -> AsyncIterator[Order]:
    """What a user writes first: one window after the other, typed by hand."""
    async with aiohttp.ClientSession() as session:
        for window in plan:
            for record in json.loads(await _get(session, base, window))["orders"]:
                yield decode_bench.hand_written_order(record)


async def with_client(
    base: str, plan: list[tuple[datetime, datetime]], concurrency: int, **options: Any
) -> AsyncIterator[Order]:
    width = plan[0][1] - plan[0][0]
    async with (
        ConnexiClient(
            api_key=AUTH["api_key"], api_secret=AUTH["api_secret"], base_url=base, **options
        ) as client,
        client.orders(plan[0][0], plan[-1][1], window=width, concurrency=concurrency) as stream,
    ):
        async for order in stream:
            yield order


async def consume(
    records: AsyncIterator[Any], keep_ids: bool = False
) -> tuple[float, int, list[int]]:
    started = time.perf_counter()
    count, ids = 0, []
    async for record in records:
        count += 1
        if keep_ids:
            ids.append(record.id if isinstance(record, Order) else record["id"])
    return time.perf_counter() - started, count, ids


def summarise(values: list[float]) -> dict[str, float]:
    return {"value": statistics.median(values), "min": min(values), "max": max(values)}


# -- workloads ---------------------------------------------------------------------------


def workload_decode(rounds: int) -> list[dict[str, Any]]:
    result = decode_bench.run(rounds=rounds)
    params = {
        "orders": result["orders"],
        "bytes_per_order": result["bytes_per_order"],
        "rounds": rounds,
    }
    rows = []
    for name in ("json.loads", "hand-written", "pydantic v2", "decode_orders"):
        if name not in result:
            continue
        r = result[name]
        rows.append(
            {
                "name": f"decode: {name}",
                "value": r["median"],
                "min": r["min"],
                "max": r["max"],
                "unit": "orders/s",
                "params": params,
            }
        )
    rows.append(
        per_round(
            "decode: decode_orders / hand-written", result["rounds_vs_hand_written"], 2.0, params
        )
    )
    if "rounds_vs_pydantic" in result:
        rows.append(
            per_round(
                "decode: decode_orders / pydantic v2", result["rounds_vs_pydantic"], 1.6, params
            )
        )
    rows.append(
        {
            "name": "decode: decode_orders / json.loads",
            "value": result["ratio_vs_json_loads"],
            "unit": "ratio",
            "params": params,
        }
    )
    return rows


def per_round(
    name: str, ratios: list[float], target: float, params: dict[str, Any]
) -> dict[str, Any]:
    """A ratio measured side by side in each round: met only if it held in every round."""
    return {
        "name": name,
        "value": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "unit": "ratio",
        "target": f">= {target} every round",
        "met": min(ratios) >= target,
        "params": {**params, "rounds": [round(r, 3) for r in ratios]},
    }


async def workload_throughput(orders: int, rounds: int, faults: bool) -> list[dict[str, Any]]:
    plan = windows(max(1, orders // 1000))
    params = {"orders": orders, "windows": len(plan), "concurrency": 8, "rounds": rounds}
    with (
        Server(orders) as clean,
        Server(
            orders,
            fault_rate=0.1,
            fault_kinds=",".join(RETRYABLE_FAULTS),
            retry_after=0,
            stall_seconds=2,
            fault_seed=3,
        ) as faulty,
    ):
        fault_options = {
            "read_timeout": 0.5,
            "backoff_base": 0.01,
            "backoff_max": 0.1,
            "max_attempts": 10,
        }
        # Warm-up: the sandbox generates each window on first request, then serves it cached.
        await consume(hand_written(clean.base_url, plan, 8, typed=False))
        if faults:
            await consume(with_client(faulty.base_url, plan, 8, **fault_options))
        contenders: dict[str, Callable[[], AsyncIterator[Any]]] = {
            "client.orders()": lambda: with_client(clean.base_url, plan, 8),
            "hand-written dicts (untyped ceiling)": lambda: hand_written(
                clean.base_url, plan, 8, typed=False
            ),
            "hand-written typed": lambda: hand_written(clean.base_url, plan, 8, typed=True),
            "naive sequential typed": lambda: naive_sequential(clean.base_url, plan),
        }
        if faults:
            contenders["client.orders() with 10% faults"] = lambda: with_client(
                faulty.base_url, plan, 8, **fault_options
            )
        times: dict[str, list[float]] = {name: [] for name in contenders}  # orders/s
        ids: dict[str, list[int]] = {}
        for _ in range(rounds):
            for name, make in contenders.items():
                elapsed, count, got = await consume(make(), keep_ids=name.startswith("client"))
                assert count == orders, (name, count)
                times[name].append(orders / elapsed)
                if got:
                    ids[name] = got
    rows = [
        {"name": f"throughput: {name}", **summarise(rates), "unit": "orders/s", "params": params}
        for name, rates in times.items()
    ]
    med = {name: statistics.median(rates) for name, rates in times.items()}
    client = med["client.orders()"]

    def rounds_vs(other: str) -> list[float]:
        return [c / o for c, o in zip(times["client.orders()"], times[other], strict=True)]

    rows.append(
        per_round(
            "throughput: client / hand-written typed", rounds_vs("hand-written typed"), 1.3, params
        )
    )
    rows.append(
        per_round(
            "throughput: client / untyped ceiling",
            rounds_vs("hand-written dicts (untyped ceiling)"),
            0.6,
            params,
        )
    )
    rows.append(
        {
            "name": "throughput: client / naive sequential",
            "value": client / med["naive sequential typed"],
            "unit": "ratio",
            "params": params,
        }
    )
    if faults:
        ratio = med["client.orders() with 10% faults"] / client
        same = ids["client.orders() with 10% faults"] == ids["client.orders()"]
        rows.append(
            {
                "name": "faults: throughput with 10% faults / fault-free",
                "value": ratio,
                "unit": "ratio",
                "target": ">= 0.7, same ids",
                "met": ratio >= 0.7 and same,
                "params": {
                    **params,
                    "fault_rate": 0.1,
                    "kinds": list(RETRYABLE_FAULTS),
                    "read_timeout": 0.5,
                },
            }
        )
        rows.append(
            {
                "name": "faults: ids yielded equal the fault-free run",
                "value": float(same),
                "unit": "bool",
                "met": same,
                "params": params,
            }
        )
    return rows


async def workload_latency(rounds: int) -> list[dict[str, Any]]:
    plan = windows(200)
    orders = 4_000  # about 20 orders a window: the wait, not the transfer, dominates
    params: dict[str, Any] = {"windows": 200, "orders": orders, "latency_ms": 50, "rounds": rounds}
    rows = []
    with Server(orders) as fast, Server(orders, latency_ms=50) as slow:
        await consume(with_client(fast.base_url, plan, 8))  # warm both caches
        await consume(with_client(slow.base_url, plan, 32))
        walls: dict[int, float] = {}
        for concurrency in (1, 4, 16, 32):
            transfer = statistics.median(
                [
                    (await consume(with_client(fast.base_url, plan, concurrency)))[0]
                    for _ in range(rounds)
                ]
            )
            n = 1 if concurrency == 1 else rounds
            actual = [
                (await consume(with_client(slow.base_url, plan, concurrency)))[0] for _ in range(n)
            ]
            ideal = math.ceil(200 / concurrency) * 0.050 + transfer
            walls[concurrency] = statistics.median(actual)
            efficiency = ideal / walls[concurrency]
            row = {
                "name": f"latency: efficiency at concurrency {concurrency}",
                "value": efficiency,
                "unit": "ideal/actual",
                "params": {
                    **params,
                    "concurrency": concurrency,
                    "wall_s": walls[concurrency],
                    "ideal_s": ideal,
                    "transfer_s": transfer,
                },
            }
            if concurrency == 16:
                row |= {"target": ">= 0.85", "met": efficiency >= 0.85}
            rows.append(row)
        naive = (await consume(naive_sequential(slow.base_url, plan)))[0]
        ratio = naive / walls[16]
        rows.append(
            {
                "name": "latency: naive sequential wall / client at concurrency 16",
                "value": ratio,
                "unit": "ratio",
                "target": ">= 10",
                "met": ratio >= 10,
                "params": {**params, "naive_wall_s": naive},
            }
        )
    return rows


async def _get_decoded(
    session: aiohttp.ClientSession, base: str, window: tuple[datetime, datetime]
) -> list[Order]:
    return decode_orders(await _get(session, base, window))


async def whole_body(
    base: str, plan: list[tuple[datetime, datetime]], concurrency: int
) -> AsyncIterator[Order]:
    """The path of before issue 10, as a baseline: windows fetched ``concurrency`` at a
    time, each body read whole and decoded in its task by one ``decode_orders`` call."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        pending: deque[asyncio.Task[list[Order]]] = deque()
        todo = iter(plan)
        for window in todo:
            pending.append(asyncio.ensure_future(_get_decoded(session, base, window)))
            if len(pending) >= concurrency:
                break
        while pending:
            task = pending.popleft()
            await asyncio.wait([task])  # as the old RecordStream did: the loop gets a turn
            orders = task.result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(asyncio.ensure_future(_get_decoded(session, base, nxt)))
            for order in orders:
                yield order


async def busy_steps(seconds: float) -> AsyncIterator[None]:
    """No library at all: 0.5 ms of pure-Python CPU work, then a turn of the loop, for
    ``seconds``. Its longest step is this machine's floor: whatever the machine adds to a
    step of 0.5 ms (an interrupt, hypervisor work charged to the thread) shows here too,
    so a long step of the client's can be told from one of the machine's."""
    end = time.perf_counter() + seconds
    while (now := time.perf_counter()) < end:
        until = now + 0.0005
        while time.perf_counter() < until:
            pass
        await asyncio.sleep(0)
        yield None


async def ticking(
    records: AsyncIterator[Any],
) -> tuple[float, int, list[float], list[float]]:
    """Consume while a 2 ms ticker runs in the same loop: (seconds, count, lateness,
    held). ``held``: per tick, the part of its lateness the loop's thread spent running
    (its CPU time over the late stretch). Lateness also counts the moments the operating
    system or the hypervisor gave the CPU to someone else, which no code in the loop
    can cause or avoid; ``held`` is what the loop's own steps took."""
    lateness: list[float] = []
    held: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        due = time.perf_counter() + 0.002
        cpu_before = time.thread_time()
        while not stop.is_set():
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            now, cpu = time.perf_counter(), time.thread_time()
            late = now - due
            lateness.append(late)
            # The thread's CPU time since the previous tick, capped at the lateness: an
            # upper bound of what ran in the late stretch (it counts the 2 ms wait's
            # work too), so that `held` never understates a step.
            held.append(min(late, cpu - cpu_before))
            due, cpu_before = now + 0.002, cpu

    task = asyncio.create_task(tick())
    try:
        elapsed, count, _ = await consume(records)
    finally:
        stop.set()
        await task
    return elapsed, count, lateness, held


FLOOR = "machine floor (0.5 ms busy steps, no library)"


def _record_stalls(entry: dict[str, list[float]], lateness: list[float], held: list[float]) -> None:
    lateness.sort()
    entry.setdefault("max", []).append(lateness[-1] * 1000)
    entry.setdefault("p99", []).append(lateness[int(len(lateness) * 0.99)] * 1000)
    entry.setdefault("held", []).append(max(held) * 1000)


async def workload_loop(rounds: int) -> list[dict[str, Any]]:
    """Loop responsiveness: the longest and the 99th-percentile lateness of a 2 ms ticker
    while streaming, client (defaults) against the whole-body path, side by side, with
    the machine's floor (:func:`busy_steps`) measured in the same rounds."""
    rows: list[dict[str, Any]] = []
    cases = [
        ("100k orders over 30 days, defaults", 100_000, 30, timedelta(days=1)),
        ("10,000-order windows", 100_000, 10, timedelta(days=1)),
    ]
    for label, orders, days, width in cases:
        plan = [
            (START + i * width, START + (i + 1) * width)
            for i in range(int(timedelta(days=days) / width))
        ]
        params = {"orders": orders, "days": days, "window": str(width), "rounds": rounds}
        with Server(orders, days=days) as server:
            await consume(whole_body(server.base_url, plan, 8))  # warm the server's cache
            await consume(with_client(server.base_url, plan, 8))  # and both paths: not counted
            stats: dict[str, dict[str, list[float]]] = {}
            for _ in range(rounds):
                contenders = (("client.orders()", with_client), ("whole-body path", whole_body))
                for name, path in contenders:
                    elapsed, count, lateness, held = await ticking(path(server.base_url, plan, 8))
                    assert count == orders, (name, count)
                    _record_stalls(stats.setdefault(name, {}), lateness, held)
                    stats[name].setdefault("rate", []).append(count / elapsed)
                # The machine's floor, as long as the client's run: no target, a reference.
                client_seconds = orders / stats["client.orders()"]["rate"][-1]
                _, _, lateness, held = await ticking(busy_steps(client_seconds))
                _record_stalls(stats.setdefault(FLOOR, {}), lateness, held)
        # The target of the longest step is on what the loop's thread ran (`held`): the
        # wall-clock maximum also holds the machine's own hiccups (a descheduled vCPU),
        # shown beside it with no target.
        for name, entry in stats.items():
            for figure, title, target in (
                ("held", "longest step on the CPU", 20.0),
                ("max", "max stall", None),
                ("p99", "p99 stall", 5.0),
            ):
                worst = max(entry[figure])
                row: dict[str, Any] = {
                    "name": f"loop: {title}, {name}, {label}",
                    "value": statistics.median(entry[figure]),
                    "min": min(entry[figure]),
                    "max": worst,
                    "unit": "ms",
                    "params": params,
                }
                if name == "client.orders()" and target is not None:
                    row |= {"target": f"<= {target:g} every round", "met": worst <= target}
                rows.append(row)
        ratios = [
            c / w
            for c, w in zip(
                stats["client.orders()"]["rate"], stats["whole-body path"]["rate"], strict=True
            )
        ]
        rows.append(
            per_round(f"loop: throughput client / whole-body path, {label}", ratios, 0.9, params)
        )
    return rows


def peak_rss_bytes() -> int:
    """This process's peak resident set. VmHWM, not getrusage: on Linux ru_maxrss keeps
    the peak of the process before exec (here, the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # pragma: no cover


def memory_child(base: str, orders: int) -> None:
    """Run in a fresh process: stream ``orders`` and print the peak RSS in bytes."""
    plan = windows(max(1, orders // 1000))
    baseline = peak_rss_bytes()
    elapsed, count, _ = asyncio.run(consume(with_client(base, plan, 8)))
    peak = peak_rss_bytes()
    print(
        json.dumps(
            {"count": count, "peak_bytes": peak, "baseline_bytes": baseline, "seconds": elapsed}
        )
    )


def workload_memory(sizes: list[int]) -> list[dict[str, Any]]:
    peaks: dict[int, dict[str, Any]] = {}
    for orders in sizes:
        with Server(orders) as server:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", server.base_url, str(orders)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
        peaks[orders] = json.loads(out.stdout.strip().splitlines()[-1])
        assert peaks[orders]["count"] == orders
    rows = []
    for orders, peak in peaks.items():
        rows.append(
            {
                "name": f"memory: peak RSS streaming {orders:,} orders",
                "value": peak["peak_bytes"] / 2**20,
                "unit": "MiB",
                "params": {
                    "orders": orders,
                    "windows": orders // 1000,
                    "concurrency": 8,
                    "baseline_mib": peak["baseline_bytes"] / 2**20,
                    "seconds": peak["seconds"],
                },
                **(
                    {"target": "<= 200", "met": peak["peak_bytes"] <= 200 * 2**20}
                    if orders == max(sizes)
                    else {}
                ),
            }
        )
    if len(sizes) == 2:
        small, large = (peaks[s]["peak_bytes"] for s in sizes)
        rows.append(
            {
                "name": f"memory: peak {sizes[1]:,} / peak {sizes[0]:,}",
                "value": large / small,
                "unit": "ratio",
                "target": "<= 1.2",
                "met": large / small <= 1.2,
                "params": {"sizes": sizes},
            }
        )
    return rows


# -- steady-state sync --------------------------------------------------------------------


def counting_session() -> tuple[aiohttp.ClientSession, list[int]]:
    """A session that counts the requests it sends (passed to the client as its own)."""
    sent = [0]

    async def on_start(*_: object) -> None:
        sent[0] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    return aiohttp.ClientSession(trace_configs=[trace]), sent


async def workload_sync(rounds: int) -> list[dict[str, Any]]:
    """One cycle of a sync that is caught up (last run 5 minutes ago, 2 h lookback),
    next to the loop a user writes without checkpoints: re-read the whole day and keep
    what was not seen before. Both hand out the same new orders."""
    from tempfile import TemporaryDirectory

    from connexi_async.sync import JSONFileCheckpoints, OrderSync

    orders = 100_000  # about 3,300 a day, 140 an hour
    previous = START + timedelta(days=15, hours=14, minutes=3)  # when the last cycle ran
    now = previous + timedelta(minutes=5)
    day = previous.replace(hour=0, minute=0, second=0)
    params = {
        "orders": orders,
        "latency_ms": 50,
        "lookback": "2h",
        "window": "1h",
        "rounds": rounds,
    }
    sync_walls, naive_walls, sync_requests, naive_requests = [], [], 0, 0
    with Server(orders, latency_ms=50) as server, TemporaryDirectory() as scratch:
        for round_number in range(rounds):
            session, sent = counting_session()
            async with (
                session,
                ConnexiClient(**AUTH, base_url=server.base_url, session=session) as client,
            ):
                clock = [previous]
                store = JSONFileCheckpoints(Path(scratch) / f"state-{round_number}.json")
                sync = OrderSync(
                    client,
                    store,
                    key="shop",
                    start=day,
                    now=lambda clock=clock: clock[0],
                    window=timedelta(hours=1),
                )
                async with sync.run_once() as run:  # catching up to the last cycle: not timed
                    async for batch in run:
                        await batch.commit()
                clock[0] = now
                sent[0] = 0
                started = time.perf_counter()
                fresh = []
                async with sync.run_once() as run:
                    async for batch in run:
                        fresh += [o.id for o in batch.records]
                        await batch.commit()
                sync_walls.append(time.perf_counter() - started)
                sync_requests = sent[0]

                # The naive loop: everything of the day read again, the new kept.
                seen = {
                    o.id
                    async for o in client.orders(
                        day, previous - timedelta(minutes=2), window=timedelta(hours=1)
                    )
                }
                sent[0] = 0
                started = time.perf_counter()
                naive = [
                    o.id
                    async for o in client.orders(
                        day, now - timedelta(minutes=2), window=timedelta(hours=1)
                    )
                    if o.id not in seen
                ]
                naive_walls.append(time.perf_counter() - started)
                naive_requests = sent[0]
                assert sorted(naive) == sorted(fresh), "the two loops disagree"
    sync_row = summarise(sync_walls)
    naive_row = summarise(naive_walls)
    return [
        {"name": "sync: steady-state cycle, wall", **sync_row, "unit": "s",
         "params": {**params, "requests": sync_requests, "new_orders": len(fresh)}},
        {"name": "sync: naive re-read of the day, wall", **naive_row, "unit": "s",
         "params": {**params, "requests": naive_requests}},
        {"name": "sync: requests of a steady-state cycle", "value": sync_requests,
         "unit": "requests", "params": params},
        {"name": "sync: requests of the naive re-read", "value": naive_requests,
         "unit": "requests", "params": params},
        {"name": "sync: requests, naive / steady-state cycle",
         "value": naive_requests / max(sync_requests, 1), "unit": "ratio", "params": params},
        {"name": "sync: wall, naive / steady-state cycle",
         "value": naive_row["value"] / sync_row["value"], "unit": "ratio", "params": params},
    ]  # fmt: skip


# -- partner paging -------------------------------------------------------------------------

PARTNER = {"partner_id": "sandbox-partner", "partner_secret": "sandbox-partner-secret"}


async def sequential_pager(base: str, days: int, page_size: int) -> AsyncIterator[Any]:
    """The loop a careful user writes: window by window, page by page, each request
    signed by hand (HMAC of the request target), stopping at total_record, each order
    made typed by hand (as the client's are)."""
    import base64
    import hashlib
    import hmac

    key = PARTNER["partner_secret"].encode()
    async with aiohttp.ClientSession() as session:
        for day in range(days):
            since, until = START + timedelta(days=day), START + timedelta(days=day + 1)
            offset, total = 0, None
            while total is None or offset < total:
                target = (
                    f"/v1/partner/order?since={_param(since)}&until={_param(until)}"
                    f"&limit={page_size}&offset={offset}&withDO=false"
                )
                mac = hmac.new(key, target.encode(), hashlib.sha256).digest()
                headers = {
                    "partner-id": PARTNER["partner_id"],
                    "secret": base64.b64encode(mac).decode(),
                }
                url = aiohttp.client.URL(base + target, encoded=True)
                async with session.get(url, headers=headers) as response:
                    response.raise_for_status()
                    page = json.loads(await response.read())
                total = page["total_record"]
                for record in page["data"]:
                    yield decode_bench.hand_written_partner_order(record)
                offset += page_size


async def with_partner_client(base: str, days: int, concurrency: int) -> AsyncIterator[Any]:
    from connexi_async import PartnerClient

    async with (
        PartnerClient(**PARTNER, base_url=base) as client,
        client.orders(START, START + timedelta(days=days), concurrency=concurrency) as stream,
    ):
        async for order in stream:
            yield order


async def workload_partner(rounds: int) -> list[dict[str, Any]]:
    """40,000 orders over 30 days in pages of 100 (about 400 requests), 50 ms a request:
    the client at concurrency 16 next to the sequential pager."""
    orders, days, latency = 40_000, 30, 0.050
    params: dict[str, Any] = {"orders": orders, "days": days, "page_size": 100, "latency_ms": 50}
    with Server(orders) as fast, Server(orders, latency_ms=50) as slow:
        await consume(with_partner_client(fast.base_url, days, 16))  # every window generated
        await consume(with_partner_client(slow.base_url, days, 16))
        # Side by side in each round: the same pull from the server with no latency
        # (the work itself) and from the one with 50 ms, each the faster of two runs
        # (the noise of a shared machine only ever adds time).
        transfers, walls = [], []
        for _ in range(rounds):
            pulls, waits = [], []
            for _ in range(2):
                pulls.append((await consume(with_partner_client(fast.base_url, days, 16)))[0])
                wall, count, _ = await consume(with_partner_client(slow.base_url, days, 16))
                waits.append(wall)
            transfers.append(min(pulls))
            walls.append(min(waits))
        requests = sum(-(-n // 100) for n in [count // days] * days)  # about, for the ideal
        naive, naive_count, _ = await consume(sequential_pager(slow.base_url, days, 100))
    assert naive_count == count, "the pager and the client disagree"
    # The best possible: the requests' waits at 16 at a time, or the work itself (the
    # same pull from a server with no latency), whichever is longer; they overlap.
    ideals = [max(math.ceil(requests / 16) * latency, t) for t in transfers]
    efficiency = [ideal / w for ideal, w in zip(ideals, walls, strict=True)]
    speedup = [naive / w for w in walls]
    return [
        {
            "name": "partner: client at concurrency 16 / sequential typed pager (wall)",
            **summarise(speedup),
            "unit": "ratio",
            "target": ">= 10",
            "met": min(speedup) >= 10,
            "params": {
                **params,
                "naive_wall_s": naive,
                "client_walls_s": walls,
                "orders_read": count,
            },
        },
        {
            "name": "partner: latency-hiding efficiency at concurrency 16",
            **summarise(efficiency),
            "unit": "ideal/actual",
            "target": ">= 0.85",
            "met": min(efficiency) >= 0.85,
            "params": {
                **params,
                "ideals_s": ideals,
                "transfers_s": transfers,
                "walls_s": walls,
                "requests": requests,
            },
        },
    ]


# -- every workload (the tables are in report.py) ----------------------------------------


async def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = workload_decode(rounds=args.rounds + 2)
    rows += await workload_throughput(orders=args.orders, rounds=args.rounds, faults=True)
    rows += await workload_loop(rounds=args.rounds)
    rows += await workload_latency(rounds=args.rounds)
    rows += await workload_sync(rounds=args.rounds)
    rows += await workload_partner(rounds=args.rounds)
    rows += await workload_fleet(rounds=args.rounds)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds and a smaller memory run"
    )
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only",
        choices=["loop", "sync", "partner", "fleet"],
        help="run one workload and print its table (not saved)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the last run's table (benchmarks/results.json) for docs/performance.md",
    )
    parser.add_argument(
        "--memory-child", nargs=2, metavar=("BASE_URL", "ORDERS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child[0], int(args.memory_child[1]))
        return 0
    if args.markdown:
        for line in markdown(json.loads(RESULTS.read_text())["results"]):
            print(line)
        return 0
    if args.quick:
        args.rounds = 1
    where = placement()
    started = time.perf_counter()
    if args.only:
        only = {
            "loop": workload_loop,
            "sync": workload_sync,
            "partner": workload_partner,
            "fleet": workload_fleet,
        }[args.only]
        for line in table(asyncio.run(only(rounds=args.rounds))):
            print(line)
        return 0
    rows = asyncio.run(run_all(args))
    rows += workload_memory([100_000, 300_000] if args.quick else [100_000, 1_000_000])
    machine = {
        "cpus": CPUS,
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "placement": where,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")
    print(f"{machine['cpus']} CPUs, Python {machine['python']}; {where}")
    for line in table(rows):
        print(line)
    missed = [row["name"] for row in rows if row.get("met") is False]
    print(
        f"\nwritten to {RESULTS}; {len(missed)} target(s) missed"
        + (": " + "; ".join(missed) if missed else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
