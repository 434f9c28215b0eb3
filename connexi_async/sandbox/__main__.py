"""``python -m connexi_async.sandbox``: run the sandbox server until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from ._app import DEFAULT_CACHE_BYTES
from ._faults import RETRYABLE_FAULTS, FaultKind
from ._server import Sandbox


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog="python -m connexi_async.sandbox",
        description="Run the embedded Connexi v1 sandbox server on loopback.",
        epilog="example: python -m connexi_async.sandbox --port 8080 --orders 100000 --seed 7",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8080, help="port, 0 for any free one")
    parser.add_argument("--orders", type=int, default=10_000, help="base orders to generate")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated data")
    parser.add_argument(
        "--start",
        type=lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC),
        default=datetime(2026, 10, 1, tzinfo=UTC),
        help="first day of the data (default 2026-10-01)",
    )
    parser.add_argument("--days", type=float, default=30.0, help="days the data spans")
    parser.add_argument("--cap", type=int, default=None, help="most orders in one response")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="fraction of GETs that get a fault"
    )
    parser.add_argument(
        "--fault-kinds",
        default=",".join(RETRYABLE_FAULTS),
        help="comma-separated fault kinds for --fault-rate: " + ", ".join(FaultKind),
    )
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--stall-seconds", type=float, default=10.0)
    parser.add_argument("--retry-after", type=int, default=0, help="seconds in Retry-After")
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a throwaway CA; its certificate file is printed (CONNEXI_CA_FILE)",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=None,
        help="serve this many seller accounts, each its own credentials and data "
        "(--orders each); see --accounts-file",
    )
    parser.add_argument(
        "--accounts-file",
        default=None,
        metavar="PATH",
        help="with --accounts: write {account: {api_key, api_secret, base_url}} there as "
        "JSON (mode 0600), for a fleet's credentials callable to read",
    )
    parser.add_argument(
        "--cache-mb",
        type=int,
        default=DEFAULT_CACHE_BYTES // 2**20,
        help="MiB of encoded window bodies kept for repeated reads (default: %(default)s)",
    )
    return parser


def sandbox_from_args(args: argparse.Namespace) -> Sandbox:
    sandbox = Sandbox(
        orders=args.orders,
        seed=args.seed,
        start=args.start,
        days=args.days,
        cap=args.cap,
        latency_ms=args.latency_ms,
        stall_seconds=args.stall_seconds,
        retry_after=args.retry_after,
        cache_bytes=args.cache_mb * 2**20,
        host=args.host,
        port=args.port,
        tls=args.tls,
        accounts=args.accounts,
    )
    if args.fault_rate:
        kinds = [FaultKind(k.strip()) for k in args.fault_kinds.split(",") if k.strip()]
        sandbox.faults.rate("GET", args.fault_rate, kinds=kinds, seed=args.fault_seed)
    return sandbox


def write_accounts_file(path: str, sandbox: Sandbox) -> None:
    """Every account's credentials as JSON, readable by its owner only."""
    entries = {account.key: dict(account.credentials) for account in sandbox.accounts}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(entries, file, indent=1)


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with sandbox_from_args(args) as sandbox:
        creds = sandbox.credentials
        if sandbox.accounts:
            print(
                f"Connexi sandbox serving {len(sandbox.accounts)} accounts of "
                f"{len(sandbox.dataset)} orders each",
                flush=True,
            )
        else:
            print(f"Connexi sandbox serving {len(sandbox.dataset)} orders", flush=True)
        print(f"CONNEXI_BASE_URL={creds['base_url']}", flush=True)
        print(f"CONNEXI_API_KEY={creds['api_key']}", flush=True)
        print(f"CONNEXI_API_SECRET={creds['api_secret']}", flush=True)
        partner = sandbox.partner_credentials
        print(f"CONNEXI_PARTNER_BASE_URL={partner['base_url']}", flush=True)
        print(f"CONNEXI_PARTNER_ID={partner['partner_id']}", flush=True)
        print(f"CONNEXI_PARTNER_SECRET={partner['partner_secret']}", flush=True)
        if sandbox.tls:
            print(f"CONNEXI_CA_FILE={sandbox.ca_file}", flush=True)
        if args.accounts_file and sandbox.accounts:
            write_accounts_file(args.accounts_file, sandbox)
            print(f"CONNEXI_SANDBOX_ACCOUNTS_FILE={args.accounts_file}", flush=True)
        print("Press Ctrl-C to stop.", file=sys.stderr, flush=True)
        await stop.wait()
    print("sandbox stopped", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.accounts_file and not args.accounts:
        parser.error("--accounts-file needs --accounts N")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
