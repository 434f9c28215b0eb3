"""Sync a fleet of seller accounts with workers on many machines: PostgreSQL and procrastinate.

An optional extra: ``pip install 'connexi-async[fleet]'``.

>>> from connexi_async.fleet import Credentials, Fleet, FleetBatch
>>> async def credentials(account: str) -> Credentials:
...     secret = await vault.read(f"connexi/{account}")       # never in the job queue
...     return Credentials(api_key=secret["key"], api_secret=secret["secret"])
>>> async def sink(batch: FleetBatch) -> None:                 # same transaction as the checkpoint
...     async with batch.connection.cursor() as cur:
...         await cur.executemany("INSERT INTO orders ... ON CONFLICT ... DO UPDATE ...", rows)
>>> fleet = Fleet("postgresql://sync@db/erp", accounts=keys, credentials=credentials,
...               sink=sink, start=datetime(2026, 1, 1, tzinfo=UTC))

Then ``connexi-async fleet --app myapp:fleet setup``, ``... worker`` on each machine,
``... status``. Guarantees: no account is synced by two workers at once; a worker that
dies loses nothing (another one finishes its accounts from their checkpoints); a sink
writing through ``batch.connection`` gets every order exactly once, any other sink at
least once.
"""

try:
    import procrastinate  # noqa: F401
    import psycopg  # noqa: F401
    import psycopg_pool  # noqa: F401
except ImportError as _missing:  # pragma: no cover - without the extra
    raise ImportError(
        "connexi_async.fleet needs the fleet extra: pip install 'connexi-async[fleet]' "
        f"({_missing.name} is missing)"
    ) from None

from ._fleet import AccountStatus, Credentials, Fleet, FleetBatch, FleetRunTimeoutError
from ._store import AccountState, PostgresCheckpoints

__all__ = [
    "AccountState",
    "AccountStatus",
    "Credentials",
    "Fleet",
    "FleetBatch",
    "FleetRunTimeoutError",
    "PostgresCheckpoints",
]
