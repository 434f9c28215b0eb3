"""What the commands share: exit codes, argument types, output writers, progress, the
client (real or sandboxed) and the connection options."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

import attrs

from .._client import ConnexiClient
from .._convert import encode_record
from .._errors import (
    format_instant,
)
from .._models import Location, Order
from .._partner import PartnerClient
from .._stream import RecordStream
from ..sandbox import Sandbox
from ..sandbox._app import DEFAULT_CACHE_BYTES

EXIT_OK, EXIT_USAGE, EXIT_AUTH, EXIT_API, EXIT_NETWORK, EXIT_INTERRUPTED = 0, 2, 3, 4, 5, 130
EXIT_LOCKED = 6  # sync: another worker holds the lock
EXIT_PARTIAL = 6  # partner writes: the server refused some records (the rest were done)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a tool killed by the signal reports

SANDBOX_START = datetime(2026, 10, 1, tzinfo=UTC)
SANDBOX_DAYS = 31
SANDBOX_ORDERS = 40_000

_DURATION = re.compile(r"([0-9]+)\s*([smhdw])", re.ASCII)
_ORDER_ID = re.compile(r"[0-9]{1,19}", re.ASCII)  # an id fits in 64 bits
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(Exception):
    """A command-line mistake: exit code 2."""


class CommandError(Exception):
    """A failure the command explains itself (in shell terms), with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        self.code = code
        super().__init__(message)


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


def model_csv_header(cls: type) -> list[str]:
    """A flat row of any model: its plain fields, and a count of each nested list."""
    # line_items -> line_item_count, as the v1 CSV names it.
    return [
        f"{a.name.removesuffix('s')}_count" if a.name in _nested(cls) else a.name
        for a in attrs.fields(cls)
    ]


def model_csv_row(record: Any) -> list[str]:
    nested = _nested(type(record))
    return [
        str(len(getattr(record, a.name)))
        if a.name in nested
        else _csv_value(getattr(record, a.name))
        for a in attrs.fields(type(record))
    ]


def _nested(cls: type) -> frozenset[str]:
    hints = attrs.resolve_types(cls)
    return frozenset(
        a.name for a in attrs.fields(hints) if getattr(a.type, "__origin__", None) is tuple
    )


class RecordWriter:
    """Writes whole records only: each line is written and flushed in one piece.

    ``kind``: "orders" (v1, with line item totals), "locations" (a row per node), or a
    model class (a row per record, see :func:`model_csv_row`)."""

    def __init__(self, out: TextIO, fmt: str, kind: str | type) -> None:
        self.out = out
        self.fmt = fmt
        self.kind = kind
        self._csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        self.written = 0  # lines or rows, what the summary counts
        if self._csv is not None:
            if isinstance(kind, type):
                self._csv.writerow(model_csv_header(kind))
            else:
                self._csv.writerow(ORDER_CSV_HEADER if kind == "orders" else LOCATION_CSV_HEADER)

    def write(self, record: Any) -> None:
        if self._csv is None:
            self.out.write(encode_record(record) + "\n")
            self.written += 1
        elif isinstance(self.kind, type):
            self._csv.writerow(model_csv_row(record))
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
        noun = what.removesuffix("s") if written == 1 else what
        head = f"{written:,} {noun} in {elapsed:.1f} s ({rate:,.0f}/s), "
        retries = _count(s.retries, "retry", "retries")
        if not self.stream._windowed:  # one listing: no windows, nothing to de-duplicate
            return head + retries
        return (
            head + f"{_count(s.windows_done, 'window', 'windows')}, {retries}, "
            f"{_count(s.duplicates_dropped, 'duplicate', 'duplicates')} dropped"
        )


# -- the client, real or sandboxed -------------------------------------------------------


@contextlib.asynccontextmanager
async def connect(args: argparse.Namespace) -> AsyncIterator[ConnexiClient]:
    """The v1 client the command asked for: the sandbox's, or from flags and the
    environment (CONNEXI_API_KEY, CONNEXI_API_SECRET, CONNEXI_BASE_URL)."""
    async with _connected(args, partner=False) as client:
        assert isinstance(client, ConnexiClient)
        yield client


@contextlib.asynccontextmanager
async def connect_partner(args: argparse.Namespace) -> AsyncIterator[PartnerClient]:
    """The partner client: the sandbox's, or from the environment (CONNEXI_PARTNER_ID,
    CONNEXI_PARTNER_SECRET, CONNEXI_PARTNER_BASE_URL)."""
    async with _connected(args, partner=True) as client:
        assert isinstance(client, PartnerClient)
        yield client


@contextlib.asynccontextmanager
async def _connected(
    args: argparse.Namespace, *, partner: bool
) -> AsyncIterator[ConnexiClient | PartnerClient]:
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
            if partner:
                async with PartnerClient(**sandbox.partner_credentials, **options) as client:
                    yield client
            else:
                async with ConnexiClient(**sandbox.credentials, **options) as client:
                    yield client
        return
    # Like curl and pip, the command honours HTTPS_PROXY/NO_PROXY unless told not to.
    options["trust_env"] = not args.no_proxy_env
    if args.ca_file:
        options["ssl"] = args.ca_file
    if args.proxy:
        options["proxy"] = args.proxy
    if partner:
        partner_id = os.environ.get("CONNEXI_PARTNER_ID")
        partner_secret = os.environ.get("CONNEXI_PARTNER_SECRET")
        base_url = args.base_url or os.environ.get("CONNEXI_PARTNER_BASE_URL")
        if not partner_id or not partner_secret:
            missing = "CONNEXI_PARTNER_ID" if not partner_id else "CONNEXI_PARTNER_SECRET"
            raise UsageError(
                f"{missing} is not set: export it (or pass --sandbox to try the sandbox)"
            )
        if base_url:
            options["base_url"] = base_url
        async with PartnerClient(
            partner_id=partner_id, partner_secret=partner_secret, **options
        ) as partner_client:
            yield partner_client
        return
    api_key = args.api_key or os.environ.get("CONNEXI_API_KEY")
    api_secret = args.api_secret or os.environ.get("CONNEXI_API_SECRET")
    base_url = args.base_url or os.environ.get("CONNEXI_BASE_URL")
    if not api_key or not api_secret:
        missing = "CONNEXI_API_KEY" if not api_key else "CONNEXI_API_SECRET"
        raise UsageError(f"{missing} is not set: export it (or pass --sandbox to try the sandbox)")
    if base_url:
        options["base_url"] = base_url
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


def _connection_options(parser: argparse.ArgumentParser, *, partner: bool = False) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--sandbox",
        action="store_true",
        help="run against an in-process sandbox with generated data",
    )
    group.add_argument("--sandbox-orders", type=int, default=SANDBOX_ORDERS, help=argparse.SUPPRESS)
    group.add_argument("--sandbox-seed", type=int, default=7, help=argparse.SUPPRESS)
    if partner:
        group.add_argument(
            "--base-url",
            help="API base URL (default: $CONNEXI_PARTNER_BASE_URL or https://api.connexi.id); "
            "credentials: $CONNEXI_PARTNER_ID and $CONNEXI_PARTNER_SECRET",
        )
    else:
        group.add_argument(
            "--base-url",
            help="API base URL (default: $CONNEXI_BASE_URL or https://api2.connexi.id)",
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
