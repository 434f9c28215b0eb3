"""Saves checkpoints in a tight loop, to be killed mid-write: python store_writer.py STORE."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta

from connexi_async.sync import Checkpoint, JSONFileCheckpoints, SQLiteCheckpoints


async def main(path: str) -> None:
    store = SQLiteCheckpoints(path) if path.endswith(".db") else JSONFileCheckpoints(path)
    current = await store.load("k")
    version = 0 if current is None else current.version
    start = datetime(2026, 10, 1, tzinfo=UTC)
    print("ready", flush=True)
    while True:
        version += 1
        # A checkpoint whose every part says which version it is: a torn one would show.
        ids = tuple(range(version * 10_000, version * 10_000 + 5_000))
        await store.save(
            "k",
            Checkpoint(
                watermark=start + timedelta(seconds=version),
                version=version,
                delivered=((start + timedelta(seconds=version), ids),),
                meta={"version": version},
            ),
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
