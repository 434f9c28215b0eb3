"""``sync``: append new orders to a file from a checkpoint, file and checkpoint in agreement."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._convert import encode_record
from .._cooperative import SLICE_SECONDS
from .._errors import (
    format_instant,
)
from ..sync import (
    Checkpoint,
    CheckpointStore,
    JSONFileCheckpoints,
    OrderSync,
    SQLiteCheckpoints,
    SyncBatch,
    SyncRun,
)
from ..sync._sync import to_completion
from ._common import (
    EXIT_OK,
    UsageError,
    _count,
    _resume_note,
    connect,
)


def checkpoint_store(path: str) -> CheckpointStore:
    """SQLite for ``.db``/``.sqlite``/``.sqlite3`` files, a JSON file otherwise."""
    if Path(path).suffix.lower() in {".db", ".sqlite", ".sqlite3"}:
        return SQLiteCheckpoints(path)
    return JSONFileCheckpoints(path)


class SyncOutput:
    """The JSON Lines file a sync appends to, kept equal to what is committed.

    Each window is written, flushed and ``fsync``ed, then committed with the file's new
    size in the checkpoint's ``meta``. Before writing, an intent (where, how much, a
    hash) is recorded beside the checkpoint: after a crash between write and commit, the
    next run (holding the lock) cuts off exactly that window and reads it again. Bytes
    after the committed size that this sync did not write (another program, another
    ``--key`` on the same file) are never cut: the run stops and says so. While a sync
    runs it holds a lock on the file, so two syncs never append to one file at once.
    """

    def __init__(self, path: str, checkpoint: str, key: str) -> None:
        self.path: Path = Path(path)
        self.resolved: str = str(self.path.resolve())
        digest = hashlib.sha256(f"{key}\0{self.resolved}".encode()).hexdigest()[:12]
        state = Path(checkpoint)
        self.intent: Path = state.with_name(f"{state.name}.{digest}.pending")
        self.size: int = 0
        self.written: int = 0
        self._held: Any = None

    def hold(self) -> None:
        """Lock the output file against other syncs (released when the process ends)."""
        handle = open(self.path, "ab")  # noqa: SIM115 - held for the whole run
        if sys.platform == "win32":  # pragma: no cover - no flock there
            self._held = handle
            return
        import fcntl

        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise UsageError(
                f"{self.path} is being written by another sync right now: use one output "
                "file per sync"
            ) from None
        self._held = handle

    async def align(self, run: SyncRun) -> None:
        """At the start of each run, with the sync's lock held: bring the file back to
        what is committed, or on a first run claim it (its size) in the checkpoint."""
        self.size = await asyncio.to_thread(self.align_to, run.checkpoint)
        if run.checkpoint is None:
            # Claimed before anything is written: a crash before the first commit is
            # then cut back like any other.
            await run.commit_meta({"output": self.resolved, "output_bytes": self.size})

    def align_to(self, checkpoint: Checkpoint | None) -> int:
        size = self.path.stat().st_size if self.path.exists() else 0
        if checkpoint is None:
            return size  # a first run appends to what the file already holds
        owner = checkpoint.meta.get("output")
        committed = checkpoint.meta.get("output_bytes")
        if owner != self.resolved or not isinstance(committed, int):
            raise UsageError(
                f"the checkpoint was not written for {self.path} (it belongs to "
                f"{owner or 'another program'}): pass that file with -o, or another --key"
            )
        if size < committed:
            raise UsageError(
                f"{self.path} holds {size:,} bytes but {committed:,} were committed: it was "
                "truncated or replaced since the last run; restore it, or start over with a "
                "new --key or checkpoint"
            )
        if size > committed:
            if not self._is_our_tail(committed, size):
                raise UsageError(
                    f"{self.path} has {size - committed:,} bytes after what this sync "
                    "committed that it did not write (another program or another --key "
                    "appended to it?); they are left as they are: use one output file per sync"
                )
            with open(self.path, "r+b") as handle:
                handle.truncate(committed)
                os.fsync(handle.fileno())
            print(
                f"{self.path}: removed {size - committed:,} bytes of a window written but "
                "not committed before the last run stopped; it is read again",
                file=sys.stderr,
            )
        return committed

    def _is_our_tail(self, committed: int, size: int) -> bool:
        try:
            intent = json.loads(self.intent.read_bytes())
            offset, length, digest = intent["offset"], intent["length"], intent["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if offset != committed or not committed < size <= committed + length:
            return False
        if size < committed + length:
            return True  # the write itself was cut short
        with open(self.path, "rb") as handle:
            handle.seek(committed)
            return bool(hashlib.sha256(handle.read(length)).hexdigest() == digest)

    async def write(self, batch: SyncBatch) -> None:
        data = await _jsonl(batch.records)
        size = self.size + len(data)
        # The append and the cut run to their end even under a cancellation (SIGTERM,
        # Ctrl-C): a thread cannot be stopped halfway, and the file must be what the
        # checkpoint says when the command says they agree.
        interrupted = await to_completion(asyncio.to_thread(self._append, data))
        try:
            if interrupted:
                raise asyncio.CancelledError  # appended, not committed: cut back below
            await batch.commit(meta={"output": self.resolved, "output_bytes": size})
        finally:
            if batch.committed:
                self.size = size
                self.written += len(batch.records)
            else:  # the file goes back to what is committed
                await to_completion(asyncio.to_thread(self._cut, self.size))

    def _append(self, data: bytes) -> None:
        intent = {"offset": self.size, "length": len(data)}
        intent["sha256"] = hashlib.sha256(data).hexdigest()  # type: ignore[assignment]
        temporary = self.intent.with_name(self.intent.name + ".tmp")
        temporary.write_text(json.dumps(intent))
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, self.intent)
        with open(self.path, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def _cut(self, size: int) -> None:
        with open(self.path, "r+b") as handle:
            handle.truncate(size)


async def _jsonl(records: Sequence[Any]) -> bytes:
    """Records as JSON Lines, encoded a slice at a time (a window of thousands of orders
    in one go would hold the loop, which the in-process sandbox shares)."""
    lines: list[str] = []
    began = time.perf_counter()
    for count, record in enumerate(records, 1):
        lines.append(encode_record(record) + "\n")
        if not count % 16 and time.perf_counter() - began > SLICE_SECONDS:
            await asyncio.sleep(0)
            began = time.perf_counter()
    return "".join(lines).encode()


async def cmd_sync(args: argparse.Namespace) -> int:
    if args.output == "-":
        raise UsageError("sync appends to a file it can cut back after a crash: pass -o FILE")
    store = checkpoint_store(args.checkpoint)
    stored = await store.load(args.key)
    if stored is None and args.since is None:
        raise UsageError(
            f"{args.checkpoint} has no checkpoint for --key {args.key} yet: pass --since "
            "for the first run (later runs continue from the checkpoint)"
        )
    start = args.since
    if stored is not None:
        start = stored.start or stored.watermark
        if args.since is not None and args.since != start:
            print(
                f"--since is for a first run: continuing from the checkpoint "
                f"({format_instant(stored.watermark)})",
                file=sys.stderr,
            )
    output = SyncOutput(args.output, args.checkpoint, args.key)
    output.hold()
    async with connect(args) as client:
        sync = OrderSync(
            client,
            store,
            key=args.key,
            start=start,
            lookback=args.lookback,
            settle=args.settle,
            window=args.window,
            concurrency=args.concurrency,
            page_cap=args.page_cap,
            lock_wait=args.lock_wait,
        )

        def note() -> None:
            _resume_note.clear()
            _resume_note.append(
                f"{output.path} and {args.checkpoint} agree: {output.written:,} orders were "
                "appended and committed; run the same command to continue."
            )

        try:
            if args.interval is None:
                async with sync.run_once() as run:
                    await output.align(run)
                    async for batch in run:
                        await output.write(batch)
            else:
                print(
                    f"syncing every {args.interval} into {output.path}; Ctrl-C to stop",
                    file=sys.stderr,
                )
                await sync.run_forever(output.write, interval=args.interval, on_run=output.align)
        except BaseException:
            note()
            raise
    watermark = sync.stats.watermark
    print(
        f"{_count(output.written, 'new order', 'new orders')} appended to {output.path}; "
        f"complete up to {format_instant(watermark) if watermark else 'the start'}",
        file=sys.stderr,
    )
    return EXIT_OK
