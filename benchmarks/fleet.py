"""The fleet workload of ``make bench``: 300 accounts synced by 1, 2 and 3 worker processes.

Everything is real: a throwaway PostgreSQL cluster, the multi-account sandbox (50 ms
latency, served by this process), and ``connexi-async fleet worker`` processes. For each
worker count, two cycles are timed from ``schedule`` until every account has finished:
the first reads each account's 1.5 days (a backfill), the second is a steady-state
cycle (the lookback read again, nothing new). Workers' ticks are off so that nothing
starts before the clock does.

    .venv/bin/python benchmarks/run.py --only fleet
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the fleet of the tests (fleet_app.py)
ACCOUNTS = 300
LATENCY_MS = 50
WORKER_CONCURRENCY = 10


async def _query(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as db:
        cursor = await db.execute(sql)
        return await cursor.fetchall() if cursor.description else []


async def _cycle(fleet: Any, dsn: str, keys: list[str]) -> float:
    started = time.perf_counter()
    since = datetime.now(UTC)
    assert await fleet.schedule(due=False) == len(keys)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as db:
        while True:  # a light poll: the figure is the workers', not the poller's
            cursor = await db.execute(
                "SELECT count(*) FILTER (WHERE last_success_at >= %s), "
                "max(last_error) FROM connexi_checkpoints",
                (since,),
            )
            row = await cursor.fetchone()
            assert row is not None
            if row[1]:
                raise RuntimeError(f"a sync failed: {row[1]}")
            if row[0] == len(keys):
                return time.perf_counter() - started
            await asyncio.sleep(0.05)


def _busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


async def _one_count(
    rounds: int, cluster: Any, sandbox: Any, secrets: Path, start: datetime, workers: int
) -> dict[str, Any]:
    name = f"fleet_bench_{workers}"
    await _query(cluster.conninfo, f'CREATE DATABASE "{name}"')
    dsn = cluster.conninfo.replace(f"dbname={cluster.database}", f"dbname={name}")
    env = {
        **os.environ,
        "CONNEXI_FLEET_DSN": dsn,
        "CONNEXI_FLEET_SECRETS": str(secrets),
        "CONNEXI_FLEET_START": start.isoformat(),
        "CONNEXI_FLEET_WINDOW_HOURS": "6",
        "CONNEXI_FLEET_TICK_SECONDS": "off",
        "CONNEXI_FLEET_ACCOUNT_CONCURRENCY": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    saved = {k: os.environ.get(k) for k in env if k.startswith("CONNEXI_FLEET_")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("CONNEXI_FLEET_")})
    from fleet_app import ORDERS_TABLE, make_fleet

    fleet = make_fleet()
    await fleet.setup()
    await _query(dsn, ORDERS_TABLE)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = usage.ru_utime + usage.ru_stime
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "connexi_async",
            "fleet",
            "--app",
            "fleet_app:fleet",
            "worker",
            "--concurrency",
            str(WORKER_CONCURRENCY),
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        async with fleet:
            # Polled: the workers are other processes (no event to wait on).
            while (await _query(dsn, "SELECT count(*) FROM procrastinate_workers"))[0][0] < workers:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            keys = [a.key for a in sandbox.accounts]
            before = sandbox.recorder.count("GET /v1/order")
            busy_before = _busy()
            backfill = await _cycle(fleet, dsn, keys)
            busy_middle = _busy()
            middle = sandbox.recorder.count("GET /v1/order")
            steady = [await _cycle(fleet, dsn, keys) for _ in range(rounds)]
            busy_after = _busy()
            after = sandbox.recorder.count("GET /v1/order")
        rows = await _query(dsn, "SELECT count(*), coalesce(max(deliveries), 0) FROM fleet_orders")
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert rows[0][1] == 1, "an order was delivered twice"
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        # CPU of the worker processes (from start to exit) per account synced.
        "worker_cpu_ms": 1000
        * (cpu_after.ru_utime + cpu_after.ru_stime - cpu_before)
        / ((1 + rounds) * len(keys)),
        "busy_backfill": (busy_middle[0] - busy_before[0]) / (busy_middle[1] - busy_before[1]),
        "busy_steady": (busy_after[0] - busy_middle[0]) / (busy_after[1] - busy_middle[1]),
        "workers": workers,
        "backfill": backfill,
        "steady": steady,
        "orders": rows[0][0],
        "requests_backfill": (middle - before) / len(keys),
        "requests_steady": (after - middle) / (rounds * len(keys)),
    }


async def workload_fleet(rounds: int = 1) -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    start = (now - timedelta(days=2)).replace(minute=0, second=0)
    results: dict[int, dict[str, Any]] = {}
    # The other workloads pin this process to one CPU; workers (and PostgreSQL's
    # backends) would inherit it. Every CPU here, as a deployment would have.
    pinned = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if pinned is not None:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    try:
        return await _all_counts(rounds, start, results)
    finally:
        if pinned is not None:
            os.sched_setaffinity(0, pinned)


async def _all_counts(
    rounds: int, start: datetime, results: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    from connexi_async.fleet.testing import TemporaryCluster
    from connexi_async.sandbox import Sandbox

    with TemporaryCluster() as cluster, tempfile.TemporaryDirectory() as scratch:
        async with Sandbox(
            accounts=ACCOUNTS, orders=30, start=start, days=1.5, latency_ms=LATENCY_MS
        ) as sandbox:
            secrets = Path(scratch) / "secrets.json"
            secrets.write_text(json.dumps({a.key: dict(a.credentials) for a in sandbox.accounts}))
            for workers in (1, 2, 3):
                results[workers] = await _one_count(
                    rounds, cluster, sandbox, secrets, start, workers
                )
    params = {
        "accounts": ACCOUNTS,
        "latency_ms": LATENCY_MS,
        "worker_concurrency": WORKER_CONCURRENCY,
        "account_concurrency": 1,
        "orders_per_account": 30,
        "requests_per_account_backfill": results[1]["requests_backfill"],
        "requests_per_account_steady": results[1]["requests_steady"],
    }
    rows: list[dict[str, Any]] = []
    for workers, result in results.items():
        steady = _summary(result["steady"])
        rows += [
            {"name": f"fleet: {workers} worker(s), backfill cycle, wall", "value": result["backfill"],
             "unit": "s", "params": params},
            {"name": f"fleet: {workers} worker(s), steady cycle, wall", **steady, "unit": "s",
             "params": params},
            {"name": f"fleet: {workers} worker(s), steady accounts/s",
             "value": ACCOUNTS / steady["value"], "unit": "acct/s", "params": params},
            {"name": f"fleet: {workers} worker(s), machine busy (backfill)",
             "value": 100 * result["busy_backfill"], "unit": "%",
             "params": {**params, "steady_busy_percent": round(100 * result["busy_steady"], 1)}},
            {"name": f"fleet: {workers} worker(s), worker CPU per account cycle",
             "value": result["worker_cpu_ms"], "unit": "ms", "params": params},
        ]  # fmt: skip
    rows.append(
        {"name": "fleet: backfill scaling, 3 workers / 1",
         "value": results[1]["backfill"] / results[3]["backfill"], "unit": "ratio", "params": params}
    )  # fmt: skip
    ratios = [
        one / three for one, three in zip(results[1]["steady"], results[3]["steady"], strict=True)
    ]
    rows.append(
        {"name": "fleet: steady scaling, 3 workers / 1", **_summary(ratios), "unit": "ratio",
         "params": params}
    )  # fmt: skip
    return rows


def _summary(values: list[float]) -> dict[str, float]:
    return {"value": statistics.median(values), "min": min(values), "max": max(values)}
