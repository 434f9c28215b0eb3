"""``demo`` and ``sandbox``: the main job on the embedded sandbox, and the server itself."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import Decimal

from .._convert import encode_record
from ..sandbox.__main__ import serve as serve_sandbox
from ._common import (
    EXIT_OK,
    SANDBOX_DAYS,
    SANDBOX_START,
    Progress,
    UsageError,
    connect,
)


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
    if args.accounts_file and not args.accounts:
        raise UsageError("--accounts-file needs --accounts N")
    await serve_sandbox(args)
    return EXIT_OK
