"""The partner API, write side: checks before sending, partial success, the two
exactly-once traps over real HTTP, products, stock jobs, the sandbox and the CLI."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import pickle
import re
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from connexi_async import (
    Accept,
    BadRequestError,
    Cancel,
    ChannelStock,
    Complete,
    ConfigurationError,
    CreateFailure,
    CreateResult,
    DecodeError,
    EncodeError,
    InvalidTransitionError,
    NewPartnerLineItem,
    NewPartnerOrder,
    NewProduct,
    OutcomeUnknownError,
    Pack,
    PartialFailureError,
    PartnerClient,
    PartnerOrder,
    PartnerVariant,
    StatusFailure,
    StatusSuccess,
    StockUpdate,
    StockUpdateTimeoutError,
    TransportError,
    decode_new_partner_orders,
)
from connexi_async._convert import (
    decode_stock_update,
    new_products_body_steps,
    new_products_steps,
    status_changes_body_steps,
    status_changes_steps,
)
from connexi_async._cooperative import run_steps
from connexi_async._writes import (
    check_changes,
    check_new_orders,
    check_stock_update,
    status_result,
)
from connexi_async.sandbox import Sandbox

OCT = datetime(2026, 10, 3, 9, 0, tzinfo=UTC)
DOC_SECRET = "1IieSn9qXCYu3FeEG1eH05QxTMldKEiNIkLSN/5xtgc="


def partner_for(sandbox: Sandbox, **options: Any) -> PartnerClient:
    defaults: dict[str, Any] = {"backoff_base": 0.001, "backoff_max": 0.01}
    return PartnerClient(**sandbox.partner_credentials, **{**defaults, **options})


def new_order(n: int, *, when: datetime = OCT, **changes: Any) -> NewPartnerOrder:
    fields: dict[str, Any] = {
        "order_id": f"ORD-{n}",
        "order_date": when + timedelta(minutes=n),
        "customer_reference": f"CUST{n}",
        "delivery_name": "Siti Rahma",
        "delivery_email": f"buyer{n}@example.id",
        "delivery_street_address": "Jalan Anggrek No. 35",
        "delivery_city": "Jakarta Barat",
        "delivery_region": "DKI Jakarta",
        "delivery_suburb": "Kembangan",
        "delivery_country": "Indonesia",
        "delivery_post_code": "11650",
        "delivery_method": "JNE REG",
        "payment_method": "COD",
        "line_items": (
            NewPartnerLineItem(
                sku="TOP0001",
                name="Kaos",
                quantity=2,
                raw_price=Decimal("45000.50"),
                discount=Decimal("5000"),
            ),
        ),
    }
    return NewPartnerOrder(**{**fields, **changes})


def new_product(sku: str) -> NewProduct:
    return NewProduct(
        sku=sku,
        partner_sku=f"P-{sku}",
        partner_variant=PartnerVariant(variant_sku=f"P-{sku}-S", variant_name="S"),
        name=f"Product {sku}",
        description="A product",
        currency="IDR",
        price=Decimal("340000"),
        weight=Decimal("250"),
        height=Decimal("86"),
        length=Decimal("95.5"),
        width=Decimal("98"),
    )


async def server_orders(client: PartnerClient, order_ids: set[str]) -> list[PartnerOrder]:
    """Every order the server holds with these order_ids (each as often as it holds it)."""
    async with client.orders(OCT - timedelta(days=2), OCT + timedelta(days=5)) as stream:
        return [o async for o in stream if o.order_id in order_ids]


async def pending_orders(client: PartnerClient, count: int) -> list[PartnerOrder]:
    async with client.orders(datetime(2026, 10, 1, tzinfo=UTC), OCT) as stream:
        found = [o async for o in stream if o.status == "pending"]
    assert len(found) >= count
    return found[:count]


# -- checked before sending ----------------------------------------------------------------


async def test_every_missing_field_of_every_order_is_named_and_nothing_is_sent() -> None:
    broken = [
        new_order(1, customer_reference="", delivery_city=" "),
        new_order(2, order_date=None, payment_method=""),
        new_order(3, line_items=()),
        new_order(4, line_items=(NewPartnerLineItem(sku="A", quantity=0),)),
    ]
    async with Sandbox(orders=10, days=1) as sandbox, partner_for(sandbox) as client:
        with pytest.raises(EncodeError) as caught:
            await client.create_orders(broken)
        assert sandbox.recorder.count("POST") == 0
    paths = {e.path for e in caught.value.errors}
    assert paths == {
        "orders[0].customer_reference",
        "orders[0].delivery_city",
        "orders[1].order_date",
        "orders[1].payment_method",
        "orders[2].line_items",
        "orders[3].line_items[0].name",
        "orders[3].line_items[0].quantity",
        "orders[3].line_items[0].raw_price",
    }
    for path in paths:
        assert path in str(caught.value)


@pytest.mark.parametrize(
    ("order", "fragment"),
    [
        (new_order(1, line_items=(NewPartnerLineItem(sku="A", name="a", quantity=1, raw_price=1.5),)), "binary floats"),  # type: ignore[arg-type]
        (new_order(1, line_items=(NewPartnerLineItem(sku="A", name="a", quantity=1, raw_price=Decimal("NaN")),)), "NaN"),
        (new_order(1, order_date=datetime(2026, 10, 3, 9)), "naive"),
        (new_order(1, shipping_total=Decimal("-1")), "negative"),
        (new_order(1, status="shipped"), "status"),
    ],
)  # fmt: skip
async def test_floats_nan_naive_times_and_unknown_statuses_are_refused(
    order: NewPartnerOrder, fragment: str
) -> None:
    async with Sandbox(orders=10, days=1) as sandbox, partner_for(sandbox) as client:
        with pytest.raises(EncodeError, match=fragment):
            await client.create_orders([order])
        assert sandbox.recorder.count("POST") == 0


def test_a_file_of_orders_refuses_unknown_fields_and_zoneless_times() -> None:
    text = json.dumps(
        {"orders": [{"order_id": "A", "order_date": "2026-10-03T09:00:00", "line_items": [{"sku": "x", "unit_price": 5}]}, {"order_idd": "B"}]}
    )  # fmt: skip
    with pytest.raises(DecodeError) as caught:
        decode_new_partner_orders(text, strict=True)
    message = str(caught.value)
    assert "$.orders[0].order_date" in message
    assert "no time zone" in message
    assert "$.orders[0].line_items[0].unit_price: unknown field" in message
    assert "did you mean order_id" in message


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ([Accept(1, OCT), Cancel(1, "x", OCT)], "one change per order"),
        ([Accept(1)], "updated_at: required"),
        ([Accept(1, datetime(2026, 10, 1))], "naive"),
        ([Pack(1, "", OCT)], "airwaybill_number"),
        ([Accept(0, OCT)], "order id"),
        ([{"id": 1}], "expected Accept or Pack"),
    ],
)
def test_changes_are_checked_before_sending(changes: list[Any], fragment: str) -> None:
    with pytest.raises(EncodeError, match=fragment):
        run_steps(check_changes(changes))


@pytest.mark.parametrize(
    ("update", "fragment"),
    [
        (StockUpdate(sku="A", available_stock=-1), "at least 0"),
        (StockUpdate(sku="A", available_stock=5, buffer_stock=6), "more than available_stock"),
        (StockUpdate(sku="A", available_stock=True), "expected an int, got bool"),
        (StockUpdate(sku="", available_stock=1), "update.sku"),
        (StockUpdate(sku="A", available_stock=1, channel_stock=(ChannelStock(code="bklp", qty=1), ChannelStock(code="bklp", qty=2))), "twice"),
        (StockUpdate(sku="A", available_stock=1, channel_stock=(ChannelStock(code="bklp", qty=-3),)), "qty"),
    ],
)  # fmt: skip
def test_stock_updates_are_checked_before_sending(update: StockUpdate, fragment: str) -> None:
    with pytest.raises(EncodeError, match=fragment):
        check_stock_update(update)


def test_transitions_the_documentation_does_not_allow_are_refused_locally() -> None:
    def order(status: str) -> PartnerOrder:
        return PartnerOrder(id=7, status=status, updated_at=OCT)

    assert Accept.of(order("pending")) == Accept(7, OCT)
    assert Pack.of(order("accepted"), "AWB1") == Pack(7, "AWB1", OCT)
    assert Complete.of(order("packed"), "Yosua") == Complete(7, "Yosua", OCT)
    assert Cancel.of(order("accepted"), "stock").cancel_reason == "stock"
    assert Accept.of(order("accepted")).status == "accepted"  # the same status: a no-op
    for make, status in [
        (lambda o: Accept.of(o), "completed"),
        (lambda o: Pack.of(o, "AWB"), "pending"),
        (lambda o: Complete.of(o), "accepted"),
        (lambda o: Cancel.of(o), "completed"),
    ]:
        with pytest.raises(InvalidTransitionError) as caught:
            make(order(status))
        assert caught.value.current == status
        assert pickle.loads(pickle.dumps(caught.value)).order_id == 7


# -- the retry trap, as pure logic -----------------------------------------------------------


_KINDS = [Accept, Pack, Complete, Cancel]


@given(
    st.lists(
        st.tuples(st.sampled_from(range(4)), st.sampled_from(["ok", "same", "other", "silent"])),
        max_size=30,
    ),
    st.booleans(),
)
def test_status_result_accounts_for_every_change_once(
    plan: list[tuple[int, str]], retried: bool
) -> None:
    changes, succeeded, failed = [], [], []
    statuses = ["pending", "accepted", "packed", "completed", "cancelled"]
    for order_id, (kind, outcome) in enumerate(plan, 1):
        cls = _KINDS[kind]
        change = cls(order_id, updated_at=OCT)
        changes.append(change)
        if outcome == "ok":
            succeeded.append(StatusSuccess(id=order_id, status=cls.status, updated_at=OCT))
        elif outcome == "same":
            failed.append(StatusFailure(id=order_id, status=cls.status.upper(), message="stale"))
        elif outcome == "other":
            other = next(s for s in statuses if s != cls.status)
            failed.append(StatusFailure(id=order_id, status=other, message="stale"))
    result = run_steps(status_result(changes, succeeded, failed, retried=retried))
    ids = [s.id for s in result.succeeded] + [f.id for f in result.failed]
    assert sorted(ids) == [c.id for c in changes]
    for (_, outcome), change in zip(plan, changes, strict=True):
        won = any(s.id == change.id for s in result.succeeded)
        assert won == (outcome == "ok" or (outcome == "same" and retried))


# -- conversion --------------------------------------------------------------------------------


def test_products_are_sent_under_both_spellings_and_read_from_either() -> None:
    body = b"".join(run_steps(new_products_body_steps([new_product("A")])))
    sent = json.loads(body)["products"][0]
    assert sent["description"] == sent["decription"] == "A product"
    assert sent["length"] == sent["lenght"] == 95.5
    for spelling in ({"decription": "d", "lenght": 9}, {"description": "d", "length": 9}):
        (product,) = run_steps(
            new_products_steps(json.dumps({"products": [spelling]}).encode(), "x")
        )
        assert product.description == "d"
        assert product.length == Decimal(9)


def test_status_change_bodies_round_trip() -> None:
    changes = [Accept(1, OCT), Pack(2, "AWB", OCT), Complete(3, "Yosua", OCT), Cancel(4, "", OCT)]
    body = b"".join(run_steps(status_changes_body_steps(changes)))
    assert list(json.loads(body)) == ["accepted", "packed", "completed", "cancelled"]
    groups = run_steps(status_changes_steps(body, "x"))
    assert [c for group in groups.values() for c in group] == changes
    update = StockUpdate(
        sku="A", available_stock=3, channel_stock=(ChannelStock(code="bklp", qty=1),)
    )
    assert decode_stock_update(json.dumps({"sku": "A", "warehouse": "default", "available_stock": 3, "channel_stock": [{"code": "bklp", "qty": 1}]}).encode()) == update  # fmt: skip


# -- over real HTTP: signing ---------------------------------------------------------------------


async def test_post_and_patch_bodies_are_signed_as_documented() -> None:
    """The sandbox recomputes the HMAC over the raw target and body; the expected value
    is computed here independently, with hmac and base64, over the recorded bytes."""
    async with (
        Sandbox(orders=200, days=3, partner_secret=DOC_SECRET) as sandbox,
        partner_for(sandbox) as client,
    ):
        for form, sign_slash in (("slash", True), ("no-slash", False)):
            sandbox.partner_signature_form = form
            async with partner_for(sandbox, sign_leading_slash=sign_slash) as signer:
                result = await signer.create_orders([new_order(1 if sign_slash else 2)])
                assert len(result.created) == 1
                await signer.change_statuses([Accept.of(result.created[0])])
        route, body = sandbox.recorder.writes[-1]
        assert route == "PATCH /v1/partner/order/status"
        digest = hmac.new(DOC_SECRET.encode(), b"v1/partner/order/status" + body, hashlib.sha256)
        expected = base64.b64encode(digest.digest()).decode()
        auth = client._transport._auth
        assert auth.headers("/v1/partner/order/status", body)["secret"] != expected  # slash form
        no_slash = PartnerClient(
            partner_id="sandbox-partner", partner_secret=DOC_SECRET, sign_leading_slash=False
        )
        assert (
            no_slash._transport._auth.headers("/v1/partner/order/status", body)["secret"]
            == expected
        )


# -- over real HTTP: creating orders ------------------------------------------------------------


async def test_partial_success_is_a_result() -> None:
    async with Sandbox(orders=200, days=3) as sandbox, partner_for(sandbox) as client:
        taken = "3000000008"  # a generated order's remote id
        result = await client.create_orders([new_order(1), new_order(2, order_id=taken)])
        assert [o.order_id for o in result.created] == ["ORD-1"]
        created = result.created[0]
        assert created.status == "pending"
        assert created.delivery_email == "buyer1@example.id"
        assert created.line_items[0].unit_price == Decimal("40000.50")
        assert created.subtotal == Decimal("80001.00")
        (failure,) = result.failed
        assert failure.order_id == taken
        assert failure.already_exists
        assert "already exists" in failure.reason
        assert not result.ok
        with pytest.raises(PartialFailureError, match=taken) as caught:
            result.raise_for_failures()
        assert caught.value.result is result
        # The created order is readable, once, with what the create returned.
        assert await server_orders(client, {"ORD-1"}) == [created]


async def test_an_unknown_outcome_raises_by_default_and_reconcile_finishes_it() -> None:
    orders = [new_order(n) for n in range(1, 6)]
    async with Sandbox(orders=200, days=3) as sandbox, partner_for(sandbox) as client:
        sandbox.faults.script("POST /v1/partner/order", "disconnect_after")
        with pytest.raises(OutcomeUnknownError) as caught:
            await client.create_orders(orders)
        error = caught.value
        assert error.orders == tuple(orders)
        assert error.sent_at is not None
        assert "reconcile" in str(error)
        assert sandbox.recorder.count("POST /v1/partner/order") == 1
        result = await client.reconcile(error)
        assert sorted(o.order_id for o in result.created) == [o.order_id for o in orders]
        assert result.failed == ()
        assert sandbox.recorder.count("POST /v1/partner/order") == 1  # found: none re-sent
        held = await server_orders(client, {o.order_id for o in orders})
        assert sorted(o.order_id for o in held) == [o.order_id for o in orders]


@pytest.mark.parametrize("fault", ["disconnect_after", "server_error", "truncate"])
async def test_reconcile_creates_every_order_exactly_once(fault: str) -> None:
    """The fault hits the second of three batches, after the sandbox processed it (or
    in its answer): every order exists once on the server and the result says so."""
    orders = [new_order(n) for n in range(1, 8)]
    async with (
        Sandbox(orders=200, days=3) as sandbox,
        partner_for(sandbox, max_batch=3) as client,
    ):
        posts = 0

        def second(_: object) -> bool:
            nonlocal posts
            posts += 1
            return posts == 2

        if fault == "server_error":
            sandbox.faults.script("POST /v1/partner/order", "disconnect", when=second)
        else:
            sandbox.faults.script("POST /v1/partner/order", fault, when=second)
        result = await client.create_orders(orders, on_unknown="reconcile")
        held = await server_orders(client, {o.order_id for o in orders})
    assert sorted(o.order_id for o in held) == [o.order_id for o in orders]  # once each
    assert sorted(o.order_id for o in result.created) == [o.order_id for o in orders]
    assert {o.id for o in result.created} == {o.id for o in held}
    assert result.failed == ()


async def test_an_order_the_lookup_missed_is_resolved_when_the_resend_says_it_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A listing that lags behind writes: the lookup misses one order, the re-send is
    refused as existing, and a second lookup finds it. Never a failure of ours."""
    orders = [new_order(n) for n in range(1, 4)]
    async with Sandbox(orders=200, days=3) as sandbox, partner_for(sandbox) as client:
        real = client._find_orders
        calls = 0

        async def lagging(wanted: list[NewPartnerOrder], margin: timedelta) -> dict[str, Any]:
            nonlocal calls
            calls += 1
            found = await real(wanted, margin)
            if calls == 1:
                found.pop("ORD-2", None)
            return found

        monkeypatch.setattr(client, "_find_orders", lagging)
        sandbox.faults.script("POST /v1/partner/order", "disconnect_after")
        result = await client.create_orders(orders, on_unknown="reconcile")
        assert calls == 2
        assert sandbox.recorder.count("POST /v1/partner/order") == 2
        _, resent = sandbox.recorder.writes[-1]
        assert [o["order_id"] for o in json.loads(resent)["orders"]] == ["ORD-2"]
        assert sorted(o.order_id for o in result.created) == ["ORD-1", "ORD-2", "ORD-3"]
        assert result.failed == ()
        assert len(await server_orders(client, {"ORD-2"})) == 1


async def test_an_existing_order_id_on_a_first_send_is_a_failure() -> None:
    async with Sandbox(orders=200, days=3) as sandbox, partner_for(sandbox) as client:
        first = await client.create_orders([new_order(1)])
        again = await client.create_orders([new_order(1)], on_unknown="reconcile")
        assert first.ok
        assert again.created == ()
        assert again.failed[0].already_exists


async def test_on_unknown_and_reconcile_arguments_are_checked() -> None:
    async with Sandbox(orders=10, days=1) as sandbox, partner_for(sandbox) as client:
        with pytest.raises(ConfigurationError, match="on_unknown"):
            await client.create_orders([new_order(1)], on_unknown="retry")
        with pytest.raises(ConfigurationError, match="raised by create_orders"):
            await client.reconcile(OutcomeUnknownError("x"))
        with pytest.raises(ConfigurationError, match="margin"):
            await client.create_orders([new_order(1)], margin=timedelta.max)
        with pytest.raises(ConfigurationError, match="max_batch"):
            client.max_batch = -1
        assert await client.create_orders([]) == CreateResult()
        assert sandbox.recorder.count("POST") == 0


# -- over real HTTP: status changes --------------------------------------------------------------


async def test_status_changes_succeed_and_fail_per_order() -> None:
    async with Sandbox(orders=300, days=3) as sandbox, partner_for(sandbox) as client:
        a, b, c = await pending_orders(client, 3)
        stale = Accept(b.id, b.updated_at - timedelta(seconds=1))  # type: ignore[operator]
        wrong = Pack(c.id, "AWB1", c.updated_at)  # pending cannot be packed
        result = await client.change_statuses([Accept.of(a), stale, wrong, Accept(999_999, OCT)])
        (ok,) = result.succeeded
        assert ok.id == a.id
        assert ok.status == "accepted"
        assert ok.updated_at is not None
        assert ok.updated_at > a.updated_at  # type: ignore[operator]
        failed = {f.id: f for f in result.failed}
        assert failed[b.id].status == "pending"
        assert failed[b.id].updated_at == b.updated_at  # the current one, to retry with
        assert "cannot become packed" in failed[c.id].message
        assert "not found" in failed[999_999].message
        # The re-read-and-retry recipe of docs/partner.md.
        fresh = {o.id: o for o in await server_orders_by_id(client, {a.id, b.id})}
        assert fresh[a.id].status == "accepted"
        assert fresh[a.id].updated_at == ok.updated_at
        retry = await client.change_statuses([Accept.of(fresh[b.id])])
        assert retry.ok
        # Then packed, completed; a cancelled order can go nowhere.
        packed = await client.change_statuses([Pack(a.id, "AWB9", ok.updated_at)])
        assert packed.succeeded[0].status == "packed"
        (read,) = await server_orders_by_id(client, {a.id})
        assert read.airwaybill_number == "AWB9"


async def server_orders_by_id(client: PartnerClient, ids: set[int]) -> list[PartnerOrder]:
    async with client.orders(datetime(2026, 10, 1, tzinfo=UTC), OCT) as stream:
        return [o async for o in stream if o.id in ids]


async def test_a_patch_whose_answer_was_lost_is_not_called_a_failure() -> None:
    """The retry trap: the first PATCH is applied and its answer lost; the retry meets
    a stale updated_at. The order is what was asked for, so it succeeded."""
    async with Sandbox(orders=300, days=3) as sandbox, partner_for(sandbox) as client:
        a, b = await pending_orders(client, 2)
        sandbox.faults.script("PATCH /v1/partner/order/status", "disconnect_after")
        result = await client.change_statuses([Accept.of(a), Cancel.of(b, "no stock")])
        assert sandbox.recorder.count("PATCH /v1/partner/order/status") == 2
        assert result.failed == ()
        assert {(s.id, s.status) for s in result.succeeded} == {
            (a.id, "accepted"),
            (b.id, "cancelled"),
        }
        held = {o.id: o for o in await server_orders_by_id(client, {a.id, b.id})}
        assert {s.id: s.updated_at for s in result.succeeded} == {
            i: o.updated_at for i, o in held.items()
        }


async def test_a_real_conflict_is_reported_even_when_the_status_matches() -> None:
    """Someone else accepted the order first (no retry of ours): a failure, with the
    current updated_at."""
    async with Sandbox(orders=300, days=3) as sandbox, partner_for(sandbox) as client:
        (a,) = await pending_orders(client, 1)
        first = await client.change_statuses([Accept.of(a)])
        second = await client.change_statuses([Accept.of(a)])
        assert first.ok
        (failure,) = second.failed
        assert failure.status == "accepted"
        assert failure.updated_at == first.succeeded[0].updated_at


async def test_a_patch_without_retries_that_loses_its_answer_raises() -> None:
    async with (
        Sandbox(orders=300, days=3) as sandbox,
        partner_for(sandbox, max_attempts=1) as client,
    ):
        (a,) = await pending_orders(client, 1)
        sandbox.faults.script("PATCH /v1/partner/order/status", "disconnect_after")
        with pytest.raises(TransportError):
            await client.change_statuses([Accept.of(a)])


async def test_many_changes_go_out_in_batches() -> None:
    async with Sandbox(orders=400, days=3) as sandbox, partner_for(sandbox, max_batch=3) as client:
        orders = await pending_orders(client, 7)
        result = await client.change_statuses([Accept.of(o) for o in orders])
        assert len(result.succeeded) == 7
        assert sandbox.recorder.count("PATCH /v1/partner/order/status") == 3


# -- over real HTTP: products and stock ------------------------------------------------------------


async def test_products_partial_success_and_reconcile() -> None:
    async with Sandbox(orders=10, days=1) as sandbox, partner_for(sandbox) as client:
        async with client.product_stocks() as stream:
            existing = await anext(aiter(stream))
        result = await client.create_products([new_product("NEW-1"), new_product(existing.sku)])
        assert [p.sku for p in result.created] == ["NEW-1"]
        assert result.failed[0].partner_sku == f"P-{existing.sku}"
        assert result.failed[0].already_exists
        sandbox.faults.script("POST /v1/partner/product", "disconnect_after")
        with pytest.raises(OutcomeUnknownError, match="products"):
            await client.create_products([new_product("NEW-2")])
        sandbox.faults.script("POST /v1/partner/product", "disconnect_after")
        done = await client.create_products(
            [new_product("NEW-2"), new_product("NEW-3")], on_unknown="reconcile"
        )
        assert sorted(p.sku for p in done.created) == ["NEW-2", "NEW-3"]
        async with client.product_stocks() as stream:
            skus = [p.sku async for p in stream]
        assert sorted(s for s in skus if s.startswith("NEW-")) == ["NEW-1", "NEW-2", "NEW-3"]


async def test_a_stock_update_is_a_job_to_wait_for() -> None:
    async with (
        Sandbox(orders=10, days=1, stock_update_delay=0.2) as sandbox,
        partner_for(sandbox) as client,
    ):
        await client.create_products([new_product("STK-1")])
        update = StockUpdate(
            sku="STK-1",
            available_stock=100,
            buffer_stock=5,
            channel_stock=(ChannelStock(code="bklp", qty=30), ChannelStock(code="nope", qty=1)),
        )
        code = await client.update_stock(update)
        record = await asyncio.wait_for(client.wait_for_stock_update(code, timeout=30), 60)
        assert record.transaction_code == code
        assert record.finished_at is not None
        assert [(i.channel, i.success) for i in record.items] == [("bklp", True), ("nope", False)]
        async with client.product_stocks() as stream:
            (stock,) = [p async for p in stream if p.sku == "STK-1"]
        assert stock.stock == 100
        _, body = sandbox.recorder.writes[-1]
        assert json.loads(body)["sync_stock"] is False


async def test_a_job_that_does_not_finish_in_time_raises_with_its_code() -> None:
    async with (
        Sandbox(orders=10, days=1, stock_update_delay=3600) as sandbox,
        partner_for(sandbox) as client,
    ):
        code = await client.update_stock(StockUpdate(sku="ANY", available_stock=1))
        with pytest.raises(StockUpdateTimeoutError) as caught:
            await client.wait_for_stock_update(code, timeout=0.3, poll_interval=0.05)
        assert caught.value.transaction_code == code
        assert caught.value.last_seen is not None
        assert caught.value.last_seen.finished_at is None


async def test_a_stock_update_is_never_sent_twice() -> None:
    async with Sandbox(orders=10, days=1) as sandbox, partner_for(sandbox) as client:
        sandbox.faults.script("POST /v1/partner/inventory/updatestocks", "disconnect_after")
        with pytest.raises(OutcomeUnknownError, match="stock_update_history") as caught:
            await client.update_stock(StockUpdate(sku="A", available_stock=1))
        assert caught.value.sent_at is not None
        assert sandbox.recorder.count("POST /v1/partner/inventory/updatestocks") == 1


async def test_no_secret_in_write_errors() -> None:
    async with (
        Sandbox(orders=10, days=1, partner_secret=DOC_SECRET) as sandbox,
        partner_for(sandbox) as client,
    ):
        sandbox.faults.script("POST /v1/partner/order", "disconnect_after")
        with pytest.raises(OutcomeUnknownError) as caught:
            await client.create_orders([new_order(1)])
        shown = repr(caught.value) + str(caught.value) + repr(vars(caught.value))
        assert DOC_SECRET not in shown
        assert DOC_SECRET not in str(pickle.loads(pickle.dumps(caught.value)))


# -- the command line ------------------------------------------------------------------------------


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CONNEXI_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "connexi_async", "partner", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=environment | (env or {}),
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_create_prints_created_and_refused_with_exit_6(tmp_path: Path) -> None:
    file = tmp_path / "orders.jsonl"
    lines = [
        json.dumps({"order_id": "CLI-1", "order_date": "2026-10-03T09:00:00+07:00", "customer_reference": "C", "delivery_street_address": "Jl", "delivery_city": "X", "delivery_region": "Y", "delivery_suburb": "Z", "delivery_country": "ID", "delivery_post_code": "1", "delivery_method": "JNE", "payment_method": "COD", "line_items": [{"sku": "S", "name": "N", "quantity": 1, "raw_price": "10.50"}]}),
        json.dumps({"order_id": "3000000008", "order_date": "2026-10-03T09:00:00Z", "customer_reference": "C", "delivery_street_address": "Jl", "delivery_city": "X", "delivery_region": "Y", "delivery_suburb": "Z", "delivery_country": "ID", "delivery_post_code": "1", "delivery_method": "JNE", "payment_method": "COD", "line_items": [{"sku": "S", "name": "N", "quantity": 1, "raw_price": 10}]}),
    ]  # fmt: skip
    file.write_text("\n".join(lines) + "\n")
    code, out, err = await run_cli("create", str(file), "--sandbox")
    assert code == 6, err
    (created,) = [json.loads(line) for line in out.splitlines()]
    assert created["order_id"] == "CLI-1"
    assert created["order_date"] == "2026-10-03T02:00:00Z"
    assert "refused 3000000008: existing order" in err
    assert "created 1 order, 1 refused" in err
    (tmp_path / "bad.json").write_text('[{"order_id": "A", "totl": 1}]')
    code, _, err = await run_cli("create", str(tmp_path / "bad.json"), "--sandbox")
    assert code == 2
    assert "unknown field" in err


async def test_cli_status_changes_read_updated_at_or_take_it() -> None:
    day = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 2, tzinfo=UTC))
    async with (
        Sandbox(orders=2_000, seed=7) as sandbox,
        partner_for(sandbox) as client,
        client.orders(*day) as stream,
    ):
        orders = [o async for o in stream]
    pending = [o for o in orders if o.status == "pending"]
    completed = [o for o in orders if o.status == "completed"]
    code, out, err = await run_cli(
        "accept", str(pending[0].id), "--sandbox", "--sandbox-orders", "2000"
    )
    assert code == 0, err
    assert json.loads(out)["status"] == "accepted"
    code, _, err = await run_cli(
        "accept", str(completed[0].id), "--sandbox", "--sandbox-orders", "2000"
    )
    assert code == 2
    assert "cannot become accepted" in err
    stale = pending[1].updated_at - timedelta(seconds=5)  # type: ignore[operator]
    code, out, err = await run_cli(
        "cancel", f"{pending[1].id}=no stock", "--updated-at", stale.isoformat(),
        "--sandbox", "--sandbox-orders", "2000",
    )  # fmt: skip
    assert code == 6
    assert f"refused order {pending[1].id}" in err
    assert "it is pending" in err


async def test_cli_update_stock_waits_and_reads_history() -> None:
    code, out, err = await run_cli(
        "update-stock", "TOP0001-S", "--available", "10", "--channel", "bklp=3", "--wait",
        "--sandbox",
    )  # fmt: skip
    assert code == 0, err
    (record,) = out.splitlines()  # JSON Lines only; the code goes to stderr
    assert f"transaction code {json.loads(record)['transaction_code']}" in err
    assert "bklp: ok" in err
    code, _, err = await run_cli(
        "update-stock", "X", "--available", "1", "--buffer", "2", "--sandbox"
    )
    assert code == 2
    assert "more than available_stock" in err
    code, out, _ = await run_cli("history", "--format", "csv", "--sandbox")
    assert code == 0
    assert out.splitlines()[0].startswith("id,tenant_id,user_id,transaction_code")
    code, out, _ = await run_cli("stocks", "--sandbox")
    assert code == 0
    assert len(out.splitlines()) == 240


async def test_cli_partner_orders_and_credentials(tmp_path: Path) -> None:
    code, out, err = await run_cli(
        "orders", "--since", "2026-10-01", "--until", "2026-10-02", "--sandbox",
        "--sandbox-orders", "2000", "--with-delivery-orders",
    )  # fmt: skip
    assert code == 0, err
    assert {json.loads(line)["id"] for line in out.splitlines()}
    code, _, err = await run_cli("orders", "--since", "1d")
    assert code == 2
    assert "CONNEXI_PARTNER_ID" in err


# -- servers that behave otherwise (regressions of an adversarial review) --------------------


class FakePartner:
    """A partner server of our own, unlike the sandbox: its ``answers`` shape each create
    answer in turn (``"drop"`` processes and hangs up; ``"partial"`` creates the first
    order only and hangs up; ``"hangup"`` hangs up before doing anything; ``"reject"``
    refuses the whole request with a 400; ``"silent"``
    leaves the last order out; ``"strays"`` adds 500 records never sent; ``"garbled"`` repeats records, adds one never sent and
    refuses a created one), and
    ``lag`` hides created orders from the listing for that many reads."""

    def __init__(self, *, answers: list[str], lag: int = 0) -> None:
        self.answers = answers
        self.lag = lag
        self.orders: dict[str, dict[str, Any]] = {}
        self.posts: list[list[str]] = []
        self.reads = 0

    def record(self, sent: dict[str, Any]) -> dict[str, Any]:
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return {
            "id": 5000 + len(self.orders),
            "order_id": sent["order_id"],
            "order_date": sent["order_date"],
            "customer_reference": sent["customer_reference"],
            "status": "pending",
            "created_at": stamp,
            "updated_at": stamp,
        }

    async def post(self, request: web.Request) -> web.StreamResponse:
        sent = (await request.json())["orders"]
        self.posts.append([o["order_id"] for o in sent])
        answer = self.answers.pop(0) if self.answers else "plain"
        if answer == "reject":
            return web.json_response({"message": "invalid request", "reference": "r"}, status=400)
        if answer in ("hangup", "partial"):
            if answer == "partial":
                self.orders[sent[0]["order_id"]] = self.record(sent[0])
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        ok, bad = [], []
        for order in sent:
            if order["order_id"] in self.orders:
                reason = f"existing order with remote order id: {order['order_id']} already exists"
                bad.append({"order_id": order["order_id"], "reason": reason})
            else:
                self.orders[order["order_id"]] = self.record(order)
                ok.append(self.orders[order["order_id"]])
        if answer == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if answer == "silent":
            ok = ok[:-1]
        elif answer == "strays":
            ok = ok + [{**ok[0], "order_id": f"STRAY-{n}", "id": n} for n in range(500)]
        elif answer == "garbled":
            stray = {**ok[0], "order_id": "NEVER-SENT", "id": 1}
            bad.append({"order_id": ok[0]["order_id"], "reason": "both created and refused"})
            ok = [ok[0], ok[0], stray, *ok[1:]]
        return web.json_response({"data": {"succeed": ok, "failed": bad}, "reference": "r"})

    async def get(self, request: web.Request) -> web.Response:
        self.reads += 1
        since = datetime.fromisoformat(request.query["since"].replace("Z", "+00:00"))
        until = datetime.fromisoformat(request.query["until"].replace("Z", "+00:00"))
        offset = int(request.query["offset"])
        rows = [] if self.reads <= self.lag else [
            r for r in self.orders.values()
            if since <= datetime.fromisoformat(r["order_date"].replace("Z", "+00:00")) < until
        ]  # fmt: skip
        page = rows[offset : offset + int(request.query["limit"])]
        return web.json_response({"data": page, "total_record": len(rows)})


@contextlib.asynccontextmanager
async def fake_server(fake: FakePartner) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/partner/order", fake.post)
    app.router.add_get("/v1/partner/order", fake.get)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def fake_partner(fake: FakePartner, **options: Any) -> AsyncIterator[PartnerClient]:
    async with (
        fake_server(fake) as url,
        PartnerClient(
            partner_id="p", partner_secret="s", base_url=url,
            **{"backoff_base": 0.001, "backoff_max": 0.01, "sleep": _no_wait, **options},
        ) as client,
    ):  # fmt: skip
        yield client


async def _no_wait(_: float) -> None:
    await asyncio.sleep(0)


async def test_a_lagging_listing_is_waited_for_then_an_unknown_outcome_never_a_failure() -> None:
    orders = [new_order(n) for n in range(1, 4)]
    # Caught up after two reads (the lookup, then the first look after a pause): created.
    fake = FakePartner(answers=["drop"], lag=2)
    async with fake_partner(fake) as client:
        result = await client.create_orders(orders, on_unknown="reconcile")
    assert sorted(o.order_id for o in result.created) == ["ORD-1", "ORD-2", "ORD-3"]
    assert result.failed == ()
    assert fake.posts == [["ORD-1", "ORD-2", "ORD-3"]] * 2
    # Never caught up: the client cannot tell, so it says so.
    fake = FakePartner(answers=["drop"], lag=1_000)
    async with fake_partner(fake) as client:
        with pytest.raises(OutcomeUnknownError, match="listing does not show them") as caught:
            await client.create_orders(orders, on_unknown="reconcile")
    assert [o.order_id for o in caught.value.orders] == ["ORD-1", "ORD-2", "ORD-3"]  # type: ignore[attr-defined]


async def test_orders_the_answer_leaves_out_are_unknown_or_looked_up() -> None:
    orders = [new_order(n) for n in range(1, 4)]
    async with fake_partner(FakePartner(answers=["silent"])) as client:
        with pytest.raises(OutcomeUnknownError, match="does not mention 1 orders") as caught:
            await client.create_orders(orders)
    assert [o.order_id for o in caught.value.orders] == ["ORD-3"]  # type: ignore[attr-defined]
    assert isinstance(caught.value.result, CreateResult)
    assert [o.order_id for o in caught.value.result.created] == ["ORD-1", "ORD-2"]
    fake = FakePartner(answers=["silent"])
    async with fake_partner(fake) as client:
        result = await client.create_orders(orders, on_unknown="reconcile")
    assert sorted(o.order_id for o in result.created) == ["ORD-1", "ORD-2", "ORD-3"]
    assert len(fake.posts) == 1  # found, not sent again


async def test_an_answer_is_held_to_what_was_sent() -> None:
    orders = [new_order(n) for n in range(1, 4)]
    async with fake_partner(FakePartner(answers=["garbled"])) as client:
        result = await client.create_orders(orders)
    assert [o.order_id for o in result.created] == ["ORD-1", "ORD-2", "ORD-3"]
    assert result.failed == ()


async def test_found_orders_stay_in_the_result_when_a_batch_ends_unknown() -> None:
    """The first send creates ORD-1 only and hangs up; every send after it hangs up
    before doing anything: ORD-1 is found (and in the error's result), the others stay
    unknown after three sends."""
    orders = [new_order(n) for n in range(1, 4)]
    fake = FakePartner(answers=["partial", "hangup", "hangup"])
    async with fake_partner(fake) as client:
        with pytest.raises(OutcomeUnknownError, match="after 3 sends") as caught:
            await client.create_orders(orders, on_unknown="reconcile")
    assert len(fake.posts) == 3
    assert [o.order_id for o in caught.value.orders] == ["ORD-2", "ORD-3"]  # type: ignore[attr-defined]
    assert isinstance(caught.value.result, CreateResult)
    assert [o.order_id for o in caught.value.result.created] == ["ORD-1"]


async def test_a_failed_lookup_is_an_unknown_outcome_with_everything_it_knows() -> None:
    async with (
        Sandbox(orders=50, days=3) as sandbox,
        partner_for(sandbox, max_attempts=2) as client,
    ):
        sandbox.faults.script("POST /v1/partner/order", "disconnect_after")
        sandbox.faults.script("GET /v1/partner/order", *["unavailable"] * 10)
        with pytest.raises(OutcomeUnknownError, match="looking the orders up failed") as caught:
            await client.create_orders([new_order(1)], on_unknown="reconcile")
    assert caught.value.sent_at is not None
    assert [o.order_id for o in caught.value.orders] == ["ORD-1"]  # type: ignore[attr-defined]


async def test_an_order_that_existed_before_is_not_taken_for_ours() -> None:
    async with Sandbox(orders=50, days=3) as sandbox, partner_for(sandbox) as client:
        assert (await client.create_orders([new_order(1, customer_reference="FIRST")])).ok
        sandbox.faults.script("POST /v1/partner/order", "disconnect_after")
        result = await client.create_orders([new_order(1), new_order(2)], on_unknown="reconcile")
    assert [o.order_id for o in result.created] == ["ORD-2"]
    (failure,) = result.failed
    assert failure.order_id == "ORD-1"
    assert failure.already_exists
    assert "existed before this call" in failure.reason


async def test_a_rate_limited_patch_is_not_taken_for_a_lost_answer() -> None:
    """A 429 proves the first attempt was not processed: a conflict after it is real,
    even when the status now matches."""
    async with Sandbox(orders=300, days=3) as sandbox, partner_for(sandbox) as client:
        (order,) = await pending_orders(client, 1)
        assert (await client.change_statuses([Accept.of(order)])).ok  # someone else
        sandbox.faults.script("PATCH /v1/partner/order/status", "rate_limit")
        result = await client.change_statuses([Accept.of(order)])  # stale, ours
    assert [f.id for f in result.failed] == [order.id]


async def test_waiting_survives_failing_polls_and_keeps_its_deadline() -> None:
    async with (
        Sandbox(orders=10, days=1, stock_update_delay=0.3) as sandbox,
        partner_for(sandbox, max_attempts=1) as client,
    ):
        await client.create_products([new_product("W-1")])
        code = await client.update_stock(StockUpdate(sku="W-1", available_stock=3))
        sandbox.faults.script("GET /v1/partner/inventory/history", "unavailable", "unavailable")
        record = await client.wait_for_stock_update(code, timeout=30, poll_interval=0.05)
        assert record.finished_at is not None
        sandbox.stock_update_delay = 3600
        code = await client.update_stock(StockUpdate(sku="W-1", available_stock=4))
        sandbox.faults.script("GET /v1/partner/inventory/history", "stall_headers")
        sandbox.state.stall_seconds = 30
        started = asyncio.get_running_loop().time()
        with pytest.raises(StockUpdateTimeoutError):
            await client.wait_for_stock_update(code, timeout=0.5, poll_interval=0.05)
        assert asyncio.get_running_loop().time() - started < 10  # not the 30 s stall


def test_an_answer_too_large_for_a_transaction_code_is_not_read() -> None:
    from connexi_async._partner_writes import _transaction_code

    assert _transaction_code(b'{"transaction_code": "abc"}') == "abc"
    assert _transaction_code(b'{"transaction_code": "abc", "x": "' + b"y" * 100_000 + b'"}') is None
    assert _transaction_code(b'{"transaction_code": 5}') is None


async def test_packing_again_with_another_airwaybill_changes_it() -> None:
    async with Sandbox(orders=300, days=3) as sandbox, partner_for(sandbox) as client:
        (order,) = await pending_orders(client, 1)
        accepted = (await client.change_statuses([Accept.of(order)])).succeeded[0]
        packed = await client.change_statuses([Pack(order.id, "AWB-A", accepted.updated_at)])
        (fresh,) = await server_orders_by_id(client, {order.id})
        repacked = await client.change_statuses([Pack.of(fresh, "AWB-B")])
        (again,) = await server_orders_by_id(client, {order.id})
    assert packed.ok
    assert repacked.ok
    assert again.airwaybill_number == "AWB-B"
    assert again.updated_at == repacked.succeeded[0].updated_at != fresh.updated_at


async def test_cli_files_name_lines_and_take_one_object(tmp_path: Path) -> None:
    good = {"order_id": "L-1", "order_date": "2026-10-03T09:00:00Z", "customer_reference": "C", "delivery_street_address": "Jl", "delivery_city": "X", "delivery_region": "Y", "delivery_suburb": "Z", "delivery_country": "ID", "delivery_post_code": "1", "delivery_method": "JNE", "payment_method": "COD", "line_items": [{"sku": "S", "name": "N", "quantity": 1, "raw_price": 10}]}  # fmt: skip
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(good) + "\n\n{not json\n")
    code, _, err = await run_cli("create", str(broken), "--sandbox")
    assert code == 2
    assert "line 3: invalid JSON" in err
    typo = tmp_path / "typo.jsonl"
    typo.write_text(
        json.dumps(good) + "\n" + json.dumps({**good, "order_id": "L-2", "totl": 1}) + "\n"
    )
    code, _, err = await run_cli("create", str(typo), "--sandbox")
    assert code == 2
    assert "line 2: $.totl: unknown field" in err
    pretty = tmp_path / "one.json"
    pretty.write_bytes(b"\xef\xbb\xbf" + json.dumps(good, indent=2).encode())
    code, out, err = await run_cli("create", str(pretty), "--sandbox")
    assert code == 0, err
    assert json.loads(out)["order_id"] == "L-1"


async def test_cli_stock_options_are_checked_before_sending_and_jobs_can_be_awaited() -> None:
    code, out, err = await run_cli(
        "update-stock", "S", "--available", "1", "--timeout", "5", "--sandbox"
    )
    assert code == 2
    assert "--timeout goes with --wait" in err
    code, out, err = await run_cli(
        "update-stock", "S", "--available", "1", "--wait", "--timeout", "0", "--sandbox"
    )
    assert code == 2
    assert out == ""
    code, out, err = await run_cli("wait", "no-such-code", "--timeout", "0.3", "--sandbox")
    assert code == 5
    assert "wait again with: connexi-async partner wait no-such-code" in err


async def test_a_client_leaving_early_leaves_no_traceback_in_the_sandbox(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Regression: the sandbox logged "Error handling request" with a traceback (into the
    user's terminal under --sandbox) when a client stopped reading a stream."""
    caplog.set_level(logging.ERROR)
    period = (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    async with Sandbox(orders=1_000) as sandbox, partner_for(sandbox) as client:
        for _ in range(10):
            async with client.orders(*period) as stream:
                async for _order in stream:
                    break
        await asyncio.sleep(0.2)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_the_documented_create_example_signs_to_its_known_answer_through_the_sandbox() -> (
    None
):
    """The documentation's Create Order example (its exact bytes, signed without the
    leading slash as it is): the documented signature, accepted by the sandbox."""
    body = (Path(__file__).parent / "partner_create_example.json").read_bytes()
    async with (
        Sandbox(orders=10, days=1, partner_secret=DOC_SECRET) as sandbox,
        partner_for(sandbox, sign_leading_slash=False) as client,
    ):
        sandbox.partner_signature_form = "no-slash"
        headers = client._transport._auth.headers("/v1/partner/order", body)
        assert headers["secret"] == "CxWnlMigAoSQgKcFIxVme0bXYk8Ftk99daJXssYCXC8="
        response = await client._transport.request("POST", "/v1/partner/order", body=body)
        assert response.status == 200
        assert sandbox.recorder.writes[-1] == ("POST /v1/partner/order", body)


async def test_a_second_reconcile_keeps_the_first_send_and_what_was_known() -> None:
    orders = [new_order(n) for n in range(1, 5)]
    async with (
        Sandbox(orders=50, days=3) as sandbox,
        partner_for(sandbox, max_batch=2, max_attempts=1) as client,
    ):
        posts = 0

        def second(_: object) -> bool:
            nonlocal posts
            posts += 1
            return posts == 2

        sandbox.faults.script("POST /v1/partner/order", "disconnect_after", when=second)
        with pytest.raises(OutcomeUnknownError) as first:
            await client.create_orders(orders)
        assert [o.order_id for o in first.value.result.created] == ["ORD-1", "ORD-2"]  # type: ignore[union-attr]
        sandbox.faults.script("GET /v1/partner/order", "unavailable")
        with pytest.raises(OutcomeUnknownError) as second_error:
            await client.reconcile(first.value)
        again = second_error.value
        assert again.sent_at == first.value.sent_at
        assert again.result == first.value.result
        assert again.unsent == first.value.unsent == ()
        result = await client.reconcile(again)
    assert [o.order_id for o in result.created] == ["ORD-1", "ORD-2", "ORD-3", "ORD-4"]
    assert result.failed == ()


async def test_an_error_on_a_later_batch_carries_what_the_earlier_ones_did() -> None:
    orders = [new_order(n) for n in range(1, 7)]
    fake = FakePartner(answers=["plain", "reject"])
    async with fake_partner(fake, max_batch=2) as client:
        with pytest.raises(BadRequestError) as caught:
            await client.create_orders(orders)
    error: Any = caught.value
    assert [o.order_id for o in error.result.created] == ["ORD-1", "ORD-2"]
    assert [o.order_id for o in error.unsent] == ["ORD-3", "ORD-4", "ORD-5", "ORD-6"]
    assert "2 orders were created before this error" in " ".join(error.__notes__)


def test_holding_an_answer_to_what_was_sent_is_linear() -> None:
    """Regression: 1,000 refusals took ~100 ms (every failure scanned every order)."""
    from connexi_async._partner_writes import _ORDER_CREATION, _answered

    pending = [new_order(n, order_id=f"R-{n}") for n in range(20_000)]
    bad = [CreateFailure(order_id=o.order_id, reason="no") for o in pending]
    started = time.perf_counter()
    created, refused = run_steps(_answered(pending, [], bad, _ORDER_CREATION))
    assert (created, len(refused)) == ([], 20_000)
    assert time.perf_counter() - started < 5  # quadratic: minutes


async def test_variants_sharing_a_partner_sku_go_out_in_different_posts() -> None:
    variants = [
        attrs.evolve(new_product(f"TS-{size}"), partner_sku="TSHIRT") for size in ("S", "M", "L")
    ]
    async with Sandbox(orders=10, days=1) as sandbox, partner_for(sandbox) as client:
        result = await client.create_products([*variants, new_product("CAP")])
        bodies = [json.loads(body)["products"] for route, body in sandbox.recorder.writes]
    assert [[p["sku"] for p in body] for body in bodies] == [["TS-S", "CAP"], ["TS-M"], ["TS-L"]]
    assert sorted(p.sku for p in result.created) == ["CAP", "TS-L", "TS-M", "TS-S"]


async def test_cli_names_refusals_and_lines_when_an_outcome_is_unknown(tmp_path: Path) -> None:
    lines = [
        json.dumps({"order_id": f"ORD-{n}", "order_date": f"2026-10-03T09:0{n}:00Z", "customer_reference": f"CUST{n}", "delivery_street_address": "Jl", "delivery_city": "X", "delivery_region": "Y", "delivery_suburb": "Z", "delivery_country": "ID", "delivery_post_code": "1", "delivery_method": "JNE", "payment_method": "COD", "line_items": [{"sku": "S", "name": "N", "quantity": 1, "raw_price": 10}]})
        for n in (1, 2, 3)
    ]  # fmt: skip
    file = tmp_path / "orders.jsonl"
    file.write_text("\n".join(lines) + "\n")
    fake = FakePartner(answers=["silent"])
    fake.orders["ORD-1"] = {"order_id": "ORD-1"}  # refused as existing
    async with fake_server(fake) as url:
        env = {
            "CONNEXI_PARTNER_ID": "p",
            "CONNEXI_PARTNER_SECRET": "s",
            "CONNEXI_PARTNER_BASE_URL": url,
        }
        code, out, err = await run_cli("create", str(file), "--no-reconcile", env=env)
    assert code == 5, err
    assert [json.loads(line)["order_id"] for line in out.splitlines()] == ["ORD-2"]
    assert "refused ORD-1: existing order" in err
    assert "(ORD-3)" in err
    assert "connexi-async partner orders --since" in err
    twice = tmp_path / "twice.jsonl"
    twice.write_text(lines[0] + "\n" + lines[0] + "\n")
    code, _, err = await run_cli("create", str(twice), "--sandbox")
    assert code == 2
    assert "line 2: $.order_id" in err


async def test_records_never_sent_are_left_out_in_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="connexi_async")
    async with fake_partner(FakePartner(answers=["strays"])) as client:
        result = await client.create_orders([new_order(1), new_order(2)])
    assert [o.order_id for o in result.created] == ["ORD-1", "ORD-2"]
    said = [r.getMessage() for r in caplog.records if "not sent" in r.getMessage()]
    assert said == [
        "POST /v1/partner/order: the answer names 500 orders that were not sent; left out"
    ]


async def test_a_lost_product_create_is_settled_by_reconcile_products() -> None:
    async with Sandbox(orders=10, days=1) as sandbox, partner_for(sandbox) as client:
        sandbox.faults.script("POST /v1/partner/product", "disconnect_after")
        with pytest.raises(OutcomeUnknownError, match="reconcile_products") as caught:
            await client.create_products([new_product("R-1"), new_product("R-2")])
        result = await client.reconcile_products(caught.value)
        assert sorted(p.sku for p in result.created) == ["R-1", "R-2"]
        assert result.failed == ()
        assert sandbox.recorder.count("POST /v1/partner/product") == 1
        with pytest.raises(ConfigurationError, match="create_products"):
            await client.reconcile_products(OutcomeUnknownError("x"))


def test_variants_are_batched_in_linear_time() -> None:
    from connexi_async._partner_writes import _PRODUCT_CREATION, _batches

    products = [
        attrs.evolve(new_product(f"V-{n}"), partner_sku=f"P-{n % 2_000}") for n in range(50_000)
    ]
    started = time.perf_counter()
    batches = _batches(products, _PRODUCT_CREATION, 1_000)
    assert time.perf_counter() - started < 5  # quadratic took seconds at this size
    assert sorted(len(b) for b in batches) == [1_000] * 50
    for batch in batches:
        assert len({p.partner_sku for p in batch}) == len(batch)


async def test_waiting_allows_for_a_client_clock_ahead_of_the_server() -> None:
    ahead = timedelta(minutes=5)
    async with (
        Sandbox(orders=10, days=1, stock_update_delay=0.1) as sandbox,
        partner_for(sandbox, wall_clock=lambda: datetime.now(UTC) + ahead) as client,
    ):
        code = await client.update_stock(StockUpdate(sku="ANY", available_stock=1))
        record = await client.wait_for_stock_update(code, timeout=20, poll_interval=0.05)
    assert record.finished_at is not None


class _BadZone(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(days=2)

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: check_new_orders([new_order(1, order_date=datetime(2026, 10, 1, tzinfo=_BadZone()))]), "tzinfo"),
        (lambda: check_new_orders([new_order(1, shipping_total=None)]), "orders[0].shipping_total: expected a Decimal, got None"),
        (lambda: check_stock_update(StockUpdate(sku="A", channel_stock=(ChannelStock(code=["x"]),))), "channel_stock[0].code"),  # type: ignore[arg-type]
        (lambda: Accept.of(None), "expected a PartnerOrder"),  # type: ignore[arg-type]
        (lambda: check_stock_update(StockUpdate(sku="A", channel_stock=tuple(ChannelStock(code=f"c{n}", qty=1) for n in range(1_001)))), "1,001 channels"),
    ],
)  # fmt: skip
def test_hostile_arguments_are_encode_errors(make: Any, fragment: str) -> None:
    with pytest.raises(EncodeError, match=re.escape(fragment)):
        result = make()
        if hasattr(result, "__next__"):
            run_steps(result)


def test_status_and_codes_and_early_years() -> None:
    from connexi_async._errors import format_instant
    from connexi_async._partner_writes import _transaction_code

    assert Accept.of(PartnerOrder(id=1, status=" Pending ", updated_at=OCT)) == Accept(1, OCT)
    assert format_instant(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00Z"
    assert _transaction_code(b'{"transaction_code": " abc\\n"}') is None
    assert _transaction_code(b'{"transaction_code": "591d4ab5-841e-499a"}') == "591d4ab5-841e-499a"


async def test_the_sandbox_refuses_amounts_beyond_any_price() -> None:
    huge = NewPartnerLineItem(sku="S", name="N", quantity=2**62, raw_price=Decimal(10) ** 29 - 1)
    async with Sandbox(orders=10, days=1) as sandbox, partner_for(sandbox) as client:
        result = await client.create_orders([new_order(1, line_items=(huge,)), new_order(2)])
    assert [o.order_id for o in result.created] == ["ORD-2"]
    assert "out of range" in result.failed[0].reason


async def test_cli_refuses_a_non_ascii_digit_in_a_channel() -> None:
    code, _, err = await run_cli(
        "update-stock", "S", "--available", "1", "--channel", "bklp=\u00b2", "--sandbox"
    )
    assert code == 2
    assert "expected CODE=QTY" in err
    assert "Traceback" not in err
