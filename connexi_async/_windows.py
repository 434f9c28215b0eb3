"""Pure window planning: cut ``[since, until)`` into half-open windows, split full ones.

The API has no cursor, only ``start``/``end``; these functions decide which windows to
ask for. No I/O, no clock: property-tested in ``tests/test_windows.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import attrs

from ._errors import ConfigurationError, format_instant

__all__ = [
    "MAX_WINDOWS",
    "MIN_WIDTH",
    "Window",
    "merge_periods",
    "plan_windows",
    "split_window",
    "whole_second",
]

MIN_WIDTH = timedelta(seconds=1)  # the API's time resolution: start/end go to the second
MAX_WINDOWS = 1_000_000


@attrs.frozen(order=True)
class Window:
    """A half-open period ``[start, end)`` of order creation times, in UTC."""

    start: datetime
    end: datetime

    @property
    def width(self) -> timedelta:
        return self.end - self.start

    def __str__(self) -> str:
        return f"[{format_instant(self.start)}, {format_instant(self.end)})"


def whole_second(value: datetime, name: str) -> datetime:
    """``value`` in UTC, truncated to the second; a naive datetime is refused."""
    if not isinstance(value, datetime):
        raise ConfigurationError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigurationError(
            f"{name}={value.isoformat()} has no time zone; pass an aware datetime such as "
            "datetime(2026, 11, 1, tzinfo=UTC) (times are not guessed)"
        )
    try:
        return value.astimezone(UTC).replace(microsecond=0)
    except OverflowError:
        raise ConfigurationError(
            f"{name}={value.isoformat()} is outside the range of UTC datetimes"
        ) from None


def plan_windows(
    since: datetime, until: datetime, width: timedelta, *, max_windows: int = MAX_WINDOWS
) -> tuple[int, Iterator[Window]]:
    """How many windows cover ``[since, until)``, and the windows themselves, lazily.

    Contiguous, half-open, ``width`` wide except the last, which ends exactly at
    ``until``. ``since`` and ``until`` are truncated to whole seconds, the API's resolution.

    >>> count, windows = plan_windows(datetime(2026, 11, 1, tzinfo=UTC),
    ...     datetime(2026, 11, 2, 12, tzinfo=UTC), timedelta(days=1))
    >>> count, [str(w) for w in windows]
    (2, ['[2026-11-01T00:00:00Z, 2026-11-02T00:00:00Z)', '[2026-11-02T00:00:00Z, 2026-11-02T12:00:00Z)'])
    """
    start = whole_second(since, "since")
    end = whole_second(until, "until")
    if start >= end:
        raise ConfigurationError(
            f"since ({format_instant(start)}) must be before until ({format_instant(end)}), at least a second apart"
        )
    if not isinstance(width, timedelta) or width < MIN_WIDTH:
        raise ConfigurationError(
            f"window must be a timedelta of at least one second, got {width!r}"
        )
    if width % MIN_WIDTH:
        raise ConfigurationError(f"window must be a whole number of seconds, got {width}")
    count = -((start - end) // width)  # ceiling division
    if count > max_windows:
        raise ConfigurationError(
            f"[{format_instant(start)}, {format_instant(end)}) in windows of {width} is {count:,} windows, more than "
            f"{max_windows:,}; use a wider window (with page_cap set, full windows are split "
            "automatically)"
        )

    def windows() -> Iterator[Window]:
        low = start
        while low < end:
            high = low + width if end - low > width else end  # never past datetime.max
            yield Window(low, high)
            low = high

    return count, windows()


def split_window(window: Window) -> tuple[Window, Window] | None:
    """Two halves sharing the midpoint (on a whole second), or None below two seconds."""
    seconds = int(window.width.total_seconds())
    if seconds < 2:
        return None
    middle = window.start + timedelta(seconds=seconds // 2)
    return Window(window.start, middle), Window(middle, window.end)


def merge_periods(periods: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping or touching ``[start, end)`` periods joined, in time order.

    >>> d = lambda h: datetime(2026, 11, 1, h, tzinfo=UTC)
    >>> merge_periods([(d(5), d(7)), (d(1), d(3)), (d(2), d(4))]) == [(d(1), d(4)), (d(5), d(7))]
    True
    """
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(p for p in periods if p[0] < p[1]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged
