"""``Fleet``: one sync cycle per seller account as a procrastinate job, on PostgreSQL.

The pieces, and who guarantees what:

* **Queue** (procrastinate, PostgreSQL): a scheduler tick, run by each worker beside its
  job slots (never waiting for one) and by one worker at a time (an advisory lock),
  defers one ``sync_account`` job per account that is due. The job carries the account's key only. ``queueing_lock`` keeps an account from
  being queued twice; ``lock`` keeps two of its jobs from running at once.
* **Run lock** (an advisory lock, held by a connection of its own for the whole run):
  the hard guarantee that no two workers sync one account at once, even if a job is
  retried while its first worker still lives. PostgreSQL releases it when its holder
  dies, however it dies.
* **Checkpoint** (:class:`PostgresCheckpoints`): compare-and-set, committed in the same
  transaction as your sink's writes when the sink writes to this database: exactly once.
* **Recovery**: a worker killed mid-job stops sending heartbeats; the tick gives its
  jobs back to the queue after ``stalled_after``, and another worker finishes them from
  the last committed checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import attrs
import procrastinate
import psycopg
from procrastinate import exceptions as procrastinate_exceptions
from procrastinate.jobs import Job, Status
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from procrastinate.tasks import Task
from procrastinate.worker import Worker as ProcrastinateWorker

from .._auth import _Secret
from .._client import ConnexiClient
from .._cooperative import Steps, run_sliced
from .._errors import (
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
    SyncError,
    SyncLockedError,
)
from .._models import Order
from .._windows import Window, whole_second
from ..sync import OrderSync, SyncBatch
from ._store import (
    AccountState,
    PostgresCheckpoints,
    _hide_password,
    check_conninfo,
    default_worker_name,
    lock_id,
)

__all__ = ["AccountStatus", "Credentials", "Fleet", "FleetBatch"]

logger = logging.getLogger("connexi_async.fleet")

SYNC_TASK = "connexi_async.fleet.sync_account"
# Dead workers' accounts go back ahead of the backlog (higher runs first).
RECOVERED_PRIORITY = 10
_DEFER_BATCH = 100  # jobs a statement: a few milliseconds to build and send
# Failures that retrying cannot mend until a person acts: the job fails at once (the
# next tick queues the account again, and status shows the error meanwhile).
_FATAL = (ConfigurationError, AuthenticationError, PermissionDeniedError)


@attrs.frozen
class Credentials:
    """One account's credentials, as your ``credentials`` callable returns them. The
    secret never shows in a repr."""

    api_key: str
    api_secret: str = attrs.field(repr=False, converter=_Secret)
    base_url: str | None = None


@attrs.frozen(kw_only=True)
class FleetBatch:
    """The new orders of one window of one account, handed to your sink.

    ``connection`` is the ``psycopg.AsyncConnection`` of the transaction that moves the
    account's checkpoint past this window: write through it and your rows and the
    checkpoint are committed together, or neither is (exactly once). A sink that writes
    elsewhere gets at least once: make it idempotent (upsert by order id).
    """

    account: str
    window: Window
    records: list[Order]
    connection: psycopg.AsyncConnection[Any] = attrs.field(repr=False)


@attrs.frozen(kw_only=True)
class AccountStatus:
    """One line of ``fleet status``."""

    key: str
    watermark: datetime | None
    lag: timedelta | None
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_error: str
    last_worker: str
    held_by: str  # the worker syncing it now ("" when none)
    job: str  # "queued", "running", "retrying" or ""


Sink = Callable[[FleetBatch], Awaitable[object]]
CredentialsSource = Callable[[str], Awaitable[Credentials]]
AccountsSource = Callable[[], Awaitable[Iterable[str]]] | Iterable[str]


class _RetryTransient(BaseRetryStrategy):
    """Retry what may pass (the API, the network, the database, your sink) with doubling
    waits; give up at once on what cannot (credentials, configuration)."""

    def __init__(self, max_attempts: int, first_wait: float, max_wait: float) -> None:
        self.max_attempts = max_attempts
        self.first_wait = first_wait
        self.max_wait = max_wait

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if _is_fatal(exception) or job.attempts + 1 >= self.max_attempts:
            return None
        wait = min(self.max_wait, self.first_wait * 2**job.attempts)
        return RetryDecision(retry_in={"seconds": max(int(wait), 1)})


def _is_fatal(exc: BaseException) -> bool:
    return isinstance(exc, _FATAL) or isinstance(exc.__cause__, _FATAL)


class Fleet:
    """Sync the orders of many seller accounts with workers on many machines.

    >>> fleet = Fleet(
    ...     "postgresql://sync@db/erp",
    ...     accounts=["seller-1", "seller-2"],       # or an async callable
    ...     credentials=credentials,                  # async (key) -> Credentials
    ...     sink=sink,                                # async (FleetBatch) -> None
    ...     start=datetime(2026, 1, 1, tzinfo=UTC),
    ... )
    >>> await fleet.setup()                           # once; idempotent
    >>> await fleet.run_worker(concurrency=10)        # on each machine

    Or from a shell: ``connexi-async fleet --app myapp.fleet:fleet worker``.

    Options (keyword-only): ``interval`` (5 min) between two syncs of an account;
    ``tick`` (1 min) how often the scheduler looks for accounts that are due and gives
    dead workers' jobs back (``None``: never; run ``fleet schedule`` from cron instead);
    ``lookback``, ``settle``, ``window``, ``account_concurrency`` (2) as for
    :class:`~connexi_async.sync.OrderSync`; ``client_options`` for every
    :class:`~connexi_async.ConnexiClient` (timeouts, retries); ``max_attempts`` (5) and
    ``retry_wait`` (10 s, doubling, at most ``interval``) for a failed job;
    ``stalled_after`` (30 s) without a heartbeat before a dead worker's jobs go back to
    the queue (workers beat every third of it); ``run_timeout`` (1 h) after which one
    account's run is cancelled (a hung sink or server; the next run goes on from its
    checkpoint); ``keep_failed`` (7 days) how long failed jobs stay in the queue's table
    for inspection; ``queue`` and ``table`` (two fleets in one database differ in both).

    Credentials never enter the queue: jobs carry the account key, and each worker asks
    ``credentials(key)`` when it runs one.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        accounts: AccountsSource,
        credentials: CredentialsSource,
        sink: Sink,
        start: datetime,
        interval: timedelta = timedelta(minutes=5),
        tick: timedelta | None = timedelta(minutes=1),
        lookback: timedelta = timedelta(hours=2),
        settle: timedelta = timedelta(minutes=2),
        window: timedelta = timedelta(hours=1),
        account_concurrency: int = 2,
        client_options: Mapping[str, Any] | None = None,
        max_attempts: int = 5,
        retry_wait: timedelta = timedelta(seconds=10),
        stalled_after: timedelta = timedelta(seconds=30),
        queue: str = "connexi-fleet",
        table: str = "connexi_checkpoints",
        run_timeout: timedelta | None = timedelta(hours=1),
        keep_failed: timedelta = timedelta(days=7),
        worker: str | None = None,
    ) -> None:
        for name, value in (("sink", sink), ("credentials", credentials)):
            if not _is_async_callable(value):
                raise ConfigurationError(
                    f"{name} must be an async function (async def), got {value!r:.60}"
                )
        if isinstance(accounts, str | bytes) or not (
            _is_async_callable(accounts) or isinstance(accounts, Iterable)
        ):
            raise ConfigurationError(
                "accounts must be a list of account keys or an async function returning "
                f"them, got {accounts!r:.60}"
            )
        for name, span in (
            ("lookback", lookback),
            ("settle", settle),
            ("window", window),
            ("retry_wait", retry_wait),
            ("keep_failed", keep_failed),
        ):
            if not isinstance(span, timedelta) or span < timedelta(0):
                raise ConfigurationError(f"{name} must be a timedelta, got {span!r}")
        if run_timeout is not None and (
            not isinstance(run_timeout, timedelta) or run_timeout <= timedelta(0)
        ):
            raise ConfigurationError(
                f"run_timeout must be a positive timedelta, got {run_timeout!r}"
            )
        if (
            not isinstance(account_concurrency, int)
            or isinstance(account_concurrency, bool)
            or not 1 <= account_concurrency <= 64
        ):
            raise ConfigurationError(
                f"account_concurrency must be 1 to 64, got {account_concurrency!r}"
            )
        if not isinstance(queue, str) or not queue or len(queue) > 100 or not queue.isprintable():
            raise ConfigurationError(f"queue must be a short printable name, got {queue!r:.60}")
        if not isinstance(interval, timedelta) or interval <= timedelta(0):
            raise ConfigurationError(f"interval must be a positive timedelta, got {interval!r}")
        if tick is not None and (
            not isinstance(tick, timedelta) or not timedelta(seconds=1) <= tick <= interval
        ):
            raise ConfigurationError(
                f"tick must be a timedelta from 1 s to interval ({interval}), or None; got {tick!r}"
            )
        if not isinstance(stalled_after, timedelta) or stalled_after < timedelta(seconds=3):
            raise ConfigurationError(f"stalled_after must be 3 s or more, got {stalled_after!r}")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be 1 or more, got {max_attempts!r}")
        self.start: datetime = whole_second(start, "start")
        self.interval = interval
        self.tick = tick
        self.lookback = lookback
        self.settle = settle
        self.window = window
        self.account_concurrency = account_concurrency
        self.client_options: dict[str, Any] = dict(client_options or {})
        self.stalled_after = stalled_after
        self.run_timeout = run_timeout
        self.keep_failed = keep_failed
        self.queue = queue
        self.worker: str = worker or default_worker_name()
        self._accounts = accounts
        self._credentials = credentials
        self._sink = sink
        self._conninfo = _Secret(check_conninfo(conninfo))
        del conninfo  # no frame of ours keeps a password in clear
        self.store: PostgresCheckpoints = PostgresCheckpoints(
            str(self._conninfo), table=table, worker=self.worker
        )
        self.app: procrastinate.App = procrastinate.App(
            # (procrastinate's pool checks its connections when taken, as ours do)
            connector=procrastinate.PsycopgConnector(conninfo=str(self._conninfo))
        )
        retry = _RetryTransient(
            max_attempts,
            retry_wait.total_seconds(),
            max(interval.total_seconds(), retry_wait.total_seconds()),
        )
        self.sync_task: Task[[str], Awaitable[None], [str]] = self.app.task(
            name=SYNC_TASK, queue=queue, pass_context=False, retry=retry
        )(self._sync_account)
        if self.start > datetime.now(UTC):
            raise ConfigurationError(
                f"start {self.start.isoformat()} is in the future: a sync reads from start "
                "to now, so it would read nothing"
            )
        self._session: aiohttp.ClientSession | None = None
        self._opened = 0
        self._opening = asyncio.Lock()
        self._ready = False  # setup() was found done

    def __repr__(self) -> str:
        # Safe on a half-built Fleet too (tracebacks that show locals call it).
        store = getattr(self, "store", None)
        table = store.table if store is not None else "?"
        return f"<Fleet queue={getattr(self, 'queue', '?')} table={table} worker={getattr(self, 'worker', '?')}>"

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the database pools and the worker's HTTP session (``async with fleet``;
        nested and concurrent uses share one opening)."""
        async with self._opening:
            if self._opened:
                self._opened += 1
                return
            # The store first: it tries one connection, whose failure says why (a pool
            # only says that it timed out).
            try:
                await self.store.open()
            except SyncError as exc:
                raise ConfigurationError(str(exc).replace("checkpoint", "fleet's")) from None
            try:
                await self.app.open_async()
            except BaseException as exc:
                await self.store.close()
                if isinstance(exc, Exception):
                    raise ConfigurationError(
                        f"cannot connect to the fleet's database ({_hide_password(exc)})"
                    ) from None
                raise
            self._session = aiohttp.ClientSession()
            self._opened = 1

    async def close(self) -> None:
        async with self._opening:
            if not self._opened:
                return
            self._opened -= 1
            if self._opened:
                return
            session, self._session = self._session, None
            try:
                if session is not None:
                    await session.close()
            finally:
                try:
                    await self.store.close()
                finally:
                    await self.app.close_async()

    async def __aenter__(self) -> Fleet:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- what the command line runs ---------------------------------------------------------

    async def setup(self) -> None:
        """Create procrastinate's schema (if it is not there yet) and the checkpoint
        table. Idempotent; never done implicitly. An older procrastinate schema is
        migrated with procrastinate's own tools, not here."""
        async with self:
            connector = self.app.connector
            row = await connector.execute_query_one_async(
                "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present"
            )
            if not row["present"]:
                await self.app.schema_manager.apply_schema_async()
            await self.store.setup()

    async def run_worker(
        self, *, concurrency: int = 10, install_signal_handlers: bool = True
    ) -> None:
        """Run a worker until it is stopped. ``concurrency`` accounts at a time.

        SIGINT/SIGTERM (with ``install_signal_handlers``) stop it gracefully: no new
        job starts, the runs under way get ``stalled_after / 2`` to finish and are then
        cancelled (nothing committed is lost, the rest is synced by the next run); a
        second signal stops at once. Cancelling the task stops at once too.

        If the database goes away (a restart, a failover), the worker does not end: it
        logs the failure and starts again once the database answers, waiting 1, 2, 4 …
        30 s between tries. If it cannot connect when it starts, it raises at once.
        """
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be 1 or more, got {concurrency!r}")
        async with self:
            await self._require_setup()  # before anything: a missing schema is no outage
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        current: list[ProcrastinateWorker] = []
        task = asyncio.current_task()
        handled: list[int] = []

        def on_signal() -> None:
            if stop.is_set() and task is not None:
                task.cancel()  # a second signal: at once
                return
            logger.warning("fleet worker %s: stopping (finishing the runs under way)", self.worker)
            stop.set()
            for worker in current:
                worker.stop()  # type: ignore[no-untyped-call]  # procrastinate's, untyped

        if install_signal_handlers:
            for number in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(number, on_signal)
                    handled.append(number)
        # Enough database connections for `concurrency` runs: each holds its run lock on
        # one for the whole run, and saves take another for a moment.
        self.store.size_for(concurrency)
        failures = 0
        started = False
        try:
            while not stop.is_set():
                began = loop.time()
                try:
                    async with self:
                        started = True
                        worker = ProcrastinateWorker(
                            self.app,
                            queues=[self.queue],
                            concurrency=concurrency,
                            name=self.worker,
                            update_heartbeat_interval=self.stalled_after.total_seconds() / 3,
                            stalled_worker_timeout=self.stalled_after.total_seconds(),
                            # Finish (or cancel) before the others take us for dead.
                            shutdown_graceful_timeout=self.stalled_after.total_seconds() / 2,
                            delete_jobs="successful",
                            install_signal_handlers=False,
                        )
                        current[:] = [worker]
                        logger.info(
                            "fleet worker %s: %d accounts at a time", self.worker, concurrency
                        )
                        ticking = (
                            None
                            if self.tick is None
                            else asyncio.create_task(self._housekeeping(self.tick))
                        )
                        try:
                            await worker.run()  # type: ignore[no-untyped-call]
                        finally:
                            if ticking is not None:
                                ticking.cancel()
                                with contextlib.suppress(asyncio.CancelledError):
                                    await ticking
                    if stop.is_set():
                        return
                    problem = "its connection to the database failed"
                except (ConfigurationError, procrastinate_exceptions.ProcrastinateException,
                        psycopg.Error, OSError) as exc:  # fmt: skip
                    if stop.is_set():
                        return
                    if not started:
                        raise  # never started: a wrong address or password, most likely
                    problem = _hide_password(exc)
                finally:
                    current.clear()
                if loop.time() - began > 60:
                    failures = 0  # it ran for a while: start the backoff over
                failures += 1
                delay = min(30.0, 2.0 ** (failures - 1))
                logger.error(
                    "fleet worker %s stopped (%s); starting again in %.0f s",
                    self.worker,
                    problem,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            for handled_signal in handled:
                loop.remove_signal_handler(handled_signal)

    async def _require_setup(self) -> None:
        if self._ready:
            return
        row = await self.app.connector.execute_query_one_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS queue, "
            "to_regclass(%(table)s) IS NOT NULL AS checkpoints",
            table=self.store.table,
        )
        if not (row["queue"] and row["checkpoints"]):
            raise ConfigurationError(
                "the fleet's tables are not in this database yet: run "
                "`connexi-async fleet --app ... setup` (or `await fleet.setup()`) once"
            )
        self._ready = True

    async def accounts(self) -> list[str]:
        """The account keys, from the ``accounts`` you gave, each once. A key that is
        not 1-200 printable characters is left out with an error logged: one bad key
        must not stop the fleet."""
        source = self._accounts
        keys = await source() if callable(source) else source
        if isinstance(keys, str | bytes) or not isinstance(keys, Iterable):
            raise ConfigurationError(
                f"accounts() must return account keys (a list of str), got {type(keys).__name__}"
            )
        return await run_sliced(_good_keys(keys))

    async def schedule(self, *, only: Iterable[str] | None = None, due: bool = True) -> int:
        """Queue a sync of each account that is due (``due=False``: of every account;
        ``only``: of these). Accounts already queued are left as they are. Returns how
        many jobs were queued."""
        async with self:
            await self._require_setup()
            keys = await self.accounts()
            if only is not None:
                known = set(keys)
                unknown = [key for key in only if key not in known]
                if unknown:
                    raise ConfigurationError(
                        f"not accounts of this fleet: {', '.join(map(repr, unknown[:5]))}"
                    )
                keys = list(dict.fromkeys(only))
            if due:
                states = await self.store.states(keys)
                cutoff = datetime.now(UTC) - self.interval + self._slack()
                keys = [
                    s.key
                    for s in states
                    if (s.last_run_at is None or s.last_run_at <= cutoff) and not s.held_by
                ]
            queued = await self._queued()
            pending = [key for key in keys if _lock_name(self.queue, key) not in queued]
            deferred = 0
            # In batches: one statement per 100 accounts, and jobs built a batch at a time
            # (10,000 at once would hold the loop).
            for first in range(0, len(pending), _DEFER_BATCH):
                deferred += await self._defer(pending[first : first + _DEFER_BATCH])
            if deferred:
                logger.info("fleet: queued %d account syncs", deferred)
            return deferred

    async def _defer(self, keys: list[str]) -> int:
        def job(key: str) -> Job:
            lock = _lock_name(self.queue, key)
            return self.sync_task.configure(lock=lock, queueing_lock=lock).make_new_job(account=key)

        try:
            await self.app.job_manager.batch_defer_jobs_async([job(key) for key in keys])
            return len(keys)
        except procrastinate_exceptions.AlreadyEnqueued:
            pass  # another scheduler queued some meanwhile: one at a time, skipping those
        deferred = 0
        for key in keys:
            with contextlib.suppress(procrastinate_exceptions.AlreadyEnqueued):
                await self.app.job_manager.defer_job_async(job(key))
                deferred += 1
        return deferred

    async def recover_stalled(self) -> int:
        """Put back in the queue the sync jobs of workers that stopped beating (killed,
        frozen, cut off), and end their ticks. Returns how many sync jobs."""
        async with self:
            await self._require_setup()
            manager = self.app.job_manager
            stalled = await manager.get_stalled_jobs(
                queue=self.queue,
                seconds_since_heartbeat=self.stalled_after.total_seconds(),
            )
            count = 0
            for job in stalled:
                if job.task_name != SYNC_TASK:  # a tick: the next one does its work
                    with contextlib.suppress(procrastinate_exceptions.ConnectorException):
                        await manager.finish_job(job, status=Status.FAILED, delete_job=True)
                    continue
                # Given back ahead of the backlog: these accounts waited longest.
                try:
                    await manager.retry_job(job, priority=RECOVERED_PRIORITY)
                except procrastinate_exceptions.UniqueViolation:
                    # The account is queued again already (a tick came meanwhile): that
                    # job does the work, moved ahead; this one ends, or its lock would
                    # block it.
                    await manager.finish_job(job, status=Status.FAILED, delete_job=False)
                    await self.app.connector.execute_query_async(
                        "UPDATE procrastinate_jobs SET priority = %(priority)s "
                        "WHERE queueing_lock = %(lock)s AND status = 'todo'",
                        priority=RECOVERED_PRIORITY,
                        lock=job.queueing_lock,
                    )
                    what = "ended (the account is queued again)"
                except procrastinate_exceptions.ConnectorException as exc:
                    logger.error("fleet: cannot give back %s: %s", job.call_string, exc)
                    continue
                else:
                    what = "goes back to the queue"
                count += 1
                logger.warning(
                    "fleet: the worker running %s stopped beating; its job %s",
                    job.call_string,
                    what,
                )
            return count

    async def status(self) -> list[AccountStatus]:
        """Per account: watermark, lag, last run and error, the worker holding it now."""
        async with self:
            await self._require_setup()
            keys = await self.accounts()
            states = await self.store.states(keys)
            jobs = await self._job_states()
        return await run_sliced(_statuses(self.queue, states, jobs, datetime.now(UTC)))

    # -- the tasks ------------------------------------------------------------------------

    async def _housekeeping(self, every: timedelta) -> None:
        """The tick, in the worker but outside its job slots: when every slot holds a
        long run, the dead workers' accounts must still come back and due accounts
        still be queued. One worker at a time does it (the others skip that tick)."""
        lock = lock_id(self.store.table, f"connexi-fleet tick {self.queue}")
        while True:
            await asyncio.sleep(every.total_seconds() * (0.9 + 0.2 * random.random()))
            try:
                async with self.store._connection("run the tick") as db:
                    cursor = await db.execute("SELECT pg_try_advisory_lock(%s)", (lock,))
                    row = await cursor.fetchone()
                    if not (row and row[0]):
                        continue  # another worker is ticking
                    try:
                        await self._tick(int(time.time()))
                    finally:
                        await db.execute("SELECT pg_advisory_unlock(%s)", (lock,))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next tick tries again; the worker goes on
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # We were cancelled and a library under us turned that into an error
                    # of its own (seen with psycopg 3.2 / procrastinate 3.10): going round
                    # again would never stop, and the worker would wait for us forever.
                    raise asyncio.CancelledError from None
                logger.error("fleet: the tick failed: %s", _hide_password(exc))

    async def _tick(self, timestamp: int) -> None:
        await self.recover_stalled()
        await self.schedule()
        # Failed jobs are kept a while for inspection, then let go (hourly is enough).
        if timestamp % 3600 < (self.tick or timedelta(minutes=1)).total_seconds():
            await self.app.job_manager.delete_old_jobs(
                nb_hours=max(1, int(self.keep_failed.total_seconds() // 3600)),
                queue=self.queue,
                include_failed=True,
                include_aborted=True,
            )

    async def _sync_account(self, account: str) -> None:
        store = self.store
        error = ""
        ran = True
        try:
            async with asyncio.timeout(
                None if self.run_timeout is None else self.run_timeout.total_seconds()
            ):
                await self._run_account(account)
        except SyncLockedError as exc:
            # Another worker holds the account right now (a job given back while its
            # first worker still ran, or a worker that froze): nothing was done. Not a
            # success: retried later, and status shows who holds it.
            ran = False
            logger.warning("fleet: %s; tried again later", exc)
            raise
        except TimeoutError as exc:
            error = (
                f"the run was cancelled after run_timeout={self.run_timeout} (a hung sink, "
                "credentials callable or server?); the next run goes on from the checkpoint"
            )
            raise FleetRunTimeoutError(error) from exc
        except asyncio.CancelledError:
            ran = False  # stopped, not failed: nothing recorded, the account stays due
            raise
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            logger.warning("fleet: %s failed (retried unless it cannot pass): %s", account, error)
            raise
        finally:
            if ran or error:
                # Finished even if this task is cancelled again meanwhile; its failure
                # is logged, never left as "exception was never retrieved".
                recording = asyncio.ensure_future(store.record_run(account, error=error, ran=ran))
                recording.add_done_callback(_log_failed_record)
                with contextlib.suppress(Exception):
                    await asyncio.shield(recording)

    async def _run_account(self, account: str) -> None:
        credentials = await self._credentials(account)
        if not isinstance(credentials, Credentials):
            kind = type(credentials).__name__
            del credentials  # a dict of secrets must not sit in the traceback's locals
            raise ConfigurationError(
                f"credentials({account!r}) must return a connexi_async.fleet.Credentials, "
                f"got {kind}"
            )
        options = dict(self.client_options)
        if credentials.base_url is not None:
            options["base_url"] = credentials.base_url
        client = ConnexiClient(
            api_key=credentials.api_key,
            api_secret=credentials.api_secret,
            session=self._session,
            **options,
        )
        del credentials
        sync = OrderSync(
            client,
            self.store,
            key=account,
            start=self.start,
            lookback=self.lookback,
            settle=self.settle,
            window=self.window,
            concurrency=self.account_concurrency,
        )
        async with client, sync.run_once() as run:
            async for batch in run:
                await batch.commit(write=self._writer(account, batch))
        logger.info(
            "fleet: %s synced: %d orders, watermark %s",
            account,
            sync.stats.records,
            sync.stats.watermark,
        )

    def _writer(
        self, account: str, batch: SyncBatch
    ) -> Callable[[psycopg.AsyncConnection[Any]], Awaitable[object]]:
        async def write(connection: psycopg.AsyncConnection[Any]) -> None:
            await self._sink(
                FleetBatch(
                    account=account,
                    window=batch.window,
                    records=batch.records,
                    connection=connection,
                )
            )

        return write

    # -- helpers ---------------------------------------------------------------------------

    def _slack(self) -> timedelta:
        # A tick that comes a little early still counts the account as due.
        return min(self.tick or timedelta(minutes=1), self.interval) / 2

    async def _queued(self) -> set[str]:
        rows = await self.app.connector.execute_query_all_async(
            "SELECT queueing_lock FROM procrastinate_jobs WHERE status = 'todo' "
            "AND queue_name = %(queue)s AND task_name = %(task)s",
            queue=self.queue,
            task=SYNC_TASK,
        )
        return {row["queueing_lock"] for row in rows if row["queueing_lock"]}

    async def _job_states(self) -> dict[str, str]:
        rows = await self.app.connector.execute_query_all_async(
            "SELECT lock, status::text AS status, attempts FROM procrastinate_jobs "
            "WHERE status IN ('todo', 'doing') AND queue_name = %(queue)s "
            "AND task_name = %(task)s",
            queue=self.queue,
            task=SYNC_TASK,
        )
        states: dict[str, str] = {}
        for row in rows:
            if row["status"] == "doing":
                states[row["lock"]] = "running"
            elif states.get(row["lock"]) != "running":
                states[row["lock"]] = "retrying" if row["attempts"] else "queued"
        return states


def _log_failed_record(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("fleet: could not record a run's outcome: %s", task.exception())


def _good_keys(keys: Iterable[object]) -> Steps[list[str]]:
    good: dict[str, None] = {}
    for index, key in enumerate(keys):
        if index % 256 == 255:
            yield
        if (
            isinstance(key, str)
            and 0 < len(key) <= 200
            and key.isprintable()
            and key == key.strip()
        ):
            good[key] = None
        elif not isinstance(key, str):
            logger.error(
                "fleet: account key %r is a %s, not a str; skipped", key, type(key).__name__
            )
        else:
            logger.error(
                "fleet: account key %r must be 1-200 printable characters without spaces "
                "around; skipped",
                key,
            )
    return list(good)


def _is_async_callable(value: object) -> bool:
    return inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(
        getattr(value, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


class FleetRunTimeoutError(SyncError):
    """One account's run went on past ``run_timeout`` and was cancelled."""


def _lock_name(queue: str, account: str) -> str:
    return f"connexi-fleet:{queue}:{account}"


def _statuses(
    queue: str, states: list[AccountState], jobs: dict[str, str], now: datetime
) -> Steps[list[AccountStatus]]:
    statuses = []
    for index, state in enumerate(states):
        if index % 64 == 63:
            yield
        statuses.append(_status(state, jobs.get(_lock_name(queue, state.key), ""), now))
    return statuses


def _status(state: AccountState, job: str, now: datetime) -> AccountStatus:
    return AccountStatus(
        key=state.key,
        watermark=state.watermark,
        lag=None if state.watermark is None else now - state.watermark,
        last_run_at=state.last_run_at,
        last_success_at=state.last_success_at,
        last_error=state.last_error,
        last_worker=state.last_worker,
        held_by=state.held_by,
        job=job,
    )
