"""The fleet the fleet tests and benchmark run: docs/fleet.md's example, configured by
environment variables so worker processes can load it with ``--app fleet_app:fleet``.

* ``CONNEXI_FLEET_DSN``: the PostgreSQL database;
* ``CONNEXI_FLEET_SECRETS``: a JSON file ``{account: {api_key, api_secret, base_url}}``,
  standing in for a secrets store (credentials never enter the job queue);
* ``CONNEXI_FLEET_START``, ``CONNEXI_FLEET_WINDOW_HOURS``, ``CONNEXI_FLEET_TICK_SECONDS``,
  ``CONNEXI_FLEET_STALLED_SECONDS``: the fleet's options.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime, timedelta

from connexi_async.fleet import Credentials, Fleet, FleetBatch

ORDERS_TABLE = """
CREATE TABLE IF NOT EXISTS fleet_orders (
    account text NOT NULL,
    id bigint NOT NULL,
    created_at timestamptz,
    total numeric NOT NULL,
    status text NOT NULL,
    deliveries integer NOT NULL DEFAULT 1,
    PRIMARY KEY (account, id)
)
"""


def _secrets() -> dict[str, dict[str, str]]:
    with open(os.environ["CONNEXI_FLEET_SECRETS"], encoding="utf-8") as file:
        entries: dict[str, dict[str, str]] = json.load(file)
    return entries


async def credentials(account: str) -> Credentials:
    entry = (await asyncio.to_thread(_secrets))[account]
    return Credentials(entry["api_key"], entry["api_secret"], entry["base_url"])


async def accounts() -> list[str]:
    keys = await asyncio.to_thread(_secrets)
    return sorted(keys, key=lambda key: int(key.rsplit("-", 1)[1]))


async def sink(batch: FleetBatch) -> None:
    # In the checkpoint's transaction: the rows and the checkpoint commit together.
    # `deliveries` counts how often an order arrived: exactly once means 1 everywhere.
    async with batch.connection.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO fleet_orders (account, id, created_at, total, status) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (account, id) DO UPDATE SET "
            "total = excluded.total, status = excluded.status, "
            "deliveries = fleet_orders.deliveries + 1",
            [(batch.account, o.id, o.created_at, o.total, o.order_status) for o in batch.records],
        )


def _seconds(name: str, default: str) -> timedelta | None:
    value = os.environ.get(name, default)
    return None if value == "off" else timedelta(seconds=int(value))


def make_fleet() -> Fleet:
    return Fleet(
        os.environ["CONNEXI_FLEET_DSN"],
        accounts=accounts,
        credentials=credentials,
        sink=sink,
        start=datetime.fromisoformat(os.environ["CONNEXI_FLEET_START"]),
        window=timedelta(hours=float(os.environ.get("CONNEXI_FLEET_WINDOW_HOURS", "6"))),
        tick=_seconds("CONNEXI_FLEET_TICK_SECONDS", "60"),
        interval=timedelta(seconds=int(os.environ.get("CONNEXI_FLEET_INTERVAL_SECONDS", "300"))),
        stalled_after=timedelta(seconds=int(os.environ.get("CONNEXI_FLEET_STALLED_SECONDS", "30"))),
        settle=timedelta(seconds=30),
        account_concurrency=int(os.environ.get("CONNEXI_FLEET_ACCOUNT_CONCURRENCY", "1")),
        lookback=timedelta(hours=1),
        retry_wait=timedelta(seconds=1),
        max_attempts=10,
        client_options={"backoff_base": 0.05, "backoff_max": 0.5},
    )


fleet = make_fleet
