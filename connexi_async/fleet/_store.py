"""``PostgresCheckpoints``: sync's checkpoint store on PostgreSQL, for workers on many machines.

One table holds, per account (sync key): the checkpoint's version (compare-and-set),
its watermark, the whole state with the lookback ids, and what the fleet shows in
``status`` (last run, last error, last worker). The run lock is a PostgreSQL advisory
lock held by a connection of its own for the whole run: the server releases it the
moment that connection ends, however its holder dies, and ``pg_locks`` tells who holds
it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import attrs
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .._auth import _Secret
from .._cooperative import Steps, run_sliced
from .._errors import (
    CheckpointStoreUnavailableError,
    ConfigurationError,
    SyncError,
    SyncLockedError,
)
from ..sync._checkpoint import (
    MAX_CHECKPOINT_BYTES,
    Checkpoint,
    checkpoint_from_json,
    checkpoint_to_json,
    dumps,
)
from ..sync._stores import _check_key, _conflict

__all__ = ["AccountState", "PostgresCheckpoints"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}", re.ASCII)
# application_name is cut by the server at 63 bytes.
_APPLICATION_NAME_BYTES = 63
# A lock refused while nobody holds it is asked for again this many times (a holder
# whose connection just ended lets go only as its backend exits).
_VANISHED_HOLDER_RETRIES = 5


def default_worker_name() -> str:
    """``host:pid``: what ``status`` shows as the holder of an account."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lock_id(table: str, key: str) -> int:
    """The advisory lock of ``key``: 64 bits of a digest (signed, as PostgreSQL's
    ``bigint``), namespaced by the table so two fleets in one database do not collide."""
    digest = hashlib.sha256(f"connexi-async:{table}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@attrs.frozen(kw_only=True)
class AccountState:
    """What the store knows of one account, for ``status`` (no secrets here)."""

    key: str
    version: int = 0
    watermark: datetime | None = None
    saved_at: datetime | None = None
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str = ""
    last_worker: str = ""
    held_by: str = ""  # the worker holding its run lock now, if any


def _hide_password(exc: BaseException) -> str:
    """A psycopg error as text, with anything that looks like a password cut out."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"(password\s*=\s*)\S+", r"\1***", text, flags=re.IGNORECASE)
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def check_conninfo(conninfo: object) -> str:
    """``conninfo`` if libpq can parse it; a :class:`ConfigurationError` that does not
    show it otherwise (libpq's own messages quote fragments of it, the password too)."""
    if not isinstance(conninfo, str):
        raise ConfigurationError(
            f"the connection string must be a str, got {type(conninfo).__name__}"
        )
    try:
        conninfo_to_dict(conninfo)
    except psycopg.Error:
        raise ConfigurationError(
            "the connection string is not a valid libpq conninfo or postgresql:// URL "
            "(check its quoting and percent-encoding; it is not shown, as it may hold a "
            "password)"
        ) from None
    return conninfo


class PostgresCheckpoints:
    """Checkpoints in PostgreSQL: sync's :class:`~connexi_async.sync.CheckpointStore`
    for workers on several machines.

    >>> store = PostgresCheckpoints("postgresql://sync@db/erp")
    >>> async with store:
    ...     await store.setup()                  # once: creates the table, idempotent
    ...     sync = OrderSync(client, store, key="seller-7", start=...)

    Exactly once: keep your data in the same database and pass an async ``write`` to
    ``batch.commit(write=...)``. It gets the ``psycopg.AsyncConnection`` of the
    transaction that moves the checkpoint, so both are committed or neither is::

        async def write(db: psycopg.AsyncConnection) -> None:
            async with db.cursor() as cur:
                await cur.executemany("INSERT INTO orders ... ON CONFLICT ...", rows)

        await batch.commit(write=write)

    ``conninfo`` (a libpq connection string or URL) is kept out of every repr and
    message; pass ``pool=`` to share a ``psycopg_pool.AsyncConnectionPool`` of yours.
    ``max_connections`` (10) bounds our pool for loads and saves, ``max_locks`` (64) the
    connections holding run locks (one per run under way); ``open_timeout`` (30 s) is
    how long :meth:`open` waits for the database.
    """

    def __init__(
        self,
        conninfo: str | None = None,
        *,
        pool: AsyncConnectionPool | None = None,
        table: str = "connexi_checkpoints",
        worker: str | None = None,
        max_connections: int = 10,
        open_timeout: float = 30.0,
        max_locks: int = 64,
    ) -> None:
        secret = (
            None
            if conninfo is None
            else _Secret(conninfo)
            if isinstance(conninfo, str)
            else conninfo
        )
        del conninfo  # no frame of ours keeps a password in clear, even when we refuse
        if (secret is None) == (pool is None):
            raise ConfigurationError(
                "PostgresCheckpoints takes a conninfo or a pool= (one of them)"
            )
        if not isinstance(table, str) or not _IDENTIFIER.fullmatch(table):
            raise ConfigurationError(f"table must be a plain SQL identifier, got {table!r:.80}")
        self.table = table
        self.worker: str = worker or default_worker_name()
        self._conninfo = None if secret is None else _Secret(check_conninfo(secret))
        self._own_pool = pool is None
        self._pool = pool
        self._max_connections = max_connections
        self._open_timeout = open_timeout
        self._max_locks = max_locks
        self._lock_pool: AsyncConnectionPool | None = None
        self._opening = asyncio.Lock()
        # Lock connections known to hold no lock (it was refused): no need to end them.
        self._free: set[int] = set()
        # key -> the connection holding its run lock, while this store holds it.
        self._held: dict[str, psycopg.AsyncConnection[Any]] = {}
        self._opened = 0

    def __repr__(self) -> str:
        # Safe on a half-built store too (tracebacks that show locals call it).
        return f"<PostgresCheckpoints table={getattr(self, 'table', '?')}>"

    def size_for(self, runs: int) -> None:
        """Size the pools (at the next :meth:`open`) for ``runs`` runs at once."""
        self._max_locks = max(self._max_locks, runs + 2)
        self._max_connections = max(self._max_connections, runs // 2 + 2)

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the connection pools (``async with store`` does it; nested and
        concurrent uses share one opening)."""
        async with self._opening:
            if self._opened:
                self._opened += 1
                return
            if self._own_pool:
                await self._open_pools()
            self._opened = 1

    async def _open_pools(self) -> None:
        assert self._conninfo is not None
        # One connection first: its failure says why (a pool only says it timed out).
        try:
            probe = await psycopg.AsyncConnection.connect(
                str(self._conninfo), connect_timeout=max(1, int(self._open_timeout))
            )
        except psycopg.Error as exc:
            raise SyncError(
                f"cannot connect to the checkpoint database ({_hide_password(exc)})"
            ) from None
        await probe.close()
        name = f"connexi-fleet {self.worker}".encode()[:_APPLICATION_NAME_BYTES]
        pool = AsyncConnectionPool(
            str(self._conninfo),
            min_size=1,
            max_size=self._max_connections,
            open=False,
            kwargs={"autocommit": True},
            name="connexi-checkpoints",
            # Checked when taken: after a database restart, no dead connection is used.
            check=AsyncConnectionPool.check_connection,
        )
        # The run locks' connections: one per run under way, kept for the next runs
        # (a new connection per account and cycle costs the worker and the server).
        locks = AsyncConnectionPool(
            str(self._conninfo),
            min_size=0,
            max_size=self._max_locks,
            open=False,
            kwargs={"autocommit": True, "application_name": name.decode(errors="ignore")},
            name="connexi-run-locks",
            check=AsyncConnectionPool.check_connection,
        )
        try:
            await locks.open(wait=False)
            await pool.open(wait=True, timeout=self._open_timeout)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await locks.close()
                await pool.close()
            if not isinstance(exc, Exception):
                raise  # cancelled: nothing is left open
            raise SyncError(
                f"cannot connect to the checkpoint database ({_hide_password(exc)})"
            ) from None
        self._pool, self._lock_pool = pool, locks

    async def close(self) -> None:
        async with self._opening:
            if not self._opened:
                return
            self._opened -= 1
            if self._opened or not self._own_pool:
                return
            pool, self._pool = self._pool, None
            locks, self._lock_pool = self._lock_pool, None
            try:
                if pool is not None:
                    await pool.close()
            finally:
                if locks is not None:
                    await locks.close()

    async def __aenter__(self) -> PostgresCheckpoints:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def _connection(self, doing: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            raise ConfigurationError(
                "the PostgresCheckpoints store is not open: use `async with store` (or a Fleet)"
            )
        try:
            async with self._pool.connection() as db:
                # A pool of yours may hand out connections outside autocommit: ours run
                # their own transactions (an implicit one would hold row locks all run).
                restore = not db.autocommit
                if restore:
                    await db.set_autocommit(True)
                try:
                    yield db
                finally:
                    if restore and not db.closed:
                        with contextlib.suppress(psycopg.Error):
                            await db.set_autocommit(False)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise CheckpointStoreUnavailableError(
                f"{self.table}: cannot {doing} now ({_hide_password(exc)}); nothing was committed"
            ) from None
        except psycopg.Error as exc:
            raise SyncError(f"{self.table}: cannot {doing} ({_hide_password(exc)})") from None

    # -- schema ------------------------------------------------------------------------

    async def setup(self) -> None:
        """Create the table if it is missing (idempotent; never done implicitly)."""
        async with self._connection("create the checkpoint table") as db:
            await db.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} ("
                "key text PRIMARY KEY, "
                "version bigint NOT NULL DEFAULT 0, "
                "watermark timestamptz, "
                "state text, "  # checkpoint_to_json: parsed off the event loop
                "saved_at timestamptz, "
                "last_run_at timestamptz, "
                "last_success_at timestamptz, "
                "last_error text NOT NULL DEFAULT '', "
                "last_worker text NOT NULL DEFAULT '')"
            )

    # -- CheckpointStore ---------------------------------------------------------------

    async def load(self, key: str) -> Checkpoint | None:
        _check_key(key)
        async with self._connection("read a checkpoint") as db:
            cursor = await db.execute(
                f"SELECT state FROM {self.table} WHERE key = %s AND version > 0", (key,)
            )
            row = await cursor.fetchone()
        if row is None or row[0] is None:
            return None
        text: str = row[0]
        if len(text) > MAX_CHECKPOINT_BYTES:
            raise SyncError(f"{self.table} [{key!r}]: larger than {MAX_CHECKPOINT_BYTES:,} bytes")
        where = f"{self.table} [{key!r}]"
        # A checkpoint with 200,000 lookback ids is tens of milliseconds to read.
        return await asyncio.to_thread(_parse, text, where)

    async def save(
        self,
        key: str,
        checkpoint: Checkpoint,
        *,
        write: Callable[[psycopg.AsyncConnection[Any]], Awaitable[object] | object] | None = None,
    ) -> None:
        """Compare-and-set ``checkpoint``; ``write(connection)``, if given, runs first in
        the same transaction (an exception from it rolls everything back and is raised
        as it is)."""
        _check_key(key)
        state = await asyncio.to_thread(lambda: dumps(checkpoint_to_json(checkpoint)).decode())
        yours: list[BaseException] = []
        try:
            await self._save(key, checkpoint, state, write, yours)
        except _Yours:
            # Your write's own error, as it is (a psycopg error of yours is not ours).
            raise yours[0] from None

    async def _save(
        self,
        key: str,
        checkpoint: Checkpoint,
        state: str,
        write: Callable[[psycopg.AsyncConnection[Any]], Awaitable[object] | object] | None,
        yours: list[BaseException],
    ) -> None:
        async with self._connection("save a checkpoint") as db:
            try:
                async with db.transaction():
                    cursor = await db.execute(
                        f"SELECT version FROM {self.table} WHERE key = %s FOR UPDATE", (key,)
                    )
                    row = await cursor.fetchone()
                    found = 0 if row is None else int(row[0])
                    if found != checkpoint.version - 1:
                        raise _conflict(key, checkpoint, found)
                    await self._check_still_locked(db, key)
                    if write is not None:
                        try:
                            result = write(db)
                            if inspect.isawaitable(result):
                                await result
                        except BaseException as exc:
                            yours.append(exc)
                            raise
                    cursor = await db.execute(
                        f"INSERT INTO {self.table} AS t (key, version, watermark, state, saved_at) "
                        "VALUES (%(key)s, %(version)s, %(watermark)s, %(state)s, now()) "
                        "ON CONFLICT (key) DO UPDATE SET version = excluded.version, "
                        "watermark = excluded.watermark, state = excluded.state, "
                        "saved_at = excluded.saved_at WHERE t.version = %(found)s",
                        {
                            "key": key,
                            "version": checkpoint.version,
                            "watermark": checkpoint.watermark,
                            "state": state,
                            "found": found,
                        },
                    )
                    if cursor.rowcount != 1:  # a first save raced by another
                        raise _conflict(key, checkpoint, found + 1)
            except psycopg.errors.InFailedSqlTransaction:
                if write is not None and not yours:
                    raise SyncError(
                        f"{self.table}: your write caught a database error of its own and "
                        "went on, and the transaction was aborted: let the error propagate "
                        "(nothing was committed)"
                    ) from None
                raise
            except BaseException:
                if yours:
                    raise _Yours from None
                raise

    def _lock_error(self, key: str, exc: psycopg.Error) -> SyncError:
        """Taking the run lock failed: retryable if the database is unreachable."""
        kind = (
            CheckpointStoreUnavailableError
            if isinstance(exc, psycopg.OperationalError)
            else SyncError
        )
        return kind(f"{self.table}: cannot take the lock of {key!r} ({_hide_password(exc)})")

    async def _check_still_locked(self, db: psycopg.AsyncConnection[Any], key: str) -> None:
        """If this store holds the run lock of ``key``, that it still does: a lock
        connection that died (a server restart, an idle timeout, a terminated backend)
        released the lock, and another worker may be running the account now. The run
        stops there rather than write beside it."""
        holder = self._held.get(key)
        if holder is None:
            return
        pid = holder.info.backend_pid
        cursor = await db.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = %s AND objsubid = 1 "
            "AND ((classid::bigint << 32) | objid::bigint) = %s)",
            (pid, lock_id(self.table, key)),
        )
        row = await cursor.fetchone()
        if not (row and row[0]):
            raise SyncLockedError(
                f"sync {key!r} lost its run lock (its connection to the database ended); "
                "nothing was committed, and the run stops",
                key=key,
                holder="",
            )

    def lock(self, key: str, *, wait: float = 0.0) -> contextlib.AbstractAsyncContextManager[None]:
        """The run lock of ``key``: an advisory lock on a connection of its own, held for
        the whole run; :class:`SyncLockedError` naming the holder if another worker holds
        it past ``wait`` seconds."""
        return self._lock(_check_key(key), wait)

    @contextlib.asynccontextmanager
    async def _lock(self, key: str, wait: float) -> AsyncIterator[None]:
        lock = lock_id(self.table, key)
        name = f"connexi-fleet {self.worker}".encode()[:_APPLICATION_NAME_BYTES]
        free = self._free
        async with self._lock_connection(key, name.decode(errors="ignore")) as db:
            try:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + max(wait, 0.0)
                vanished = 0
                while True:
                    cursor = await db.execute("SELECT pg_try_advisory_lock(%s)", (lock,))
                    row = await cursor.fetchone()
                    if row is not None and row[0]:
                        break
                    if loop.time() >= deadline:
                        free.add(id(db))  # it holds no lock: it may go back to the pool
                        holder = await self._holder(db, lock)
                        if holder is None and vanished < _VANISHED_HOLDER_RETRIES:
                            # Refused, yet nobody holds it now: its holder let go between
                            # the two queries, most often a connection that just ended
                            # (its backend releases its locks only as it exits). Again.
                            free.discard(id(db))
                            vanished += 1
                            await asyncio.sleep(0.05 * vanished)
                            continue
                        raise SyncLockedError(
                            f"sync {key!r} is already running ({holder or 'holder unknown'}): "
                            "only one worker may sync an account at a time",
                            key=key,
                            holder=holder or "",
                        )
                    await asyncio.sleep(min(0.2, max(deadline - loop.time(), 0.01)))
                await db.execute(
                    f"INSERT INTO {self.table} AS t (key, last_worker) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET last_worker = excluded.last_worker",
                    (key, self.worker),
                )
            except psycopg.Error as exc:
                raise self._lock_error(key, exc) from None
            self._held[key] = db
            try:
                yield
            finally:
                self._held.pop(key, None)

    @contextlib.asynccontextmanager
    async def _lock_connection(
        self, key: str, application_name: str
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection held for the whole run, unlocked before it goes back to its
        pool; ended instead if that cannot be made sure, so that no pooled connection
        ever keeps a lock."""
        async with self._borrow_for_lock(key, application_name) as db:
            released = False
            try:
                try:
                    yield db
                except Exception:
                    # The run failed (your sink's error, the API's): the lock connection
                    # sat idle all along, so it is unlocked and given back as after a
                    # success. Ended instead, its lock would outlive it until its backend
                    # exits, and the account's next run could be refused in between.
                    released = await self._unlock(db)
                    raise
                released = await self._unlock(db)
            finally:
                released = released or id(db) in self._free  # refused: it never held one
                self._free.discard(id(db))
                if not released:
                    db.pgconn.finish()

    @contextlib.asynccontextmanager
    async def _borrow_for_lock(
        self, key: str, application_name: str
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection from the run locks' pool (named for ``status``), or from yours,
        renamed. Only taking it is wrapped in our errors: whatever the run raises while
        it holds the connection passes as it is (a database error of your sink's too)."""
        pool = self._lock_pool if self._lock_pool is not None else self._pool
        if pool is None:
            raise ConfigurationError(
                "the PostgresCheckpoints store is not open: use `async with store` (or a Fleet)"
            )
        borrowed = pool.connection(timeout=self._open_timeout)
        try:
            db = await borrowed.__aenter__()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise CheckpointStoreUnavailableError(
                f"{self.table}: cannot connect to take the lock of {key!r} now "
                f"({_hide_password(exc)})"
            ) from None
        restore = False
        try:
            if self._lock_pool is None:
                restore = not db.autocommit
                if restore:
                    await db.set_autocommit(True)  # no implicit transaction all run long
                await db.execute(
                    "SELECT set_config('application_name', %s, false)", (application_name,)
                )
        except psycopg.Error as exc:
            db.pgconn.finish()
            await borrowed.__aexit__(None, None, None)
            raise self._lock_error(key, exc) from None
        try:
            yield db
        finally:
            if restore and not db.closed:
                with contextlib.suppress(psycopg.Error):
                    await db.set_autocommit(False)
            await borrowed.__aexit__(None, None, None)

    async def _unlock(self, db: psycopg.AsyncConnection[Any]) -> bool:
        """Whether ``db`` was unlocked (and, from your pool, given its own name back)
        within ``open_timeout``: a connection cut off without a word (a run that failed
        because the database went away) is ended instead of waited on."""
        # A dead connection holds nothing; one cut mid-query is ended by the caller.
        with contextlib.suppress(psycopg.Error, TimeoutError):
            async with asyncio.timeout(max(self._open_timeout, 1.0)):
                await db.execute("SELECT pg_advisory_unlock_all()")
                if self._lock_pool is None:
                    await db.execute("RESET application_name")
            return True
        return False

    async def _holder(self, db: psycopg.AsyncConnection[Any], lock: int) -> str | None:
        """Who holds ``lock`` now ("" if unnamed), or None if nobody does."""
        holders = await _holders(db, [lock])
        return holders.get(lock)

    # -- for the fleet's status ----------------------------------------------------------

    async def record_run(self, key: str, *, error: str = "", ran: bool = True) -> None:
        """Note that a run of ``key`` ended, with ``error`` ("" for a success).
        ``ran=False``: it was stopped before its end; only the error is noted, and the
        account stays due."""
        _check_key(key)
        async with self._connection("record a run") as db:
            await db.execute(
                f"INSERT INTO {self.table} AS t (key, last_run_at, last_success_at, "
                "last_error, last_worker) VALUES (%(key)s, CASE WHEN %(ran)s THEN now() END, "
                "CASE WHEN %(ran)s AND %(error)s = '' THEN now() END, %(error)s, %(worker)s) "
                "ON CONFLICT (key) DO UPDATE SET "
                "last_run_at = CASE WHEN %(ran)s THEN now() ELSE t.last_run_at END, "
                "last_success_at = CASE WHEN %(ran)s AND %(error)s = '' THEN now() "
                "ELSE t.last_success_at END, last_error = %(error)s, "
                "last_worker = %(worker)s",
                {"key": key, "error": error[:2000], "worker": self.worker, "ran": ran},
            )

    async def states(self, keys: Iterable[str] | None = None) -> list[AccountState]:
        """What the table holds of ``keys`` (all accounts if ``None``), with the worker
        holding each one's lock now; accounts it has never seen come with their key only."""
        wanted = None if keys is None else [_check_key(k) for k in keys]
        async with self._connection("read the accounts' states") as db:
            cursor = await db.execute(
                f"SELECT key, version, watermark, saved_at, last_run_at, last_success_at, "
                f"last_error, last_worker FROM {self.table} "
                "WHERE %(keys)s::text[] IS NULL OR key = ANY(%(keys)s::text[]) ORDER BY key",
                {"keys": wanted},
            )
            rows: dict[str, Any] = {}
            while batch := await cursor.fetchmany(500):  # rows are decoded as fetched
                rows.update((row[0], row) for row in batch)
                await asyncio.sleep(0)
            order = wanted if wanted is not None else list(rows)
            # A digest per key: 10,000 of them at once would hold the loop.
            locks = await run_sliced(_lock_ids(self.table, order))
            holders = await _holders(db, list(locks))
        held = {locks[lock]: who for lock, who in holders.items()}
        # Built in slices: 10,000 accounts at once would hold the loop.
        return await run_sliced(_build_states(order, rows, held))


def _lock_ids(table: str, keys: list[str]) -> Steps[dict[int, str]]:
    locks = {}
    for index, key in enumerate(keys):
        if index % 128 == 127:
            yield
        locks[lock_id(table, key)] = key
    return locks


def _build_states(
    order: list[str], rows: dict[str, Any], held: dict[str, str]
) -> Steps[list[AccountState]]:
    states = []
    for index, key in enumerate(order):
        if index % 64 == 63:
            yield
        row = rows.get(key)
        if row is None:
            states.append(AccountState(key=key, held_by=held.get(key, "")))
            continue
        states.append(
            AccountState(
                key=key,
                version=int(row[1]),
                watermark=_utc(row[2]),
                saved_at=_utc(row[3]),
                last_run_at=_utc(row[4]),
                last_success_at=_utc(row[5]),
                last_error=row[6] or "",
                last_worker=row[7] or "",
                held_by=held.get(key, ""),
            )
        )
    return states


async def _holders(db: psycopg.AsyncConnection[Any], locks: list[int]) -> dict[int, str]:
    """Who holds each advisory lock now: the application name of the holding connection
    (``connexi-fleet host:pid``), without its prefix."""
    if not locks:
        return {}
    cursor = await db.execute(
        "SELECT ((l.classid::bigint << 32) | l.objid::bigint) AS lock, a.application_name "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    wanted = set(locks)
    found = {}
    for raw, name in await cursor.fetchall():
        lock = raw - (1 << 64) if raw >= 1 << 63 else raw
        if lock in wanted:
            found[lock] = (name or "").removeprefix("connexi-fleet ")
    return found


class _Yours(Exception):
    """Carries "the consumer's write failed" past the wrapping of our own errors."""


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _parse(text: str, where: str) -> Checkpoint:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return checkpoint_from_json(value, where)
