"""The only code that does HTTP: session ownership, credentials, timeouts, retries, errors.

Credentials are attached per request and never as a session's default headers, and
redirects are never followed, so ``api_key`` and ``api_secret`` only ever go to the base
URL's host. No exception raised here carries aiohttp's ``request_info`` (its repr shows
the headers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import math
import os
import random as _random
import re
import ssl as _ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import attrs
from yarl import URL

from ._auth import Auth, _Secret, encode_query
from ._chunks import Body
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnexiError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    ProxyError,
    RateLimitError,
    RedirectError,
    ResponseTooLargeError,
    ServerError,
    TLSError,
    TransportError,
)
from ._retry import (
    RetryPolicy,
    backoff_delay,
    may_retry_status,
    may_retry_transport,
    parse_retry_after,
)

logger = logging.getLogger("connexi_async")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# The densest window we support (a day of a very busy seller, ~100k orders) with room.
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024

# Joined below (about a millisecond a MB), streamed above: aiohttp warns of bytes bodies
# over 1 MiB (payload.TOO_LARGE_BYTES_BODY).
_STREAMED_BODY = 1024 * 1024

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


@attrs.frozen(kw_only=True)
class Timeouts:
    """Seconds. ``connect``: the TCP (and TLS) connect only, never the wait for a pooled
    connection; ``read``: the longest silence while reading a response; ``total``: the
    whole call, retries and their waits included."""

    connect: float = 10.0
    read: float = 30.0
    total: float = 120.0


@attrs.frozen
class Response:
    """A successful (2xx) response, read in full (as its chunks: see ``_read_body``)."""

    status: int
    body: Body
    attempts: int
    # An earlier attempt may have been processed (it failed after it was sent, or got a
    # 5xx): a non-idempotent change may then have been made once already. A 429 or a
    # refused connection proves the attempt was not processed.
    resent: bool = False


UNKNOWN_ORDERS_HINT = (
    "the orders may or may not have been created. Fetch the period with client.orders(...) "
    "and look for your remote_order_id values before sending them again."
)


def check_seconds(name: str, value: object, *, allow_inf: bool = False) -> float:
    """A positive number of seconds; ``inf`` only where it means "no limit"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or value <= 0 or (math.isinf(value) and not allow_inf):
        limit = "positive" if allow_inf else "positive and finite"
        raise ConfigurationError(f"{name} must be {limit}, got {value!r}")
    return float(value)


def check_count(name: str, value: object, *, low: int = 1, high: int = 2**31) -> int:
    """A whole number in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be a whole number, got {type(value).__name__}")
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be from {low:,} to {high:,}, got {value:,}")
    return value


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    return False


def check_base_url(base_url: str | URL, *, allow_insecure_http: bool) -> URL:
    if not isinstance(base_url, str | URL):
        raise ConfigurationError(
            f"base_url must be a str or yarl.URL such as https://api.example.id, "
            f"got {type(base_url).__name__}"
        )
    try:
        url = URL(base_url)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"base_url is not a URL: {exc}") from None
    if url.scheme not in ("https", "http") or not url.host:
        raise ConfigurationError(
            f"base_url must be an http(s) URL such as https://api.example.id, got {str(url)!r}"
        )
    if url.user or url.password:
        raise ConfigurationError(
            "base_url must not carry credentials; pass them as the client's own options"
        )
    if url.query_string or url.fragment:
        raise ConfigurationError("base_url must not have a query string or fragment")
    if url.scheme == "http" and not (allow_insecure_http or _is_loopback(url.host)):
        raise ConfigurationError(
            f"base_url {url} is plain http: the credentials would cross the network unencrypted. "
            "Use https, or pass allow_insecure_http=True (--allow-insecure-http on the "
            "command line) if you really mean it"
        )
    return url


def check_ssl(value: object) -> _ssl.SSLContext | None:
    """``ssl=``: an ``ssl.SSLContext`` as it is, or a CA bundle file (PEM) to trust
    instead of the system's store; ``None``: the system trust store."""
    if value is None or isinstance(value, _ssl.SSLContext):
        return value
    if value is False or value is True:
        raise ConfigurationError(
            "ssl= takes an ssl.SSLContext or the path of a CA bundle; certificate checks "
            "cannot be turned off (the credentials would go to whoever answers)"
        )
    if not isinstance(value, str | os.PathLike):
        raise ConfigurationError(
            f"ssl= must be an ssl.SSLContext or a CA bundle path, got {type(value).__name__}"
        )
    try:
        return _ssl.create_default_context(cafile=os.fspath(value))
    except (OSError, _ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigurationError(
            f"ssl={os.fspath(value)!r}: cannot load it as a CA bundle (PEM): {reason}"
        ) from None


def check_proxy(value: object) -> tuple[URL | None, dict[str, str]]:
    """``proxy=``: the proxy's URL without its credentials, and the headers that carry
    them (a ``_Secret``, so they never show in a repr or a traceback's locals)."""
    if value is None:
        return None, {}
    if not isinstance(value, str | URL):
        # Never echoed: a proxy URL may carry a password.
        raise ConfigurationError(
            f"proxy must be a URL such as http://proxy:3128 (a str), got {type(value).__name__}"
        )
    try:
        parsed = URL(value)
    except (ValueError, TypeError):
        raise ConfigurationError("proxy is not a URL") from None
    # The credentials go into _Secrets at once: no local of ours shows them (a yarl URL's
    # repr would), whatever is raised below.
    user, password = _Secret(parsed.user or ""), _Secret(parsed.password or "")
    url = parsed.with_user(None).with_password(None)
    del parsed
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"proxy must be an http(s) URL such as http://proxy.example:3128, got one with "
            f"scheme {url.scheme!r}"
        )
    headers: dict[str, str] = {}
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Proxy-Authorization"] = _Secret(f"Basic {token}")
    return url, headers


class _Failure(Exception):
    """One failed attempt below HTTP. ``sent``: the request may have reached the server;
    ``error``: the TransportError subclass to raise when it is final."""

    def __init__(
        self,
        description: str,
        *,
        sent: bool,
        retryable: bool = True,
        error: type[TransportError] = TransportError,
        host: str = "",
    ) -> None:
        super().__init__(description)
        self.sent = sent
        self.retryable = retryable
        self.error = error
        self.host = host

    def final(self, message: str, *, method: str, path: str) -> TransportError:
        if self.error is TLSError:
            return TLSError(message, method=method, path=path, host=self.host)
        return self.error(message, method=method, path=path)


def _failure(exc: BaseException, host: str, proxy: URL | None) -> _Failure:
    """One failed attempt, classified: TLS and proxy failures first, then the rest."""
    if isinstance(exc, aiohttp.ClientSSLError):
        return _Failure(
            _tls_reason(exc, host), sent=False, retryable=False, error=TLSError, host=host
        )
    # A proxy of proxy= or of the environment (trust_env): aiohttp's proxy errors say so.
    proxy_error = isinstance(exc, aiohttp.ClientHttpProxyError | aiohttp.ClientProxyConnectionError)
    if proxy is not None or proxy_error:
        where = f"{proxy.host}:{proxy.port}" if proxy is not None else "(from the environment)"
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            return _Failure(
                f"the proxy {where} refused the tunnel (HTTP {exc.status} {exc.message}); "
                + (
                    "check the user and password in proxy="
                    if exc.status == 407
                    else "check proxy= and that it allows CONNECT to this host"
                ),
                sent=False,
                retryable=exc.status in (502, 503, 504),
                error=ProxyError,
            )
        if isinstance(exc, aiohttp.ClientProxyConnectionError):
            return _Failure(
                f"could not connect to the proxy {where} ({exc.strerror or exc.os_error})",
                sent=False,
                error=ProxyError,
            )
        if proxy is not None and isinstance(exc, aiohttp.ServerDisconnectedError):
            # aiohttp cannot tell the proxy's hang-up from the server's through the tunnel.
            return _Failure(
                f"the connection through the proxy {where} closed before an answer (the "
                "proxy or the server hung up)",
                sent=True,
                error=ProxyError,
            )
    description, sent, retryable = _describe(exc)
    return _Failure(description, sent=sent, retryable=retryable)


def _tls_reason(exc: aiohttp.ClientSSLError, host: str) -> str:
    """One sentence a person can act on, naming the host and the option to use."""
    error = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None) or exc
    detail = str(getattr(error, "verify_message", "") or getattr(error, "reason", "") or error)
    lowered = detail.lower()
    if "mismatch" in lowered or "not valid for" in lowered:
        return (
            f"TLS: the certificate of {host} is not valid for that name ({detail}); check "
            "base_url (use the host name the certificate was issued for)"
        )
    if "expired" in lowered or "not yet valid" in lowered:
        return (
            f"TLS: the certificate of {host} is expired or not yet valid ({detail}); the "
            "server must renew it, or this machine's clock is wrong"
        )
    if "issuer" in lowered or "self-signed" in lowered or "self signed" in lowered:
        return (
            f"TLS: the certificate of {host} is signed by an authority this machine does "
            f"not trust ({detail}); behind a TLS-inspecting proxy or with a private CA, "
            "pass ssl='/path/to/ca-bundle.pem' (or an ssl.SSLContext)"
        )
    return (
        f"TLS: the secure connection to {host} failed ({detail}); check base_url and "
        "ssl= (is it an https server?)"
    )


def _describe(exc: BaseException) -> tuple[str, bool, bool]:
    """(what happened, may it have been sent, may it be retried) for an aiohttp failure."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect timed out", False, True
    if isinstance(exc, aiohttp.ClientConnectorError):
        return (
            f"could not connect to {exc.host}:{exc.port} ({exc.strerror or exc.os_error})",
            False,
            True,
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection before answering", True, True
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the response body was cut short", True, True
    if isinstance(exc, aiohttp.SocketTimeoutError | asyncio.TimeoutError):
        return "read timed out", True, True
    if isinstance(exc, aiohttp.ClientOSError | aiohttp.ClientConnectionError | OSError):
        return f"connection failed ({exc.__class__.__name__})", True, True
    return f"request failed ({exc.__class__.__name__})", True, False


def _error_details(body: bytes | bytearray) -> tuple[str | None, str | None, str]:
    """(server message, reference, excerpt) from an error body, JSON or not."""
    excerpt = _printable(body[:200].decode("utf-8", "replace"))
    message = reference = None
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None, None, excerpt
    if isinstance(parsed, dict):
        for key in ("message", "error", "error_message", "detail"):
            if isinstance(parsed.get(key), str) and parsed[key]:
                message = _printable(parsed[key])
                break
        for key in ("reference", "request_id", "trace_id"):
            if isinstance(parsed.get(key), str) and parsed[key]:
                reference = _printable(parsed[key])
                break
    return message, reference, excerpt


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def _printable(text: str, limit: int = 500) -> str:
    """Server text fit for an exception message and a log line: control characters (a
    terminal escape, a NUL) and lone surrogates (which no UTF-8 stream can print) shown
    escaped, and the length bounded."""
    text = text[:limit]
    return _UNPRINTABLE.sub(
        lambda m: (
            f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}"
        ),
        text,
    )


_STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError,
    422: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
}
_HINTS: dict[type[APIError], str] = {
    AuthenticationError: "Check api_key and api_secret (CONNEXI_API_KEY, CONNEXI_API_SECRET).",
    PermissionDeniedError: "These credentials may not do this; ask SIRCLO to grant access.",
}


def api_error(
    status: int,
    method: str,
    path: str,
    body: bytes | bytearray,
    headers: Mapping[str, str],
    hints: Mapping[type, str] | None = None,
) -> APIError:
    """The typed exception for a non-2xx status."""
    message, reference, excerpt = _error_details(body)
    common: dict[str, Any] = {
        "status": status,
        "method": method,
        "path": path,
        "server_message": message,
        "reference": reference,
        "body_excerpt": excerpt,
    }
    if 300 <= status < 400:
        location = headers.get("Location")
        return RedirectError(
            location=location,
            hint=f"Redirects are not followed, so credentials never leave the base URL's host; "
            f"the server points at {location!r}: check base_url.",
            **common,
        )
    if status == 429:
        return RateLimitError(**common)
    if status >= 500:
        return ServerError(**common)
    cls = _STATUS_ERRORS.get(status, APIError)
    return cls(hint=(hints or {}).get(cls) or _HINTS.get(cls, ""), **common)


class Transport:
    """Sends requests to one base URL with one set of credentials. Used by ConnexiClient."""

    def __init__(
        self,
        *,
        auth: Auth,
        base_url: str | URL,
        session: aiohttp.ClientSession | None,
        timeouts: Timeouts,
        retry: RetryPolicy,
        max_connections: int,
        requests_per_second: float | None,
        allow_insecure_http: bool,
        max_response_bytes: int = 0,
        ssl: object = None,
        proxy: object = None,
        trust_env: bool | None = None,
        clock: Clock,
        sleep: Sleep,
        random: Callable[[], float],
        wall_clock: Callable[[], datetime],
    ) -> None:
        self._auth = auth
        self.base_url = check_base_url(base_url, allow_insecure_http=allow_insecure_http)
        check_count("max_connections", max_connections, high=100_000)
        if requests_per_second is not None:
            check_seconds("requests_per_second", requests_per_second)
        self.max_response_bytes = check_count(
            "max_response_bytes", max_response_bytes or DEFAULT_MAX_RESPONSE_BYTES, high=2**40
        )
        self.timeouts = timeouts
        self.retry = retry
        self.max_connections = max_connections
        self._interval = 1.0 / requests_per_second if requests_per_second else 0.0
        given = [
            n
            for n, v in (("ssl", ssl), ("proxy", proxy), ("trust_env", trust_env))
            if v is not None
        ]
        if session is not None and given:
            raise ConfigurationError(
                f"{', '.join(given)} cannot be combined with session=: your session keeps its "
                "own TLS and proxy settings (set them on its connector and requests), or "
                "leave session= out"
            )
        if trust_env is not None and not isinstance(trust_env, bool):
            raise ConfigurationError(f"trust_env must be True or False, got {trust_env!r}")
        self._ssl = check_ssl(ssl)
        self._proxy, self._proxy_headers = check_proxy(proxy)
        self._trust_env = bool(trust_env)
        self._user_session = session
        self._own_session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._wall_clock = wall_clock
        self.wall_clock = wall_clock
        # The injected clocks, for the callers that wait on the server (polling).
        self.clock = clock
        self.sleep = sleep
        self._paused_until = 0.0  # a 429 pauses every request of this transport
        self._next_slot = 0.0  # the client-side rate limit's next free start time
        self._aiohttp_timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=_limit(timeouts.connect),
            sock_read=_limit(timeouts.read),
        )

    def __repr__(self) -> str:
        # Safe on a half-built transport too (tracebacks that show locals call it).
        auth = getattr(self, "_auth", None)
        return f"<Transport {getattr(self, 'base_url', '?')} {auth.describe() if auth else ''}>"

    # -- session ---------------------------------------------------------------------

    @property
    def pool_limit(self) -> int:
        """How many connections may be open at once (0: no limit)."""
        if self._user_session is not None:
            connector = self._user_session.connector
            return connector.limit if connector is not None else 0
        return self.max_connections

    def _session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConnexiError("this client is closed; create a new ConnexiClient")
        loop = asyncio.get_running_loop()
        if self._user_session is not None:
            if getattr(self._user_session, "_loop", loop) is not loop:
                raise ConfigurationError(
                    "the aiohttp session passed as session= belongs to another event loop "
                    "(one that an earlier asyncio.run() closed?): create the session and the "
                    "client inside the loop that uses them, or leave session= out and the "
                    "client makes its own per loop"
                )
            return self._user_session
        if self._own_session is not None and self._session_loop is not loop:
            if self._session_loop is not None and not self._session_loop.is_closed():
                raise ConfigurationError(
                    "this client is in use in another event loop that is still running: "
                    "create one client per event loop"
                )
            # A module-level client used by two asyncio.run() calls (a script, a notebook):
            # the old loop and its connections are gone, so is our session; make a new one.
            self._discard_session()
        if self._own_session is None:
            # Created here, inside the running loop, on first use.
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=0,
                ssl=self._ssl if self._ssl is not None else True,
            )
            session = aiohttp.ClientSession(connector=connector, trust_env=self._trust_env)
            # aiohttp re-sends an idempotent request once on a dropped keep-alive
            # connection, unseen; our own retry loop does that with backoff and counts it.
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
            self._own_session = session
            self._session_loop = loop
        return self._own_session

    def _discard_session(self) -> None:
        """Let go of our session of a closed loop: nothing of it can be awaited any more."""
        session, self._own_session = self._own_session, None
        if session is None:
            return
        connector = session.connector
        session.detach()  # closed, without the "Unclosed client session" warning
        if connector is None:
            return
        # Its pooled connections cannot be closed through their dead loop: close their
        # sockets directly (aiohttp's pool is private, hence the care), or each would
        # linger until garbage collection and warn then.
        with contextlib.suppress(Exception):
            for pooled in list(getattr(connector, "_conns", {}).values()):
                for protocol, *_ in pooled:
                    transport = getattr(protocol, "transport", None)
                    sock = getattr(transport, "_sock", None)
                    if sock is not None:
                        sock.close()
                        transport._sock = None  # type: ignore[union-attr]
            connector._conns.clear()
        with contextlib.suppress(Exception):
            waiter: Any = connector.close()
            if asyncio.iscoroutine(waiter):
                waiter.close()
            elif hasattr(waiter, "_awaited"):
                # aiohttp 3.11 closes at once and returns a waiter that warns when it is
                # collected unawaited; it cannot be awaited in a dead loop.
                waiter._awaited = True

    async def aclose(self) -> None:
        """Close our own session (never the user's). Safe to call twice."""
        self._closed = True
        if self._session_loop is not asyncio.get_running_loop():
            self._discard_session()  # made in a loop that is gone: nothing to await
            return
        session, self._own_session = self._own_session, None
        if session is not None:
            await session.close()

    # -- pacing ----------------------------------------------------------------------

    async def _wait_turn(self) -> None:
        while (delay := self._paused_until - self._clock()) > 0:
            await self._sleep(delay)
        if self._interval:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._interval
            if slot > now:
                await self._sleep(slot - now)

    # -- requests --------------------------------------------------------------------

    def target(self, path: str, params: Mapping[str, str] | None = None) -> str:
        """The request target as it goes on the wire: the base URL's path, ``path``, and
        the query encoded once, here (what the partner API signs)."""
        query = f"?{encode_query(params)}" if params else ""
        return self.base_url.raw_path.rstrip("/") + path + query

    def url(self, path: str, params: Mapping[str, str] | None = None) -> URL:
        # Marked as encoded: aiohttp and yarl send these bytes as they are.
        return URL(str(self.base_url.origin()) + self.target(path, params), encoded=True)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Payload | None = None,
        unknown_hint: str = UNKNOWN_ORDERS_HINT,
    ) -> Response:
        """Send with retries; return a 2xx response or raise a :class:`ConnexiError`.

        ``unknown_hint``: what an :class:`OutcomeUnknownError` from a POST tells the
        caller to do (look the records up before sending them again)."""
        deadline = asyncio.timeout(_limit(self.timeouts.total))
        try:
            async with deadline:
                return await self._request(method, path, params, body, unknown_hint)
        except TimeoutError:
            if not deadline.expired():
                raise  # pragma: no cover - aiohttp's own timeouts are caught inside
        # Raised outside the except block: nothing of aiohttp's (whose frames hold the
        # request headers) stays reachable through __context__.
        if method == "POST":
            raise _outcome_unknown(
                path, f"did not finish within the {self.timeouts.total:g} s deadline", unknown_hint
            )
        raise TransportError(
            f"{method} {path} did not finish within the {self.timeouts.total:g} s deadline "
            "(retries included); raise timeout= or try later",
            method=method,
            path=path,
        )

    async def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Payload | None,
        unknown_hint: str,
    ) -> Response:
        url = self.url(path, params)
        # Secrets stay _Secrets (a str whose repr is '***') all the way to aiohttp, so no
        # frame's locals show them (pytest -l, Sentry, rich tracebacks). The partner API's
        # signature covers these exact target and body bytes.
        headers = self._auth.headers(self.target(path, params), body)
        if body is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        resent = False
        while True:
            attempt += 1
            await self._wait_turn()
            started = self._clock()
            failure: _Failure | None = None
            try:
                status, data, response_headers = await self._send(method, url, body, headers)
            except _Failure as caught:
                failure = caught
            if failure is not None:
                elapsed = (self._clock() - started) * 1000
                can_retry = failure.retryable and may_retry_transport(method, sent=failure.sent)
                logger.warning(
                    "%s %s failed: %s (attempt %d, %.1f ms)",
                    method,
                    path,
                    failure,
                    attempt,
                    elapsed,
                )
                if not can_retry and method == "POST" and failure.sent:
                    raise _outcome_unknown(
                        path,
                        f"failed after the request may have reached the server ({failure})",
                        unknown_hint,
                    ) from failure.__cause__
                if not can_retry or attempt >= self.retry.max_attempts:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise failure.final(
                        f"{method} {path} failed{tries}: {failure}", method=method, path=path
                    ) from failure.__cause__
                resent = resent or failure.sent
                await self._sleep(backoff_delay(attempt, self.retry, self._random))
                continue
            elapsed = (self._clock() - started) * 1000
            logger.debug(
                "%s %s -> %d (attempt %d, %.1f ms)", method, path, status, attempt, elapsed
            )
            if 200 <= status < 300:
                return Response(status=status, body=data, attempts=attempt, resent=resent)
            error = api_error(
                status, method, path, data.slice(0, 65536), response_headers, self._auth.hints
            )
            if not may_retry_status(method, status):
                if method == "POST" and isinstance(error, ServerError):
                    raise _outcome_unknown(
                        path,
                        f"got HTTP {status} after the request reached the server",
                        unknown_hint,
                    ) from error
                raise error
            wait = backoff_delay(attempt, self.retry, self._random)
            resent = resent or status != 429
            if status == 429:
                asked = parse_retry_after(response_headers.get("Retry-After"), self._wall_clock())
                if asked is not None and asked > self.retry.max_retry_after:
                    raise _rate_limited(
                        error,
                        asked,
                        f"The server asked to wait {asked:g} s, longer than "
                        f"max_retry_after={self.retry.max_retry_after:g} s; try again later.",
                    )
                if asked is not None:
                    wait = asked
                # Every request of this client waits, not only this one.
                self._paused_until = max(self._paused_until, self._clock() + wait)
                if attempt >= self.retry.max_attempts:
                    raise _rate_limited(
                        error, asked, f"Still rate limited after {attempt} attempts."
                    )
            elif attempt >= self.retry.max_attempts:
                raise error
            logger.warning(
                "%s %s -> %d, retrying in %.2f s (attempt %d of %d)",
                method,
                path,
                status,
                wait,
                attempt,
                self.retry.max_attempts,
            )
            if status != 429:
                await self._sleep(wait)

    async def _send(
        self,
        method: str,
        url: URL,
        body: Payload | None,
        headers: dict[str, str],
    ) -> tuple[int, Body, Mapping[str, str]]:
        session = self._session()
        try:
            async with session.request(
                method,
                url,
                data=_request_data(body),
                headers=headers,
                allow_redirects=False,
                raise_for_status=False,
                timeout=self._aiohttp_timeout,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers or None,
            ) as response:
                _read_in_small_bites(response)
                data = await self._read_body(response)
                # Only what the retry logic and the errors need; never request_info.
                kept = {k: v for k in ("Retry-After", "Location") if (v := response.headers.get(k))}
                return response.status, data, kept
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            failure = _failure(exc, url.host or "", self._proxy)
            # The cause kept for debugging is stripped of request_info (headers!).
            failure.__cause__ = _scrub(exc)
        # Raised here, outside the except block, so aiohttp's exception is not its context.
        raise failure

    async def _read_body(self, response: aiohttp.ClientResponse) -> Body:
        """The whole body, decompressed, counted chunk by chunk against the limit."""
        limit = self.max_response_bytes
        declared = response.content_length
        if declared is not None and declared > limit and "Content-Encoding" not in response.headers:
            raise self._too_large(declared)
        # Kept as the chunks it came in (see _chunks.Body): joining a 20 MB body, or
        # growing one buffer, is a single long stall of copying and page faults.
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise self._too_large(size)
            chunks.append(chunk)
        return Body(chunks)

    def _too_large(self, size: int) -> _Failure:
        # Not retried: the same request would bring the same body.
        return _Failure(
            f"the response body exceeded max_response_bytes={self.max_response_bytes:,} "
            f"({size:,} bytes or more); ask for less at a time (a narrower window=) or "
            "raise max_response_bytes",
            sent=True,
            retryable=False,
            error=ResponseTooLargeError,
        )


# A request body: bytes, or the parts an encoder made (never joined when large).
Payload = bytes | list[bytes]


def _request_data(body: Payload | None) -> bytes | AsyncIterator[bytes] | None:
    """What aiohttp sends: small bodies as bytes (with a Content-Length); a large one as a
    stream of its parts, written one by one with the loop given back in between, and never
    joined (a 25 MB join is a stall of its own). A fresh stream per attempt. "Large" is
    aiohttp's own limit: above it, bytes passed whole are a ResourceWarning (an error
    under ``-W error``)."""
    if body is None:
        return None
    parts = [body] if isinstance(body, bytes) else body
    if sum(len(part) for part in parts) <= _STREAMED_BODY:
        return body if isinstance(body, bytes) else b"".join(body)
    return _stream_parts(parts)


async def _stream_parts(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        # One part can be a whole body given as bytes: written in slices of a MiB.
        for start in range(0, len(part), _STREAMED_BODY):
            yield part[start : start + _STREAMED_BODY]


def _read_in_small_bites(response: aiohttp.ClientResponse) -> None:
    """asyncio reads up to 256 KB per socket per turn of the loop; with eight dense bodies
    arriving at once that is 2 MB of copying and parsing in one turn. 64 KB bites keep a
    turn short at no cost in throughput. (``max_size`` is the selector transport's own
    setting; a transport without it, uvloop's, is left as it is.)"""
    connection = response.connection
    transport = connection.transport if connection is not None else None
    if transport is not None and hasattr(transport, "max_size"):
        with contextlib.suppress(AttributeError, TypeError):
            transport.max_size = _READ_BITE


_READ_BITE = 32 * 1024


def _limit(seconds: float) -> float | None:
    """``inf`` (no limit) as asyncio and aiohttp spell it."""
    return None if math.isinf(seconds) else seconds


def _outcome_unknown(path: str, what: str, hint: str) -> OutcomeUnknownError:
    return OutcomeUnknownError(f"POST {path} {what}; {hint}", method="POST", path=path)


def _rate_limited(error: APIError, retry_after: float | None, hint: str) -> RateLimitError:
    return RateLimitError(
        retry_after=retry_after,
        status=error.status,
        method=error.method,
        path=error.path,
        server_message=error.server_message,
        reference=error.reference,
        body_excerpt=error.body_excerpt,
        hint=hint,
    )


def _scrub(exc: BaseException) -> BaseException:
    """A copy of an aiohttp exception fit to chain: no request_info, no headers."""
    return TransportCause(f"{exc.__class__.__module__}.{exc.__class__.__name__}: {_safe_text(exc)}")


def _safe_text(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"status={exc.status} message={exc.message!r}"
    text = str(exc)
    return text[:300]


class TransportCause(Exception):
    """What aiohttp raised, as text without request headers, chained as ``__cause__``."""


def default_wall_clock() -> datetime:
    return datetime.now(UTC)


DEFAULTS = {
    "clock": time.monotonic,
    "sleep": asyncio.sleep,
    "random": _random.random,
    "wall_clock": default_wall_clock,
}
