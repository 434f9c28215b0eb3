"""``orders`` and ``stocks``: stream a period to a file or stdout."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from typing import Any

from .._errors import (
    WindowError,
)
from .._stream import RecordStream
from ._common import (
    EXIT_OK,
    Progress,
    RecordWriter,
    UsageError,
    _resume_hint,
    _resume_note,
    connect,
    open_output,
)


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
    stream: RecordStream[Any],
    args: argparse.Namespace,
    noun: str,
    since: datetime | None,
    kind: type | None = None,
) -> int:
    """Write a stream to the output with progress; on an interruption or a failed
    window, say where a rerun resumes. ``kind``: the model, for a CSV of any model."""
    progress = Progress(stream, noun, sys.stderr)
    with open_output(args.output) as out:
        writer = RecordWriter(out, args.format, kind or noun)
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
