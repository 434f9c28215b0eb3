"""``update-status`` and ``create``: what is typed is checked before anything is sent."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .._convert import decode_new_orders, decode_status_updates, encode_record
from .._cooperative import Steps, run_steps
from .._errors import (
    DecodeError,
    EncodeError,
)
from .._models import OrderStatus, StatusUpdate
from ._common import (
    _ORDER_ID,
    EXIT_OK,
    UsageError,
    _count,
    connect,
)

T = TypeVar("T")


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


def _orders_file(path: str) -> tuple[bytes, list[int] | None]:
    """A file of orders as one JSON array: a JSON array, an ``{"orders": [...]}`` object,
    one order as an object, or JSON Lines (one order a line). For JSON Lines, the line
    number of each record, so messages can name lines (see :func:`_with_lines`)."""
    text = Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf").strip()
    if not text:
        raise UsageError(f"{path} holds no orders")
    if text.startswith(b"["):
        return text, None
    if text.startswith(b"{"):
        with contextlib.suppress(ValueError):
            whole = json.loads(text)
            if isinstance(whole, dict) and ("orders" in whole or "data" in whole):
                return text, None
            if isinstance(whole, dict):
                return b"[" + text + b"]", None  # one order
    lines: list[int] = []
    records: list[bytes] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{path} line {number}: invalid JSON: {exc}") from None
        lines.append(number)
        records.append(line)
    return b"[" + b",".join(records) + b"]", lines


def _with_lines(message: str, lines: list[int] | None) -> str:
    """``$[3].total`` (or ``orders[3].total``) as ``line 5: $.total`` for a JSON Lines
    file."""
    if lines is None:
        return message

    def line(match: re.Match[str]) -> str:
        index = int(match.group(1))
        number = lines[index] if index < len(lines) else index + 1
        return f"line {number}: $"

    return re.sub(r"(?:\$|\borders)\[(\d+)\]", line, message)


def read_orders_file(
    path: str,
    decode: Callable[..., list[T]],
    check: Callable[[list[T]], Steps[Any]] | None = None,
) -> list[T]:
    """The orders of a file a person wrote, decoded strictly (unknown fields and
    zoneless times refused), problems named by line for JSON Lines."""
    text, lines = _orders_file(path)
    try:
        orders = decode(text, context=path, strict=True)
    except DecodeError as exc:
        raise UsageError(_with_lines(str(exc), lines)) from None
    if not orders:
        raise UsageError(f"{path} holds no orders")
    if check is not None:
        try:
            run_steps(check(orders))
        except EncodeError as exc:
            raise UsageError(_with_lines(str(exc), lines)) from None
    return orders


async def cmd_create(args: argparse.Namespace) -> int:
    new_orders = read_orders_file(args.file, decode_new_orders)
    async with connect(args) as client:
        created = await client.create_orders(new_orders)
    for order in created:
        sys.stdout.write(encode_record(order) + "\n")
    print(f"created {_count(len(created), 'order', 'orders')}", file=sys.stderr)
    return EXIT_OK
