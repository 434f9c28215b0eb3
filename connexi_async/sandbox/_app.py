"""The sandbox's aiohttp application: the Connexi v1 routes, auth, faults and recording."""

from __future__ import annotations

import asyncio
import contextvars
import hmac
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import attrs
from aiohttp import web

from .._convert import (
    _to_timestamp,
    locations_body_steps,
    new_orders_steps,
    orders_body_steps,
    status_updates_steps,
)
from .._cooperative import run_sliced
from .._errors import DecodeError
from .._models import Order, OrderStatus
from . import _partner, _partner_writes
from ._data import SANDBOX_USER_ID, STAMPS, Dataset
from ._faults import FaultKind, Faults, Recorder
from ._partner import PartnerState, error_response, partner_authorised

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What PATCH may do: status -> statuses it may move to. Setting the current status again
# is a no-op that succeeds, which is what makes a retried PATCH safe.
TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.ACCEPTED, OrderStatus.CANCELLED}),
    OrderStatus.ACCEPTED: frozenset({OrderStatus.PACKED, OrderStatus.CANCELLED}),
    OrderStatus.PACKED: frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELLED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.COMPLETED}),
    OrderStatus.COMPLETED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}

STATE_KEY: web.AppKey[SandboxState] = web.AppKey("connexi_sandbox_state")
# (start µs, end µs, cap, dataset version): a window's body as the data stands.
_CacheKey = tuple[int, int, int | None, int]
# Encoded window bodies kept for repeated reads: enough for benchmarks' repeated rounds
# over 100k orders, small enough for a test helper.
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
# Set while serving a request whose whole body a fault needs before anything is written
# (a context variable: the handler runs in the same task as the middleware).
_BUFFERED: contextvars.ContextVar[bool] = contextvars.ContextVar("buffered", default=False)


@attrs.define(kw_only=True)
class SandboxState:
    """Everything the running app reads and writes; tests reach it through ``Sandbox``."""

    dataset: Dataset
    api_key: str
    api_secret: str = attrs.field(repr=False)
    partner: PartnerState = attrs.field(repr=False)
    faults: Faults = attrs.field(factory=Faults)
    recorder: Recorder = attrs.field(factory=Recorder)
    cap: int | None = None
    latency_ms: float = 0.0
    stall_seconds: float = 10.0
    retry_after: int = 0
    redirect_to: str | None = None
    cache_bytes: int = DEFAULT_CACHE_BYTES
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Sandbox(accounts=N): the account this state serves, every account's state by its
    # api_key (this one included) and each account's own recorder. Empty: one account.
    account: str = ""
    tenants: dict[str, SandboxState] = attrs.field(factory=dict, repr=False)
    account_recorders: dict[str, Recorder] = attrs.field(factory=dict, repr=False)
    _cache: OrderedDict[_CacheKey, list[bytes]] = attrs.field(factory=OrderedDict)
    _generating: dict[_CacheKey, asyncio.Future[list[bytes]]] = attrs.field(factory=dict)
    _cached_bytes: int = 0

    async def window_parts(self, start: datetime, end: datetime) -> list[bytes]:
        """The encoded Get Order body of a window, in parts, cached until the next write.

        Generated and encoded in slices, so a dense window never holds the event loop
        (the sandbox often shares it with the code under test). One generation per
        window at a time, shared: a client that times out and retries waits for the work
        already under way instead of starting it again behind the others."""
        key = (
            int(start.timestamp() * 1_000_000),
            int(end.timestamp() * 1_000_000),
            self.cap,
            self.dataset.version,
        )
        parts = self._cache.get(key)
        if parts is not None:
            self._cache.move_to_end(key)
            return parts
        pending = self._generating.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._generate(key, start, end))
            self._generating[key] = pending
            pending.add_done_callback(lambda _: self._generating.pop(key, None))
        return await asyncio.shield(pending)

    async def _generate(self, key: _CacheKey, start: datetime, end: datetime) -> list[bytes]:
        orders = self.dataset.between(start, end)
        if self.cap is not None:
            orders = (o for _, o in zip(range(self.cap), orders, strict=False))
        parts = await run_sliced(orders_body_steps(orders, chunked=True))
        size = sum(len(p) for p in parts)
        if size <= self.cache_bytes and key[3] == self.dataset.version:
            self._cache[key] = parts
            self._cached_bytes += size
        while self._cached_bytes > self.cache_bytes and self._cache:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= sum(len(p) for p in old)
        return parts

    async def close(self) -> None:
        """Stop the generations still under way (their clients are gone)."""
        tasks = list(self._generating.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def invalidate(self) -> None:
        self._cache.clear()
        self._cached_bytes = 0

    def tenant(self, request: web.Request) -> SandboxState:
        """The account a v1 request speaks for, by its ``api_key`` (this state when the
        sandbox serves one account, or when the key is unknown: the auth check refuses it)."""
        if not self.tenants:
            return self
        return self.tenants.get(request.headers.get("api_key", ""), self)


def _state(request: web.Request) -> SandboxState:
    """The account state serving a request (a dict lookup by its api_key)."""
    return request.app[STATE_KEY].tenant(request)


def _period(request: web.Request, *, required: bool) -> tuple[datetime, datetime] | None:
    raw_start, raw_end = request.query.get("start"), request.query.get("end")
    if raw_start is None and raw_end is None and not required:
        return None
    if not raw_start or not raw_end:
        raise web.HTTPBadRequest(reason="start and end are both required")
    bounds = []
    for name, raw in (("start", raw_start), ("end", raw_end)):
        try:
            value = _to_timestamp(raw)
        except ValueError:
            value = None
        if value is None:
            raise web.HTTPBadRequest(
                reason=f"{name} must be an RFC 3339 timestamp such as 2018-11-07T00:00:00Z, got {raw!r}"
            )
        bounds.append(value)
    start, end = bounds
    if start > end:
        raise web.HTTPBadRequest(reason=f"start {raw_start} is after end {raw_end}")
    return start, end


async def get_orders(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    period = _period(request, required=True)
    assert period is not None
    parts = await state.window_parts(*period)
    return await _send_parts(request, parts)


async def _send_parts(request: web.Request, parts: list[bytes]) -> web.StreamResponse:
    """A JSON body written part by part (each write waits for the socket to drain)."""
    if _BUFFERED.get() or len(parts) == 1:
        return web.Response(body=b"".join(parts), content_type="application/json")
    response = web.StreamResponse()
    response.content_type = "application/json"
    response.content_length = sum(len(p) for p in parts)
    try:
        await response.prepare(request)
        for part in parts:
            await response.write(part)
        await response.write_eof()
    except ConnectionResetError:
        # The client stopped reading (a stream left early, `| head`): nothing to report,
        # as a real server would not print a traceback into the client's terminal.
        pass
    return response


async def get_stocks(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    period = _period(request, required=False)
    start, end = period if period is not None else (None, None)
    (body,) = await run_sliced(locations_body_steps(state.dataset.locations(start, end)))
    return web.Response(body=body, content_type="application/json")


async def create_orders(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    try:
        new_orders = await run_sliced(new_orders_steps(await request.read(), "Create Order body"))
    except DecodeError as exc:
        return error_response(400, str(exc))
    problems = []
    seen: set[tuple[str, str]] = set()
    for index, new in enumerate(new_orders):
        if index % 256 == 255:
            await asyncio.sleep(0)
        where = f"$.orders[{index}]"
        if not new.remote_order_id or not new.marketplace_code:
            problems.append(f"{where}: remote_order_id and marketplace_code are required")
            continue
        key = (new.remote_order_id, new.marketplace_code)
        if key in seen or state.dataset.remote_key_taken(*key):
            problems.append(
                f"{where}: an order with remote_order_id {new.remote_order_id} on "
                f"{new.marketplace_code} already exists"
            )
        seen.add(key)
    if problems:
        return error_response(400, "; ".join(problems) + "; no order was created")
    now = state.now()
    created = []
    for index, new in enumerate(new_orders, 1):
        created.append(state.dataset.create(new, now))
        if not index % 64:
            await asyncio.sleep(0)
    state.invalidate()
    return await _send_parts(request, await run_sliced(orders_body_steps(created, chunked=True)))


def _normalise_status(status: str) -> str:
    lowered = status.strip().lower()
    return OrderStatus.CANCELLED if lowered == "canceled" else lowered


async def update_orders(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    try:
        updates = await run_sliced(status_updates_steps(await request.read(), "Update Order body"))
    except DecodeError as exc:
        return error_response(400, str(exc))
    now = state.now()
    changed: dict[int, Order] = {}
    missing, refused = [], []
    for index, update in enumerate(updates):
        if index % 64 == 63:
            await asyncio.sleep(0)  # a large PATCH never holds the loop it shares
        order = changed.get(update.id) or state.dataset.get(update.id)
        if order is None:
            missing.append(f"$[{index}]: order {update.id} does not exist")
            continue
        target = _normalise_status(update.status)
        current = order.order_status or OrderStatus.PENDING
        if target == current:
            changed[order.id] = order
            continue
        if target not in TRANSITIONS:
            refused.append(f"$[{index}]: {update.status!r} is not an order status")
            continue
        if target not in TRANSITIONS.get(current, frozenset()):
            refused.append(f"$[{index}]: order {order.id} cannot go from {current} to {target}")
            continue
        fields: dict[str, Any] = {"order_status": target, "updated_at": now}
        if target in STAMPS:
            stamp, by = STAMPS[target]
            fields[stamp] = now
            if by is not None:
                fields[by] = SANDBOX_USER_ID
        changed[order.id] = attrs.evolve(order, **fields)
    if missing:
        return error_response(404, "; ".join(missing) + "; no order was updated")
    if refused:
        return error_response(400, "; ".join(refused) + "; no order was updated")
    for index, order in enumerate(changed.values()):
        state.dataset.replace(order)
        if index % 64 == 63:
            await asyncio.sleep(0)
    state.invalidate()
    parts = await run_sliced(orders_body_steps(changed.values(), chunked=True))
    return await _send_parts(request, parts)


def _authorised(request: web.Request, state: SandboxState) -> bool:
    key = request.headers.get("api_key", "").encode()
    secret = request.headers.get("api_secret", "").encode()
    # Both compared, always, in constant time: no early exit tells which one was wrong.
    key_ok = hmac.compare_digest(key, state.api_key.encode())
    secret_ok = hmac.compare_digest(secret, state.api_secret.encode())
    return key_ok and secret_ok


async def _serve(request: web.Request, handler: Handler, state: SandboxState) -> web.StreamResponse:
    if request.path.startswith("/v1/partner/"):
        if not partner_authorised(request, await request.read(), state.partner):
            return error_response(
                401, "invalid partner-id or secret: the signature does not match the request"
            )
        return await handler(request)
    if not _authorised(request, _state(request)):
        return error_response(401, "invalid api_key or api_secret")
    return await handler(request)


async def _apply_fault(
    fault: FaultKind, request: web.Request, handler: Handler, state: SandboxState
) -> web.StreamResponse:
    if fault in (FaultKind.RATE_LIMIT, FaultKind.RATE_LIMIT_DATE):
        if fault is FaultKind.RATE_LIMIT:
            retry_after = str(state.retry_after)
        else:
            when = state.now() + timedelta(seconds=state.retry_after)
            retry_after = format_datetime(when.astimezone(UTC), usegmt=True)
        response = error_response(429, "too many requests")
        response.headers["Retry-After"] = retry_after
        return response
    if fault is FaultKind.SERVER_ERROR:
        return error_response(500, "internal server error")
    if fault is FaultKind.BAD_GATEWAY:
        html = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
        return web.Response(status=502, text=html, content_type="text/html")
    if fault is FaultKind.UNAVAILABLE:
        return error_response(503, "service under maintenance")
    if fault is FaultKind.GATEWAY_TIMEOUT:
        return web.Response(status=504, text="upstream timed out", content_type="text/plain")
    if fault is FaultKind.DISCONNECT:
        _drop(request)
        return web.Response()
    if fault is FaultKind.DISCONNECT_AFTER:
        _BUFFERED.set(True)
        await _serve(request, handler, state)
        _drop(request)
        return web.Response()
    if fault is FaultKind.REDIRECT:
        target = state.redirect_to or f"http://127.0.0.2:{request.url.port}"
        raise web.HTTPTemporaryRedirect(location=f"{target.rstrip('/')}{request.path_qs}")
    if fault is FaultKind.MALFORMED:
        return web.Response(
            body=b'{"orders": [{"id": 1, "total": ', content_type="application/json"
        )
    if fault is FaultKind.STALL_HEADERS:
        await asyncio.sleep(state.stall_seconds)
        return await _serve(request, handler, state)
    # The body faults need the real body first.
    _BUFFERED.set(True)
    real = await _serve(request, handler, state)
    body = real.body if isinstance(real, web.Response) and isinstance(real.body, bytes) else b"{}"
    half = max(len(body) // 2, 1)
    stream = web.StreamResponse(status=real.status)
    stream.content_type = "application/json"
    if fault is FaultKind.TRUNCATE:
        stream.content_length = len(body) + 1024
        await stream.prepare(request)
        await stream.write(body[:half])
        _drop(request)
        return stream
    # STALL_BODY
    stream.content_length = len(body)
    await stream.prepare(request)
    await stream.write(body[:half])
    await asyncio.sleep(state.stall_seconds)
    await stream.write(body[half:])
    await stream.write_eof()
    return stream


def _drop(request: web.Request) -> None:
    """Close the connection under the request: the client sees a disconnect."""
    transport = request.transport
    if transport is not None:
        transport.close()


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    tenant = state.tenant(request)
    route = f"{request.method} {request.path}"
    # Every request in the sandbox's recorder; with several accounts, also in the
    # recorder of the account it authenticates as (so a test can see, per account, how
    # many requests were ever in flight at once).
    recorders = [state.recorder]
    account = state.account_recorders.get(tenant.account) if state.tenants else None
    if account is not None and _authorised(request, tenant):
        recorders.append(account)
    for recorder in recorders:
        recorder.requests[route] += 1
        recorder.in_flight += 1
        recorder.max_in_flight = max(recorder.max_in_flight, recorder.in_flight)
    recorder = state.recorder
    try:
        if request.method in ("POST", "PATCH", "PUT"):
            recorder.writes.append((route, await request.read()))
        if state.latency_ms:
            await asyncio.sleep(state.latency_ms / 1000)
        fault = state.faults.next_fault(request.method, request.path, request.query)
        if fault is not None:
            recorder.faults[fault] += 1
            return await _apply_fault(fault, request, handler, state)
        return await _serve(request, handler, state)
    except web.HTTPRedirection:
        raise
    except web.HTTPException as exc:
        # 404 and 405 from the router, 400 from _period: a JSON body like the API's own.
        response = error_response(exc.status, exc.reason)
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    finally:
        for recorder in recorders:
            recorder.in_flight -= 1


def _partner_handler(route: Any) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        response: web.StreamResponse = await route(
            request, state.dataset, state.partner, _send_parts, state.now
        )
        return response

    return handle


def build_app(state: SandboxState) -> web.Application:
    """The sandbox application over ``state``."""
    app = web.Application(middlewares=[_middleware], client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = state
    app.router.add_get("/v1/order", get_orders, allow_head=False)
    app.router.add_post("/v1/order", create_orders)
    app.router.add_patch("/v1/order", update_orders)
    app.router.add_get("/v1/product/stocks", get_stocks, allow_head=False)
    for path, route in (
        ("/v1/partner/order", _partner.get_orders),
        ("/v1/partner/product/stock", _partner.get_product_stock),
        ("/v1/partner/inventory/history", _partner.get_history),
    ):
        app.router.add_get(path, _partner_handler(route), allow_head=False)
    app.router.add_post("/v1/partner/order", _partner_handler(_partner_writes.create_orders))
    app.router.add_patch(
        "/v1/partner/order/status", _partner_handler(_partner_writes.change_statuses)
    )
    app.router.add_post("/v1/partner/product", _partner_handler(_partner_writes.create_products))
    app.router.add_post(
        "/v1/partner/inventory/updatestocks", _partner_handler(_partner_writes.update_stocks)
    )
    return app
