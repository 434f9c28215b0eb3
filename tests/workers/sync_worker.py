"""A sync worker for the crash tests: it logs each batch, then commits, then logs that.

Usage: python sync_worker.py BASE_URL API_KEY API_SECRET STORE LOG NOW
The log is JSON Lines, fsynced line by line, so a SIGKILL leaves whole lines only.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta

from connexi_async import ConnexiClient
from connexi_async.sync import JSONFileCheckpoints, OrderSync, SQLiteCheckpoints


def log(path: str, entry: dict[str, object]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


async def main(
    base_url: str, key: str, secret: str, store_path: str, log_path: str, now: str
) -> None:
    instant = datetime.fromisoformat(now).astimezone(UTC)
    store = (
        SQLiteCheckpoints(store_path)
        if store_path.endswith(".db")
        else JSONFileCheckpoints(store_path)
    )
    async with ConnexiClient(
        api_key=key,
        api_secret=secret,
        base_url=base_url,
        backoff_base=0.001,
        backoff_max=0.01,
        max_attempts=10,
        read_timeout=2,
    ) as client:
        sync = OrderSync(
            client,
            store,
            key="crash",
            start=datetime(2026, 10, 1, tzinfo=UTC),
            now=lambda: instant,
            window=timedelta(hours=1),
            concurrency=2,
            lock_wait=30,
        )
        pid = os.getpid()
        async with sync.run_once() as run:
            async for batch in run:
                window = str(batch.window)
                log(log_path, {"pid": pid, "window": window, "ids": [o.id for o in batch.records]})
                await batch.commit()
                log(log_path, {"pid": pid, "committed": window})


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
