"""Pure retry policy: what may be retried, how long to wait, and ``Retry-After``.

Nothing here touches the network or the clock: the caller passes ``now`` and a random
source, so every rule is tested exhaustively without I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import attrs

__all__ = [
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "backoff_delay",
    "may_retry_status",
    "may_retry_transport",
    "parse_retry_after",
]

_DELAY_SECONDS = re.compile(r"[0-9]+", re.ASCII)
_LONGEST_WAIT = 1e12  # seconds: any longer ask is the same "too long"

# 429 (rate limited), 500, 502, 503 and 504: the statuses a later attempt may fix.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How hard to try.

    ``max_attempts`` counts the first try (1 disables retries). Waits grow as
    ``backoff_base * 2 ** (attempt - 1)``, capped at ``backoff_max``, with full jitter.
    A ``Retry-After`` longer than ``max_retry_after`` is not slept: it raises
    :class:`RateLimitError` with ``retry_after`` for the caller to decide.

    >>> RetryPolicy(max_attempts=3).max_attempts
    3
    """

    max_attempts: int = attrs.field(default=5)
    backoff_base: float = attrs.field(default=0.25, validator=_positive)
    backoff_max: float = attrs.field(default=8.0, validator=_positive)
    max_retry_after: float = attrs.field(default=60.0, validator=_positive)

    @max_attempts.validator
    def _check_attempts(self, _: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ValueError(f"max_attempts must be at least 1, got {value}")


def backoff_delay(attempt: int, policy: RetryPolicy, random: Callable[[], float]) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): full jitter, capped.

    >>> backoff_delay(3, RetryPolicy(backoff_base=1.0), lambda: 0.5)
    2.0
    """
    ceiling = min(policy.backoff_max, policy.backoff_base * 2.0 ** min(attempt - 1, 60))
    return ceiling * random()


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date.

    A date without a zone is taken as UTC; a date in the past means "now" (0). An
    unreadable value gives ``None`` (fall back to backoff).

    >>> parse_retry_after("3", datetime(2020, 1, 1, tzinfo=UTC))
    3.0
    >>> parse_retry_after("Wed, 01 Jan 2020 00:00:30 GMT", datetime(2020, 1, 1, tzinfo=UTC))
    30.0
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        # A wait of more than a few decades is "too long" all the same: no int() of
        # thousands of digits, no float overflow.
        return float(int(text)) if len(text) <= 12 else _LONGEST_WAIT
    if len(text) > 100:  # no HTTP-date is this long
        return None
    try:
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    except Exception:
        # email.utils raises whatever its parsing meets (TypeError, ValueError,
        # IndexError, OverflowError...): for a header, all of it means "no usable value".
        return None


def may_retry_status(method: str, status: int) -> bool:
    """Whether an HTTP status may be retried for this method.

    A 429 proves the request was refused before any processing, so even a POST may be
    sent again. A 5xx after a POST may have come after the orders were created.
    """
    if status == 429:
        return True
    return status in RETRYABLE_STATUSES and method != "POST"


def may_retry_transport(method: str, *, sent: bool) -> bool:
    """Whether a transport failure may be retried.

    ``sent`` is False only when the connection was never made (refused, DNS, connect
    timeout): nothing reached the server, so any method may try again.
    """
    return not sent or method != "POST"
