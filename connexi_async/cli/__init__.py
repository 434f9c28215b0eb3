"""The ``connexi-async`` command: orders, stocks, status updates and creation from a shell.

Data goes to stdout (or ``-o FILE``), everything else to stderr. Exit codes: 0 success,
2 usage, 3 authentication, 4 API error, 5 network (or a write whose outcome is unknown),
6 another worker holds the sync's lock (``sync``) or the server refused some records
(``partner`` writes; the rest were done), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from datetime import timedelta

from .. import __version__
from .._errors import (
    AuthenticationError,
    ConfigurationError,
    ConnexiError,
    EncodeError,
    OutcomeUnknownError,
    PermissionDeniedError,
    StockUpdateTimeoutError,
    TLSError,
    TransportError,
    WindowError,
)
from ..sandbox.__main__ import build_parser as build_sandbox_parser
from ..sync import SyncLockedError
from ._common import (
    EXIT_API,
    EXIT_AUTH,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    UsageError,
    _connection_options,
    _resume_note,
    parse_duration,
    parse_time,
)
from ._fleet import add_fleet_commands
from ._partner import add_partner_commands
from ._read import cmd_orders, cmd_stocks
from ._sandbox import cmd_demo, cmd_sandbox
from ._sync import SyncOutput, _jsonl, checkpoint_store, cmd_sync
from ._write import cmd_create, cmd_update_status

__all__ = [
    "EXIT_API",
    "EXIT_AUTH",
    "EXIT_BROKEN_PIPE",
    "EXIT_INTERRUPTED",
    "EXIT_LOCKED",
    "EXIT_NETWORK",
    "EXIT_OK",
    "EXIT_USAGE",
    "SyncOutput",
    "UsageError",
    "_jsonl",
    "build_parser",
    "checkpoint_store",
    "main",
    "parse_duration",
    "parse_time",
]


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

    add_partner_commands(commands)
    add_fleet_commands(commands)
    return parser


def _exit_code(exc: BaseException) -> int:
    cause: BaseException | None = exc
    if isinstance(exc, WindowError) and exc.__cause__ is not None:
        cause = exc.__cause__
    if isinstance(cause, AuthenticationError | PermissionDeniedError):
        return EXIT_AUTH
    if isinstance(cause, TransportError | OutcomeUnknownError | StockUpdateTimeoutError):
        return EXIT_NETWORK
    if isinstance(cause, ConfigurationError | EncodeError):
        return EXIT_USAGE  # refused before sending: what was typed cannot be sent
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
    except CommandError as exc:
        print(f"connexi-async: error: {exc}", file=sys.stderr)
        return exc.code
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
        for line in getattr(exc, "__notes__", ()):
            print(f"  ({line})", file=sys.stderr)
        return _exit_code(exc)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
