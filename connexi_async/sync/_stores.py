"""Checkpoint stores: the protocol, a JSON file and SQLite, and the lock between workers.

Both embedded stores survive ``SIGKILL`` at any instant with a readable state: the JSON
file is replaced atomically (temp file, ``fsync``, ``os.replace``, ``fsync`` of the
directory), SQLite commits with ``synchronous=FULL`` in WAL mode. Their file I/O runs in
a worker thread, never on the event loop.

The lock between workers on one key is an OS file lock (``flock``) held for a whole
run. It expires exactly when its holder dies, however it dies, so a restarted worker
takes over at once; no clocks, no heartbeats.
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
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from .._errors import CheckpointConflictError, ConfigurationError, SyncError, SyncLockedError
from ._checkpoint import (
    MAX_CHECKPOINT_BYTES,
    Checkpoint,
    checkpoint_from_json,
    checkpoint_to_json,
    dumps,
)

__all__ = ["CheckpointStore", "JSONFileCheckpoints", "SQLiteCheckpoints"]

if sys.platform == "win32":  # pragma: no cover - the lock on Windows
    import msvcrt

    def _try_lock(handle: IO[bytes]) -> bool:
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _lock_blocking(handle: IO[bytes]) -> None:
        while not _try_lock(handle):
            time.sleep(0.01)

else:
    import fcntl

    def _try_lock(handle: IO[bytes]) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _lock_blocking(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)


Write = Callable[[Any], object]


@runtime_checkable
class CheckpointStore(Protocol):
    """Where a sync keeps its checkpoints, one per key. Implement it to use your own
    database (docs/sync.md shows PostgreSQL).

    * ``load(key)``: the checkpoint, or ``None`` before the first commit.
    * ``save(key, checkpoint, write=None)``: compare-and-set. Store ``checkpoint`` only if
      the stored version is ``checkpoint.version - 1`` (none stored counts as 0), else
      raise :class:`CheckpointConflictError`. ``write``, if given, is the consumer's own
      write, to run in the same transaction; a store that cannot raises
      :class:`ConfigurationError`.
    * ``lock(key, wait=...)``: an async context manager held for a whole run; if another
      worker holds it past ``wait`` seconds, raise :class:`SyncLockedError`. It must be
      released when its holder dies.
    """

    async def load(self, key: str) -> Checkpoint | None: ...

    async def save(
        self, key: str, checkpoint: Checkpoint, *, write: Write | None = None
    ) -> None: ...

    def lock(
        self, key: str, *, wait: float = 0.0
    ) -> contextlib.AbstractAsyncContextManager[None]: ...


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key or len(key) > 200 or not key.isprintable():
        raise ConfigurationError(f"a sync key must be 1-200 printable characters, got {key!r:.80}")
    return key


def _lock_path(base: Path, key: str) -> Path:
    """One lock file per key beside the store: readable name, unique by digest."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:40]
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return base.with_name(f"{base.name}.{slug}-{digest}.lock")


@contextlib.asynccontextmanager
async def _run_lock(path: Path, key: str, wait: float) -> AsyncIterator[None]:
    """Hold the run lock of ``key`` (see the module's docstring)."""
    handle = await asyncio.to_thread(_open_lock_file, path)
    try:
        deadline = time.monotonic() + max(wait, 0.0)
        while not _try_lock(handle):
            if time.monotonic() >= deadline:
                holder = _holder(path)
                raise SyncLockedError(
                    f"sync {key!r} is already running ({holder or 'holder unknown'}): "
                    "only one worker may sync a key at a time; this one stops (run_forever "
                    "stands by and tries again each interval)",
                    key=key,
                    holder=holder,
                )
            await asyncio.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))
        # Who holds it, for the message a second worker shows.
        with contextlib.suppress(OSError):
            handle.seek(0)
            handle.truncate()
            since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {since}".encode())
            handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the lock


def _open_lock_file(path: Path) -> IO[bytes]:
    return open(path, "a+b")


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return path.read_bytes()[:200].decode().strip()
    return ""


def _conflict(key: str, checkpoint: Checkpoint, found: int) -> CheckpointConflictError:
    return CheckpointConflictError(
        f"the checkpoint of {key!r} is at version {found}, not {checkpoint.version - 1} as "
        "this sync expected: another writer changed it; nothing was committed",
        key=key,
        expected=checkpoint.version - 1,
        found=found,
    )


class JSONFileCheckpoints:
    """Checkpoints in one JSON file, one entry per key.

    >>> store = JSONFileCheckpoints("sync-state.json")

    Every save writes a temporary file beside it, ``fsync``s it and renames it over the
    old one, so a crash at any instant leaves the old state or the new one, never a torn
    file. It cannot run your own write in its transaction: make your writes idempotent
    (upsert by order id), or use :class:`SQLiteCheckpoints`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path: Path = Path(path)

    def __repr__(self) -> str:
        return f"<JSONFileCheckpoints {str(self.path)!r}>"

    async def load(self, key: str) -> Checkpoint | None:
        _check_key(key)
        return await asyncio.to_thread(self._load, key)

    async def save(self, key: str, checkpoint: Checkpoint, *, write: Write | None = None) -> None:
        _check_key(key)
        if write is not None:
            raise ConfigurationError(
                "JSONFileCheckpoints cannot run your write in its transaction: use "
                "SQLiteCheckpoints for that, or write idempotently and then commit"
            )
        # Not cancellable halfway: the thread finishes the rename whatever happens here.
        # Serialised there too: a checkpoint with 200,000 ids is tens of milliseconds.
        await asyncio.shield(asyncio.to_thread(self._save, key, checkpoint))

    def lock(self, key: str, *, wait: float = 0.0) -> contextlib.AbstractAsyncContextManager[None]:
        return _run_lock(_lock_path(self.path, _check_key(key)), key, wait)

    # -- in the worker thread ----------------------------------------------------

    def _load(self, key: str) -> Checkpoint | None:
        entry = self._read().get(key)
        return None if entry is None else checkpoint_from_json(entry, f"{self.path} [{key!r}]")

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as file:
                raw = file.read(MAX_CHECKPOINT_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SyncError(f"{self.path}: cannot read the checkpoints ({exc.strerror})") from None
        if len(raw) > MAX_CHECKPOINT_BYTES:
            raise SyncError(f"{self.path}: larger than {MAX_CHECKPOINT_BYTES:,} bytes")
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
            raise SyncError(
                f"{self.path} is not a checkpoint file written by connexi-async; "
                "it is left as it is (move it away to start over)"
            )
        keys: dict[str, Any] = data["keys"]
        return keys

    @contextlib.contextmanager
    def _mutex(self) -> Iterator[None]:
        # Between the processes saving other keys in the same file: short, blocking.
        with open(self.path.with_name(self.path.name + ".lock"), "a+b") as handle:
            _lock_blocking(handle)
            yield

    def _save(self, key: str, checkpoint: Checkpoint) -> None:
        entry = checkpoint_to_json(checkpoint)
        with self._mutex():
            keys = self._read()
            current = keys.get(key)
            found = current.get("version", 0) if isinstance(current, dict) else 0
            if found != checkpoint.version - 1:
                raise _conflict(key, checkpoint, found)
            keys[key] = entry
            data = dumps({"format": "connexi-async checkpoints", "keys": keys})
            # One name: the mutex is held, and a kill leaves at most this file behind.
            temporary = self.path.with_name(f".{self.path.name}.tmp")
            with open(temporary, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
            _fsync_directory(self.path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_ASYNC_WRITE = (
    "SQLiteCheckpoints runs write= in a worker thread with a sqlite3.Connection: pass a "
    "plain function (def write(db): db.executemany(...)), not a coroutine function; "
    "nothing was written or committed"
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}", re.ASCII)


class SQLiteCheckpoints:
    """Checkpoints in a SQLite database (stdlib ``sqlite3``, run off the event loop).

    >>> store = SQLiteCheckpoints("sync-state.db")

    Exactly once: keep your data in the same database and pass your write to
    ``batch.commit(write=...)``; it runs in the transaction that moves the checkpoint,
    so both happen or neither does::

        def write(db: sqlite3.Connection) -> None:
            db.executemany("INSERT INTO orders VALUES (?, ?)", [(o.id, o.total) ...])

        await batch.commit(write=write)
    """

    def __init__(self, path: str | os.PathLike[str], *, table: str = "connexi_checkpoints") -> None:
        if not _IDENTIFIER.fullmatch(table):
            raise ConfigurationError(f"table must be a plain SQL identifier, got {table!r}")
        self.path: Path = Path(path)
        self.table = table

    def __repr__(self) -> str:
        return f"<SQLiteCheckpoints {str(self.path)!r} table={self.table}>"

    async def load(self, key: str) -> Checkpoint | None:
        _check_key(key)
        return await asyncio.to_thread(self._load, key)

    async def save(self, key: str, checkpoint: Checkpoint, *, write: Write | None = None) -> None:
        _check_key(key)
        if write is not None and inspect.iscoroutinefunction(write):
            raise ConfigurationError(_ASYNC_WRITE)
        await asyncio.shield(asyncio.to_thread(self._save, key, checkpoint, write))

    def lock(self, key: str, *, wait: float = 0.0) -> contextlib.AbstractAsyncContextManager[None]:
        return _run_lock(_lock_path(self.path, _check_key(key)), key, wait)

    # -- in the worker thread ----------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (key TEXT PRIMARY KEY, "
                "version INTEGER NOT NULL, state TEXT NOT NULL, saved_at TEXT NOT NULL)"
            )
        except sqlite3.Error as exc:
            if db is not None:
                db.close()  # not left to the collector (Python 3.13 warns about that)
            raise SyncError(f"{self.path}: cannot open the checkpoint database ({exc})") from None
        return db

    def _load(self, key: str) -> Checkpoint | None:
        row = self._load_row(key)
        if row is None:
            return None
        try:
            value = json.loads(row)
        except ValueError:
            value = None
        return checkpoint_from_json(value, f"{self.path} [{key!r}]")

    def _load_row(self, key: str) -> str | None:
        db = self._connect()
        try:
            row = db.execute(f"SELECT state FROM {self.table} WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise SyncError(f"{self.path}: cannot read the checkpoint ({exc})") from None
        finally:
            db.close()
        if row is None:
            return None
        state: str = row[0]
        return state

    def _save(self, key: str, checkpoint: Checkpoint, write: Write | None) -> None:
        data = dumps(checkpoint_to_json(checkpoint)).decode()
        failed: list[BaseException] = []  # the consumer's own error, raised as it is
        try:
            self._save_in_transaction(key, checkpoint, data, write, failed)
        except sqlite3.Error as exc:
            if failed:
                raise failed[0] from None
            raise SyncError(f"{self.path}: cannot save the checkpoint ({exc})") from None

    def _save_in_transaction(
        self,
        key: str,
        checkpoint: Checkpoint,
        data: str,
        write: Write | None,
        failed: list[BaseException],
    ) -> None:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    f"SELECT version FROM {self.table} WHERE key = ?", (key,)
                ).fetchone()
                found = 0 if row is None else int(row[0])
                if found != checkpoint.version - 1:
                    raise _conflict(key, checkpoint, found)
                if write is not None:
                    try:
                        result = write(db)
                        if inspect.isawaitable(result):
                            # Never awaited here: the rows would silently not be written.
                            if inspect.iscoroutine(result):
                                result.close()
                            raise ConfigurationError(_ASYNC_WRITE)
                    except BaseException as exc:
                        failed.append(exc)
                        raise
                db.execute(
                    f"INSERT INTO {self.table} (key, version, state, saved_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                    "version = excluded.version, state = excluded.state, "
                    "saved_at = excluded.saved_at",
                    (key, checkpoint.version, data, datetime.now(UTC).isoformat()),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()
