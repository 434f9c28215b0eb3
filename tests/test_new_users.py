"""What new users hit: one client across event loops, serialising models."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aiohttp
import pytest

from connexi_async import (
    ConfigurationError,
    ConnexiClient,
    LineItem,
    Location,
    NewOrder,
    Order,
    StatusUpdate,
    decode_orders,
    encode_orders,
    to_dict,
    to_json,
)
from connexi_async.sandbox import Sandbox
from connexi_async.sandbox._server import Credentials

OCT1 = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def sandbox_in_a_thread() -> Iterator[Credentials]:
    """A sandbox on a loop of its own, so this test's code can run asyncio.run() twice."""
    ready = threading.Event()
    box: dict[str, object] = {}

    def serve() -> None:
        async def main() -> None:
            async with Sandbox(orders=200) as sandbox:
                box["credentials"] = sandbox.credentials
                box["stop"] = stop = asyncio.Event()
                box["loop"] = asyncio.get_running_loop()
                ready.set()
                await stop.wait()

        asyncio.run(main())

    thread = threading.Thread(target=serve)
    thread.start()
    assert ready.wait(30)
    yield box["credentials"]  # type: ignore[misc]
    loop: asyncio.AbstractEventLoop = box["loop"]  # type: ignore[assignment]
    loop.call_soon_threadsafe(box["stop"].set)  # type: ignore[attr-defined]
    thread.join(30)


def test_one_client_across_two_asyncio_runs(sandbox_in_a_thread: Credentials) -> None:
    client = ConnexiClient(**sandbox_in_a_thread)

    async def fetch() -> int:
        return len(await client.fetch_orders(OCT1, OCT1 + timedelta(days=30)))

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Unclosed client session", no "loop is closed"
        first = asyncio.run(fetch())
        second = asyncio.run(fetch())
        asyncio.run(client.aclose())
    assert first == second == 200


def test_a_user_session_from_another_loop_is_a_clear_error(
    sandbox_in_a_thread: Credentials,
) -> None:
    async def make_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    session = asyncio.run(make_session())
    client = ConnexiClient(**sandbox_in_a_thread, session=session)

    async def fetch() -> None:
        await client.fetch_orders(OCT1, OCT1 + timedelta(days=1))

    with pytest.raises(ConfigurationError, match="belongs to another event loop"):
        asyncio.run(fetch())
    session.detach()  # ours to tidy: its loop is gone


def test_to_json_and_to_dict_follow_the_encoders_rules() -> None:
    order = Order(
        id=111,
        total=Decimal("47500"),
        tax_rate=Decimal("0.10"),
        created_at=datetime(2026, 10, 1, 7, tzinfo=UTC),
        line_items=(LineItem(id=1, unit_price=Decimal("0.1")),),
    )
    text = to_json(order)
    assert text == encode_orders([order]).decode()[len('{"orders":[') : -2]
    assert decode_orders(f"[{text}]") == [order]
    data = to_dict(order)
    assert data["tax_rate"] == Decimal("0.10")
    assert data["total"] == 47500
    assert data["created_at"] == "2026-10-01T07:00:00Z"
    assert "updated_at" not in data  # unset timestamps are left out, as when sending
    assert data["line_items"][0]["unit_price"] == Decimal("0.1")
    assert to_dict(StatusUpdate(id=1, status="accepted")) == {"id": 1, "status": "accepted"}
    assert to_dict(Location(location_code="ID"))["location_code"] == "ID"
    assert to_dict(NewOrder(remote_order_id="9"))["remote_order_id"] == "9"


# -- strict write paths ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b'[{"totl": 150000}]', "$[0].totl: unknown field (did you mean total?)"),
        (
            b'[{"order_date": "2026-11-27 10:00:00"}]',
            '$[0].order_date: "2026-11-27 10:00:00" has no time zone',
        ),
        (
            b'{"orders": [{"line_items": [{"skuu": "A"}]}]}',
            "$.orders[0].line_items[0].skuu: unknown field (did you mean sku?)",
        ),
    ],
)
def test_orders_written_by_hand_are_checked_strictly(payload: bytes, fragment: str) -> None:
    from connexi_async import DecodeError, decode_new_orders

    with pytest.raises(DecodeError) as info:
        decode_new_orders(payload, strict=True)
    assert fragment in str(info.value)
    decode_new_orders(payload)  # what a server sends stays tolerant


def test_strict_accepts_what_is_right() -> None:
    from connexi_async import decode_new_orders

    (order,) = decode_new_orders(
        b'[{"remote_order_id": "1", "order_date": "2026-11-27T10:00:00+07:00", "total": 5}]',
        strict=True,
    )
    assert order.order_date == datetime(2026, 11, 27, 3, tzinfo=UTC)


# -- a fault aimed at one window ---------------------------------------------------------


async def test_a_fault_can_be_aimed_at_one_window(connexi_sandbox: Sandbox) -> None:
    from connexi_async import WindowError

    target = "2026-10-02T00:00:00Z"
    connexi_sandbox.faults.script(
        "GET /v1/order", *["unavailable"] * 10, when=lambda query: query.get("start") == target
    )
    async with ConnexiClient(
        **connexi_sandbox.credentials, backoff_base=0.001, backoff_max=0.01, max_attempts=3
    ) as client:
        got: list[int] = []
        with pytest.raises(WindowError) as info:
            async for order in client.orders(OCT1, OCT1 + timedelta(days=4), ordered=False):
                got.append(order.id)
    assert info.value.start == datetime(2026, 10, 2, tzinfo=UTC)
    first_day = connexi_sandbox.order_ids(OCT1, OCT1 + timedelta(days=1))
    assert set(first_day) <= set(got)  # the other windows were served
    assert connexi_sandbox.recorder.faults["unavailable"] == 3  # exactly that window's tries


def test_the_sandbox_cache_is_small_by_default_and_an_option() -> None:
    assert Sandbox().state.cache_bytes == 64 * 1024 * 1024
    assert Sandbox(cache_bytes=1 << 20).state.cache_bytes == 1 << 20


def test_a_misspelt_option_is_named_with_the_closest_one() -> None:
    """Regression: a misspelt option raised a TypeError naming a private class."""
    from connexi_async import ConfigurationError, ConnexiClient, PartnerClient

    with pytest.raises(ConfigurationError, match="unknown option 'timout'; did you mean 'timeout'"):
        ConnexiClient(api_key="k", api_secret="s", timout=5)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="'max_attemps'.*'max_attempts'"):
        PartnerClient(partner_id="p", partner_secret="s", max_attemps=2)  # type: ignore[call-arg]
