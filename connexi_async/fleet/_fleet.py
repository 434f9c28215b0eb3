"""``Fleet``: one sync cycle per seller account as a procrastinate job, on PostgreSQL.

The pieces, and who guarantees what:

* **Queue** (procrastinate, PostgreSQL): a scheduler tick, a periodic task run once per
  tick by whichever worker gets it, defers one ``sync_account`` job per account that is
  due. The job carries the account's key only. ``queueing_lock`` keeps an account from
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
import logging
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

from .._auth import _Secret
from .._client import ConnexiClient
from .._cooperative import Steps, run_sliced
from .._errors import (
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
    SyncLockedError,
)
from .._models import Order
from .._windows import Window, whole_second
from ..sync import OrderSync, SyncBatch
from ._store import AccountState, PostgresCheckpoints, _hide_password, default_worker_name

__all__ = ["AccountStatus", "Credentials", "Fleet", "FleetBatch"]

logger = logging.getLogger("connexi_async.fleet")

SYNC_TASK = "connexi_async.fleet.sync_account"
TICK_TASK = "connexi_async.fleet.tick"
# Job priorities (higher first): the tick, then dead workers' accounts, then the rest.
TICK_PRIORITY = 100
RECOVERED_PRIORITY = 10
_DEFER_BATCH = 500
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


def _cron(every: timedelta) -> str:
    seconds = every.total_seconds()
    if seconds < 60 and seconds >= 1 and seconds == int(seconds) and 60 % seconds == 0:
        return f"* * * * * */{int(seconds)}"
    minutes = seconds / 60
    if minutes == int(minutes) and 1 <= minutes <= 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{int(minutes)} * * * *"
    raise ConfigurationError(
        f"tick must divide a minute (1-30 s) or an hour (1-60 min) evenly, got {every!r}"
    )


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
    the queue (workers beat every third of it); ``queue``, ``table``.

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
        worker: str | None = None,
    ) -> None:
        for name, value in (("sink", sink), ("credentials", credentials)):
            if not callable(value):
                raise ConfigurationError(f"{name} must be an async callable, got {value!r:.60}")
        if not isinstance(interval, timedelta) or interval <= timedelta(0):
            raise ConfigurationError(f"interval must be a positive timedelta, got {interval!r}")
        if not isinstance(stalled_after, timedelta) or stalled_after < timedelta(seconds=3):
            raise ConfigurationError(f"stalled_after must be 3 s or more, got {stalled_after!r}")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be 1 or more, got {max_attempts!r}")
        self.start = whole_second(start, "start")
        self.interval = interval
        self.tick = tick
        self.lookback = lookback
        self.settle = settle
        self.window = window
        self.account_concurrency = account_concurrency
        self.client_options = dict(client_options or {})
        self.stalled_after = stalled_after
        self.queue = queue
        self.worker = worker or default_worker_name()
        self._accounts = accounts
        self._credentials = credentials
        self._sink = sink
        self._conninfo = _Secret(conninfo)
        del conninfo  # no frame of ours keeps a password in clear
        self.store = PostgresCheckpoints(str(self._conninfo), table=table, worker=self.worker)
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=str(self._conninfo))
        )
        retry = _RetryTransient(
            max_attempts,
            retry_wait.total_seconds(),
            max(interval.total_seconds(), retry_wait.total_seconds()),
        )
        self.sync_task = self.app.task(
            name=SYNC_TASK, queue=queue, pass_context=False, retry=retry
        )(self._sync_account)
        # Ahead of every queued sync: with thousands of accounts queued, a tick behind
        # them would leave dead workers' accounts waiting until the backlog drained.
        tick_task = self.app.task(
            name=TICK_TASK, queue=queue, queueing_lock=TICK_TASK, priority=TICK_PRIORITY
        )(self._tick)
        if tick is not None:
            self.app.periodic(cron=_cron(tick), periodic_id="connexi-fleet")(tick_task)
        self._session: aiohttp.ClientSession | None = None
        self._opened = 0

    def __repr__(self) -> str:
        return f"<Fleet queue={self.queue} table={self.store.table} worker={self.worker}>"

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the database pools and the worker's HTTP session (``async with fleet``)."""
        self._opened += 1
        if self._opened > 1:
            return
        try:
            await self.app.open_async()
        except Exception as exc:
            self._opened = 0
            raise ConfigurationError(
                f"cannot connect to the fleet's database ({_hide_password(exc)})"
            ) from None
        try:
            await self.store.open()
        except BaseException:
            self._opened = 0
            await self.app.close_async()
            raise
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        self._opened = max(self._opened - 1, 0)
        if self._opened:
            return
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        await self.store.close()
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
        """Run a worker until it is stopped (SIGINT/SIGTERM finish the jobs under way;
        cancelling the task stops at once). ``concurrency`` accounts at a time."""
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be 1 or more, got {concurrency!r}")
        async with self:
            logger.info("fleet worker %s: %d accounts at a time", self.worker, concurrency)
            await self.app.run_worker_async(
                queues=[self.queue],
                concurrency=concurrency,
                name=self.worker,
                update_heartbeat_interval=self.stalled_after.total_seconds() / 3,
                stalled_worker_timeout=self.stalled_after.total_seconds(),
                delete_jobs="successful",
                install_signal_handlers=install_signal_handlers,
            )

    async def accounts(self) -> list[str]:
        """The account keys, from the ``accounts`` you gave."""
        source = self._accounts
        keys = await source() if callable(source) else source
        return list(dict.fromkeys(keys))

    async def schedule(self, *, only: Iterable[str] | None = None, due: bool = True) -> int:
        """Queue a sync of each account that is due (``due=False``: of every account;
        ``only``: of these). Accounts already queued are left as they are. Returns how
        many jobs were queued."""
        async with self:
            keys = list(only) if only is not None else await self.accounts()
            if due:
                states = await self.store.states(keys)
                cutoff = datetime.now(UTC) - self.interval + self._slack()
                keys = [
                    s.key
                    for s in states
                    if (s.last_run_at is None or s.last_run_at <= cutoff) and not s.held_by
                ]
            queued = await self._queued()
            pending = [key for key in keys if _lock_name(key) not in queued]
            deferred = 0
            # In batches: one statement per 500 accounts, and jobs built a batch at a time
            # (10,000 at once would hold the loop).
            for first in range(0, len(pending), _DEFER_BATCH):
                deferred += await self._defer(pending[first : first + _DEFER_BATCH])
            if deferred:
                logger.info("fleet: queued %d account syncs", deferred)
            return deferred

    async def _defer(self, keys: list[str]) -> int:
        def job(key: str) -> Job:
            lock = _lock_name(key)
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
        frozen, cut off). Returns how many."""
        async with self:
            manager = self.app.job_manager
            stalled = await manager.get_stalled_jobs(
                queue=self.queue,
                task_name=SYNC_TASK,
                seconds_since_heartbeat=self.stalled_after.total_seconds(),
            )
            count = 0
            for job in stalled:
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
            keys = await self.accounts()
            states = await self.store.states(keys)
            jobs = await self._job_states()
        return await run_sliced(_statuses(states, jobs, datetime.now(UTC)))

    # -- the tasks ------------------------------------------------------------------------

    async def _tick(self, timestamp: int) -> None:
        await self.recover_stalled()
        await self.schedule()

    async def _sync_account(self, account: str) -> None:
        store = self.store
        error = ""
        try:
            credentials = await self._credentials(account)
            if not isinstance(credentials, Credentials):
                raise ConfigurationError(
                    f"credentials({account!r}) must return a Credentials, "
                    f"got {type(credentials).__name__}"
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
                store,
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
        except SyncLockedError as exc:
            # Another worker is syncing it right now (a job given back while its first
            # worker still ran): that run covers it; nothing to do, nothing lost.
            logger.info("fleet: %s", exc)
            return
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            raise
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(store.record_run(account, error=error))

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


def _lock_name(account: str) -> str:
    return f"connexi-fleet:{account}"


def _statuses(
    states: list[AccountState], jobs: dict[str, str], now: datetime
) -> Steps[list[AccountStatus]]:
    statuses = []
    for index, state in enumerate(states):
        if index % 64 == 63:
            yield
        statuses.append(_status(state, jobs.get(_lock_name(state.key), ""), now))
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
