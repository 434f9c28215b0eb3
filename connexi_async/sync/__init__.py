"""Incremental sync for workers: per-window batches, durable checkpoints, one worker per key.

>>> from connexi_async.sync import OrderSync, SQLiteCheckpoints
>>> sync = OrderSync(client, SQLiteCheckpoints("sync-state.db"), key="store-7",
...                  start=datetime(2026, 1, 1, tzinfo=UTC))
>>> await sync.run_forever(handle_batch, interval=timedelta(minutes=5))

Guarantees: an order is delivered at least once; again only if the consumer crashed
after receiving its batch and before committing it. A consumer that writes and commits
in one transaction (``batch.commit(write=...)`` with :class:`SQLiteCheckpoints`, or its
own store) gets exactly once.
"""

from .._errors import (
    CheckpointConflictError,
    CheckpointStoreUnavailableError,
    SyncError,
    SyncLockedError,
)
from ._checkpoint import Checkpoint
from ._stores import CheckpointStore, JSONFileCheckpoints, SQLiteCheckpoints
from ._sync import OrderSync, SyncBatch, SyncRun, SyncStats

__all__ = [
    "Checkpoint",
    "CheckpointConflictError",
    "CheckpointStore",
    "CheckpointStoreUnavailableError",
    "JSONFileCheckpoints",
    "OrderSync",
    "SQLiteCheckpoints",
    "SyncBatch",
    "SyncError",
    "SyncLockedError",
    "SyncRun",
    "SyncStats",
]
