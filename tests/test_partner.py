"""The partner API, read side: signing, offset pages in windows, shifts, the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connexi_async import (
    AuthenticationError,
    ConfigurationError,
    NewOrder,
    PartnerClient,
    PartnerOrder,
    WindowError,
    decode_partner_orders,
    decode_product_stocks,
    decode_stock_updates,
    partner_signature,
)
from connexi_async._cooperative import run_steps
from connexi_async.sandbox import RETRYABLE_FAULTS, Sandbox

OCT1 = datetime(2026, 10, 1, tzinfo=UTC)
DOC_SECRET = "1IieSn9qXCYu3FeEG1eH05QxTMldKEiNIkLSN/5xtgc="
SPEC = Path(__file__).parent


def partner_for(sandbox: Sandbox, **options: Any) -> PartnerClient:
    defaults: dict[str, Any] = {"backoff_base": 0.001, "backoff_max": 0.01}
    return PartnerClient(**sandbox.partner_credentials, **{**defaults, **options})


def expected_ids(sandbox: Sandbox, since: datetime, until: datetime) -> list[int]:
    return [o.id for o in run_steps(sandbox.dataset.by_order_date(since, until))]


expected_ids_in = expected_ids


async def collect(stream: Any) -> list[Any]:
    async with stream as s:
        return [o async for o in s]


# -- signing ---------------------------------------------------------------------------


def test_both_documented_known_answers() -> None:
    body = (SPEC / "partner_create_example.json").read_bytes()
    assert partner_signature(DOC_SECRET, b"v1/partner/order" + body) == (
        "CxWnlMigAoSQgKcFIxVme0bXYk8Ftk99daJXssYCXC8="
    )
    target = b"/v1/partner/order?since=2018-10-13T13:34:52Z&until=2018-10-16T19:22:39Z&limit=100&offset=0"
    assert partner_signature(DOC_SECRET, target) == "XoPRRDtfNWaGm4nbw7A0LY/c2U0+jg3F3Ay2d3VR3bM="


async def test_the_client_signs_exactly_what_it_sends() -> None:
    """Query values that need percent-encoding included: the sandbox recomputes the
    signature over the raw target and body it received."""
    async with Sandbox(orders=100, days=2) as sandbox, partner_for(sandbox) as client:
        sandbox.partner_signature_form = "slash"
        transport = client._transport
        odd = {"limit": "5", "offset": "0", "note": "a b/ü+&=?#%"}
        response = await transport.request("GET", "/v1/partner/product/stock", params=odd)
        assert response.status == 200
        assert sandbox.recorder.count("GET /v1/partner/product/stock") == 1
        stocks = [p async for p in client.product_stocks(page_size=7)]
        assert len(stocks) == 240


async def test_an_altered_body_or_a_re_encoded_query_is_refused() -> None:
    async with Sandbox(orders=10, days=1) as sandbox, aiohttp.ClientSession() as session:
        creds = sandbox.partner_credentials
        base = sandbox.base_url

        async def send(target: str, signed_target: str, body: bytes, signed_body: bytes) -> int:
            secret = partner_signature(
                creds["partner_secret"], signed_target.encode() + signed_body
            )
            headers = {"partner-id": creds["partner_id"], "secret": secret}
            url = aiohttp.client.URL(base + target, encoded=True)
            async with session.request("GET", url, data=body or None, headers=headers) as r:
                await r.read()
                return r.status

        target = "/v1/partner/product/stock?limit=10&offset=0&q=a%20b"
        assert await send(target, target, b"", b"") == 200
        assert await send(target, target, b'{"x":1}', b'{"x":1}') == 200
        assert await send(target, target, b'{"x":2}', b'{"x":1}') == 401  # one byte
        re_encoded = "/v1/partner/product/stock?limit=10&offset=0&q=a+b"
        assert await send(re_encoded, target, b"", b"") == 401


async def test_a_refused_signature_says_what_to_check() -> None:
    async with Sandbox(orders=10, days=1) as sandbox:
        wrong = {**sandbox.partner_credentials, "partner_secret": "not-the-secret"}
        async with PartnerClient(**wrong) as client:
            with pytest.raises(WindowError) as info:
                await collect(client.orders(OCT1, OCT1 + timedelta(days=1)))
        error = info.value.__cause__
        assert isinstance(error, AuthenticationError)
        assert "partner_secret" in str(error)
        assert "clock is not involved" in str(error)
        assert "sign_leading_slash=False" in str(error)
        assert "not-the-secret" not in str(error) + repr(error.__dict__)

        # A server that signs without the leading slash: the option exists for it.
        sandbox.partner_signature_form = "no-slash"
        async with partner_for(sandbox) as client:
            with pytest.raises(AuthenticationError, match="401"):
                await collect(client.product_stocks())
        async with partner_for(sandbox, sign_leading_slash=False) as client:
            assert len(await collect(client.product_stocks())) == 240


def test_credentials_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    client = PartnerClient(partner_id="B98KL87", partner_secret=DOC_SECRET)
    assert DOC_SECRET not in repr(client) + repr(client._transport) + repr(vars(client._transport))
    monkeypatch.setenv("CONNEXI_PARTNER_ID", "B98KL87")
    monkeypatch.setenv("CONNEXI_PARTNER_SECRET", DOC_SECRET)
    # The v1 client's base URL variable is not the partner's: one shell may hold both.
    monkeypatch.setenv("CONNEXI_BASE_URL", "https://api2.connexi.id")
    assert str(PartnerClient.from_env().base_url) == "https://api.connexi.id"
    monkeypatch.setenv("CONNEXI_PARTNER_BASE_URL", "https://partner.example.test")
    from_env = PartnerClient.from_env(max_attempts=2)
    assert str(from_env.base_url) == "https://partner.example.test"
    monkeypatch.delenv("CONNEXI_PARTNER_SECRET")
    with pytest.raises(ConfigurationError, match="CONNEXI_PARTNER_SECRET"):
        PartnerClient.from_env()


@pytest.mark.parametrize("size", [0, 101, -1, True, 2.5, "100"])
async def test_page_size_is_checked_before_any_request(size: object) -> None:
    async with Sandbox(orders=10, days=1) as sandbox, partner_for(sandbox) as client:
        for make in (
            lambda: client.orders(OCT1, OCT1 + timedelta(days=1), page_size=size),  # type: ignore[arg-type]
            lambda: client.product_stocks(page_size=size),  # type: ignore[arg-type]
            lambda: client.stock_update_history(page_size=size),  # type: ignore[arg-type]
        ):
            with pytest.raises(ConfigurationError, match="page_size"):
                make()
        assert sum(sandbox.recorder.requests.values()) == 0


# -- pages inside windows ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize(
    ("width", "page_size", "concurrency", "ordered"),
    [
        (timedelta(days=1), 100, 8, True),
        (timedelta(hours=7), 1, 16, False),
        (timedelta(days=2), 37, 4, True),
        (timedelta(hours=13), 100, 1, False),
    ],
)
async def test_exactly_once(
    seed: int, width: timedelta, page_size: int, concurrency: int, ordered: bool
) -> None:
    since, until = OCT1 + timedelta(hours=5), OCT1 + timedelta(days=4, hours=3)
    orders = 300 if page_size == 1 else 3_000
    async with Sandbox(orders=orders, seed=seed, days=5) as sandbox, partner_for(sandbox) as client:
        stream = client.orders(
            since,
            until,
            window=width,
            page_size=page_size,
            concurrency=concurrency,
            ordered=ordered,
        )
        got = await collect(stream)
        expected = expected_ids(sandbox, since, until)
    ids = [o.id for o in got]
    assert len(ids) == len(set(ids))
    assert ids == expected if ordered else sorted(ids) == sorted(expected)
    assert all(isinstance(o, PartnerOrder) for o in got)
    assert all(since <= o.order_date < until for o in got)


async def test_an_inclusive_until_never_yields_an_order_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that returns the order at exactly ``until``: runs [a, b) and [b, c) still
    yield each order once, and nothing outside the period."""
    from connexi_async.sandbox._data import Dataset

    real = Dataset.by_order_date

    def inclusive(self: Dataset, start: datetime, end: datetime):  # type: ignore[no-untyped-def]
        return real(self, start, end + timedelta(seconds=1))

    monkeypatch.setattr(Dataset, "by_order_date", inclusive)
    async with Sandbox(orders=2_000, days=4) as sandbox, partner_for(sandbox) as client:
        # Orders exactly on the boundaries, so an inclusive end matters.
        first = run_steps(real(sandbox.dataset, OCT1, OCT1 + timedelta(days=4)))
        b = first[len(first) // 2].order_date
        assert b is not None
        b = b.replace(microsecond=0)
        a, c = OCT1, OCT1 + timedelta(days=4)
        one = await collect(client.orders(a, b, window=timedelta(hours=6)))
        two = await collect(client.orders(b, c, window=timedelta(hours=6)))
        monkeypatch.setattr(Dataset, "by_order_date", real)
        expected = expected_ids(sandbox, a, c)
    ids = [o.id for o in one + two]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(expected)
    assert all(o.order_date < b for o in one)
    assert all(b <= o.order_date for o in two)


async def test_pages_and_windows_share_one_bound() -> None:
    async with Sandbox(orders=4_000, days=6, latency_ms=20) as sandbox:
        async with partner_for(sandbox) as client:
            got = await collect(
                client.orders(OCT1, OCT1 + timedelta(days=6), page_size=50, concurrency=5)
            )
        assert len(got) == len(expected_ids(sandbox, OCT1, OCT1 + timedelta(days=6)))
        assert sandbox.recorder.count("GET /v1/partner/order") > 60
        assert sandbox.recorder.max_in_flight == 5


async def test_a_fault_rate_gives_the_fault_free_result() -> None:
    since, until = OCT1, OCT1 + timedelta(days=5)
    async with Sandbox(orders=3_000, days=5, stall_seconds=0.6) as sandbox:
        async with partner_for(sandbox) as client:
            clean = await collect(client.orders(since, until, page_size=40))
        sandbox.faults.rate("GET /v1/partner/order", 0.1, kinds=RETRYABLE_FAULTS, seed=9)
        async with partner_for(sandbox, read_timeout=0.2, max_attempts=8) as client:
            faulty = await collect(client.orders(since, until, page_size=40, ordered=False))
        assert sum(sandbox.recorder.faults.values()) > 5
    assert sorted(faulty, key=lambda o: o.id) == sorted(clean, key=lambda o: o.id)


# -- offsets that shift --------------------------------------------------------------------


def _late(n: int, when: datetime) -> NewOrder:
    return NewOrder(remote_order_id=f"shift-{n}", marketplace_code="tkpd", order_date=when)


async def _shifting_run(
    detect: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[int], set[int], set[int], set[int]]:
    """Stream a period while orders are inserted and removed between page requests:
    (ids yielded, ids present throughout, ids inserted, ids removed)."""
    from connexi_async import _partner

    if not detect:
        real_read = _partner.PartnerClient._read_pages

        async def blind(self: Any, *args: Any) -> Any:
            records, _problem, read, attempts, pages = await real_read(self, *args)
            return records, None, read, attempts, pages

        monkeypatch.setattr(_partner.PartnerClient, "_read_pages", blind)
    since, until = OCT1, OCT1 + timedelta(days=3)
    async with Sandbox(orders=2_000, days=3) as sandbox:
        before = set(expected_ids(sandbox, since, until))
        inserted: set[int] = set()
        removed: set[int] = set()
        calls = 0

        def change(path: str, query: Mapping[str, str]) -> None:
            nonlocal calls
            offset = int(query["offset"])
            calls += 1
            if offset == 0 or calls > 16:
                return
            since = datetime.fromisoformat(query["since"])
            if calls % 2:  # an order filed early in this window: later offsets move on
                day = since + timedelta(minutes=1, seconds=calls)
                inserted.update(
                    o.id for o in sandbox.add_orders([_late(calls, day)], created_at=day)
                )
            else:  # an order already paged past goes: later offsets move back
                served = expected_ids_in(sandbox, since, datetime.fromisoformat(query["until"]))
                victim = next(i for i in served[:offset] if i in before and i not in removed)
                sandbox.remove_order(victim)
                removed.add(victim)

        sandbox.between_pages(change)
        async with partner_for(sandbox) as client:
            got = await collect(client.orders(since, until, page_size=25, concurrency=1))
    return [o.id for o in got], before - removed, inserted, removed


async def test_shifting_offsets_are_detected_and_the_window_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids, throughout, inserted, removed = await _shifting_run(True, monkeypatch)
    assert inserted
    assert removed
    counts = {i: ids.count(i) for i in set(ids)}
    assert all(counts.get(i) == 1 for i in throughout)  # each exactly once
    assert all(counts.get(i, 0) <= 1 for i in inserted)
    assert max(counts.values()) == 1


async def test_without_shift_detection_orders_are_lost_or_repeated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same run with the detection switched off: the test above would fail."""
    ids, throughout, _, _ = await _shifting_run(False, monkeypatch)
    counts = {i: ids.count(i) for i in set(ids)}
    lost = [i for i in throughout if i not in counts]
    repeated = [i for i, n in counts.items() if n > 1]
    assert lost or repeated


async def test_a_window_that_never_settles_fails_naming_it() -> None:
    async with Sandbox(orders=500, days=2) as sandbox:
        count = 0

        def keep_inserting(path: str, query: Mapping[str, str]) -> None:
            nonlocal count
            count += 1
            when = OCT1 + timedelta(minutes=5, seconds=count)
            sandbox.add_orders([_late(1_000 + count, when)], created_at=when)

        sandbox.between_pages(keep_inserting)
        async with partner_for(sandbox) as client:
            with pytest.raises(WindowError, match="kept changing while it was paged") as info:
                await collect(client.orders(OCT1, OCT1 + timedelta(days=1), page_size=10))
    assert info.value.start == OCT1
    assert "total_record" in str(info.value)


# -- other listings and the documented shapes ---------------------------------------------


async def test_products_and_history() -> None:
    async with Sandbox(orders=10, days=1) as sandbox, partner_for(sandbox) as client:
        stocks = await collect(client.product_stocks(page_size=33, concurrency=3))
        history = await collect(client.stock_update_history())
        recent = await collect(client.stock_update_history(datetime(2026, 2, 1, tzinfo=UTC)))
    assert [p.id for p in stocks] == [p.id for p in sandbox.state.partner.products]
    assert len(history) == 120
    assert 0 < len(recent) < 120
    assert all(r.updated_at >= datetime(2026, 2, 1, tzinfo=UTC) for r in recent)
    assert all(item.channel for r in history for item in r.items)


def test_documented_examples_decode() -> None:
    """The response examples of ../shared/spec/partner/, copied beside this file."""
    examples = SPEC / "partner_examples"
    (order,) = decode_partner_orders((examples / "get_order.json").read_bytes())
    assert order.order_id == "ORD-123"
    assert str(order.tax_total) == "7272.726"
    assert order.delivery_orders[0].delivery_lines[0].order_quantity == 2
    stocks = decode_product_stocks((examples / "get_stock.json").read_bytes())
    assert stocks[0].updated_at is not None  # "update_at" on the wire
    (record,) = decode_stock_updates((examples / "inventory_history.json").read_bytes())
    assert record.items[0].client_response.startswith('{"item"')
    assert record.items[0].success is True


def test_a_bad_partner_field_is_named_by_its_wire_path() -> None:
    from connexi_async import DecodeError

    with pytest.raises(
        DecodeError, match=r"\$\.data\[0\]\.update_stock_history_item\[0\]\.success"
    ):
        decode_stock_updates(b'{"data":[{"id":1,"update_stock_history_item":[{"success":"yes"}]}]}')
    with pytest.raises(DecodeError, match=r"total_record"):
        decode_partner_orders(b'{"data":[],"total_record":-3}')


async def test_partner_routes_have_faults_and_the_recorder() -> None:
    async with Sandbox(orders=50, days=1) as sandbox, partner_for(sandbox) as client:
        sandbox.faults.script("GET /v1/partner/product/stock", "unavailable", "disconnect")
        stocks = await collect(client.product_stocks())
        assert len(stocks) == 240
        assert sandbox.recorder.count("GET /v1/partner/product/stock") == 5
        await asyncio.sleep(0)


async def test_partner_data_follows_each_order_status_and_with_do() -> None:
    since, until = OCT1, OCT1 + timedelta(days=2)
    async with Sandbox(orders=1_500, days=2) as sandbox, partner_for(sandbox) as client:
        plain = await collect(client.orders(since, until))
        full = await collect(client.orders(since, until, with_delivery_orders=True))
    assert [o.id for o in plain] == [o.id for o in full]
    assert not any(o.delivery_orders for o in plain)
    statuses = {o.status for o in full}
    assert statuses <= {"pending", "accepted", "packed", "completed", "cancelled"}
    assert {"pending", "packed", "cancelled"} <= statuses
    for order in full:
        shipped = order.status in ("packed", "completed")
        assert bool(order.airwaybill_number) == shipped
        assert bool(order.delivery_orders) == (order.status in ("accepted", "packed", "completed"))
        for delivery in order.delivery_orders:
            assert delivery.airwaybill_number == order.airwaybill_number
            assert [line.sku for line in delivery.delivery_lines] == [
                li.sku for li in order.line_items
            ]
    keys = [(o.order_date, o.id) for o in full]
    assert keys == sorted(keys)  # stable order: order_date, then id


async def test_the_sandbox_refuses_a_limit_over_100_and_a_missing_with_do() -> None:
    async with Sandbox(orders=10, days=1) as sandbox, partner_for(sandbox) as client:
        transport = client._transport
        from connexi_async import BadRequestError

        with pytest.raises(BadRequestError, match="limit must be from 1 to 100"):
            await transport.request(
                "GET", "/v1/partner/product/stock", params={"limit": "101", "offset": "0"}
            )
        with pytest.raises(BadRequestError, match="withDO"):
            await transport.request(
                "GET",
                "/v1/partner/order",
                params={"since": "2026-10-01T00:00:00Z", "until": "2026-10-02T00:00:00Z"},
            )


# -- servers that get paging wrong (regressions found by review) -------------------------------


@contextlib.asynccontextmanager
async def quirky_server(mode: str, rows: int = 1_000) -> AsyncIterator[str]:
    """A partner server over ``rows`` orders in three days that gets paging wrong in one
    way: its base URL."""
    from aiohttp import web

    from connexi_async._convert import page_body_steps

    orders = [
        PartnerOrder(id=n + 1, order_id=f"Q{n}", order_date=OCT1 + timedelta(minutes=4 * n + 1))
        for n in range(rows)
    ]

    async def handle(request: web.Request) -> web.Response:
        q = request.query
        since = datetime.fromisoformat(q["since"])
        until = datetime.fromisoformat(q["until"])
        limit, offset = int(q["limit"]), int(q["offset"])
        found = [o for o in orders if since <= o.order_date < until]  # type: ignore[operator]
        total: int | None = len(found)
        if mode == "stray" and since == OCT1:
            found.append(orders[-1])  # an order of day 3, in day 1's answer
            total = len(found)
        if mode in ("ignore_offset", "no_total_ignore_offset"):
            offset = 0
        if mode == "overlap" and offset:
            offset -= 1
        if mode == "ignore_limit":
            limit = 1_000
        if mode == "capped":
            total = min(len(found), 150)
        if mode == "huge_total":
            total = 100_000
        page = found[offset : offset + limit]
        body = b"".join(
            run_steps(
                page_body_steps(
                    page, PartnerOrder, total=total or 0, offset=offset, limit=limit, reference="r"
                )
            )
        )
        if mode == "no_total_ignore_offset":
            body = body.replace(b',"total_record":', b',"x":')
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/partner/order", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def quirky_client(base: str) -> PartnerClient:
    return PartnerClient(
        partner_id="p", partner_secret="s", base_url=base, backoff_base=0.001, backoff_max=0.01
    )


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("ignore_offset", "does not honour offset"),
        ("no_total_ignore_offset", "does not honour offset"),
        ("ignore_limit", "does not honour limit"),
        ("capped", "caps or understates total_record"),
        ("overlap", "does not begin with the record"),
        ("huge_total", "records where total_record=100000 says"),
    ],
)
async def test_a_server_that_pages_wrongly_is_an_error_never_a_loss(mode: str, says: str) -> None:
    async with quirky_server(mode) as base, quirky_client(base) as client:
        stream = client.orders(OCT1, OCT1 + timedelta(days=3), page_size=50)
        with pytest.raises(WindowError, match=says) as info:
            await asyncio.wait_for(collect(stream), 60)
    assert info.value.start == OCT1


async def test_an_order_from_a_far_window_is_yielded_once() -> None:
    async with quirky_server("stray") as base, quirky_client(base) as client:
        got = await collect(client.orders(OCT1, OCT1 + timedelta(days=3), page_size=50))
    ids = [o.id for o in got]
    assert len(ids) == len(set(ids)) == 1_000


async def test_a_removal_and_an_insertion_between_pages_lose_nothing() -> None:
    """Regression: one order removed and one added keep total_record and every page's
    count as they were; only the seams between overlapping pages show the move."""
    since, until = OCT1, OCT1 + timedelta(days=1)
    async with Sandbox(orders=600, days=1) as sandbox:
        before = expected_ids(sandbox, since, until)
        done = False

        def swap(path: str, query: Mapping[str, str]) -> None:
            nonlocal done
            if done or query["offset"] != "0":
                return
            done = True
            sandbox.remove_order(before[5])  # already paged
            late = until - timedelta(minutes=1)
            sandbox.add_orders([_late(99, late)], created_at=late)

        sandbox.between_pages(swap)
        async with partner_for(sandbox) as client:
            got = [o.id for o in await collect(client.orders(since, until, page_size=50))]
    assert done
    assert set(before) - {before[5]} <= set(got)
    assert len(got) == len(set(got))


def test_partner_client_defaults_and_checks() -> None:
    client = PartnerClient(partner_id="B98KL87", partner_secret="sécret€ with ünïcode")
    assert str(client.base_url) == "https://api.connexi.id"
    unslashed = PartnerClient(partner_id="B", partner_secret="s", sign_leading_slash=False)
    hint = unslashed._transport._auth.hints[AuthenticationError]
    assert "sign_leading_slash=True" in hint
    with pytest.raises(ConfigurationError, match="ordered"):
        client.orders(OCT1, OCT1 + timedelta(days=1), ordered="no")  # type: ignore[arg-type]
