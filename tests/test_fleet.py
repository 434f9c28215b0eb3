"""The fleet (issue 18): PostgreSQL checkpoints, procrastinate jobs per account, the
multi-account sandbox, and fleet runs of real worker processes killed with SIGKILL.

PostgreSQL runs as a throwaway cluster (initdb + pg_ctl, as the ``postgres`` user when
root). Missing server binaries fail these tests with a message saying what to install:
they are never skipped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fleet_app import ORDERS_TABLE
from psycopg_pool import AsyncConnectionPool

from connexi_async import AuthenticationError, ConfigurationError, ConnexiClient
from connexi_async.fleet import (
    AccountStatus,
    Credentials,
    Fleet,
    FleetBatch,
    PostgresCheckpoints,
)
from connexi_async.fleet._store import lock_id
from connexi_async.fleet.testing import TemporaryCluster
from connexi_async.sandbox import Sandbox
from connexi_async.sync import (
    Checkpoint,
    CheckpointConflictError,
    CheckpointStoreUnavailableError,
    OrderSync,
    SyncError,
    SyncLockedError,
)
from connexi_async.sync._sync import _fatal

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime.now(UTC).replace(microsecond=0)
START = (NOW - timedelta(days=2)).replace(minute=0, second=0)


@pytest.fixture(scope="module")
def cluster() -> Iterator[TemporaryCluster]:
    with TemporaryCluster() as running:
        yield running


_databases = iter(range(1, 10_000))


@pytest.fixture
def dsn(cluster: TemporaryCluster) -> str:
    """A fresh database of the module's cluster, for one test."""
    name = f"fleet_test_{next(_databases)}"
    with psycopg.connect(cluster.conninfo, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    return cluster.conninfo.replace(f"dbname={cluster.database}", f"dbname={name}")


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[PostgresCheckpoints]:
    async with PostgresCheckpoints(dsn) as opened:
        await opened.setup()
        await opened.setup()  # idempotent
        yield opened


async def query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as db:
        cursor = await db.execute(sql, params or None)
        return await cursor.fetchall() if cursor.description else []


def a_checkpoint(version: int, hour: int = 1) -> Checkpoint:
    return Checkpoint(
        watermark=START + timedelta(hours=hour),
        version=version,
        start=START,
        delivered=((START + timedelta(hours=hour), (1, 2, 3)),),
        meta={"file": "x"},
    )


# -- the store ------------------------------------------------------------------------------


async def test_store_compare_and_set(store: PostgresCheckpoints) -> None:
    assert await store.load("seller-1") is None
    await store.save("seller-1", a_checkpoint(1))
    assert await store.load("seller-1") == a_checkpoint(1)
    with pytest.raises(CheckpointConflictError) as caught:
        await store.save("seller-1", a_checkpoint(1, hour=2))  # stale: expects version 0
    assert caught.value.found == 1
    assert caught.value.expected == 0
    await store.save("seller-1", a_checkpoint(2, hour=2))
    assert (await store.load("seller-1")) == a_checkpoint(2, hour=2)
    assert await store.load("seller-2") is None  # keys are separate


async def test_store_first_saves_racing_one_wins(store: PostgresCheckpoints) -> None:
    results = await asyncio.gather(
        *(store.save("race", a_checkpoint(1, hour=h)) for h in range(1, 9)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, CheckpointConflictError) for r in results if r is not None)


async def test_store_write_runs_in_the_checkpoint_transaction(
    store: PostgresCheckpoints, dsn: str
) -> None:
    await query(dsn, "CREATE TABLE sink (id bigint PRIMARY KEY)")

    async def write(db: psycopg.AsyncConnection[Any]) -> None:
        await db.execute("INSERT INTO sink VALUES (1), (2)")

    await store.save("k", a_checkpoint(1), write=write)
    assert await query(dsn, "SELECT id FROM sink ORDER BY id") == [(1,), (2,)]

    class Broken(Exception):
        pass

    async def failing(db: psycopg.AsyncConnection[Any]) -> None:
        await db.execute("INSERT INTO sink VALUES (3)")
        raise Broken("the sink failed")

    with pytest.raises(Broken):
        await store.save("k", a_checkpoint(2), write=failing)
    # Neither the row nor the checkpoint: both or nothing.
    assert await query(dsn, "SELECT id FROM sink ORDER BY id") == [(1,), (2,)]
    assert (await store.load("k")) == a_checkpoint(1)

    async def duplicate(db: psycopg.AsyncConnection[Any]) -> None:
        await db.execute("INSERT INTO sink VALUES (1)")

    # The consumer's own database error comes back as it is, not as ours.
    with pytest.raises(psycopg.errors.UniqueViolation):
        await store.save("k", a_checkpoint(2), write=duplicate)
    # A conflict rolls the write back too.
    with pytest.raises(CheckpointConflictError):
        await store.save("k", a_checkpoint(5), write=write)
    assert (await store.load("k")) == a_checkpoint(1)


async def test_store_lock_is_exclusive_names_its_holder_and_dies_with_it(
    store: PostgresCheckpoints, dsn: str
) -> None:
    async with store.lock("seller-1"):
        other = PostgresCheckpoints(dsn, worker="other-host:42")
        async with other:
            with pytest.raises(SyncLockedError) as caught:
                async with other.lock("seller-1", wait=0.3):
                    pass
            assert store.worker in str(caught.value)
            async with other.lock("seller-2"):  # another account is free
                states = {s.key: s for s in await other.states(["seller-1", "seller-2"])}
                assert states["seller-1"].held_by == store.worker
                assert states["seller-2"].held_by == "other-host:42"
    # Released on exit.
    async with store.lock("seller-1"):
        pass
    # A holder that dies (its connection ends, as when its process is killed) frees it
    # at once, with no timeout to wait for.
    async with store.lock("seller-3"):
        await query(
            dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            f"connexi-fleet {store.worker}",
        )
        heir = PostgresCheckpoints(dsn, worker="heir:1")
        async with heir, heir.lock("seller-3", wait=5):
            pass


async def test_store_errors_never_show_a_password(cluster: TemporaryCluster) -> None:
    secret = "pg-pass-4d2f9b"
    dsn = f"host=127.0.0.1 port=1 dbname=x user=postgres password={secret} connect_timeout=2"
    store = PostgresCheckpoints(dsn, open_timeout=1)
    assert secret not in repr(store)
    with pytest.raises(SyncError) as caught:
        await store.open()
    assert secret not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    with pytest.raises(ConfigurationError, match="plain SQL identifier"):
        PostgresCheckpoints(dsn, table="x; DROP TABLE y")


async def test_order_sync_on_postgres_exactly_once(store: PostgresCheckpoints, dsn: str) -> None:
    await query(dsn, "CREATE TABLE sink (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 1)")
    async with Sandbox(orders=300, start=START, days=1.5) as sandbox:
        async with ConnexiClient(**sandbox.credentials) as client:
            for _ in range(2):  # the second run reads the lookback again: nothing twice
                sync = OrderSync(
                    client, store, key="seller", start=START, window=timedelta(hours=6)
                )
                async with sync.run_once() as run:
                    async for batch in run:
                        rows = [(o.id,) for o in batch.records]

                        async def write(db: psycopg.AsyncConnection[Any], rows: Any = rows) -> None:
                            async with db.cursor() as cursor:
                                await cursor.executemany(
                                    "INSERT INTO sink VALUES (%s) ON CONFLICT (id) "
                                    "DO UPDATE SET n = sink.n + 1",
                                    rows,
                                )

                        await batch.commit(write=write)
        expected = sandbox.order_ids(START, NOW)
    assert len(expected) == 300
    assert await query(dsn, "SELECT count(*), max(n) FROM sink") == [(300, 1)]


# -- the multi-account sandbox ---------------------------------------------------------------


async def test_sandbox_accounts_have_their_own_credentials_data_and_recorder() -> None:
    async with Sandbox(accounts=3, orders=50, start=START, days=1) as sandbox:
        one, two = sandbox.accounts[1], sandbox.accounts[2]
        assert [a.key for a in sandbox.accounts] == ["account-0", "account-1", "account-2"]
        assert sandbox.account("account-2") is not None
        assert one.credentials["api_secret"] != two.credentials["api_secret"]
        assert sandbox.accounts[0].credentials == sandbox.credentials
        async with ConnexiClient(**one.credentials) as client:
            mine = await client.fetch_orders(START, NOW)
        assert [o.id for o in mine] == one.order_ids(START, NOW)
        theirs = two.dataset.get(mine[0].id)
        assert theirs is not None
        assert theirs != mine[0]
        assert one.recorder.count("GET /v1/order") >= 1
        assert two.recorder.count("GET") == 0
        assert one.recorder.max_in_flight == 1
        wrong = {**one.credentials, "api_secret": two.credentials["api_secret"]}
        async with ConnexiClient(**wrong, max_attempts=1) as client:
            with pytest.raises(AuthenticationError):
                await client.fetch_orders(START, NOW)
        assert sandbox.recorder.count("GET") == one.recorder.count("GET") + 1
        sandbox.cap = 10  # applies to every account
        async with ConnexiClient(**two.credentials) as client:
            assert len(await client.fetch_orders(START, NOW)) == 10  # the server cut it
        with pytest.raises(ValueError, match="accounts"):
            Sandbox(accounts=0)


# -- the fleet in this process ---------------------------------------------------------------


def secrets_file(tmp_path: Path, sandbox: Sandbox) -> Path:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({a.key: dict(a.credentials) for a in sandbox.accounts}))
    return path


def fleet_env(dsn: str, secrets: Path, **extra: str) -> dict[str, str]:
    return {
        "CONNEXI_FLEET_DSN": dsn,
        "CONNEXI_FLEET_SECRETS": str(secrets),
        "CONNEXI_FLEET_START": START.isoformat(),
        "CONNEXI_FLEET_WINDOW_HOURS": "6",
        "CONNEXI_FLEET_TICK_SECONDS": "2",
        "CONNEXI_FLEET_STALLED_SECONDS": "3",
        **extra,
    }


async def app_fleet(dsn: str, secrets: Path, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    """The fleet of ``fleet_app.py`` (the workers' own), set up, its orders table made."""
    for name, value in fleet_env(dsn, secrets).items():
        monkeypatch.setenv(name, value)
    from fleet_app import make_fleet

    fleet = make_fleet()
    await fleet.setup()
    await query(dsn, ORDERS_TABLE)
    return fleet


async def all_tables_text(dsn: str) -> str:
    """Every row of every table of the database, as text."""
    tables = await query(
        dsn,
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
        "AND table_type = 'BASE TABLE'",
    )
    assert any(name == "procrastinate_jobs" for _, name in tables)
    chunks = []
    for schema, name in tables:
        rows = await query(dsn, f'SELECT t::text FROM "{schema}"."{name}" t')
        chunks += [row[0] for row in rows]
    return "\n".join(chunks)


async def work_until(
    fleet: Fleet, done: Callable[[dict[str, AccountStatus]], bool], seconds: float = 60
) -> dict[str, AccountStatus]:
    """Run a worker in this loop until ``done(status by account)``; the last status."""
    worker = asyncio.create_task(fleet.run_worker(concurrency=2, install_signal_handlers=False))
    try:
        async with asyncio.timeout(seconds):
            while True:
                status = {s.key: s for s in await fleet.status()}
                if done(status):
                    return status
                await asyncio.sleep(0.2)
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker


async def test_fleet_in_process(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with Sandbox(accounts=4, orders=40, start=START, days=1.5) as sandbox:
        secrets = secrets_file(tmp_path, sandbox)
        fleet = await app_fleet(dsn, secrets, monkeypatch)
        await fleet.setup()  # idempotent
        await query(dsn, ORDERS_TABLE)
        assert await fleet.schedule() == 4
        assert await fleet.schedule(due=False) == 0  # queued once only (queueing_lock)
        status = {s.key: s for s in await fleet.status()}
        assert {s.job for s in status.values()} == {"queued"}
        assert all(s.watermark is None for s in status.values())

        status = await work_until(fleet, lambda st: all(s.last_success_at for s in st.values()))
        for account in sandbox.accounts:
            row = status[account.key]
            assert row.watermark is not None
            assert row.watermark >= NOW - timedelta(minutes=2)
            assert row.lag is not None
            assert row.lag < timedelta(minutes=5)
            assert row.last_error == ""
            assert row.held_by == ""
            ids = await query(
                dsn, "SELECT id FROM fleet_orders WHERE account = %s ORDER BY id", account.key
            )
            assert [i for (i,) in ids] == sorted(account.order_ids(START, NOW))
        # The secrets were given to the workers by the credentials callable only.
        text = await all_tables_text(dsn)
        for account in sandbox.accounts:
            assert account.credentials["api_secret"] not in text
            assert account.credentials["api_key"] not in text
        assert "account-1" in text  # the jobs do carry the key
        assert secrets.name not in caplog.text


async def test_fleet_bad_credentials_fail_at_once_and_show_in_status(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Sandbox(accounts=2, orders=10, start=START, days=1) as sandbox:
        entries = {a.key: dict(a.credentials) for a in sandbox.accounts}
        entries["account-1"]["api_secret"] = "wrong-secret-77"
        secrets = tmp_path / "secrets.json"
        secrets.write_text(json.dumps(entries))
        fleet = await app_fleet(dsn, secrets, monkeypatch)
        await query(dsn, ORDERS_TABLE)
        await fleet.schedule()
        status = await work_until(fleet, lambda st: all(s.last_run_at for s in st.values()))
        assert status["account-0"].last_error == ""
        assert "HTTP 401" in status["account-1"].last_error
        assert "wrong-secret-77" not in status["account-1"].last_error
        # Not retried: an authentication failure waits for a person.
        rows = await query(
            dsn,
            "SELECT status::text, attempts FROM procrastinate_jobs WHERE args->>'account' = %s",
            "account-1",
        )
        assert rows == [("failed", 0)] or rows == [("failed", 1)]


def test_fleet_options_are_checked() -> None:
    async def credentials(key: str) -> Credentials:
        raise AssertionError

    async def sink(batch: FleetBatch) -> None:
        raise AssertionError

    base: dict[str, Any] = {
        "accounts": ["a"],
        "credentials": credentials,
        "sink": sink,
        "start": START,
    }
    with pytest.raises(ConfigurationError, match="tick"):
        Fleet("dbname=x", **base, tick=timedelta(0))
    with pytest.raises(ConfigurationError, match="interval"):
        Fleet("dbname=x", **base, interval=timedelta(0))
    with pytest.raises(ConfigurationError, match="sink"):
        Fleet("dbname=x", **{**base, "sink": None})
    fleet = Fleet("dbname=x password=hunter2", **base)
    assert "hunter2" not in repr(fleet)
    creds = Credentials("key", "very-secret")
    assert "very-secret" not in repr(creds)


# -- fleet runs: worker processes, SIGKILL, faults ---------------------------------------------


async def start_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    handle = open(log, "ab")  # noqa: SIM115, ASYNC230 - the child writes to it until it ends
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "connexi_async", "fleet", "--app", "fleet_app:fleet",
            "-v", "worker", "--concurrency", "10",
            env=env, stdout=handle, stderr=handle, cwd=ROOT,
        )  # fmt: skip
    finally:
        handle.close()


@pytest.mark.parametrize("fault_rate", [0.0, 0.1], ids=["clean", "faults-10pct"])
async def test_fleet_run_300_accounts_3_workers_one_killed(
    tmp_path: Path, dsn: str, fault_rate: float
) -> None:
    accounts = 300
    async with Sandbox(
        accounts=accounts, orders=30, start=START, days=1.5, latency_ms=50, retry_after=0
    ) as sandbox:
        if fault_rate:
            sandbox.faults.rate(
                "GET /v1/order",
                fault_rate,
                seed=18,
                kinds=["server_error", "bad_gateway", "unavailable", "rate_limit", "disconnect"],
            )
        secrets = secrets_file(tmp_path, sandbox)
        env = {
            **os.environ,
            **fleet_env(dsn, secrets, CONNEXI_FLEET_INTERVAL_SECONDS="8"),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
        }
        setup = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "connexi_async", "fleet", "--app", "fleet_app:fleet",
            "setup", env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await setup.communicate()
        assert setup.returncode == 0, err.decode()
        await query(dsn, ORDERS_TABLE)
        logs = [tmp_path / f"worker-{n}.log" for n in range(3)]
        workers = [await start_worker(env, log) for log in logs]
        victim = workers[0]
        victim_name = f"{os.uname().nodename}:{victim.pid}"
        held_at_kill: set[str] = set()
        try:
            # Nothing is queued by hand: the workers' own ticks schedule every account.
            store = PostgresCheckpoints(dsn)
            async with store, asyncio.timeout(120):
                while not held_at_kill:
                    states = await store.states([a.key for a in sandbox.accounts])
                    held_at_kill = {s.key for s in states if s.held_by == victim_name}
                    if not held_at_kill:
                        await asyncio.sleep(0.05)
                victim.send_signal(signal.SIGKILL)
                await victim.wait()
                killed_at = time.monotonic()
                # The others finish the victim's accounts (ahead of the backlog), then
                # every account.
                keys = [a.key for a in sandbox.accounts]
                recovered_in = None
                while True:
                    states = await store.states(keys)
                    if recovered_in is None and all(
                        s.last_success_at is not None
                        and s.watermark is not None
                        and s.watermark >= NOW - timedelta(minutes=1)
                        and s.last_worker != victim_name
                        for s in states
                        if s.key in held_at_kill
                    ):
                        recovered_in = time.monotonic() - killed_at
                    if recovered_in is not None and all(s.last_success_at for s in states):
                        break
                    await asyncio.sleep(0.1)
            # One more cycle after the kill: every account read again, lookback included.
            async with asyncio.timeout(120):
                target = datetime.now(UTC)
                async with store:
                    while True:
                        states = await store.states([a.key for a in sandbox.accounts])
                        if all(s.last_success_at and s.last_success_at > target for s in states):
                            break
                        await asyncio.sleep(0.2)
        finally:
            for worker in workers:
                if worker.returncode is None:
                    worker.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    async with asyncio.timeout(30):
                        await worker.wait()
                except TimeoutError:
                    worker.kill()
                    await worker.wait()
        output = "\n".join(log.read_text(errors="replace") for log in logs)

        assert victim.returncode == -signal.SIGKILL
        assert held_at_kill, "the victim was killed while syncing accounts"
        # Every account's orders reached the sink, each exactly once.
        rows = await query(
            dsn, "SELECT account, array_agg(id ORDER BY id), max(deliveries) FROM fleet_orders "
            "GROUP BY account"
        )  # fmt: skip
        delivered = {account: (ids, most) for account, ids, most in rows}
        assert len(delivered) == accounts
        duplicates = sum(1 for _, most in delivered.values() if most != 1)
        assert duplicates == 0
        checkpoints = {s.key: s for s in states}
        for account in sandbox.accounts:
            ids, _ = delivered[account.key]
            # The checkpoint matches the sink: every order before its watermark, no other.
            watermark = checkpoints[account.key].watermark
            assert watermark is not None
            assert ids == sorted(account.order_ids(START, watermark)), account.key
            assert len(ids) == 30
            # Never in flight on two workers at once (each sync sends one at a time).
            assert account.recorder.max_in_flight == 1, account.key
        for key in held_at_kill:
            assert checkpoints[key].last_worker != victim_name
        if fault_rate:
            assert sum(sandbox.recorder.faults.values()) > 50
        # Secrets never reached the database or the workers' logs.
        text = await all_tables_text(dsn)
        for account in sandbox.accounts[:20]:
            assert account.credentials["api_secret"] not in text
            assert account.credentials["api_secret"] not in output
        print(f"recovered {len(held_at_kill)} accounts {recovered_in:.1f} s after the kill")
        # stalled_after is 3 s and a tick comes every 2 s: generous, never tight.
        assert recovered_in is not None
        assert recovered_in < 60


async def test_fleet_recovers_a_stalled_job_whose_account_is_queued_again(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a dead worker's job could not be given back when a tick had queued
    its account again (the queueing lock refused the retry): the tick failed every time
    and the dead job's lock kept the account from ever being synced again."""
    async with Sandbox(accounts=2, orders=10, start=START, days=1) as sandbox:
        secrets = secrets_file(tmp_path, sandbox)
        fleet = await app_fleet(dsn, secrets, monkeypatch)
        await query(dsn, ORDERS_TABLE)
        assert await fleet.schedule(only=["account-1"], due=False) == 1
        # Its worker took it, then died: no heartbeat for an hour.
        await taken_by_a_dead_worker(dsn)
        assert await fleet.schedule(only=["account-1"], due=False) == 1  # a tick queued it again
        assert await fleet.recover_stalled() == 1
        rows = await query(dsn, "SELECT status::text, priority FROM procrastinate_jobs ORDER BY id")
        assert rows == [("failed", 0), ("todo", 10)]  # the queued one moved ahead
        await work_until(fleet, lambda status: bool(status["account-1"].last_success_at))


async def test_fleet_schedule_survives_a_racing_scheduler(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Sandbox(accounts=3, orders=5, start=START, days=1) as sandbox:
        secrets = secrets_file(tmp_path, sandbox)
        fleet = await app_fleet(dsn, secrets, monkeypatch)
        assert await fleet.schedule(only=["account-1"], due=False) == 1

        async def nothing_queued() -> set[str]:  # as if another scheduler raced this one
            return set()

        monkeypatch.setattr(fleet, "_queued", nothing_queued)
        assert await fleet.schedule(due=False) == 2  # the batch fell back, one at a time
        rows = await query(dsn, "SELECT args->>'account' FROM procrastinate_jobs ORDER BY id")
        assert sorted(r[0] for r in rows) == ["account-0", "account-1", "account-2"]


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connexi_async", "fleet", *args,
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_fleet_command_line(tmp_path: Path, dsn: str) -> None:
    async with Sandbox(accounts=3, orders=5, start=START, days=1) as sandbox:
        secrets = secrets_file(tmp_path, sandbox)
        env = {
            **os.environ,
            **fleet_env(dsn, secrets),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
        }
        app = ("--app", "fleet_app:fleet")
        for _ in range(2):  # idempotent
            code, _, err = await run_cli(env, *app, "setup")
            assert code == 0, err
        code, _, err = await run_cli(env, *app, "schedule", "--account", "account-2")
        assert code == 0, err
        assert "1 account syncs queued" in err
        code, _, err = await run_cli(env, *app, "schedule")  # the due ones: the two others
        assert "2 account syncs queued" in err
        code, out, err = await run_cli(env, *app, "status")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["account", "watermark", "lag"]
        assert [line.split()[0] for line in lines[1:]] == ["account-0", "account-1", "account-2"]
        assert all("queued" in line for line in lines[1:])
        assert "3 accounts, 0 failing" in err
        code, out, _ = await run_cli(env, *app, "status", "--json")
        rows = [json.loads(line) for line in out.splitlines()]
        assert [r["account"] for r in rows] == ["account-0", "account-1", "account-2"]
        assert rows[0]["job"] == "queued"
        assert rows[0]["watermark"] is None
        for account in sandbox.accounts:
            assert account.credentials["api_secret"] not in out + err
        # Mistakes in --app are usage errors that say what is wrong.
        code, _, err = await run_cli(env, "status")
        assert code == 2
        assert "--app" in err
        code, _, err = await run_cli(env, "--app", "no_such_module:fleet", "status")
        assert code == 2
        assert "cannot import no_such_module" in err
        code, _, err = await run_cli(env, "--app", "fleet_app:nothing", "status")
        assert code == 2
        assert "has no nothing" in err
        code, _, err = await run_cli(env, "--app", "fleet_app:ORDERS_TABLE", "status")
        assert code == 2
        assert "expected a Fleet" in err


async def test_sandbox_command_writes_an_accounts_file(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connexi_async.sandbox", "--port", "0", "--accounts", "4",
        "--orders", "5", "--start", START.isoformat(), "--days", "1",
        "--accounts-file", str(path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            while b"CONNEXI_SANDBOX_ACCOUNTS_FILE" not in await process.stdout.readline():
                pass
        entries = json.loads(path.read_text())
        assert sorted(entries) == ["account-0", "account-1", "account-2", "account-3"]
        assert path.stat().st_mode & 0o077 == 0
        async with ConnexiClient(**entries["account-3"]) as client:
            assert len(await client.fetch_orders(START, NOW)) == 5
    finally:
        process.terminate()
        await process.wait()


# -- regressions from the adversarial review ---------------------------------------------------


async def fleet_for(
    tmp_path: Path, dsn: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> Fleet:
    secrets = secrets_file(tmp_path, sandbox)
    for name, value in fleet_env(dsn, secrets).items():
        monkeypatch.setenv(name, value)
    from fleet_app import accounts, credentials, sink

    fleet = Fleet(
        dsn,
        accounts=options.pop("accounts", accounts),
        credentials=options.pop("credentials", credentials),
        sink=options.pop("sink", sink),
        start=START,
        window=timedelta(hours=6),
        settle=timedelta(seconds=30),
        retry_wait=timedelta(seconds=1),
        stalled_after=timedelta(seconds=3),
        tick=options.pop("tick", timedelta(seconds=2)),
        **options,
    )
    await fleet.setup()
    await query(dsn, ORDERS_TABLE)
    return fleet


async def taken_by_a_dead_worker(dsn: str) -> None:
    """Every job as taken by a worker with no heartbeat for an hour."""
    [(dead,)] = await query(
        dsn,
        "INSERT INTO procrastinate_workers (last_heartbeat) "
        "VALUES (now() - interval '1 hour') RETURNING id",
    )
    await query(dsn, "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s", dead)


async def wait_synced(fleet: Fleet, keys: list[str], since: datetime, seconds: float = 60) -> None:
    async with fleet, asyncio.timeout(seconds):
        while True:
            states = await fleet.store.states(keys)
            if all(s.last_success_at and s.last_success_at >= since for s in states):
                return
            await asyncio.sleep(0.1)


async def test_fleet_worker_rides_out_a_database_restart(
    tmp_path: Path, dsn: str, cluster: TemporaryCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a PostgreSQL restart stopped every worker, with exit code 0."""
    async with Sandbox(accounts=2, orders=10, start=START, days=1) as sandbox:
        fleet = await fleet_for(tmp_path, dsn, sandbox, monkeypatch)
        worker = asyncio.create_task(fleet.run_worker(concurrency=2, install_signal_handlers=False))
        try:
            await wait_synced(fleet, ["account-0", "account-1"], START)
            await asyncio.to_thread(cluster.restart)
            restarted = datetime.now(UTC)
            await asyncio.sleep(1)
            assert not worker.done()  # still there, starting again
            async with fleet:
                await fleet.schedule(due=False)
            await wait_synced(fleet, ["account-0", "account-1"], restarted)
            assert not worker.done()
        finally:
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker
        rows = await query(dsn, "SELECT count(*), max(deliveries) FROM fleet_orders")
        assert rows == [(20, 1)]


async def test_fleet_worker_that_cannot_connect_at_start_says_so() -> None:
    async def credentials(key: str) -> Credentials:
        raise AssertionError

    async def sink(batch: FleetBatch) -> None:
        raise AssertionError

    secret = "pw-88c1d"
    fleet = Fleet(
        f"postgresql://postgres:{secret}@127.0.0.1:1/x?connect_timeout=2",
        accounts=["a"],
        credentials=credentials,
        sink=sink,
        start=START,
    )
    with pytest.raises(ConfigurationError) as caught:
        await fleet.run_worker(install_signal_handlers=False)
    assert "cannot connect" in str(caught.value)
    assert secret not in str(caught.value)
    assert secret not in repr(fleet)
    # A conninfo libpq cannot parse is refused without being shown (its messages quote it).
    with pytest.raises(ConfigurationError) as bad:
        Fleet(
            "postgresql://postgres:S3cr%ZZet@127.0.0.1/x",
            accounts=["a"],
            credentials=credentials,
            sink=sink,
            start=START,
        )
    assert "S3cr" not in str(bad.value)


async def test_two_fleets_share_a_database_without_meeting(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: lock names and the tick were not named by the fleet: a second fleet
    queued nothing for keys the first one had queued, and got a share of its ticks."""
    async with Sandbox(accounts=3, orders=5, start=START, days=1) as sandbox:
        one = await fleet_for(tmp_path, dsn, sandbox, monkeypatch, queue="one", table="one_state")
        two = await fleet_for(tmp_path, dsn, sandbox, monkeypatch, queue="two", table="two_state")
        async with one, two:
            assert await one.schedule(due=False) == 3
            assert await two.schedule(due=False) == 3
            assert {s.job for s in await two.status()} == {"queued"}
        workers = [
            asyncio.create_task(fleet.run_worker(concurrency=3, install_signal_handlers=False))
            for fleet in (one, two)
        ]
        try:
            keys = [a.key for a in sandbox.accounts]
            await wait_synced(one, keys, START)
            await wait_synced(two, keys, START)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)


async def test_a_tick_whose_cancellation_becomes_an_error_still_stops(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (found by the lowest-dependency test cell): a library under the tick
    turned its cancellation into an error of its own; the tick logged it and went round
    again, so a cancelled worker waited for its tick forever."""
    async with Sandbox(accounts=1, orders=5, start=START, days=1) as sandbox:
        fleet = await fleet_for(tmp_path, dsn, sandbox, monkeypatch)
        entered = asyncio.Event()

        async def tick(timestamp: int) -> None:
            entered.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                raise RuntimeError("the connection is lost") from None

        monkeypatch.setattr(fleet, "_tick", tick)
        async with fleet:
            ticking = asyncio.create_task(fleet._housekeeping(timedelta(milliseconds=10)))
            await asyncio.wait_for(entered.wait(), 30)
            ticking.cancel()
            done, _ = await asyncio.wait({ticking}, timeout=30)
            assert ticking in done, "the cancelled tick went round again"
            assert ticking.cancelled()


async def test_fleet_run_that_finds_the_account_locked_is_not_a_success(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a run that found another worker holding the account was recorded
    as a success (and took over last_worker) although it synced nothing."""
    async with Sandbox(accounts=1, orders=5, start=START, days=1) as sandbox:
        fleet = await fleet_for(tmp_path, dsn, sandbox, monkeypatch)
        other = PostgresCheckpoints(dsn, worker="frozen-host:1")
        async with fleet, other, other.lock("account-0"):
            with pytest.raises(SyncLockedError):
                await fleet._sync_account("account-0")
            (state,) = await fleet.store.states(["account-0"])
        assert state.last_success_at is None
        assert state.last_run_at is None
        assert state.held_by == "frozen-host:1"
        assert await query(dsn, "SELECT count(*) FROM fleet_orders") == [(0,)]


async def test_fleet_run_stops_when_its_lock_is_lost(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Sandbox(accounts=1, orders=5, start=START, days=1) as sandbox:
        fleet = await fleet_for(tmp_path, dsn, sandbox, monkeypatch)
        store = fleet.store
        async with store, store.lock("account-0"):
            await query(
                dsn,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid() "
                "AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = pg_stat_activity.pid "
                "AND l.locktype = 'advisory')",
                f"connexi-fleet {store.worker}",
            )
            with pytest.raises(SyncLockedError, match="lost its run lock"):
                await store.save("account-0", a_checkpoint(1))
        assert await store_load(dsn, "account-0") is None


async def store_load(dsn: str, key: str) -> Checkpoint | None:
    async with PostgresCheckpoints(dsn) as store:
        return await store.load(key)


async def test_fleet_hostile_accounts_and_credentials(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with Sandbox(accounts=2, orders=5, start=START, days=1) as sandbox:

        async def accounts() -> list[Any]:
            return ["account-0", "bad\nkey", "x" * 201, 7, "account-1", "account-0"]

        fleet = await fleet_for(tmp_path, dsn, sandbox, monkeypatch, accounts=accounts)
        async with fleet:
            # One bad key is skipped and logged; it does not stop the fleet.
            assert await fleet.accounts() == ["account-0", "account-1"]
            assert "'bad\\nkey'" in caplog.text
            assert await fleet.schedule() == 2
            assert len(await fleet.status()) == 2
            # Two callers at once share one opening (a web app's two requests).
            await asyncio.gather(fleet.status(), fleet.schedule(), fleet.status())
            with pytest.raises(ConfigurationError, match="not accounts of this fleet"):
                await fleet.schedule(only=["account-9"])

        async def vault(key: str) -> Any:
            return dict(sandbox.account(key).credentials)  # a dict, not Credentials

        plain = await fleet_for(tmp_path, dsn, sandbox, monkeypatch, credentials=vault)
        async with plain:
            with pytest.raises(ConfigurationError, match="must return") as caught:
                await plain._sync_account("account-1")
        text = "".join(
            traceback.TracebackException.from_exception(caught.value, capture_locals=True).format()
        )
        assert sandbox.account("account-1").credentials["api_secret"] not in text

    async def credentials(key: str) -> Credentials:
        raise AssertionError

    async def sink(batch: FleetBatch) -> None:
        raise AssertionError

    def plain_sink(batch: FleetBatch) -> None:
        raise AssertionError

    base: dict[str, Any] = {"credentials": credentials, "sink": sink, "start": START}
    with pytest.raises(ConfigurationError, match="accounts must be"):
        Fleet(dsn, accounts="seller-1", **base)
    with pytest.raises(ConfigurationError, match="sink must be an async function"):
        Fleet(dsn, accounts=["a"], **{**base, "sink": plain_sink})
    with pytest.raises(ConfigurationError, match="account_concurrency"):
        Fleet(dsn, accounts=["a"], **base, account_concurrency=0)


async def test_store_on_your_pool_outside_autocommit(dsn: str) -> None:
    """Regression: on a pool of yours (not autocommit), the lock's connection sat idle in
    a transaction holding a row lock, and the first save of the run waited forever."""
    async with AsyncConnectionPool(dsn, min_size=1, max_size=4, open=False) as pool:
        store = PostgresCheckpoints(pool=pool)
        await store.setup()
        async with asyncio.timeout(20), store, store.lock("seller"):
            await store.save("seller", a_checkpoint(1))
            await store.record_run("seller")
        assert await store.load("seller") == a_checkpoint(1)
        (state,) = await store.states(["seller"])
        assert state.last_success_at is not None  # committed, not rolled back with the pool


async def test_store_unreachable_is_retryable_and_a_failed_open_recovers(
    cluster: TemporaryCluster,
) -> None:
    gone = "host=127.0.0.1 port=1 dbname=x user=postgres connect_timeout=1"
    async with AsyncConnectionPool(gone, min_size=0, max_size=1, open=False, timeout=1) as pool:
        with pytest.raises(CheckpointStoreUnavailableError) as caught:
            await PostgresCheckpoints(pool=pool).load("k")
    assert not _fatal(caught.value)  # run_forever tries again; a person need not look
    # A database that is not there yet, then is: the second open works.
    name = "created_later"
    dsn = cluster.conninfo.replace(f"dbname={cluster.database}", f"dbname={name}")
    store = PostgresCheckpoints(dsn, open_timeout=2)
    with pytest.raises(SyncError, match="does not exist"):
        await store.open()
    await query(cluster.conninfo, f'CREATE DATABASE "{name}"')
    async with store:
        await store.setup()
        assert await store.load("k") is None
    assert store._pool is None  # closed once, for good


async def test_store_refusing_a_table_keeps_no_password_in_locals() -> None:
    secret = "pw-5d9e"
    with pytest.raises(ConfigurationError) as caught:
        PostgresCheckpoints(f"postgresql://u:{secret}@127.0.0.1/x", table="bad-table")
    stack = traceback.TracebackException.from_exception(caught.value, capture_locals=True).stack
    ours = [frame for frame in stack if "connexi_async" in frame.filename]
    assert ours
    assert all(secret not in repr(frame.locals) for frame in ours)


async def test_store_names_a_write_that_swallowed_its_own_error(
    store: PostgresCheckpoints, dsn: str
) -> None:
    await query(dsn, "CREATE TABLE sink (id bigint PRIMARY KEY)")
    await query(dsn, "INSERT INTO sink VALUES (1)")

    async def swallowing(db: psycopg.AsyncConnection[Any]) -> None:
        with contextlib.suppress(psycopg.errors.UniqueViolation):
            await db.execute("INSERT INTO sink VALUES (1)")

    with pytest.raises(SyncError, match="caught a database error"):
        await store.save("k", a_checkpoint(1), write=swallowing)
    assert await store.load("k") is None


async def test_fleet_open_cancelled_halfway_leaves_it_usable(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Sandbox(accounts=1, orders=5, start=START, days=1) as sandbox:
        fleet = await fleet_for(tmp_path, dsn, sandbox, monkeypatch)
        for delay in (0, 0.001, 0.01, 0.05):
            opening = asyncio.create_task(fleet.open())
            await asyncio.sleep(delay)
            opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await opening
            if not opening.cancelled():
                await fleet.close()
        async with fleet:
            assert [s.key for s in await fleet.status()] == ["account-0"]
        assert fleet._opened == 0


def test_missing_postgresql_binaries_fail_saying_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connexi_async.fleet import testing

    monkeypatch.setenv("CONNEXI_PG_BIN", str(tmp_path))
    monkeypatch.setattr(testing.shutil, "which", lambda name: None)
    monkeypatch.setattr(testing.glob, "glob", lambda pattern: [])
    with pytest.raises(testing.ClusterError, match="apt install postgresql"):
        TemporaryCluster().start()


async def test_fleet_ticks_while_every_job_slot_is_busy(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the tick was a job like the syncs; with every slot held by a long
    run, no tick ran, and a dead worker's accounts waited for a slot (128 s seen)."""
    release = asyncio.Event()

    async with Sandbox(accounts=2, orders=5, start=START, days=1) as sandbox:
        from fleet_app import sink as real_sink

        async def slow_sink(batch: FleetBatch) -> None:
            if batch.account == "account-0":
                await release.wait()  # holds the only slot
            await real_sink(batch)

        fleet = await fleet_for(tmp_path, dsn, sandbox, monkeypatch, sink=slow_sink)
        assert await fleet.schedule(only=["account-1"], due=False) == 1
        await taken_by_a_dead_worker(dsn)
        assert await fleet.schedule(only=["account-0"], due=False) == 1
        worker = asyncio.create_task(fleet.run_worker(concurrency=1, install_signal_handlers=False))
        try:
            async with asyncio.timeout(30):
                while True:  # the dead worker's job goes back while account-0 runs
                    rows = await query(
                        dsn,
                        "SELECT status::text FROM procrastinate_jobs "
                        "WHERE args->>'account' = 'account-1' ORDER BY id",
                    )
                    if rows[0] != ("doing",):
                        break
                    await asyncio.sleep(0.1)
            running = await query(
                dsn, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'"
            )
            assert running == [(1,)]  # account-0, still holding the slot
            release.set()
            await wait_synced(fleet, ["account-0", "account-1"], START)
        finally:
            release.set()
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker


async def test_fleet_refuses_what_cannot_work(
    tmp_path: Path, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def credentials(key: str) -> Credentials:
        raise AssertionError

    async def sink(batch: FleetBatch) -> None:
        raise AssertionError

    with pytest.raises(ConfigurationError, match="in the future"):
        Fleet(
            dsn, accounts=["a"], credentials=credentials, sink=sink, start=NOW + timedelta(days=30)
        )
    # Before setup: a clear instruction, not a database error or a worker retrying forever.
    fleet = Fleet(dsn, accounts=["a"], credentials=credentials, sink=sink, start=START)
    for call in (fleet.status, fleet.schedule, fleet.run_worker):
        with pytest.raises(ConfigurationError, match="setup"):
            await call()


async def test_store_on_your_pool_passes_your_own_database_error_under_the_lock(
    dsn: str,
) -> None:
    """Regression: with pool=, the run lock's connection came from a wrapper that turned
    every database error raised during the whole run, the sink's own included, into
    "cannot take the lock"."""
    await query(dsn, "CREATE TABLE sink (id bigint PRIMARY KEY)")
    await query(dsn, "INSERT INTO sink VALUES (1)")

    async def duplicate(db: psycopg.AsyncConnection[Any]) -> None:
        await db.execute("INSERT INTO sink VALUES (1)")

    async with AsyncConnectionPool(dsn, min_size=1, max_size=4, open=False) as pool:
        store = PostgresCheckpoints(pool=pool)
        await store.setup()
        with pytest.raises(psycopg.errors.UniqueViolation):
            async with store.lock("seller"):
                await store.save("seller", a_checkpoint(1), write=duplicate)
        async with store.lock("seller"):  # released, and the connection went back clean
            await store.save("seller", a_checkpoint(1))
        async with pool.connection() as db:
            assert not db.autocommit  # your pool's setting, given back


async def test_store_run_lock_given_back_unended_after_a_failed_run(
    store: PostgresCheckpoints,
) -> None:
    """Regression (a CI flake): after a run raised, its lock connection was ended rather
    than unlocked; its lock lived on until the backend exited, and the account's next
    run, right after, could be refused with "holder unknown"."""
    held: list[psycopg.AsyncConnection[Any]] = []
    with pytest.raises(RuntimeError, match="sink down"):
        async with store.lock("seller"):
            held.append(store._held["seller"])
            raise RuntimeError("sink down")
    assert not held[0].closed  # unlocked and back in the pool, not ended
    async with store.lock("seller"):
        pass


async def test_store_run_lock_whose_unlock_hangs_is_ended_not_waited_on(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that failed because the database went silent: unlocking its lock connection
    is bounded by open_timeout, then the connection is ended (which frees the lock)."""
    async with PostgresCheckpoints(dsn, open_timeout=1) as store, asyncio.timeout(30):
        await store.setup()
        held: list[psycopg.AsyncConnection[Any]] = []

        async def silent(*_: object, **__: object) -> None:
            await asyncio.sleep(3600)

        with pytest.raises(RuntimeError, match="database gone"):
            async with store.lock("seller"):
                held.append(store._held["seller"])
                monkeypatch.setattr(held[0], "execute", silent)
                raise RuntimeError("database gone")
        assert held[0].closed
        async with store.lock("seller"):
            pass


async def test_store_lock_refused_by_a_holder_gone_since_is_asked_again(
    store: PostgresCheckpoints, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock refused, but whose holder is gone by the time we ask who it was (a
    connection that had just ended), is taken on a second try instead of
    SyncLockedError("holder unknown")."""
    lock = lock_id(store.table, "seller")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as other:
        await other.execute("SELECT pg_advisory_lock(%s)", (lock,))
        asked = store._holder

        async def holder_lets_go(db: psycopg.AsyncConnection[Any], lock: int) -> str | None:
            await other.execute("SELECT pg_advisory_unlock(%s)", (lock,))
            return await asked(db, lock)

        monkeypatch.setattr(store, "_holder", holder_lets_go)
        async with store.lock("seller"):
            [(held,)] = await query(
                dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            )
            assert held == 1  # ours
