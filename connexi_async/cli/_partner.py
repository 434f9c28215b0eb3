"""``connexi-async partner ...``: the partner API from a shell, reads and writes.

Credentials come from the environment (``CONNEXI_PARTNER_ID``, ``CONNEXI_PARTNER_SECRET``,
optionally ``CONNEXI_PARTNER_BASE_URL``), or ``--sandbox``. Writes print what was done
to stdout (JSON Lines) and what the server refused to stderr, and exit with 6 when
something was refused.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from typing import Any

from .._convert import decode_new_partner_orders, encode_record
from .._errors import (
    EncodeError,
    InvalidTransitionError,
    OutcomeUnknownError,
    StockUpdateTimeoutError,
    format_instant,
)
from .._models import (
    Accept,
    Cancel,
    ChannelStock,
    Complete,
    CreateResult,
    NewPartnerOrder,
    Pack,
    PartnerOrder,
    ProductStock,
    StatusResult,
    StockUpdate,
    StockUpdateRecord,
)
from .._partner import PartnerClient
from .._windows import whole_second
from .._writes import check_new_orders, check_stock_update
from ._common import (
    _ORDER_ID,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_PARTIAL,
    CommandError,
    UsageError,
    _connection_options,
    _count,
    connect_partner,
    parse_duration,
    parse_time,
)
from ._read import _drain
from ._write import read_orders_file

__all__ = ["add_partner_commands"]

_CHANGES: dict[str, Any] = {"accept": Accept, "pack": Pack, "complete": Complete, "cancel": Cancel}


def add_partner_commands(commands: Any) -> None:
    """The ``partner`` command group, under the main parser's subcommands."""
    partner = commands.add_parser(
        "partner",
        help="SIRCLO's partner API: orders, stock, creation, status changes, stock updates",
        description=(
            "The partner API (signed requests). Credentials: $CONNEXI_PARTNER_ID and "
            "$CONNEXI_PARTNER_SECRET; --sandbox tries it on generated data."
        ),
        epilog="example: connexi-async partner orders --sandbox --since 2026-10-01 --until 2026-10-02",
    )
    group = partner.add_subparsers(dest="partner_command", required=True, metavar="COMMAND")
    fmt = {"choices": ["jsonl", "csv"], "default": "jsonl", "help": "output format (default jsonl)"}

    orders = group.add_parser(
        "orders",
        help="stream the orders dated in a period",
        description="Every partner order whose order_date is in [--since, --until), each once.",
        epilog="example: connexi-async partner orders --since 7d --with-delivery-orders -o o.jsonl",
    )
    orders.add_argument(
        "--since", type=parse_time, required=True, help="2026-10-01, RFC 3339, or 7d"
    )
    orders.add_argument("--until", type=parse_time, default="now", help="default: now")
    orders.add_argument(
        "--window", type=parse_duration, default=timedelta(days=1), help="window width (default 1d)"
    )
    orders.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    orders.add_argument("--unordered", action="store_true", help="write windows as they arrive")
    orders.add_argument("--page-size", type=int, default=100, help="records a page (1-100)")
    orders.add_argument(
        "--with-delivery-orders", action="store_true", help="include each order's delivery orders"
    )
    orders.add_argument("--format", **fmt)
    orders.add_argument("-o", "--output", help="file to write (default stdout)")
    _connection_options(orders, partner=True)
    orders.set_defaults(handler=cmd_orders)

    stocks = group.add_parser(
        "stocks",
        help="every product's stock",
        description="Every product's stock.",
        epilog="example: connexi-async partner stocks --format csv -o stock.csv",
    )
    stocks.add_argument("--page-size", type=int, default=100, help="records a page (1-100)")
    stocks.add_argument("--format", **fmt)
    stocks.add_argument("-o", "--output", help="file to write (default stdout)")
    _connection_options(stocks, partner=True)
    stocks.set_defaults(handler=cmd_stocks)

    history = group.add_parser(
        "history",
        help="the stock update jobs (inventory history)",
        description="The stock update jobs, each with its per-channel outcomes.",
        epilog="example: connexi-async partner history --updated-since 1d",
    )
    history.add_argument("--updated-since", type=parse_time, default=None, help="2026-10-01, 7d")
    history.add_argument("--format", **fmt)
    history.add_argument("-o", "--output", help="file to write (default stdout)")
    _connection_options(history, partner=True)
    history.set_defaults(handler=cmd_history)

    create = group.add_parser(
        "create",
        help="create orders from a JSON or JSON Lines file",
        description=(
            'Create the orders in FILE ({"orders": [...]}, a list, or one per line). Prints '
            "the created orders (JSON Lines) and each refusal; exit code 6 when some were "
            "refused. A send whose outcome is unknown is looked up and only the missing "
            "orders are sent again."
        ),
        epilog="example: connexi-async partner create new-orders.jsonl",
    )
    create.add_argument("file")
    create.add_argument(
        "--no-reconcile",
        action="store_true",
        help="on an unknown outcome, stop (exit 5) instead of looking the orders up",
    )
    _connection_options(create, partner=True)
    create.set_defaults(handler=cmd_create)

    examples = {
        "accept": ("ID", "111 112"),
        "pack": ("ID=AIRWAYBILL", "111=AWB001"),
        "complete": ("ID[=RECEIVED_BY]", "111=Yosua"),
        "cancel": ("ID[=REASON]", "'111=out of stock'"),
    }
    for name, (metavar, example) in examples.items():
        change = group.add_parser(
            name,
            help=f"{name} orders by id",
            description=(
                f"{name.capitalize()} orders. Each change carries the order's updated_at "
                "(optimistic concurrency): given with --updated-at for one order, or read "
                "from the server (the orders dated since --search-since). Exit code 6 "
                "when the server refused some."
            ),
            epilog=f"example: connexi-async partner {name} {example}",
        )
        change.add_argument("orders", nargs="+", metavar=metavar)
        change.add_argument(
            "--updated-at",
            type=parse_time,
            default=None,
            help="the order's updated_at (one order only; otherwise read from the server)",
        )
        change.add_argument(
            "--search-since",
            type=parse_time,
            default="90d",
            help="look the orders up among those dated since (default 90d)",
        )
        _connection_options(change, partner=True)
        change.set_defaults(handler=cmd_change, change=name)

    update = group.add_parser(
        "update-stock",
        help="set a SKU's stock (an asynchronous job)",
        description=(
            "Send a stock update and print its transaction code; with --wait, wait for the "
            "job and print each channel's outcome (exit code 6 when a channel failed)."
        ),
        epilog="example: connexi-async partner update-stock TOP0001-S --available 100 "
        "--channel bklp=30 --channel shpe=20 --wait",
    )
    update.add_argument("sku", help="the SKU in Connexi")
    update.add_argument("--available", type=int, required=True, metavar="N", help="available stock")
    update.add_argument(
        "--buffer", type=int, default=0, metavar="N", help="buffer stock (default 0)"
    )
    update.add_argument("--warehouse", default="default", help='the warehouse (default "default")')
    update.add_argument(
        "--channel", action="append", default=[], metavar="CODE=QTY", help="repeat per channel"
    )
    update.add_argument(
        "--sync-stock", action="store_true", help="sync with the marketplaces' stock"
    )
    update.add_argument("--wait", action="store_true", help="wait for the job to finish")
    update.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="with --wait (default 120)"
    )
    _connection_options(update, partner=True)
    update.set_defaults(handler=cmd_update_stock)

    wait = group.add_parser(
        "wait",
        help="wait for a stock update job",
        description=(
            "Wait for the stock update job CODE to finish and print its record; each "
            "channel's outcome goes to stderr (exit code 6 when a channel failed, 5 when "
            "it did not finish in time)."
        ),
        epilog="example: connexi-async partner wait 591d4ab5-841e-499a-bfa2-99a4fb879e44",
    )
    wait.add_argument("code", help="the transaction code update-stock printed")
    wait.add_argument("--timeout", type=float, default=120.0, metavar="S", help="default 120")
    wait.add_argument(
        "--since", type=parse_time, default=None, help="read the history from (default 1d)"
    )
    _connection_options(wait, partner=True)
    wait.set_defaults(handler=cmd_wait)


# -- reads -------------------------------------------------------------------------------


async def cmd_orders(args: argparse.Namespace) -> int:
    async with connect_partner(args) as client:
        stream = client.orders(
            args.since,
            args.until,
            window=args.window,
            concurrency=args.concurrency,
            ordered=not args.unordered,
            page_size=args.page_size,
            with_delivery_orders=args.with_delivery_orders,
        )
        return await _drain(stream, args, "orders", args.since, PartnerOrder)


async def cmd_stocks(args: argparse.Namespace) -> int:
    async with connect_partner(args) as client:
        stream = client.product_stocks(page_size=args.page_size)
        return await _drain(stream, args, "products", None, ProductStock)


async def cmd_history(args: argparse.Namespace) -> int:
    async with connect_partner(args) as client:
        stream = client.stock_update_history(args.updated_since)
        return await _drain(stream, args, "jobs", None, StockUpdateRecord)


# -- writes ------------------------------------------------------------------------------


async def cmd_create(args: argparse.Namespace) -> int:
    orders = read_orders_file(args.file, decode_new_partner_orders, check_new_orders)
    async with connect_partner(args) as client:
        try:
            result = await client.create_orders(
                orders, on_unknown="raise" if args.no_reconcile else "reconcile"
            )
        except OutcomeUnknownError as exc:
            raise _unknown_orders(exc) from exc
    for order in result.created:
        sys.stdout.write(encode_record(order) + "\n")
    for failure in result.failed:
        print(f"refused {failure.order_id}: {failure.reason}", file=sys.stderr)
    print(
        f"created {_count(len(result.created), 'order', 'orders')}, {len(result.failed):,} refused",
        file=sys.stderr,
    )
    return EXIT_PARTIAL if result.failed else EXIT_OK


def _unknown_orders(error: OutcomeUnknownError) -> CommandError:
    """What to do after a create whose outcome is unknown, in shell terms."""
    done = error.result if isinstance(error.result, CreateResult) else CreateResult()
    for order in done.created:
        sys.stdout.write(encode_record(order) + "\n")
    for failure in done.failed:
        print(f"refused {failure.order_id}: {failure.reason}", file=sys.stderr)
    orders = [o for o in error.orders if isinstance(o, NewPartnerOrder)]
    ids = ", ".join(o.order_id for o in orders[:10]) + (" ..." if len(orders) > 10 else "")
    dates = [o.order_date for o in orders if o.order_date is not None]
    look = ""
    if dates:
        since = format_instant(whole_second(min(dates), "order_date") - timedelta(minutes=15))
        until = format_instant(whole_second(max(dates), "order_date") + timedelta(minutes=16))
        look = f" Find out which exist with: connexi-async partner orders --since {since} --until {until}"
    reason = str(error).split(";")[0]
    return CommandError(
        f"{reason}; the outcome of {_count(len(orders), 'order', 'orders')} is unknown "
        f"({ids}), {_count(len(done.created), 'order', 'orders')} were created (on stdout), "
        f"{len(done.failed):,} refused, "
        f"{len(error.unsent):,} not sent.{look} and send only the others (this file again "
        "would have the server refuse those that exist as existing).",
        EXIT_NETWORK,
    )


def _parse_change(text: str, kind: str) -> tuple[int, str]:
    order_id, sep, extra = text.partition("=")
    if not _ORDER_ID.fullmatch(order_id.strip()):
        raise UsageError(f"{text!r}: expected an order id (a whole number) first")
    if kind == "pack" and not extra.strip():
        raise UsageError(f"{text!r}: pack needs ID=AIRWAYBILL (for example 111=AWB001)")
    if kind == "accept" and sep:
        raise UsageError(f"{text!r}: accept takes order ids only")
    return int(order_id), extra.strip()


async def cmd_change(args: argparse.Namespace) -> int:
    kind: str = args.change
    cls = _CHANGES[kind]
    wanted = [_parse_change(text, kind) for text in args.orders]
    ids = [order_id for order_id, _ in wanted]
    if len(set(ids)) != len(ids):
        raise UsageError("an order id is given twice: one change per order")
    if args.updated_at is not None and len(wanted) != 1:
        raise UsageError("--updated-at goes with one order; without it each is read")
    async with connect_partner(args) as client:
        if args.updated_at is not None:
            order_id, extra = wanted[0]
            if kind == "accept":
                changes = [cls(order_id, updated_at=args.updated_at)]
            else:
                changes = [cls(order_id, extra, updated_at=args.updated_at)]
        else:
            found = await _find_by_id(client, set(ids), args.search_since)
            changes = []
            for order_id, extra in wanted:
                try:
                    order = found[order_id]
                    changes.append(cls.of(order, extra) if kind != "accept" else cls.of(order))
                except InvalidTransitionError as exc:
                    raise UsageError(str(exc)) from None
        result = await client.change_statuses(changes)
    return _report_changes(result, changes)


async def _find_by_id(
    client: PartnerClient, ids: set[int], since: datetime
) -> dict[int, PartnerOrder]:
    """The orders with these ids, read from those dated since ``since`` (the partner API
    has no lookup by id)."""
    found: dict[int, PartnerOrder] = {}
    until = datetime.now(since.tzinfo) + timedelta(days=1)
    print(
        f"reading the orders dated since {format_instant(since)} to find them...",
        file=sys.stderr,
    )
    async with client.orders(since, until) as stream:
        async for order in stream:
            if order.id in ids:
                found[order.id] = order
                if len(found) == len(ids):
                    break
    missing = sorted(ids - found.keys())
    if missing:
        raise UsageError(
            f"no order {', '.join(map(str, missing))} dated since {format_instant(since)}: pass "
            "--search-since further back, or --updated-at for one order"
        )
    return found


def _report_changes(result: StatusResult, changes: list[Any]) -> int:
    asked = {change.id: change.updated_at for change in changes}
    unchanged = 0
    for success in result.succeeded:
        sys.stdout.write(encode_record(success) + "\n")
        if success.updated_at is not None and success.updated_at == asked.get(success.id):
            unchanged += 1  # it already had that status: the server did nothing
    for failure in result.failed:
        now = f" (it is {failure.status}" if failure.status else ""
        if failure.updated_at is not None:
            now += f", updated_at {failure.updated_at.isoformat().replace('+00:00', 'Z')}"
        print(
            f"refused order {failure.id}: {failure.message}{now + ')' if now else ''}",
            file=sys.stderr,
        )
    changed = len(result.succeeded) - unchanged
    print(
        f"changed {_count(changed, 'order', 'orders')}"
        + (f", {unchanged:,} already so" if unchanged else "")
        + f", {len(result.failed):,} refused",
        file=sys.stderr,
    )
    return EXIT_PARTIAL if result.failed else EXIT_OK


async def cmd_update_stock(args: argparse.Namespace) -> int:
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout goes with --wait")
    timeout = 120.0 if args.timeout is None else args.timeout
    if not timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    channels = []
    for text in args.channel:
        code, sep, qty = text.partition("=")
        if not sep or not code.strip() or not (qty.strip().isascii() and qty.strip().isdigit()):
            raise UsageError(f"--channel {text!r}: expected CODE=QTY, for example bklp=30")
        channels.append(ChannelStock(code=code.strip(), qty=int(qty)))
    update = StockUpdate(
        sku=args.sku,
        warehouse=args.warehouse,
        available_stock=args.available,
        buffer_stock=args.buffer,
        channel_stock=tuple(channels),
        sync_stock=args.sync_stock,
    )
    try:
        check_stock_update(update)
    except EncodeError as exc:
        raise UsageError(str(exc)) from None
    async with connect_partner(args) as client:
        try:
            code = await client.update_stock(update)
        except OutcomeUnknownError as exc:
            # 15 minutes earlier: the server's clock may differ from ours.
            sent = (
                format_instant(whole_second(exc.sent_at, "sent_at") - timedelta(minutes=15))
                if exc.sent_at
                else "1h"
            )
            raise CommandError(
                f"{str(exc).split(';')[0]}; the stock update of {args.sku} may or may not "
                "have been accepted: do not send it again before looking for its job with: "
                f"connexi-async partner history --updated-since {sent}",
                EXIT_NETWORK,
            ) from exc
        if not args.wait:
            print(code)
            return EXIT_OK
        print(f"transaction code {code}; waiting for the job...", file=sys.stderr)
        return await _wait(client, code, timeout, None)


async def cmd_wait(args: argparse.Namespace) -> int:
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    async with connect_partner(args) as client:
        return await _wait(client, args.code, args.timeout, args.since)


async def _wait(client: PartnerClient, code: str, seconds: float, since: datetime | None) -> int:
    try:
        record = await client.wait_for_stock_update(code, timeout=seconds, since=since)
    except StockUpdateTimeoutError as exc:
        raise CommandError(
            f"{str(exc).split(';')[0]}; wait again with: connexi-async partner wait {code}",
            EXIT_NETWORK,
        ) from exc
    sys.stdout.write(encode_record(record) + "\n")
    if not record.items:
        print("the job finished with no channel outcomes (no channel_stock)", file=sys.stderr)
    for item in record.items:
        outcome = "ok" if item.success else "FAILED"
        print(f"{item.channel}: {outcome}: {item.message}", file=sys.stderr)
    return EXIT_PARTIAL if any(not item.success for item in record.items) else EXIT_OK
