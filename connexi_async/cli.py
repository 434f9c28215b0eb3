"""The ``connexi-async`` command: orders, stocks, status updates and creation from a shell.

Data goes to stdout (or ``-o FILE``), everything else to stderr. Exit codes: 0 success,
2 usage, 3 authentication, 4 API error, 5 network, 6 another worker holds the sync's
lock, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import difflib
import hashlib
import json
import logging
import os
import re
import signal
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import attrs

from . import __version__
from ._client import ConnexiClient
from ._convert import decode_new_orders, decode_status_updates, encode_record
from ._cooperative import SLICE_SECONDS
from ._errors import (
    AuthenticationError,
    ConfigurationError,
    ConnexiError,
    DecodeError,
    OutcomeUnknownError,
    PermissionDeniedError,
    TLSError,
    TransportError,
    WindowError,
    format_instant,
)
from ._models import Location, Order, OrderStatus, StatusUpdate
from ._stream import RecordStream
from .sandbox import Sandbox
from .sandbox.__main__ import build_parser as build_sandbox_parser
from .sandbox.__main__ import serve as serve_sandbox
from .sandbox._app import DEFAULT_CACHE_BYTES
from .sync import (
    Checkpoint,
    CheckpointStore,
    JSONFileCheckpoints,
    OrderSync,
    SQLiteCheckpoints,
    SyncBatch,
    SyncLockedError,
    SyncRun,
)

EXIT_OK, EXIT_USAGE, EXIT_AUTH, EXIT_API, EXIT_NETWORK, EXIT_INTERRUPTED = 0, 2, 3, 4, 5, 130
EXIT_LOCKED = 6
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a tool killed by the signal reports

SANDBOX_START = datetime(2026, 10, 1, tzinfo=UTC)
SANDBOX_DAYS = 31
SANDBOX_ORDERS = 40_000

_DURATION = re.compile(r"([0-9]+)\s*([smhdw])", re.ASCII)
_ORDER_ID = re.compile(r"[0-9]{1,19}", re.ASCII)  # an id fits in 64 bits
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(Exception):
    """A command-line mistake: exit code 2."""


# -- parsing of times and widths ---------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``6h``, ``1d``, ``2w`` or combinations such as ``1d12h``."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not parts or _DURATION.sub("", cleaned).strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30m, 6h or 1d")
    if any(len(n) > 9 for n, _ in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is longer than any period the API has")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than zero")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is longer than any period the API has"
        ) from None


def parse_time(text: str, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> datetime:
    """RFC 3339 (``2026-10-01T00:00:00Z``), a date (``2026-10-01``, midnight UTC),
    ``now``, or an age such as ``7d`` (seven days ago)."""
    value = text.strip()
    if value.lower() == "now":
        return now()
    if _DURATION.fullmatch(value.lower()) or re.fullmatch(r"(\d+\s*[smhdw])+", value.lower()):
        try:
            return now() - parse_duration(value)
        except OverflowError:
            raise argparse.ArgumentTypeError(f"{text!r} reaches before the year 1") from None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use 2026-10-01, 2026-10-01T08:00:00+07:00, now or 7d"
        ) from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no time zone: add Z (UTC) or an offset such as +07:00; a date "
            "alone (2026-10-01) means midnight UTC"
        )
    return parsed


# -- output formats ----------------------------------------------------------------------

_ORDER_COLUMNS = [a.name for a in attrs.fields(Order) if a.name != "line_items"]
ORDER_CSV_HEADER = [*_ORDER_COLUMNS, "line_item_count", "line_items_total"]
LOCATION_CSV_HEADER = ["location_code", "provider_data", "level", "path"]


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def order_csv_row(order: Order) -> list[str]:
    row = [_csv_value(getattr(order, name)) for name in _ORDER_COLUMNS]
    total = sum((li.total for li in order.line_items), Decimal(0))
    return [*row, str(len(order.line_items)), format(total, "f")]


def location_rows(root: Location) -> Iterator[list[str]]:
    """One row per location of the tree, with its level and the path of names to it."""
    levels = ("country", "province", "city", "district")
    stack: list[tuple[Location, int, tuple[str, ...]]] = [(root, 0, ())]
    while stack:
        node, depth, path = stack.pop()
        names = (*path, node.provider_data)
        level = levels[depth] if depth < len(levels) else f"level {depth}"
        yield [node.location_code, node.provider_data, level, " / ".join(names)]
        stack.extend((child, depth + 1, names) for child in reversed(node.children))


class RecordWriter:
    """Writes whole records only: each line is written and flushed in one piece."""

    def __init__(self, out: TextIO, fmt: str, kind: str) -> None:
        self.out = out
        self.fmt = fmt
        self.kind = kind
        self._csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        self.written = 0  # lines or rows, what the summary counts
        if self._csv is not None:
            self._csv.writerow(ORDER_CSV_HEADER if kind == "orders" else LOCATION_CSV_HEADER)

    def write(self, record: Order | Location) -> None:
        if self._csv is None:
            self.out.write(encode_record(record) + "\n")
            self.written += 1
        elif isinstance(record, Order):
            self._csv.writerow(order_csv_row(record))
            self.written += 1
        else:
            rows = list(location_rows(record))
            self._csv.writerows(rows)
            self.written += len(rows)


@contextlib.contextmanager
def open_output(path: str | None) -> Iterator[TextIO]:
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(path, "w", encoding="utf-8", newline="") as handle:
        yield handle


# -- progress ----------------------------------------------------------------------------


class Progress:
    """A one-line live display on stderr when it is a terminal; a summary at the end."""

    def __init__(self, stream: RecordStream[Any], noun: str, err: TextIO) -> None:
        self.stream = stream
        self.noun = noun
        self.err = err
        self.started = time.monotonic()
        self.live = err.isatty()
        self._task: asyncio.Task[None] | None = None

    def line(self) -> str:
        s = self.stream.stats
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"windows {s.windows_done}/{s.windows_planned}  {s.records_yielded:,} {self.noun}  "
            f"{s.records_yielded / elapsed:,.0f}/s  retries {s.retries}"
        )

    async def _loop(self) -> None:
        while True:
            self.err.write("\r\x1b[2K" + self.line())
            self.err.flush()
            await asyncio.sleep(0.25)

    def __enter__(self) -> Progress:
        if self.live:
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            self.err.write("\r\x1b[2K")
            self.err.flush()

    def summary(self, written: int, what: str) -> str:
        """What was written (lines or rows, as the output counts them), and the stream."""
        s = self.stream.stats
        elapsed = time.monotonic() - self.started
        rate = written / elapsed if elapsed > 0 else 0.0
        return (
            f"{written:,} {what} in {elapsed:.1f} s ({rate:,.0f}/s), "
            f"{_count(s.windows_done, 'window', 'windows')}, "
            f"{_count(s.retries, 'retry', 'retries')}, "
            f"{_count(s.duplicates_dropped, 'duplicate', 'duplicates')} dropped"
        )


# -- the client, real or sandboxed -------------------------------------------------------


@contextlib.asynccontextmanager
async def connect(args: argparse.Namespace) -> AsyncIterator[ConnexiClient]:
    options: dict[str, Any] = {
        "connect_timeout": args.connect_timeout,
        "read_timeout": args.read_timeout,
        "max_attempts": args.max_attempts,
        "allow_insecure_http": args.allow_insecure_http,
    }
    if args.sandbox:
        sandbox = Sandbox(
            orders=args.sandbox_orders,
            seed=args.sandbox_seed,
            start=SANDBOX_START,
            days=SANDBOX_DAYS,
            # The demo pre-generates the whole month: keep all of it (~2.4 kB an order).
            cache_bytes=max(DEFAULT_CACHE_BYTES, args.sandbox_orders * 3 * 1024),
        )
        async with sandbox:
            print(
                f"using an in-process sandbox at {sandbox.base_url} with "
                f"{args.sandbox_orders:,} generated orders from 2026-10-01 to 2026-11-01 "
                "(no real data is touched)",
                file=sys.stderr,
            )
            if getattr(args, "prewarm_days", False):
                # The sandbox shares this process: generate its data before the clock
                # starts, so the pull is timed alone, as it would be against the real API.
                started = time.monotonic()
                for day in range(SANDBOX_DAYS):
                    low = SANDBOX_START + timedelta(days=day)
                    await sandbox.state.window_parts(low, low + timedelta(days=1))
                print(
                    f"sandbox ready: {args.sandbox_orders:,} orders generated in "
                    f"{time.monotonic() - started:.1f} s",
                    file=sys.stderr,
                )
            async with ConnexiClient(**sandbox.credentials, **options) as client:
                yield client
        return
    api_key = args.api_key or os.environ.get("CONNEXI_API_KEY")
    api_secret = args.api_secret or os.environ.get("CONNEXI_API_SECRET")
    base_url = args.base_url or os.environ.get("CONNEXI_BASE_URL")
    if not api_key or not api_secret:
        missing = "CONNEXI_API_KEY" if not api_key else "CONNEXI_API_SECRET"
        raise UsageError(f"{missing} is not set: export it (or pass --sandbox to try the sandbox)")
    if base_url:
        options["base_url"] = base_url
    # Like curl and pip, the command honours HTTPS_PROXY/NO_PROXY unless told not to.
    options["trust_env"] = not args.no_proxy_env
    if args.ca_file:
        options["ssl"] = args.ca_file
    if args.proxy:
        options["proxy"] = args.proxy
    async with ConnexiClient(api_key=api_key, api_secret=api_secret, **options) as client:
        yield client


# -- commands ----------------------------------------------------------------------------


_resume_note: list[str] = []  # what to say if the run is interrupted or fails mid-stream


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def _resume_hint(stream: RecordStream[Any], since: datetime) -> str:
    done = stream.completed_until
    if done is None:
        return f"No window was completed: rerun with --since {format_instant(since)}."
    return f"The output is complete up to {format_instant(done)}: resume with --since {format_instant(done)}."


async def cmd_orders(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        stream = client.orders(
            args.since,
            args.until,
            window=args.window,
            concurrency=args.concurrency,
            ordered=not args.unordered,
            page_cap=args.page_cap,
        )
        return await _drain(stream, args, "orders", args.since)


async def cmd_stocks(args: argparse.Namespace) -> int:
    if (args.since is None) != (args.until is None):
        raise UsageError("pass both --since and --until, or neither")
    async with connect(args) as client:
        stream = client.stock_locations(args.since, args.until, window=args.window)
        return await _drain(stream, args, "locations", args.since)


async def _drain(
    stream: RecordStream[Any], args: argparse.Namespace, noun: str, since: datetime | None
) -> int:
    progress = Progress(stream, noun, sys.stderr)
    with open_output(args.output) as out:
        writer = RecordWriter(out, args.format, noun)
        try:
            async with stream:
                with progress:
                    async for record in stream:
                        writer.write(record)
        except asyncio.CancelledError:
            out.flush()
            if since is not None:
                _resume_note.append(_resume_hint(stream, since))
            raise
        except WindowError:
            out.flush()
            if since is not None:
                _resume_note.append(_resume_hint(stream, since))
            raise
    what = noun
    if noun == "locations":  # a JSON Lines line is a tree; a CSV row is one location
        what = "location rows" if args.format == "csv" else "location trees"
    print(progress.summary(writer.written, what), file=sys.stderr)
    return EXIT_OK


def _read_updates(args: argparse.Namespace) -> list[StatusUpdate]:
    pairs: list[str] = list(args.updates)
    updates = []
    if args.from_file:
        text = Path(args.from_file).read_text(encoding="utf-8")
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                updates += decode_status_updates(stripped, context=args.from_file)
            except DecodeError as exc:
                raise UsageError(str(exc)) from None
        else:  # one "ID=STATUS" or "ID STATUS" a line
            for line in stripped.splitlines():
                fields = line.replace("=", " ", 1).split()
                if fields:
                    pairs.append("=".join(fields) if len(fields) == 2 else line)
    for pair in pairs:
        order_id, sep, status = pair.partition("=")
        if not sep or not _ORDER_ID.fullmatch(order_id.strip()) or not status.strip():
            raise UsageError(f"{pair!r} is not ID=STATUS (for example 111=accepted)")
        updates.append(StatusUpdate(id=int(order_id), status=status.strip()))
    if not updates:
        raise UsageError("no status updates given: pass ID=STATUS pairs or --from FILE")
    if not args.allow_unknown_status:
        for update in updates:
            if update.status.lower() not in _STATUSES:
                close = difflib.get_close_matches(update.status.lower(), sorted(_STATUSES), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise UsageError(
                    f"{update.status!r} is not an order status the API documents{hint}; "
                    "pass --allow-unknown-status to send it anyway"
                )
    return updates


_STATUSES = frozenset({*(s.value for s in OrderStatus), "canceled"})


async def cmd_update_status(args: argparse.Namespace) -> int:
    updates = _read_updates(args)
    async with connect(args) as client:
        updated = await client.update_order_statuses(updates)
    for order in updated:
        sys.stdout.write(encode_record(order) + "\n")
    print(f"updated {_count(len(updates), 'order status', 'order statuses')}", file=sys.stderr)
    return EXIT_OK


def _orders_file(path: str) -> bytes:
    """A file of orders as one JSON array: a JSON array, an ``{"orders": [...]}`` object,
    or JSON Lines (one order a line, a single line included)."""
    text = Path(path).read_bytes().strip()
    if not text:
        raise UsageError(f"{path} holds no orders")
    if text.startswith(b"["):
        return text
    if text.startswith(b"{"):
        with contextlib.suppress(ValueError):
            whole = json.loads(text)
            if isinstance(whole, dict) and ("orders" in whole or "data" in whole):
                return text
    lines = [line for line in text.splitlines() if line.strip()]
    return b"[" + b",".join(lines) + b"]"


async def cmd_create(args: argparse.Namespace) -> int:
    try:
        # Strict: these are orders a person wrote, not what a server sent.
        new_orders = decode_new_orders(_orders_file(args.file), context=args.file, strict=True)
    except DecodeError as exc:
        raise UsageError(str(exc)) from None
    if not new_orders:
        raise UsageError(f"{args.file} holds no orders")
    async with connect(args) as client:
        created = await client.create_orders(new_orders)
    for order in created:
        sys.stdout.write(encode_record(order) + "\n")
    print(f"created {_count(len(created), 'order', 'orders')}", file=sys.stderr)
    return EXIT_OK


async def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the sandbox: a month of orders to a file, then a seller's report."""
    since, until = SANDBOX_START, SANDBOX_START + timedelta(days=SANDBOX_DAYS)
    args.sandbox = True
    args.prewarm_days = True
    async with connect(args) as client:
        stream = client.orders(since, until, window=timedelta(days=1), concurrency=args.concurrency)
        per_marketplace: Counter[str] = Counter()
        revenue: defaultdict[str, Decimal] = defaultdict(Decimal)
        per_status: Counter[str] = Counter()
        status_revenue: defaultdict[str, Decimal] = defaultdict(Decimal)
        per_day: Counter[date] = Counter()
        started = time.monotonic()
        progress = Progress(stream, "orders", sys.stderr)
        with open(args.output, "w", encoding="utf-8") as out:
            async with stream:
                with progress:
                    async for order in stream:
                        out.write(encode_record(order) + "\n")
                        per_marketplace[order.marketplace_code] += 1
                        per_status[order.order_status] += 1
                        if order.order_status != "cancelled":
                            revenue[order.marketplace_code] += order.total
                        status_revenue[order.order_status] += order.total
                        if order.created_at is not None:
                            per_day[order.created_at.date()] += 1
        elapsed = time.monotonic() - started
    total = sum(per_marketplace.values())
    names = {
        "bklp": "Bukalapak",
        "tkpd": "Tokopedia",
        "shpe": "Shopee",
        "lzda": "Lazada",
        "blib": "Blibli",
    }
    print(f"\nPulled {total:,} orders for October 2026 into {args.output} in {elapsed:.1f} s "
          f"({total / elapsed:,.0f} orders/s, {stream.stats.windows_done} daily windows, "
          f"{stream.concurrency} at a time, {stream.stats.retries} retries).")  # fmt: skip
    print("\nBy marketplace            orders     revenue (IDR, excl. cancelled)")
    for code, count in per_marketplace.most_common():
        print(f"  {names.get(code, code):<20} {count:>8,}   {revenue[code]:>22,.0f}")
    print(f"  {'all':<20} {total:>8,}   {sum(revenue.values(), Decimal(0)):>22,.0f}")
    print("\nBy status                 orders     value (IDR)")
    for status, count in per_status.most_common():
        print(f"  {status:<20} {count:>8,}   {status_revenue[status]:>22,.0f}")
    if per_day:
        day, count = max(per_day.items(), key=lambda item: (item[1], item[0]))
        print(f"\nBusiest day: {day:%A %d %B %Y} with {count:,} orders "
              f"(a day averages {total / len(per_day):,.0f}).")  # fmt: skip
    return EXIT_OK


async def cmd_sandbox(args: argparse.Namespace) -> int:
    await serve_sandbox(args)
    return EXIT_OK


# -- the parser --------------------------------------------------------------------------


# -- sync ------------------------------------------------------------------------------


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
        self.path = Path(path)
        self.resolved = str(self.path.resolve())
        digest = hashlib.sha256(f"{key}\0{self.resolved}".encode()).hexdigest()[:12]
        state = Path(checkpoint)
        self.intent = state.with_name(f"{state.name}.{digest}.pending")
        self.size = 0
        self.written = 0
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
        await asyncio.to_thread(self._append, data)
        try:
            await batch.commit(meta={"output": self.resolved, "output_bytes": size})
        finally:
            if batch.committed:
                self.size = size
                self.written += len(batch.records)
            else:  # the file goes back to what is committed
                await asyncio.to_thread(self._cut, self.size)

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


def _connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--sandbox",
        action="store_true",
        help="run against an in-process sandbox with generated data",
    )
    group.add_argument("--sandbox-orders", type=int, default=SANDBOX_ORDERS, help=argparse.SUPPRESS)
    group.add_argument("--sandbox-seed", type=int, default=7, help=argparse.SUPPRESS)
    group.add_argument(
        "--base-url", help="API base URL (default: $CONNEXI_BASE_URL or https://api2.connexi.id)"
    )
    group.add_argument("--api-key", help="default: $CONNEXI_API_KEY")
    group.add_argument(
        "--api-secret",
        help="default: $CONNEXI_API_SECRET (prefer the variable: arguments show in ps)",
    )
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain-http --base-url that is not on loopback (the secret travels unencrypted)",
    )
    group.add_argument(
        "--ca-file",
        metavar="PEM",
        help="trust this CA bundle instead of the system's (a TLS-inspecting proxy's, a private CA)",
    )
    group.add_argument(
        "--proxy",
        metavar="URL",
        help="http://[user:password@]proxy:3128 (default: $HTTPS_PROXY, honouring $NO_PROXY)",
    )
    group.add_argument(
        "--no-proxy-env",
        action="store_true",
        help="ignore HTTPS_PROXY/HTTP_PROXY/NO_PROXY in the environment",
    )
    group.add_argument("--connect-timeout", type=float, default=10.0, metavar="S")
    group.add_argument("--read-timeout", type=float, default=30.0, metavar="S")
    group.add_argument("--max-attempts", type=int, default=5, metavar="N")
    group.add_argument("--debug", action="store_true", help="show tracebacks and the request log")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connexi-async",
        description="Pull orders and stock from SIRCLO's Connexi API, update statuses, create orders.",
        epilog="example: connexi-async orders --sandbox --since 2026-10-01 --until 2026-10-08 -o week.jsonl",
    )
    parser.add_argument("--version", action="version", version=f"connexi-async {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fmt = {"choices": ["jsonl", "csv"], "default": "jsonl", "help": "output format (default jsonl)"}

    orders = commands.add_parser(
        "orders",
        help="stream the orders created in a period",
        description="Stream every order created in [--since, --until), each exactly once.",
        epilog="example: connexi-async orders --since 7d --until now --format csv -o orders.csv",
    )
    orders.add_argument(
        "--since", type=parse_time, required=True, help="2026-10-01, RFC 3339, or 7d"
    )
    orders.add_argument("--until", type=parse_time, default="now", help="default: now")
    orders.add_argument(
        "--window", type=parse_duration, default=timedelta(days=1), help="window width (default 1d)"
    )
    orders.add_argument("--concurrency", type=int, default=8, help="windows in flight (default 8)")
    orders.add_argument("--unordered", action="store_true", help="write windows as they arrive")
    orders.add_argument(
        "--page-cap", type=int, default=None, help="the server's most orders per response"
    )
    orders.add_argument("--format", **fmt)  # type: ignore[arg-type]
    orders.add_argument("-o", "--output", help="file to write (default stdout)")
    _connection_options(orders)
    orders.set_defaults(handler=cmd_orders)

    stocks = commands.add_parser(
        "stocks",
        help="the stock location tree",
        description="The stock location tree; with a period, the locations changed in it.",
        epilog="example: connexi-async stocks --sandbox --format csv",
    )
    stocks.add_argument("--since", type=parse_time, default=None)
    stocks.add_argument("--until", type=parse_time, default=None)
    stocks.add_argument("--window", type=parse_duration, default=timedelta(days=1))
    stocks.add_argument("--format", **fmt)  # type: ignore[arg-type]
    stocks.add_argument("-o", "--output", help="file to write (default stdout)")
    _connection_options(stocks)
    stocks.set_defaults(handler=cmd_stocks)

    update = commands.add_parser(
        "update-status",
        help="set order statuses",
        description="Set order statuses (retried safely: setting a status is idempotent).",
        epilog="example: connexi-async update-status 111=accepted 112=cancelled",
    )
    update.add_argument("updates", nargs="*", metavar="ID=STATUS")
    update.add_argument(
        "--from", dest="from_file", metavar="FILE", help="ID=STATUS lines or a JSON list"
    )
    update.add_argument(
        "--allow-unknown-status",
        action="store_true",
        help="send a status the API does not document (new ones may appear)",
    )
    _connection_options(update)
    update.set_defaults(handler=cmd_update_status)

    create = commands.add_parser(
        "create",
        help="create orders from a JSON or JSON Lines file",
        description='Create the orders in FILE ({"orders": [...]}, a list, or one per line).',
        epilog="example: connexi-async create new-orders.jsonl",
    )
    create.add_argument("file")
    _connection_options(create)
    create.set_defaults(handler=cmd_create)

    sync = commands.add_parser(
        "sync",
        help="append new orders to a file, from a checkpoint",
        description=(
            "Append the orders created since the last run to a JSON Lines file, committing "
            "a checkpoint after each window is on disk. Run it again (or pass --interval) to "
            "continue; the file and the checkpoint always agree."
        ),
        epilog=(
            "example: connexi-async sync --checkpoint state.db -o orders.jsonl "
            "--since 2026-10-01 --interval 5m"
        ),
    )
    sync.add_argument(
        "--checkpoint",
        required=True,
        metavar="FILE",
        help="the checkpoint store: SQLite for .db/.sqlite, a JSON file otherwise",
    )
    sync.add_argument("-o", "--output", required=True, help="the JSON Lines file to append to")
    sync.add_argument(
        "--key", default="orders", help="the sync's name in the store (default orders)"
    )
    sync.add_argument(
        "--since", type=parse_time, default=None, help="where the first run starts (2026-10-01, 7d)"
    )
    sync.add_argument(
        "--interval", type=parse_duration, default=None, help="run every interval (default: once)"
    )
    sync.add_argument(
        "--lookback",
        type=parse_duration,
        default=timedelta(hours=2),
        help="re-read this far back for late orders (default 2h)",
    )
    sync.add_argument(
        "--settle",
        type=parse_duration,
        default=timedelta(minutes=2),
        help="stay this far from now (default 2m)",
    )
    sync.add_argument(
        "--window",
        type=parse_duration,
        default=timedelta(hours=1),
        help="window width (default 1h)",
    )
    sync.add_argument("--concurrency", type=int, default=8, help="windows in flight (default 8)")
    sync.add_argument("--page-cap", type=int, default=None, help=argparse.SUPPRESS)
    sync.add_argument(
        "--lock-wait",
        type=float,
        default=0.0,
        metavar="S",
        help="wait this long for another worker on the same key (default: fail at once)",
    )
    _connection_options(sync)
    sync.set_defaults(handler=cmd_sync)

    sandbox = commands.add_parser(
        "sandbox",
        help="run the sandbox server",
        description="Run the embedded Connexi v1 sandbox server on loopback until Ctrl-C.",
        epilog="example: connexi-async sandbox --port 8080 --orders 100000 --seed 7",
    )
    build_sandbox_parser(sandbox)
    sandbox.add_argument("--debug", action="store_true")
    sandbox.set_defaults(handler=cmd_sandbox)

    demo = commands.add_parser(
        "demo",
        help="the main job on the sandbox, with a report",
        description="Stream a month of sandbox orders to a file and print a seller's report.",
        epilog="example: connexi-async demo -o demo-orders.jsonl",
    )
    demo.add_argument("-o", "--output", default="demo-orders.jsonl")
    demo.add_argument("--concurrency", type=int, default=8)
    _connection_options(demo)
    demo.set_defaults(handler=cmd_demo)
    return parser


def _exit_code(exc: BaseException) -> int:
    cause: BaseException | None = exc
    if isinstance(exc, WindowError) and exc.__cause__ is not None:
        cause = exc.__cause__
    if isinstance(cause, AuthenticationError | PermissionDeniedError):
        return EXIT_AUTH
    if isinstance(cause, TransportError | OutcomeUnknownError):
        return EXIT_NETWORK
    if isinstance(cause, ConfigurationError):
        return EXIT_USAGE
    if isinstance(cause, SyncLockedError):
        return EXIT_LOCKED
    return EXIT_API


class _Terminated(Exception):
    """The run was stopped by SIGTERM or SIGHUP."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.name = signal.Signals(number).name
        super().__init__(self.name)


async def _with_signals(args: argparse.Namespace) -> int:
    """Run the command; SIGTERM and SIGHUP cancel it as Ctrl-C does."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def stop(number: int) -> None:
        received.append(number)
        task.cancel()

    handled = []
    for number in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(number, stop, number)
            handled.append(number)
    try:
        code: int = await args.handler(args)
        return code
    except asyncio.CancelledError:
        if received:
            raise _Terminated(received[0]) from None
        raise
    finally:
        for number in handled:
            loop.remove_signal_handler(number)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.ERROR,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    _resume_note.clear()
    try:
        code: int = asyncio.run(_with_signals(args))
        return code
    except KeyboardInterrupt:
        note = f" {_resume_note[0]}" if _resume_note else ""
        print(f"Interrupted.{note}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _Terminated as stop:
        # SIGTERM (timeout, systemd, docker, Kubernetes) and SIGHUP end a run the way
        # Ctrl-C does: whole records written, a resume point, 128 + the signal's number.
        note = f" {_resume_note[0]}" if _resume_note else ""
        print(f"Terminated by {stop.name}.{note}", file=sys.stderr)
        return 128 + stop.number
    except BrokenPipeError:
        # The reader went away (`... | head`): end quietly, as Unix tools do. Whatever
        # is still buffered for stdout goes nowhere rather than into a second error.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except UsageError as exc:
        print(f"connexi-async: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ConnexiError, OSError) as exc:
        if debug:
            traceback.print_exc()
        note = f" {_resume_note[0]}" if _resume_note else ""
        if isinstance(exc, OSError) and not isinstance(exc, ConnexiError):
            print(f"connexi-async: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        said = str(exc)
        if isinstance(exc, TLSError) or isinstance(exc.__cause__, TLSError):
            said = said.rstrip(".") + " (on the command line: --ca-file PEM)"
        print(
            f"connexi-async: error: {said}{'' if said.endswith('.') else '.'}{note}",
            file=sys.stderr,
        )
        return _exit_code(exc)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
