"""The request core against the sandbox over real HTTP: faults, retries, errors, safety."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from support import client_for

from connexi_async import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnexiClient,
    ConnexiError,
    NewOrder,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitError,
    RedirectError,
    ServerError,
    StatusUpdate,
    TransportError,
)
from connexi_async.sandbox import RETRYABLE_FAULTS, FaultKind, Sandbox

OCT1 = datetime(2026, 10, 1, tzinfo=UTC)
OCT2 = OCT1 + timedelta(days=1)
SECRET = "sandbox-secret"

GET = "GET /v1/order"
POST = "POST /v1/order"
PATCH = "PATCH /v1/order"


@contextlib.asynccontextmanager
async def tiny_server(
    *routes: tuple[str, Callable[[web.Request], Awaitable[web.StreamResponse]]],
    host: str = "127.0.0.1",
) -> AsyncIterator[str]:
    """A throwaway aiohttp server answering /v1/order with the given handlers: its URL."""
    app = web.Application()
    for method, handler in routes:
        app.router.add_route(method, "/v1/order", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0)
        await site.start()
        yield f"http://{host}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def fast_client(sandbox: Sandbox, **options: object) -> ConnexiClient:
    defaults: dict[str, object] = {"backoff_base": 0.001, "backoff_max": 0.01, "read_timeout": 0.5}
    if sandbox.tls:
        defaults["ssl"] = sandbox.client_ssl_context()
    return ConnexiClient(**sandbox.credentials, **{**defaults, **options})  # type: ignore[arg-type]


# Every fault kind behaves the same over HTTPS as over plain HTTP.
over_http_and_https = pytest.mark.parametrize(
    "connexi_sandbox_options",
    [{"orders": 1_000, "seed": 7}, {"orders": 1_000, "seed": 7, "tls": True}],
    ids=["http", "https"],
)


def first_pending(sandbox: Sandbox) -> int:
    for order in sandbox.dataset.between(OCT1, OCT1 + timedelta(days=30)):
        if order.order_status == "pending":
            return order.id
    raise AssertionError("no pending order")


RETRIED_FAULTS = list(RETRYABLE_FAULTS)  # every kind a GET or PATCH may retry


@over_http_and_https
@pytest.mark.parametrize("fault", RETRIED_FAULTS)
async def test_get_retries_each_fault_once(connexi_sandbox: Sandbox, fault: FaultKind) -> None:
    connexi_sandbox.state.stall_seconds = 2.0
    connexi_sandbox.faults.script(GET, fault)
    async with fast_client(connexi_sandbox, read_timeout=0.2) as client:
        orders = await client.fetch_orders(OCT1, OCT2)
    assert [o.id for o in orders] == connexi_sandbox.order_ids(OCT1, OCT2)
    # One faulty attempt, one good one: exactly two requests reached the server.
    assert connexi_sandbox.recorder.count(GET) == 2


@over_http_and_https
@pytest.mark.parametrize("fault", RETRIED_FAULTS)
async def test_patch_retries_each_fault_once(connexi_sandbox: Sandbox, fault: FaultKind) -> None:
    connexi_sandbox.state.stall_seconds = 2.0
    order_id = first_pending(connexi_sandbox)
    connexi_sandbox.faults.script(PATCH, fault)
    async with fast_client(connexi_sandbox, read_timeout=0.2) as client:
        updated = await client.update_order_statuses([StatusUpdate(id=order_id, status="accepted")])
    assert connexi_sandbox.recorder.count(PATCH) == 2
    assert [o.order_status for o in updated] == ["accepted"]


@over_http_and_https
@pytest.mark.parametrize("fault", [FaultKind.RATE_LIMIT, FaultKind.RATE_LIMIT_DATE])
async def test_post_retries_a_429(connexi_sandbox: Sandbox, fault: FaultKind) -> None:
    connexi_sandbox.faults.script(POST, fault)
    async with fast_client(connexi_sandbox) as client:
        created = await client.create_orders(
            [NewOrder(remote_order_id="R1", marketplace_code="shpe")]
        )
    assert connexi_sandbox.recorder.count(POST) == 2
    assert [o.remote_order_id for o in created] == ["R1"]


# Everything but a 429 may come after the server processed the POST.
POST_UNKNOWN_FAULTS = [
    k for k in RETRYABLE_FAULTS if k not in (FaultKind.RATE_LIMIT, FaultKind.RATE_LIMIT_DATE)
]


@over_http_and_https
@pytest.mark.parametrize("fault", POST_UNKNOWN_FAULTS)
async def test_post_is_never_sent_twice(connexi_sandbox: Sandbox, fault: FaultKind) -> None:
    connexi_sandbox.state.stall_seconds = 2.0
    connexi_sandbox.faults.script(POST, fault)
    async with fast_client(connexi_sandbox, read_timeout=0.2) as client:
        with pytest.raises(OutcomeUnknownError) as info:
            await client.create_orders([NewOrder(remote_order_id="R1", marketplace_code="shpe")])
    assert connexi_sandbox.recorder.count(POST) == 1
    assert "may or may not have been created" in str(info.value)
    assert "remote_order_id" in str(info.value)


async def test_post_retries_when_the_connection_was_refused() -> None:
    # Nothing listens: the connect fails, so nothing can have been created; retried.
    sandbox = Sandbox(orders=10)
    async with sandbox:
        base_url = sandbox.base_url
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with ConnexiClient(
        api_key="k", api_secret="s", base_url=base_url, sleep=sleep, max_attempts=3
    ) as client:
        with pytest.raises(TransportError, match="after 3 attempts: could not connect"):
            await client.create_orders([NewOrder(remote_order_id="R1", marketplace_code="shpe")])
    assert len(sleeps) == 2


@over_http_and_https
async def test_malformed_json_is_a_decode_error_not_retried(connexi_sandbox: Sandbox) -> None:
    from connexi_async import DecodeError

    connexi_sandbox.faults.script(GET, FaultKind.MALFORMED)
    async with fast_client(connexi_sandbox) as client:
        with pytest.raises(DecodeError, match=r"GET /v1/order \[2026-10-01T00:00:00Z"):
            await client.fetch_orders(OCT1, OCT2)
    assert connexi_sandbox.recorder.count(GET) == 1


@over_http_and_https
async def test_retries_give_up_after_max_attempts(connexi_sandbox: Sandbox) -> None:
    connexi_sandbox.faults.script(GET, *[FaultKind.UNAVAILABLE] * 3)
    async with fast_client(connexi_sandbox, max_attempts=3) as client:
        with pytest.raises(ServerError) as info:
            await client.fetch_orders(OCT1, OCT2)
    assert info.value.status == 503
    assert info.value.server_message == "service under maintenance"
    assert info.value.reference
    assert connexi_sandbox.recorder.count(GET) == 3


@pytest.mark.parametrize("fault", [FaultKind.RATE_LIMIT, FaultKind.RATE_LIMIT_DATE])
async def test_retry_after_is_honoured(connexi_sandbox: Sandbox, fault: FaultKind) -> None:
    connexi_sandbox.state.retry_after = 7
    connexi_sandbox.faults.script(GET, fault)
    clock = [1000.0]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    # The wall clock the client reads HTTP-dates against is the sandbox's own.
    async with fast_client(
        connexi_sandbox, clock=lambda: clock[0], sleep=sleep, wall_clock=connexi_sandbox.state.now
    ) as client:
        await client.fetch_orders(OCT1, OCT2)
    assert len(sleeps) == 1
    assert 5.0 <= sleeps[0] <= 7.0  # an HTTP-date has whole seconds


async def test_retry_after_longer_than_the_cap_raises(connexi_sandbox: Sandbox) -> None:
    connexi_sandbox.state.retry_after = 600
    connexi_sandbox.faults.script(GET, FaultKind.RATE_LIMIT)
    async with fast_client(connexi_sandbox, max_retry_after=30) as client:
        with pytest.raises(RateLimitError) as info:
            await client.fetch_orders(OCT1, OCT2)
    assert info.value.retry_after == 600
    assert connexi_sandbox.recorder.count(GET) == 1


async def test_a_429_pauses_every_request_of_the_client(connexi_sandbox: Sandbox) -> None:
    """After one request gets a 429, a request that got none waits out the pause too."""
    connexi_sandbox.state.retry_after = 5
    connexi_sandbox.faults.script(GET, FaultKind.RATE_LIMIT)
    clock = [0.0]  # advanced by this test only: the pause lasts until it says so
    waits: list[tuple[str, float]] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        task = asyncio.current_task()
        waits.append((task.get_name() if task else "?", seconds))
        await real_sleep(0.001)

    async with fast_client(connexi_sandbox, clock=lambda: clock[0], sleep=sleep) as client:

        async def until_waiting(name: str) -> None:
            for _ in range(5_000):  # bounded: a broken pause fails, never hangs
                if any(who == name for who, _ in waits):
                    return
                await real_sleep(0.001)
            raise AssertionError(f"{name} never waited")

        first = asyncio.create_task(client.fetch_orders(OCT1, OCT2), name="first")
        await until_waiting("first")  # it got its 429 and waits out Retry-After
        second = asyncio.create_task(client.fetch_orders(OCT1, OCT2), name="second")
        await until_waiting("second")
        # "second" never got a 429 yet it waits, and it has not been sent.
        assert connexi_sandbox.recorder.count(GET) == 1
        assert ("second", 5.0) in waits
        clock[0] = 5.0
        await asyncio.gather(first, second)
    assert connexi_sandbox.recorder.count(GET) == 3


async def test_requests_per_second_spaces_requests(connexi_sandbox: Sandbox) -> None:
    clock = [0.0]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    async with fast_client(
        connexi_sandbox, clock=lambda: clock[0], sleep=sleep, requests_per_second=4
    ) as client:
        for _ in range(3):
            await client.fetch_orders(OCT1, OCT2)
    assert sleeps == [0.25, 0.25]


async def test_errors_are_typed(connexi_sandbox: Sandbox) -> None:
    creds = {**connexi_sandbox.credentials, "api_secret": "wrong-secret"}
    async with ConnexiClient(**creds) as client:  # type: ignore[arg-type]
        with pytest.raises(AuthenticationError) as info:
            await client.fetch_orders(OCT1, OCT2)
    assert info.value.status == 401
    assert "Check api_key and api_secret" in str(info.value)
    async with fast_client(connexi_sandbox) as client:
        with pytest.raises(NotFoundError):
            await client.update_order_statuses([(10**9, "accepted")])
        with pytest.raises(BadRequestError, match="cannot go from pending to completed"):
            await client.update_order_statuses([(first_pending(connexi_sandbox), "completed")])
    assert connexi_sandbox.recorder.count(PATCH) == 2  # 4xx are not retried


async def test_update_accepts_empty_and_undocumented_bodies() -> None:
    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def other(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    for handler in (empty, other):
        async with (
            tiny_server(("PATCH", handler), ("POST", handler)) as base_url,
            ConnexiClient(api_key="k", api_secret="s", base_url=base_url) as client,
        ):
            assert await client.update_order_statuses([(1, "accepted")]) == []
            assert await client.create_orders([NewOrder(remote_order_id="x")]) == []


async def test_redirect_is_not_followed_and_credentials_stay_home() -> None:
    received: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        received.append(dict(request.headers))
        return web.json_response({"orders": []})

    async with tiny_server(("GET", record), host="127.0.0.2") as other_host:
        port = int(other_host.rsplit(":", 1)[1])
        async with Sandbox(orders=10, redirect_to=f"http://127.0.0.2:{port}") as sandbox:
            sandbox.faults.script(GET, FaultKind.REDIRECT)
            async with fast_client(sandbox) as client:
                with pytest.raises(RedirectError) as info:
                    await client.fetch_orders(OCT1, OCT2)
        assert info.value.status == 307
        assert info.value.location is not None
        assert info.value.location.startswith(f"http://127.0.0.2:{port}/v1/order")
        assert SECRET not in str(info.value)
        assert received == []  # the other host never saw the request, nor the secret


async def test_secret_never_in_repr_logs_or_exceptions(
    connexi_sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="connexi_async")
    connexi_sandbox.state.stall_seconds = 2.0
    texts: list[str] = []
    async with fast_client(connexi_sandbox, max_attempts=2, read_timeout=0.1) as client:
        texts.append(repr(client))
        texts.append(repr(client._transport))
        for fault in (
            FaultKind.DISCONNECT,
            FaultKind.TRUNCATE,
            FaultKind.STALL_HEADERS,
            FaultKind.UNAVAILABLE,
        ):
            connexi_sandbox.faults.script(GET, fault, fault)
            with pytest.raises(ConnexiError) as info:
                await client.fetch_orders(OCT1, OCT2)
            chain: BaseException | None = info.value
            while chain is not None:
                texts += [str(chain), repr(chain), repr(vars(chain))]
                assert not hasattr(chain, "request_info")
                chain = chain.__cause__ or chain.__context__
        connexi_sandbox.faults.script(POST, FaultKind.DISCONNECT)
        with pytest.raises(OutcomeUnknownError) as post_info:
            await client.create_orders([NewOrder(remote_order_id="A", marketplace_code="bklp")])
        texts += [str(post_info.value), repr(post_info.value)]
    texts += [r.getMessage() for r in caplog.records]
    assert any("GET /v1/order" in t for t in texts)
    joined = "\n".join(texts)
    assert SECRET not in joined
    assert "api_secret" not in joined.replace("CONNEXI_API_SECRET", "")


async def test_credentials_checked_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="api_secret must be a non-empty string"):
        ConnexiClient(api_key="k", api_secret="")
    with pytest.raises(ConfigurationError, match="control character") as info:
        ConnexiClient(api_key="k", api_secret="abc\ndef")
    assert "abc" not in str(info.value)
    with pytest.raises(ConfigurationError, match="plain http"):
        ConnexiClient(api_key="k", api_secret="s", base_url="http://api2.connexi.id")
    ConnexiClient(
        api_key="k", api_secret="s", base_url="http://api.example", allow_insecure_http=True
    )
    ConnexiClient(api_key="k", api_secret="s", base_url="http://localhost:8080")
    with pytest.raises(ConfigurationError, match="must not carry credentials"):
        ConnexiClient(api_key="k", api_secret="s", base_url="https://u:p@api2.connexi.id")


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONNEXI_API_KEY", raising=False)
    monkeypatch.delenv("CONNEXI_API_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="CONNEXI_API_KEY is not set"):
        ConnexiClient.from_env()
    monkeypatch.setenv("CONNEXI_API_KEY", "key")
    with pytest.raises(ConfigurationError, match="CONNEXI_API_SECRET is not set"):
        ConnexiClient.from_env()
    monkeypatch.setenv("CONNEXI_API_SECRET", "top-secret")
    monkeypatch.setenv("CONNEXI_BASE_URL", "http://127.0.0.1:9")
    client = ConnexiClient.from_env(max_attempts=2)
    assert str(client.base_url) == "http://127.0.0.1:9"
    assert "top-secret" not in repr(client)


async def test_user_session_left_open_own_session_closed(connexi_sandbox: Sandbox) -> None:
    async with aiohttp.ClientSession() as session:
        async with ConnexiClient(**connexi_sandbox.credentials, session=session) as client:
            await client.fetch_orders(OCT1, OCT2)
        assert not session.closed
        assert "api_secret" not in session.headers
    client = ConnexiClient(**connexi_sandbox.credentials)
    await client.fetch_orders(OCT1, OCT2)
    own = client._transport._own_session
    assert own is not None
    assert not own.closed
    await client.aclose()
    assert own.closed
    with pytest.raises(ConnexiError, match="client is closed"):
        await client.fetch_orders(OCT1, OCT2)
    await client.aclose()  # twice is fine


async def test_overall_deadline_covers_retries(connexi_sandbox: Sandbox) -> None:
    connexi_sandbox.state.stall_seconds = 5.0
    connexi_sandbox.faults.script(GET, *[FaultKind.STALL_HEADERS] * 10)
    async with fast_client(connexi_sandbox, read_timeout=2.0, timeout=0.3) as client:
        with pytest.raises(TransportError, match="did not finish within the 0.3 s deadline"):
            await client.fetch_orders(OCT1, OCT2)
    connexi_sandbox.faults.script(POST, FaultKind.STALL_HEADERS)
    async with fast_client(connexi_sandbox, read_timeout=2.0, timeout=0.3) as client:
        with pytest.raises(OutcomeUnknownError):
            await client.create_orders([NewOrder(remote_order_id="D", marketplace_code="bklp")])


async def test_create_then_fetch_round_trip(connexi_sandbox: Sandbox) -> None:
    from decimal import Decimal

    from connexi_async import NewLineItem

    now = datetime.now(UTC)
    new = NewOrder(
        remote_order_id="ORD-123",
        marketplace_code="tkpd",
        order_date=now.replace(microsecond=0),
        subtotal=Decimal("80000"),
        line_items=(NewLineItem(sku="TOP0001", quantity=2, unit_price=Decimal("40000")),),
    )
    async with fast_client(connexi_sandbox) as client:
        (created,) = await client.create_orders([new])
        fetched = await client.fetch_orders(now - timedelta(minutes=1), now + timedelta(minutes=1))
    assert created in fetched
    assert created.line_items[0].sku == "TOP0001"
    assert created.order_date == new.order_date


async def test_unreadable_write_response_is_logged_without_its_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def odd(request: web.Request) -> web.Response:
        return web.json_response({"orders": [{"id": 1, "delivery_name": ["Budi Santoso"]}]})

    async with (
        tiny_server(("PATCH", odd)) as base_url,
        ConnexiClient(api_key="k", api_secret="s", base_url=base_url) as client,
    ):
        assert await client.update_order_statuses([(1, "accepted")]) == []
    (record,) = [
        r for r in caplog.records if r.name == "connexi_async" and r.levelname == "WARNING"
    ]
    assert "$.orders[0].delivery_name" in record.getMessage()
    assert "Budi" not in record.getMessage()


async def test_waiting_for_a_pooled_connection_is_not_a_connect_timeout(
    connexi_sandbox: Sandbox,
) -> None:
    # One connection, requests that hold it for 200 ms, a 50 ms connect timeout: the
    # second request waits in the pool far longer than it may take to connect.
    connexi_sandbox.latency_ms = 200
    async with fast_client(
        connexi_sandbox, max_connections=1, connect_timeout=0.05, max_attempts=1
    ) as client:
        first, second = await asyncio.gather(
            client.fetch_orders(OCT1, OCT2), client.fetch_orders(OCT1, OCT2)
        )
    assert first == second
    assert connexi_sandbox.recorder.count(GET) == 2
    assert connexi_sandbox.recorder.max_in_flight == 1


async def test_a_body_over_aiohttp_s_limit_is_streamed_without_a_resource_warning() -> None:
    """Regression: bodies of 1-4 MB went to aiohttp as bytes, which it answers with a
    ResourceWarning ("might lock the event loop"), an error under ``-W error``."""
    import warnings

    from connexi_async import NewOrder

    orders = [
        NewOrder(remote_order_id=str(n), marketplace_code="bklp", remarks="x" * 1_500)
        for n in range(800)
    ]
    async with Sandbox(orders=10, days=1) as sandbox, client_for(sandbox) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            created = await client.create_orders(orders)
        ((_, body),) = sandbox.recorder.writes
    assert len(created) == 800
    assert len(body) > 1024 * 1024
