"""Faults on demand: scripted ("the next two GETs answer 503") or at a seeded rate."""

from __future__ import annotations

import enum
import random
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping

import attrs

__all__ = ["RETRYABLE_FAULTS", "FaultKind", "Faults", "Predicate", "Recorder"]

# Called with a request's query parameters: whether a scripted fault is aimed at it.
Predicate = Callable[[Mapping[str, str]], bool]


class FaultKind(enum.StrEnum):
    """How the sandbox can misbehave on one request."""

    RATE_LIMIT = "rate_limit"  # 429 with Retry-After in seconds
    RATE_LIMIT_DATE = "rate_limit_date"  # 429 with Retry-After as an HTTP-date
    SERVER_ERROR = "server_error"  # 500
    BAD_GATEWAY = "bad_gateway"  # 502 with an HTML body, as a proxy sends it
    UNAVAILABLE = "unavailable"  # 503
    GATEWAY_TIMEOUT = "gateway_timeout"  # 504
    DISCONNECT = "disconnect"  # the connection closed before any response
    # The request is processed (a POST creates its orders), then the connection closes
    # before the response: the outcome a client cannot know.
    DISCONNECT_AFTER = "disconnect_after"
    TRUNCATE = "truncate"  # Content-Length larger than the body sent, then closed
    MALFORMED = "malformed"  # 200 with a body that is not JSON
    STALL_HEADERS = "stall_headers"  # no response headers for stall_seconds
    STALL_BODY = "stall_body"  # headers, half the body, then nothing for stall_seconds
    REDIRECT = "redirect"  # 307 to another origin


# What a client may retry on an idempotent request (MALFORMED and REDIRECT are not).
RETRYABLE_FAULTS: tuple[FaultKind, ...] = (
    FaultKind.RATE_LIMIT,
    FaultKind.RATE_LIMIT_DATE,
    FaultKind.SERVER_ERROR,
    FaultKind.BAD_GATEWAY,
    FaultKind.UNAVAILABLE,
    FaultKind.GATEWAY_TIMEOUT,
    FaultKind.DISCONNECT,
    FaultKind.TRUNCATE,
    FaultKind.STALL_HEADERS,
    FaultKind.STALL_BODY,
)


def _matches(route: str, method: str, path: str) -> bool:
    """A route is ``"*"``, a method (``"GET"``) or a method and path (``"GET /v1/order"``)."""
    return route in ("*", method, f"{method} {path}")


@attrs.define
class _Rate:
    route: str
    rate: float
    kinds: tuple[FaultKind, ...]
    rng: random.Random


class Faults:
    """The fault plan of a sandbox. Scripts are served first, in order; then rates.

    >>> faults = Faults()
    >>> faults.script("GET /v1/order", "unavailable", "unavailable")
    >>> faults.rate("GET", 0.1, seed=7)
    """

    def __init__(self) -> None:
        self._scripts: list[tuple[str, deque[FaultKind], Predicate | None]] = []
        self._rates: list[_Rate] = []

    def script(self, route: str, *kinds: FaultKind | str, when: Predicate | None = None) -> None:
        """The next requests matching ``route`` get these faults, one each, in order.

        ``when`` aims them at some requests only: it is called with the request's query
        (a mapping such as ``{"start": "2026-10-02T00:00:00Z", "end": ...}``), so one
        window can fail after all its retries while its neighbours succeed:

        >>> faults = Faults()
        >>> faults.script("GET /v1/order", *["unavailable"] * 5,
        ...               when=lambda q: q.get("start") == "2026-10-02T00:00:00Z")
        """
        self._scripts.append((route, deque(FaultKind(k) for k in kinds), when))

    def rate(
        self,
        route: str,
        rate: float,
        *,
        kinds: Iterable[FaultKind | str] = RETRYABLE_FAULTS,
        seed: int = 0,
    ) -> None:
        """A fraction ``rate`` of requests matching ``route`` get one of ``kinds``, seeded."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"a fault rate is a fraction from 0 to 1, got {rate}")
        self._rates.append(
            _Rate(route, rate, tuple(FaultKind(k) for k in kinds), random.Random(seed))
        )

    def clear(self) -> None:
        """No more faults."""
        self._scripts.clear()
        self._rates.clear()

    def next_fault(
        self, method: str, path: str, query: Mapping[str, str] | None = None
    ) -> FaultKind | None:
        for route, queue, when in self._scripts:
            if queue and _matches(route, method, path) and (when is None or when(query or {})):
                return queue.popleft()
        for plan in self._rates:
            if _matches(plan.route, method, path) and plan.rng.random() < plan.rate:
                return plan.kinds[int(plan.rng.random() * len(plan.kinds))]
        return None


@attrs.define
class Recorder:
    """What the sandbox received, per route (``"GET /v1/order"``): for assertions in tests."""

    requests: Counter[str] = attrs.field(factory=Counter)
    writes: list[tuple[str, bytes]] = attrs.field(factory=list)
    faults: Counter[str] = attrs.field(factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0

    def reset(self) -> None:
        self.requests.clear()
        self.writes.clear()
        self.faults.clear()
        self.max_in_flight = self.in_flight

    def count(self, route: str) -> int:
        """Requests received for ``route`` (``"POST /v1/order"``), or for a method (``"GET"``)."""
        if " " in route:
            return self.requests[route]
        return sum(n for key, n in self.requests.items() if key.split(" ", 1)[0] == route)
