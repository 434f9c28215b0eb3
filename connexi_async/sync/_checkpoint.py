"""The checkpoint of one sync key, and the pure rules that move it. No I/O, no clock.

A checkpoint holds the *watermark* (every order filed before it has been delivered and
committed), the ids delivered recently enough to be read again by a lookback, grouped
by the window that delivered them, and the consumer's own ``meta`` committed with it.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from array import array
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from .._errors import SyncError, format_instant

__all__ = [
    "Checkpoint",
    "advance",
    "checkpoint_from_json",
    "checkpoint_to_json",
    "lookback_start",
    "prune",
]

# A checkpoint is rewritten on every commit: its size is bounded (see OrderSync).
MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024


@attrs.frozen(kw_only=True)
class Checkpoint:
    """Where a sync stands, as a store keeps it.

    ``version`` grows by one on every successful save (compare-and-set); ``delivered``
    pairs a window's end with the ids it delivered, for the windows a lookback can read
    again; ``meta`` is yours (the command line keeps its output file's size there);
    ``start`` is where the sync began (no lookback reads before it).
    """

    watermark: datetime
    version: int = 0
    start: datetime | None = None
    delivered: tuple[tuple[datetime, tuple[int, ...]], ...] = ()
    meta: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict, for a store of your own (:meth:`from_json` reads it back)."""
        return checkpoint_to_json(self)

    @classmethod
    def from_json(cls, value: object, where: str = "checkpoint") -> Checkpoint:
        """What :meth:`to_json` wrote; anything else is a :class:`SyncError` naming
        ``where``."""
        return checkpoint_from_json(value, where)

    def remembered(self) -> int:
        return sum(len(ids) for _, ids in self.delivered)


def advance(start: datetime, done: Mapping[datetime, datetime]) -> datetime:
    """The end of the contiguous run of done windows that begins at ``start``.

    ``done`` maps a window's start to its end. A window done out of order, beyond one
    that is not, does not count until the gap is filled.

    >>> h = lambda n: datetime(2026, 11, 1, n, tzinfo=UTC)
    >>> advance(h(0), {h(0): h(1), h(2): h(3)}) == h(1)
    True
    """
    cursor = start
    while cursor in done:
        cursor = done[cursor]
    return cursor


def prune(
    delivered: Iterable[tuple[datetime, tuple[int, ...]]],
    keep_from: datetime,
    max_ids: int,
) -> tuple[tuple[tuple[datetime, tuple[int, ...]], ...], int]:
    """The delivered ids a future run can still read again: windows ending at or after
    ``keep_from``, the newest ``max_ids`` of them at most. Also returns how many ids over
    the bound were let go (they may be delivered again: at least once still holds)."""
    kept = sorted((end, ids) for end, ids in delivered if end >= keep_from)
    total = sum(len(ids) for _, ids in kept)
    dropped = 0
    while kept and total > max_ids:
        _, ids = kept.pop(0)
        total -= len(ids)
        dropped += len(ids)
    return tuple(kept), dropped


def checkpoint_to_json(checkpoint: Checkpoint) -> dict[str, Any]:
    value: dict[str, Any] = {
        "version": checkpoint.version,
        "watermark": format_instant(checkpoint.watermark),
        # Ids packed (8 bytes each, base64): a few C calls for 200,000 of them, where a
        # JSON list of numbers would hold the interpreter for tens of milliseconds.
        "delivered": [[format_instant(end), _pack(ids)] for end, ids in checkpoint.delivered],
        "meta": dict(checkpoint.meta),
    }
    if checkpoint.start is not None:
        value["start"] = format_instant(checkpoint.start)
    return value


def _pack(ids: tuple[int, ...]) -> str:
    packed = array("q", ids)
    if sys.byteorder != "little":  # pragma: no cover - written little-endian everywhere
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def _unpack(text: str) -> tuple[int, ...]:
    raw = base64.b64decode(text, validate=True)
    if len(raw) % 8:
        raise ValueError("not a whole number of ids")
    ids = array("q")
    ids.frombytes(raw)
    if sys.byteorder != "little":  # pragma: no cover - written little-endian everywhere
        ids.byteswap()
    return tuple(ids)


def _instant(value: object, where: str) -> datetime:
    if not isinstance(value, str) or len(value) != 20 or not value.endswith("Z"):
        raise ValueError(f"{where}: expected an instant like 2026-11-01T00:00:00Z")
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def checkpoint_from_json(value: object, where: str) -> Checkpoint:
    """A checkpoint from what :func:`checkpoint_to_json` wrote; anything else is a
    :class:`SyncError` naming ``where`` (a store never resets a state it cannot read)."""
    try:
        if not isinstance(value, dict):
            raise ValueError("expected an object")
        version = value.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ValueError("version: expected a whole number")
        watermark = _instant(value.get("watermark"), "watermark")
        delivered = []
        raw = value.get("delivered", [])
        if not isinstance(raw, list):
            raise ValueError("delivered: expected a list")
        for n, pair in enumerate(raw):
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)):
                raise ValueError(f"delivered[{n}]: expected [instant, packed ids]")
            try:
                ids = _unpack(pair[1])
            except (ValueError, binascii.Error):
                raise ValueError(f"delivered[{n}]: the packed ids are damaged") from None
            delivered.append((_instant(pair[0], f"delivered[{n}]"), ids))
        meta = value.get("meta", {})
        if not isinstance(meta, dict):
            raise ValueError("meta: expected an object")
        start = value.get("start")
        began = None if start is None else _instant(start, "start")
    except ValueError as exc:
        raise SyncError(f"{where}: the checkpoint is unreadable ({exc})") from None
    return Checkpoint(
        watermark=watermark, version=version, start=began, delivered=tuple(delivered), meta=meta
    )


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def lookback_start(watermark: datetime, lookback: timedelta, start: datetime) -> datetime:
    """Where a run re-reads from: ``lookback`` before the watermark, never before
    ``start``."""
    return max(start, watermark - lookback)
