"""The exception tree of connexi-async, rooted at :class:`ConnexiError`.

Every exception here carries data a program can act on (status, method, path, the
server's reference, the failing window) and a message a person can act on. None of
them ever holds request headers: aiohttp's ``request_info`` repr shows ``api_secret``,
so it is never attached.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import attrs

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "CheckpointConflictError",
    "ConfigurationError",
    "ConnexiError",
    "DecodeError",
    "EncodeError",
    "FieldError",
    "InvalidTransitionError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PagesShiftedError",
    "PagingError",
    "PartialFailureError",
    "PermissionDeniedError",
    "ProxyError",
    "RateLimitError",
    "RedirectError",
    "ResponseTooLargeError",
    "ServerError",
    "StockUpdateTimeoutError",
    "SyncError",
    "SyncLockedError",
    "TLSError",
    "TransportError",
    "WindowError",
    "WindowTooDenseError",
]


class ConnexiError(Exception):
    """The base of every error raised by connexi-async.

    Every one survives ``pickle`` (errors cross process boundaries in task queues): it
    comes back as the same class, with the same message and attributes.
    """

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild, (type(self), self.args, dict(self.__dict__))


def _rebuild(
    cls: type[ConnexiError], args: tuple[object, ...], state: dict[str, object]
) -> ConnexiError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigurationError(ConnexiError, ValueError):
    """A client option or credential is missing or unusable."""


@attrs.frozen
class FieldError:
    """One bad value in a payload: where it is, what was wrong, and the order it belongs to."""

    path: str
    message: str
    order_id: int | None = None

    def __str__(self) -> str:
        where = f" (order {self.order_id})" if self.order_id is not None else ""
        return f"{self.path}: {self.message}{where}"


class DecodeError(ConnexiError, ValueError):
    """A response body could not be turned into models.

    ``errors`` lists every bad field by its JSON path; the message names them all.
    """

    def __init__(self, errors: Sequence[FieldError], *, context: str = "") -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        self.context = context
        shown = "; ".join(str(e) for e in self.errors[:20])
        more = f"; and {len(self.errors) - 20} more" if len(self.errors) > 20 else ""
        lead = f"{context}: " if context else ""
        noun = "problem" if len(self.errors) == 1 else "problems"
        super().__init__(
            f"{lead}could not decode the payload ({len(self.errors)} {noun}): {shown}{more}"
        )


class EncodeError(ConnexiError, ValueError):
    """A model could not be encoded for the API (a naive datetime, a NaN amount, ...).

    ``errors``: each problem with its path, where the check names them all (the partner
    writes' checks before sending)."""

    def __init__(self, message: str, *, errors: Sequence[FieldError] = ()) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__(message)


class APIError(ConnexiError):
    """The server answered with an HTTP status that is not a success.

    Attributes: ``status``, ``method``, ``path`` (never the query string's secrets: there
    are none, credentials travel in headers), ``server_message`` and ``reference`` when
    the JSON error body has them, and ``body_excerpt``, the first 200 characters.
    """

    def __init__(
        self,
        *,
        status: int,
        method: str,
        path: str,
        server_message: str | None = None,
        reference: str | None = None,
        body_excerpt: str = "",
        hint: str = "",
    ) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.server_message = server_message
        self.reference = reference
        self.body_excerpt = body_excerpt
        said = f": {server_message}" if server_message else ""
        ref = f" (reference {reference})" if reference else ""
        tail = f" {hint}" if hint else ""
        super().__init__(f"{method} {path} failed with HTTP {status}{said}{ref}.{tail}")


class BadRequestError(APIError):
    """HTTP 400 or 422: the server refused what was sent."""


class AuthenticationError(APIError):
    """HTTP 401: the api_key or api_secret was refused."""


class PermissionDeniedError(APIError):
    """HTTP 403: the credentials are valid but may not do this."""


class NotFoundError(APIError):
    """HTTP 404."""


class RateLimitError(APIError):
    """HTTP 429 that outlasted the retries, or asked for a wait longer than allowed.

    ``retry_after`` is the wait in seconds the server asked for, when it said.
    """

    def __init__(self, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)  # type: ignore[arg-type]


class ServerError(APIError):
    """HTTP 5xx."""


class RedirectError(APIError):
    """HTTP 3xx. Redirects are never followed, so credentials never reach another host."""

    def __init__(self, *, location: str | None = None, **kwargs: object) -> None:
        self.location = location
        super().__init__(**kwargs)  # type: ignore[arg-type]


class TransportError(ConnexiError):
    """The request failed below HTTP: connect, reset, disconnect, truncated body, timeout."""

    def __init__(self, message: str, *, method: str = "", path: str = "") -> None:
        self.method = method
        self.path = path
        super().__init__(message)


class TLSError(TransportError):
    """The TLS connection could not be made: a certificate that does not verify (an
    unknown authority, another host name, expired) or a failed handshake. Never retried:
    the same certificate fails the same way. The message says which option to use."""

    def __init__(self, message: str, *, method: str = "", path: str = "", host: str = "") -> None:
        self.host = host
        super().__init__(message, method=method, path=path)


class ProxyError(TransportError):
    """The proxy could not be reached, refused the request (such as 407 Proxy
    Authentication Required), or closed the tunnel. Its credentials are never shown."""


class ResponseTooLargeError(TransportError):
    """The response body grew past ``max_response_bytes``. Not retried: the same request
    would bring the same body. Ask for less at a time (a narrower window)."""


class OutcomeUnknownError(ConnexiError):
    """A write may or may not have been processed: the connection failed after sending.

    A POST is never re-sent on our own (the API has no idempotency key). From
    ``create_orders`` it carries ``orders`` (what was attempted) and ``sent_at`` /
    ``failed_at`` (UTC, around when the server may have created them), so
    ``await client.reconcile(exc)`` can tell which exist and which to send again. From
    the partner client's batched writes it also carries ``result`` (what the batches
    before this one did) and ``unsent`` (the records of the batches after it).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        orders: Sequence[object] = (),
        sent_at: datetime | None = None,
        failed_at: datetime | None = None,
        result: object = None,
        unsent: Sequence[object] = (),
    ) -> None:
        self.method = method
        self.path = path
        self.orders: tuple[object, ...] = tuple(orders)
        self.sent_at = sent_at
        self.failed_at = failed_at
        self.result = result
        self.unsent: tuple[object, ...] = tuple(unsent)
        super().__init__(message)


class PartialFailureError(ConnexiError):
    """Some records of a partner write were refused: raised by ``raise_for_failures()``
    of a :class:`CreateResult`, :class:`StatusResult` or :class:`ProductResult`, which
    it carries as ``result`` (what succeeded is in it too)."""

    def __init__(self, result: object) -> None:
        self.result = result
        failed = getattr(result, "failed", ())
        shown = "; ".join(_describe_failure(f) for f in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        super().__init__(f"{len(failed)} refused by the server: {shown}{more}")


def _describe_failure(failure: object) -> str:
    key = next(
        (getattr(failure, n) for n in ("order_id", "id", "partner_sku") if hasattr(failure, n)),
        "?",
    )
    why = getattr(failure, "reason", None) or getattr(failure, "message", "")
    return f"{key}: {why}"


class InvalidTransitionError(EncodeError):
    """A status change the documented lifecycle does not allow (pending → accepted →
    packed → completed; cancelled from any but completed), refused before sending."""

    def __init__(self, order_id: int, current: str, requested: str) -> None:
        self.order_id = order_id
        self.current = current
        self.requested = requested
        super().__init__(
            f"order {order_id} is {current}: it cannot become {requested} (the API allows "
            "pending → accepted → packed → completed, and cancelled before completed)"
        )

    @classmethod
    def not_an_order(cls, value: object) -> EncodeError:
        """``Accept.of(x)`` given something else than a ``PartnerOrder``."""
        return EncodeError(
            f"expected a PartnerOrder (as read from client.orders()), got {type(value).__name__}"
        )


class StockUpdateTimeoutError(ConnexiError, TimeoutError):
    """A stock update job did not finish in time. ``transaction_code`` names it (wait
    again, or look it up in the inventory history); ``last_seen`` is its latest record,
    or ``None`` if it was not listed yet."""

    def __init__(self, message: str, *, transaction_code: str, last_seen: object = None) -> None:
        self.transaction_code = transaction_code
        self.last_seen = last_seen
        super().__init__(message)


class SyncError(ConnexiError):
    """A sync could not go on: its checkpoint or its lock is not what it expected."""


class SyncLockedError(SyncError):
    """Another worker holds the lock on this sync key; only one may run at a time."""

    def __init__(self, message: str, *, key: str, holder: str = "") -> None:
        self.key = key
        self.holder = holder
        super().__init__(message)


class CheckpointStoreUnavailableError(SyncError):
    """The checkpoint store cannot be reached right now (a database restart, a dropped
    connection, a full pool). Nothing was committed; ``run_forever`` and the fleet try
    again later, unlike a store that cannot be read, which waits for a person."""


class CheckpointConflictError(SyncError):
    """The stored checkpoint changed under us (compare-and-set failed): someone else
    wrote it. Nothing was committed; the batch will be delivered again."""

    def __init__(self, message: str, *, key: str, expected: int, found: int) -> None:
        self.key = key
        self.expected = expected
        self.found = found
        super().__init__(message)


class PagingError(ConnexiError):
    """The partner API's pages of a window (or a listing) cannot be read safely: the
    server does not honour ``limit`` or ``offset``, caps ``total_record``, or announces
    an absurd one. Reading again would not help. For a windowed stream it is the cause
    of the :class:`WindowError`."""


class PagesShiftedError(PagingError):
    """A window's pages kept disagreeing: its orders changed while it was paged, on
    every reading (see docs/partner.md on shifting offsets)."""


class WindowError(ConnexiError):
    """A window of a stream failed after its retries. ``__cause__`` holds why."""

    def __init__(self, start: datetime, end: datetime, reason: str) -> None:
        self.start = start
        self.end = end
        super().__init__(
            f"window [{format_instant(start)}, {format_instant(end)}) failed: {reason}"
        )


class WindowTooDenseError(WindowError):
    """A window still came back full at the minimum width: records would be lost."""

    def __init__(self, start: datetime, end: datetime, page_cap: int) -> None:
        self.page_cap = page_cap
        ConnexiError.__init__(
            self,
            f"window [{format_instant(start)}, {format_instant(end)}) still returned {page_cap} or more records "
            f"at the minimum width of one second, so some may be missing; raise page_cap "
            f"if the server allows more per response",
        )
        self.start = start
        self.end = end


def format_instant(value: datetime) -> str:
    """An aware datetime as the API's query parameters and our messages write it:
    RFC 3339 UTC to the second (``2018-11-07T00:00:00Z``). Kept here, the module every
    other one may import."""
    moment = value.astimezone(UTC)
    # Four-digit years always (strftime's %Y writes year 1 as "1").
    return f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%SZ")
