"""The sandbox over real HTTP: routes, errors, faults, data rules, determinism, counters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aiohttp
import pytest
import pytest_asyncio

from connexi_async import decode_locations, decode_orders
from connexi_async.sandbox import RETRYABLE_FAULTS, FaultKind, Sandbox, generate_order
from connexi_async.sandbox._data import DataConfig, Dataset, creation_instants

OCT1 = datetime(2026, 10, 1, tzinfo=UTC)
AUTH = {"api_key": "sandbox-key", "api_secret": "sandbox-secret"}
DAY = {"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z"}


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        # Count requests as the server sees them (aiohttp >= 3.11, the minimum, has
        # this switch for its own unseen re-send of a GET).
        session._retry_connection = False
        yield session


async def test_get_orders_window_is_half_open_and_sorted(
    connexi_sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    async with http.get(connexi_sandbox.base_url + "/v1/order", params=DAY, headers=AUTH) as r:
        assert r.status == 200
        orders = decode_orders(await r.read())
    assert orders
    assert all(OCT1 <= o.created_at < OCT1 + timedelta(days=1) for o in orders if o.created_at)
    keys = [(o.created_at, o.id) for o in orders]
    assert keys == sorted(keys)
    assert [o.id for o in orders] == connexi_sandbox.order_ids(OCT1, OCT1 + timedelta(days=1))


async def test_stocks_with_and_without_period(
    connexi_sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    url = connexi_sandbox.base_url + "/v1/product/stocks"
    async with http.get(url, headers=AUTH) as r:
        (root,) = decode_locations(await r.read())
    codes = [loc.location_code for loc in root.walk()]
    assert codes[0] == "ID"
    assert "ID-JK" in codes
    assert "ID-JK0101" in codes
    async with http.get(url, params=DAY, headers=AUTH) as r:
        windowed = decode_locations(await r.read())
    assert sum(1 for t in windowed for _ in t.walk()) < len(codes)


@pytest.mark.parametrize(
    "headers",
    [{}, {"api_key": "sandbox-key"}, {"api_key": "sandbox-key", "api_secret": "wrong"}],
)
async def test_auth_refused_with_json_error(
    connexi_sandbox: Sandbox, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    async with http.get(connexi_sandbox.base_url + "/v1/order", params=DAY, headers=headers) as r:
        assert r.status == 401
        body = await r.json()
    assert body["message"] == "invalid api_key or api_secret"
    assert body["reference"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"start": "yesterday", "end": "2026-10-02T00:00:00Z"}, "start must be an RFC 3339"),
        ({"start": "2026-10-01T00:00:00Z"}, "start and end are both required"),
        ({"start": "2026-10-03T00:00:00Z", "end": "2026-10-02T00:00:00Z"}, "is after end"),
    ],
)
async def test_bad_query_is_400(
    connexi_sandbox: Sandbox, http: aiohttp.ClientSession, params: dict[str, str], fragment: str
) -> None:
    async with http.get(connexi_sandbox.base_url + "/v1/order", params=params, headers=AUTH) as r:
        assert r.status == 400
        assert fragment in (await r.json())["message"]


async def test_unknown_path_404_and_wrong_method_405(
    connexi_sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    async with http.get(connexi_sandbox.base_url + "/v1/nothing", headers=AUTH) as r:
        assert r.status == 404
        assert "message" in await r.json()
    async with http.delete(connexi_sandbox.base_url + "/v1/order", headers=AUTH) as r:
        assert r.status == 405
        assert "message" in await r.json()


async def test_post_creates_and_refuses_duplicates(
    connexi_sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    url = connexi_sandbox.base_url + "/v1/order"
    body = {"orders": [{"remote_order_id": "R-1", "marketplace_code": "tkpd", "total": 1000}]}
    async with http.post(url, json=body, headers=AUTH) as r:
        assert r.status == 200
        (created,) = decode_orders(await r.read())
    assert created.id == len(connexi_sandbox.dataset)
    assert created.created_at is not None
    assert created.total == Decimal(1000)
    assert created.order_status == "pending"
    async with http.post(url, json=body, headers=AUTH) as r:
        assert r.status == 400
        assert "already exists" in (await r.json())["message"]
    # A base order's remote id is taken too.
    base = connexi_sandbox.dataset.get(1)
    assert base is not None
    dup = {
        "orders": [
            {"remote_order_id": base.remote_order_id, "marketplace_code": base.marketplace_code}
        ]
    }
    async with http.post(url, json=dup, headers=AUTH) as r:
        assert r.status == 400
    async with http.post(url, data=b"{nope", headers=AUTH) as r:
        assert r.status == 400
        assert "invalid JSON" in (await r.json())["message"]


async def test_patch_lifecycle_all_or_nothing(
    connexi_sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    url = connexi_sandbox.base_url + "/v1/order"
    pending = [
        o
        for o in connexi_sandbox.dataset.between(OCT1, OCT1 + timedelta(days=30))
        if o.order_status == "pending"
    ]
    first, second = pending[0], pending[1]
    # One impossible transition refuses the whole request.
    body = [{"id": first.id, "status": "accepted"}, {"id": second.id, "status": "shipped"}]
    async with http.patch(url, json=body, headers=AUTH) as r:
        assert r.status == 400
        assert "cannot go from pending to shipped" in (await r.json())["message"]
    assert connexi_sandbox.dataset.get(first.id) == first
    async with http.patch(url, json=[{"id": 10**9, "status": "accepted"}], headers=AUTH) as r:
        assert r.status == 404
    async with http.patch(url, json=[{"id": first.id, "status": "accepted"}], headers=AUTH) as r:
        assert r.status == 200
        (updated,) = decode_orders(await r.read())
    assert updated.order_status == "accepted"
    assert updated.accepted_at is not None
    assert updated.accepted_by != 0
    assert updated.updated_at == updated.accepted_at
    # Setting the same status again succeeds: a retried PATCH is safe.
    async with http.patch(url, json=[{"id": first.id, "status": "accepted"}], headers=AUTH) as r:
        assert r.status == 200
    # The change is visible in Get Order.
    assert connexi_sandbox.dataset.get(first.id) == updated


def test_data_is_deterministic_and_seed_dependent() -> None:
    a = Dataset(DataConfig(seed=3, orders=500))
    b = Dataset(DataConfig(seed=3, orders=500))
    c = Dataset(DataConfig(seed=4, orders=500))
    period = (OCT1, OCT1 + timedelta(days=30))
    assert list(a.between(*period)) == list(b.between(*period))
    assert list(a.between(*period)) != list(c.between(*period))
    assert len(list(a.between(*period))) == 500


def test_data_is_self_consistent() -> None:
    config = DataConfig(seed=11, orders=2_000)
    instants = creation_instants(config)
    stamps = {
        "accepted": "accepted_at",
        "packed": "packed_at",
        "shipped": "shipment_tracked_at",
        "cancelled": "cancelled_at",
    }
    statuses = set()
    for index, micros in enumerate(instants):
        order = generate_order(config.seed, index, micros)
        statuses.add(order.order_status)
        assert 1 <= len(order.line_items) <= 5
        assert order.subtotal == sum(li.total for li in order.line_items)
        assert (
            order.total
            == order.subtotal + order.shipping_total - order.discount_total + order.tax_total
        )
        for li in order.line_items:
            assert li.total_price == li.unit_price * li.quantity
            assert li.total == li.total_price - li.discount
            assert li.sku
        assert order.marketplace_code in {"bklp", "tkpd", "shpe", "lzda", "blib"}
        assert order.delivery_method in {"JNE REG", "J&T EZ", "SiCepat REG", "AnterAja"}
        assert order.phone_number.startswith("08")
        assert order.delivery_post_code.isdigit()
        lifecycle = ["accepted", "packed", "shipped", "completed"]
        status = order.order_status
        if status in lifecycle:
            reached = lifecycle[: lifecycle.index(status) + 1]
            for step, field in stamps.items():
                if step in reached:
                    assert getattr(order, field) is not None, (status, field)
                elif step != "cancelled":
                    assert getattr(order, field) is None, (status, field)
            assert order.cancelled_at is None
        elif status == "cancelled":
            assert order.cancelled_at is not None
            assert order.cancel_reason
        else:
            assert status == "pending"
            assert all(getattr(order, f) is None for f in stamps.values())
        assert order.created_at is not None
        assert order.updated_at is not None
        assert order.updated_at >= order.created_at
    assert statuses == {"pending", "accepted", "packed", "shipped", "completed", "cancelled"}


def test_a_million_orders_start_quickly() -> None:
    # Only instants are precomputed; no timing asserted, just that it is compact.
    dataset = Dataset(DataConfig(orders=1_000_000))
    assert dataset.base_count == 1_000_000
    assert dataset.instants.itemsize == 8


async def test_cap_truncates_silently(
    connexi_sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    connexi_sandbox.cap = 5
    async with http.get(connexi_sandbox.base_url + "/v1/order", params=DAY, headers=AUTH) as r:
        assert len(decode_orders(await r.read())) == 5


async def test_scripted_faults_each_kind(
    connexi_sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    connexi_sandbox.state.stall_seconds = 0.2
    url = connexi_sandbox.base_url + "/v1/order"
    expected_status = {
        FaultKind.RATE_LIMIT: 429,
        FaultKind.RATE_LIMIT_DATE: 429,
        FaultKind.SERVER_ERROR: 500,
        FaultKind.BAD_GATEWAY: 502,
        FaultKind.UNAVAILABLE: 503,
        FaultKind.GATEWAY_TIMEOUT: 504,
        FaultKind.REDIRECT: 307,
    }
    for kind, status in expected_status.items():
        connexi_sandbox.faults.script("GET /v1/order", kind)
        async with http.get(url, params=DAY, headers=AUTH, allow_redirects=False) as r:
            assert r.status == status, kind
            if kind is FaultKind.RATE_LIMIT:
                assert r.headers["Retry-After"] == "0"
            if kind is FaultKind.RATE_LIMIT_DATE:
                assert r.headers["Retry-After"].endswith("GMT")
            if kind is FaultKind.BAD_GATEWAY:
                assert "<html>" in await r.text()
            if kind is FaultKind.REDIRECT:
                assert r.headers["Location"].startswith("http://127.0.0.2:")
    connexi_sandbox.faults.script("GET", FaultKind.MALFORMED)
    async with http.get(url, params=DAY, headers=AUTH) as r:
        with pytest.raises(json.JSONDecodeError):
            json.loads(await r.read())
    connexi_sandbox.faults.script("GET", FaultKind.DISCONNECT)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.get(url, params=DAY, headers=AUTH) as r:
            await r.read()
    connexi_sandbox.faults.script("GET", FaultKind.TRUNCATE)
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get(url, params=DAY, headers=AUTH) as r:
            await r.read()
    timeout = aiohttp.ClientTimeout(sock_read=0.05)
    for kind in (FaultKind.STALL_HEADERS, FaultKind.STALL_BODY):
        connexi_sandbox.faults.script("GET", kind)
        with pytest.raises(asyncio.TimeoutError):
            async with http.get(url, params=DAY, headers=AUTH, timeout=timeout) as r:
                await r.read()
    # Stalls end: with a patient reader, the body arrives whole.
    connexi_sandbox.faults.script("GET", FaultKind.STALL_BODY)
    async with http.get(url, params=DAY, headers=AUTH) as r:
        assert decode_orders(await r.read())
    assert sum(connexi_sandbox.recorder.faults.values()) == 13


async def test_fault_rate_is_seeded(connexi_sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    async def run(seed: int) -> list[int]:
        connexi_sandbox.faults.clear()
        connexi_sandbox.faults.rate(
            "GET", 0.3, kinds=[FaultKind.UNAVAILABLE, FaultKind.SERVER_ERROR], seed=seed
        )
        statuses = []
        for _ in range(30):
            async with http.get(
                connexi_sandbox.base_url + "/v1/order", params=DAY, headers=AUTH
            ) as r:
                statuses.append(r.status)
        return statuses

    first, again = await run(5), await run(5)
    assert first == again
    assert {503, 500} & set(first)
    assert 200 in first
    assert set(RETRYABLE_FAULTS) >= {FaultKind.UNAVAILABLE}


async def test_latency_and_recorder(connexi_sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    connexi_sandbox.latency_ms = 50
    url = connexi_sandbox.base_url + "/v1/order"

    async def one() -> None:
        async with http.get(url, params=DAY, headers=AUTH) as r:
            await r.read()

    await asyncio.gather(*(one() for _ in range(5)))
    async with http.patch(url, json=[], headers=AUTH) as r:
        assert r.status == 200
    recorder = connexi_sandbox.recorder
    assert recorder.count("GET /v1/order") == 5
    assert recorder.count("GET") == 5
    assert recorder.count("PATCH /v1/order") == 1
    assert recorder.writes == [("PATCH /v1/order", b"[]")]
    assert recorder.max_in_flight == 5
    assert recorder.in_flight == 0
    recorder.reset()
    assert recorder.count("GET") == 0


async def test_cli_prints_base_url_and_stops_on_sigint() -> None:
    import signal
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connexi_async.sandbox", "--port", "0", "--orders", "100",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    lines = [(await process.stdout.readline()).decode() for _ in range(4)]
    assert lines[0].startswith("Connexi sandbox serving 100 orders")
    base_url = lines[1].strip().split("=", 1)[1]
    async with (
        aiohttp.ClientSession() as http,
        http.get(base_url + "/v1/order", params=DAY, headers=AUTH) as r,
    ):
        assert r.status == 200
    process.send_signal(signal.SIGINT)
    _, err = await process.communicate()
    assert process.returncode == 0
    assert b"sandbox stopped" in err
