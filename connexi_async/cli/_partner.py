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
from .._errors import DecodeError, InvalidTransitionError
from .._models import (
    Accept,
    Cancel,
    ChannelStock,
    Complete,
    Pack,
    PartnerOrder,
    ProductStock,
    StatusResult,
    StockUpdate,
    StockUpdateRecord,
)
from .._partner import PartnerClient
from ._common import (
    _ORDER_ID,
    EXIT_OK,
    EXIT_PARTIAL,
    UsageError,
    _connection_options,
    _count,
    connect_partner,
    parse_duration,
    parse_time,
)
from ._read import _drain
from ._write import _orders_file

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
    orders.add_argument("--window", type=parse_duration, default=timedelta(days=1))
    orders.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    orders.add_argument("--unordered", action="store_true", help="write windows as they arrive")
    orders.add_argument("--page-size", type=int, default=100, help="records a page (1-100)")
    orders.add_argument("--with-delivery-orders", action="store_true")
    orders.add_argument("--format", **fmt)
    orders.add_argument("-o", "--output", help="file to write (default stdout)")
    _connection_options(orders, partner=True)
    orders.set_defaults(handler=cmd_orders)

    stocks = group.add_parser(
        "stocks", help="every product's stock", description="Every product's stock."
    )
    stocks.add_argument("--page-size", type=int, default=100)
    stocks.add_argument("--format", **fmt)
    stocks.add_argument("-o", "--output", help="file to write (default stdout)")
    _connection_options(stocks, partner=True)
    stocks.set_defaults(handler=cmd_stocks)

    history = group.add_parser(
        "history",
        help="the stock update jobs (inventory history)",
        description="The stock update jobs, each with its per-channel outcomes.",
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
    update.add_argument("sku")
    update.add_argument("--available", type=int, required=True, metavar="N")
    update.add_argument("--buffer", type=int, default=0, metavar="N")
    update.add_argument("--warehouse", default="default")
    update.add_argument(
        "--channel", action="append", default=[], metavar="CODE=QTY", help="repeat per channel"
    )
    update.add_argument("--sync-stock", action="store_true")
    update.add_argument("--wait", action="store_true", help="wait for the job to finish")
    update.add_argument("--timeout", type=float, default=120.0, metavar="S")
    _connection_options(update, partner=True)
    update.set_defaults(handler=cmd_update_stock)


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
    try:
        # Strict: these are orders a person wrote, not what a server sent.
        orders = decode_new_partner_orders(_orders_file(args.file), context=args.file, strict=True)
    except DecodeError as exc:
        raise UsageError(str(exc)) from None
    if not orders:
        raise UsageError(f"{args.file} holds no orders")
    async with connect_partner(args) as client:
        result = await client.create_orders(
            orders, on_unknown="raise" if args.no_reconcile else "reconcile"
        )
    for order in result.created:
        sys.stdout.write(encode_record(order) + "\n")
    for failure in result.failed:
        print(f"refused {failure.order_id}: {failure.reason}", file=sys.stderr)
    print(
        f"created {_count(len(result.created), 'order', 'orders')}, {len(result.failed):,} refused",
        file=sys.stderr,
    )
    return EXIT_PARTIAL if result.failed else EXIT_OK


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
    return _report_changes(result)


async def _find_by_id(
    client: PartnerClient, ids: set[int], since: datetime
) -> dict[int, PartnerOrder]:
    """The orders with these ids, read from those dated since ``since`` (the partner API
    has no lookup by id)."""
    found: dict[int, PartnerOrder] = {}
    until = datetime.now(since.tzinfo) + timedelta(days=1)
    print(f"reading the orders dated since {since:%Y-%m-%d} to find them...", file=sys.stderr)
    async with client.orders(since, until) as stream:
        async for order in stream:
            if order.id in ids:
                found[order.id] = order
                if len(found) == len(ids):
                    break
    missing = sorted(ids - found.keys())
    if missing:
        raise UsageError(
            f"no order {', '.join(map(str, missing))} dated since {since:%Y-%m-%d}: pass "
            "--search-since further back, or --updated-at for one order"
        )
    return found


def _report_changes(result: StatusResult) -> int:
    for success in result.succeeded:
        sys.stdout.write(encode_record(success) + "\n")
    for failure in result.failed:
        now = f" (it is {failure.status}" if failure.status else ""
        if failure.updated_at is not None:
            now += f", updated_at {failure.updated_at.isoformat().replace('+00:00', 'Z')}"
        print(
            f"refused order {failure.id}: {failure.message}{now + ')' if now else ''}",
            file=sys.stderr,
        )
    print(
        f"changed {_count(len(result.succeeded), 'order', 'orders')}, "
        f"{len(result.failed):,} refused",
        file=sys.stderr,
    )
    return EXIT_PARTIAL if result.failed else EXIT_OK


async def cmd_update_stock(args: argparse.Namespace) -> int:
    channels = []
    for text in args.channel:
        code, sep, qty = text.partition("=")
        if not sep or not code.strip() or not qty.strip().isdigit():
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
    async with connect_partner(args) as client:
        code = await client.update_stock(update)
        print(code)
        sys.stdout.flush()
        if not args.wait:
            return EXIT_OK
        record = await client.wait_for_stock_update(code, timeout=args.timeout)
    sys.stdout.write(encode_record(record) + "\n")
    failed = [item for item in record.items if not item.success]
    for item in record.items:
        outcome = "ok" if item.success else "FAILED"
        print(f"{item.channel}: {outcome}: {item.message}", file=sys.stderr)
    return EXIT_PARTIAL if failed else EXIT_OK
