"""Pure logic, no I/O: window planning and splitting, the retry policy, Retry-After."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connexi_async import ConfigurationError, RetryPolicy, Window, plan_windows, split_window
from connexi_async._retry import (
    backoff_delay,
    may_retry_status,
    may_retry_transport,
    parse_retry_after,
)

instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(instants, st.integers(min_value=1, max_value=10**7), st.integers(min_value=1, max_value=300))
def test_plan_covers_the_period_contiguously(since: datetime, span: int, pieces: int) -> None:
    until = since + timedelta(seconds=span)
    width = timedelta(seconds=max(1, -(-span // pieces)))
    count, windows = plan_windows(since, until, width, max_windows=10**9)
    planned = list(windows)
    assert len(planned) == count
    start, end = since.replace(microsecond=0), until.replace(microsecond=0)
    assert planned[0].start == start
    assert planned[-1].end == end
    for left, right in itertools.pairwise(planned):
        assert left.end == right.start  # contiguous: adjacent windows share the boundary
    for w in planned:
        assert w.start < w.end  # half-open and never empty
        assert w.width <= width
        assert w.start.microsecond == 0
        assert w.end.microsecond == 0
    assert all(w.width == width for w in planned[:-1])


@given(instants, st.integers(min_value=2, max_value=10**7))
def test_split_halves_are_contiguous_and_smaller(start: datetime, seconds: int) -> None:
    window = Window(
        start.replace(microsecond=0), start.replace(microsecond=0) + timedelta(seconds=seconds)
    )
    halves = split_window(window)
    assert halves is not None
    left, right = halves
    assert left.start == window.start
    assert left.end == right.start
    assert right.end == window.end
    assert timedelta(seconds=1) <= left.width < window.width
    assert timedelta(seconds=1) <= right.width < window.width
    assert left.end.microsecond == 0


def test_one_second_window_does_not_split() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert split_window(Window(start, start + timedelta(seconds=1))) is None


def test_window_count_is_bounded_with_advice() -> None:
    with pytest.raises(ConfigurationError, match="use a wider window"):
        plan_windows(
            datetime(1926, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), timedelta(seconds=1)
        )


@pytest.mark.parametrize(
    ("since", "until", "fragment"),
    [
        (
            datetime(2026, 1, 1),
            datetime(2026, 1, 2, tzinfo=UTC),
            "since=2026-01-01T00:00:00 has no time zone",
        ),
        (
            datetime(2026, 1, 1, tzinfo=UTC),
            datetime(2026, 1, 2),
            "until=2026-01-02T00:00:00 has no time zone",
        ),
        (
            datetime(2026, 1, 2, tzinfo=UTC),
            datetime(2026, 1, 1, tzinfo=UTC),
            "must be before until",
        ),
        (
            datetime(2026, 1, 1, tzinfo=UTC),
            datetime(2026, 1, 1, tzinfo=UTC),
            "must be before until",
        ),
    ],
)
def test_bad_periods_refused(since: datetime, until: datetime, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        plan_windows(since, until, timedelta(days=1))


def test_offsets_are_normalised_to_utc() -> None:
    jakarta = timezone(timedelta(hours=7))
    count, windows = plan_windows(
        datetime(2026, 1, 1, 7, tzinfo=jakarta),
        datetime(2026, 1, 2, 7, tzinfo=jakarta),
        timedelta(days=1),
    )
    assert count == 1
    (window,) = windows
    assert window.start == datetime(2026, 1, 1, tzinfo=UTC)
    assert str(window) == "[2026-01-01T00:00:00Z, 2026-01-02T00:00:00Z)"


@given(st.integers(min_value=1, max_value=100), st.floats(min_value=0, max_value=0.999999))
def test_backoff_is_full_jitter_and_capped(attempt: int, draw: float) -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=8.0)
    delay = backoff_delay(attempt, policy, lambda: draw)
    ceiling = min(8.0, 0.5 * 2 ** (attempt - 1))
    assert 0 <= delay <= ceiling
    assert delay == pytest.approx(ceiling * draw)


@given(st.integers(min_value=0, max_value=10**6))
def test_retry_after_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds), datetime(2026, 1, 1, tzinfo=UTC)) == seconds


@given(st.integers(min_value=-3600, max_value=3600))
def test_retry_after_http_date(offset: int) -> None:
    from email.utils import format_datetime

    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=offset), usegmt=True)
    assert parse_retry_after(header, now) == max(0, offset)


def test_retry_after_naive_date_is_utc_and_junk_is_none() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:10 -0000", now) == 10
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_what_is_retried(status: int) -> None:
    assert may_retry_status("GET", status)
    assert may_retry_status("PATCH", status)
    assert may_retry_status("POST", status) == (status == 429)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 501])
def test_what_is_not_retried(status: int) -> None:
    assert not may_retry_status("GET", status)


def test_transport_retry_rules() -> None:
    assert may_retry_transport("POST", sent=False)
    assert not may_retry_transport("POST", sent=True)
    assert may_retry_transport("GET", sent=True)
    assert may_retry_transport("PATCH", sent=True)


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="backoff_base must be positive"):
        RetryPolicy(backoff_base=0)
