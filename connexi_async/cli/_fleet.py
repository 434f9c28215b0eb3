"""``connexi-async fleet setup|worker|schedule|status``: a fleet of accounts from a shell.

The fleet itself (accounts, credentials, sink) is yours, in Python: ``--app
module:attribute`` names a :class:`~connexi_async.fleet.Fleet`, or a function returning
one (``$CONNEXI_FLEET_APP`` by default). The current folder is importable, as with
uvicorn or procrastinate.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._errors import format_instant
from ._common import EXIT_OK, UsageError

if TYPE_CHECKING:
    from ..fleet import AccountStatus, Fleet

__all__ = ["add_fleet_commands"]


def add_fleet_commands(commands: Any) -> None:
    """The ``fleet`` command group, under the main parser's subcommands."""
    fleet = commands.add_parser(
        "fleet",
        help="sync many seller accounts with workers on many machines (PostgreSQL, procrastinate)",
        description=(
            "A fleet of seller accounts synced by workers on several machines, queued in "
            "PostgreSQL with procrastinate (pip install 'connexi-async[fleet]'). Your "
            "Fleet (accounts, credentials, sink) is named by --app."
        ),
        epilog="example: connexi-async fleet --app myapp.sync:fleet worker --concurrency 20",
    )
    fleet.add_argument(
        "--app",
        default=os.environ.get("CONNEXI_FLEET_APP"),
        help="module:attribute of your Fleet, or of a function returning one "
        "(default: $CONNEXI_FLEET_APP)",
    )
    fleet.add_argument("-v", "--verbose", action="store_true", help="log what workers do")
    group = fleet.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    group.add_parser(
        "setup",
        help="create procrastinate's schema and the checkpoint table (idempotent)",
    ).set_defaults(handler=cmd_fleet_setup)
    worker = group.add_parser(
        "worker",
        help="run a worker: syncs queued accounts, schedules due ones, recovers dead workers' jobs",
        epilog="SIGINT/SIGTERM: finish the accounts under way, then stop",
    )
    worker.add_argument(
        "--concurrency", type=int, default=10, help="accounts synced at once (default 10)"
    )
    worker.set_defaults(handler=cmd_fleet_worker)
    schedule = group.add_parser(
        "schedule", help="queue a sync of the accounts that are due now (workers do it each tick)"
    )
    schedule.add_argument("--all", action="store_true", help="every account, due or not")
    schedule.add_argument(
        "--account", action="append", default=None, metavar="KEY", help="only this one (repeat)"
    )
    schedule.set_defaults(handler=cmd_fleet_schedule)
    status = group.add_parser(
        "status", help="per account: watermark, lag, last error, the worker holding it"
    )
    status.add_argument("--json", action="store_true", help="JSON Lines instead of a table")
    status.set_defaults(handler=cmd_fleet_status)


def load_fleet(spec: str | None) -> Fleet:
    """The Fleet named by ``module:attribute`` (called first if it is a function)."""
    try:
        from ..fleet import Fleet
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    if not spec:
        raise UsageError("name your Fleet with --app module:attribute (or $CONNEXI_FLEET_APP)")
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--app takes module:attribute (myapp.sync:fleet), got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--app {spec}: cannot import {module_name} ({exc})") from None
    except Exception as exc:
        raise UsageError(
            f"--app {spec}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    target = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"--app {spec}: {module_name} has no {attribute}") from None
    if inspect.iscoroutinefunction(target):
        raise UsageError(f"--app {spec}: {attribute} is an async function; name a Fleet")
    if not isinstance(target, Fleet) and callable(target):
        try:
            target = target()
        except Exception as exc:
            raise UsageError(
                f"--app {spec}: {attribute}() failed: {type(exc).__name__}: {exc}"
            ) from None
    if not isinstance(target, Fleet):
        raise UsageError(f"--app {spec}: expected a Fleet, got {type(target).__name__}")
    return target


def _logging(args: argparse.Namespace) -> None:
    """-v: the fleet's and procrastinate's worker lines on stderr (errors always)."""
    level = logging.INFO if args.verbose else logging.WARNING
    logging.getLogger().setLevel(min(logging.getLogger().level, level))
    for name in ("connexi_async.fleet", "procrastinate.worker"):
        logging.getLogger(name).setLevel(level)


async def cmd_fleet_setup(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.app)
    await fleet.setup()
    print(f"fleet: schema ready (procrastinate, table {fleet.store.table})", file=sys.stderr)
    return EXIT_OK


async def cmd_fleet_worker(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.app)
    _logging(args)
    if args.concurrency < 1:
        raise UsageError(f"--concurrency must be 1 or more, got {args.concurrency}")
    print(f"fleet worker {fleet.worker}: {args.concurrency} accounts at a time", file=sys.stderr)
    await fleet.run_worker(concurrency=args.concurrency)
    return EXIT_OK


async def cmd_fleet_schedule(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.app)
    recovered = await fleet.recover_stalled()
    queued = await fleet.schedule(only=args.account, due=not (args.all or args.account))
    print(
        f"fleet: {queued} account syncs queued, {recovered} given back from dead workers",
        file=sys.stderr,
    )
    return EXIT_OK


async def cmd_fleet_status(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.app)
    rows = await fleet.status()
    if args.json:
        for row in rows:
            print(json.dumps(_json(row), ensure_ascii=False))
        return EXIT_OK
    table = [("account", "watermark", "lag", "last run", "job", "held by", "last error")]
    table += [
        (
            r.key,
            _instant(r.watermark),
            _duration(r.lag),
            _instant(r.last_run_at),
            r.job or "-",
            r.held_by or "-",
            " ".join((r.last_error or "-").split())[:120],  # one line: errors may hold several
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=False))
        print("  ".join([*cells, line[-1]]))
    failing = sum(1 for r in rows if r.last_error)
    print(f"{len(rows)} accounts, {failing} failing", file=sys.stderr)
    return EXIT_OK


def _instant(value: datetime | None) -> str:
    return "-" if value is None else format_instant(value.replace(microsecond=0))


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    seconds = int(value.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _json(row: AccountStatus) -> dict[str, Any]:
    return {
        "account": row.key,
        "watermark": None if row.watermark is None else format_instant(row.watermark),
        "lag_seconds": None if row.lag is None else round(row.lag.total_seconds(), 3),
        "last_run_at": _iso(row.last_run_at),
        "last_success_at": _iso(row.last_success_at),
        "last_error": row.last_error,
        "last_worker": row.last_worker,
        "held_by": row.held_by,
        "job": row.job,
    }
