"""Decoding and encoding: the seed example, every real-world shape, every bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from connexi_async import (
    DecodeError,
    EncodeError,
    LineItem,
    Location,
    NewOrder,
    Order,
    StatusUpdate,
    decode_locations,
    decode_new_orders,
    decode_orders,
    decode_status_updates,
    encode_locations,
    encode_new_orders,
    encode_orders,
    encode_status_updates,
)

SEED = (Path(__file__).parent / "seed_order.json").read_bytes()


def one(record: dict[str, object]) -> Order:
    (order,) = decode_orders(json.dumps({"orders": [record]}))
    return order


def error_of(payload: bytes | str) -> str:
    with pytest.raises(DecodeError) as info:
        decode_orders(payload)
    return str(info.value)


def test_seed_example_decodes_field_by_field() -> None:
    (order,) = decode_orders(SEED)
    assert order.id == 111
    assert order.created_at == datetime(2018, 11, 7, 3, 46, 16, 457936, tzinfo=UTC)
    assert order.updated_at == datetime(2018, 11, 7, 3, 46, 16, 457938, tzinfo=UTC)
    assert order.order_date == datetime(2018, 11, 7, 3, 40, 57, tzinfo=UTC)
    assert order.remote_order_id == "1362230256"
    assert order.currency_code == "IDR"
    assert order.exchange_rate == Decimal(1)
    assert order.customer_reference == "181362230256"
    assert order.quote_expiry_date is None
    assert order.required_date is None
    assert order.delivery_name == "Danny"
    assert order.delivery_street_address == "Jl Biak no 19C\r\nsebelah Bank Permata"
    assert order.delivery_suburb == "Gambir"
    assert order.delivery_city == "Jakarta Pusat"
    assert order.delivery_region == "DKI Jakarta"
    assert order.delivery_post_code == "10150"
    assert order.delivery_country == "Indonesia"
    assert order.delivery_method == "JNE REG"
    assert order.remote_order_status == "pending"
    assert order.tax_code == "PPN"
    assert order.tax_rate == Decimal("0.1")
    assert str(order.tax_rate) == "0.1"
    assert order.shipping_total == Decimal(45000)
    assert order.subtotal == Decimal(2500)
    assert order.total == Decimal(47500)
    assert order.marketplace_code == "bklp"
    assert order.phone_number == "087867255331"
    for name in [
        "processed_at",
        "accepted_at",
        "packed_at",
        "cancelled_at",
        "shipment_tracked_at",
        "edited_at",
        "exported_at",
        "printed_at",
    ]:
        assert getattr(order, name) is None, name
    assert (order.accepted_by, order.packed_by, order.cancelled_by, order.printed_by) == (0,) * 4
    assert order.line_items == ()
    assert order.store_id == 4
    assert order.price_adjustment == Decimal(0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-11-07T03:46:16Z", datetime(2018, 11, 7, 3, 46, 16, tzinfo=UTC)),
        ("2018-11-07T03:46:16.4Z", datetime(2018, 11, 7, 3, 46, 16, 400000, tzinfo=UTC)),
        ("2018-11-07T03:46:16.457936Z", datetime(2018, 11, 7, 3, 46, 16, 457936, tzinfo=UTC)),
        ("2018-11-07T03:46:16.8927649", datetime(2018, 11, 7, 3, 46, 16, 892764, tzinfo=UTC)),
        ("2018-11-07T03:46:16.123456789Z", datetime(2018, 11, 7, 3, 46, 16, 123456, tzinfo=UTC)),
        ("2018-11-07T10:46:16+07:00", datetime(2018, 11, 7, 3, 46, 16, tzinfo=UTC)),
        ("2018-11-07 10:46:16+0700", datetime(2018, 11, 7, 3, 46, 16, tzinfo=UTC)),
        ("2018-11-07t03:46:16z", datetime(2018, 11, 7, 3, 46, 16, tzinfo=UTC)),
        ("2018-11-07 03:46:16", datetime(2018, 11, 7, 3, 46, 16, tzinfo=UTC)),
        ("2018-11-06T22:46:16-05:00", datetime(2018, 11, 7, 3, 46, 16, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("0001-01-01T00:00:00.000000Z", None),
        ("0001-01-01T00:00:00+07:00", None),
        ("", None),
        (None, None),
    ],
)
def test_timestamp_shapes(text: str | None, expected: datetime | None) -> None:
    order = one({"id": 1, "created_at": text})
    assert order.created_at == expected
    if expected is not None:
        assert order.created_at is not None
        assert order.created_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0.1", "0.1"),
        ("7272.726", "7272.726"),
        ("45000", "45000"),
        ('"489000"', "489000"),
        ('"7272.726"', "7272.726"),
        ("1e3", "1E+3"),
        ("-15000", "-15000"),
        ('""', "0"),
        ("null", "0"),
    ],
)
def test_amounts_are_exact(raw: str, expected: str) -> None:
    (order,) = decode_orders('{"orders": [{"id": 1, "total": ' + raw + "}]}")
    assert isinstance(order.total, Decimal)
    assert str(order.total) == expected


def test_binary_float_never_leaks() -> None:
    order = one({"id": 1})
    assert order.total == Decimal(0)
    (order,) = decode_orders(
        b'{"orders": [{"id": 1, "tax_rate": 0.1, "total": 0.30000000000000004}]}'
    )
    assert order.tax_rate == Decimal("0.1")
    assert order.total == Decimal("0.30000000000000004")


@pytest.mark.parametrize(("raw", "expected"), [("20", 20), ('"20"', 20), ("null", 0), ('""', 0)])
def test_integers(raw: str, expected: int) -> None:
    (order,) = decode_orders('[{"id": 1, "store_id": ' + raw + "}]")
    assert order.store_id == expected


def test_id_as_string() -> None:
    assert one({"id": "111"}).id == 111


def test_number_in_string_field_becomes_its_text() -> None:
    (order,) = decode_orders(b'[{"id": 1, "delivery_post_code": 10150, "remarks": 1.50}]')
    assert order.delivery_post_code == "10150"
    assert order.remarks == "1.50"


def test_null_gives_defaults_never_the_string_none() -> None:
    fields = {name: None for name in ("delivery_name", "store_id", "total", "created_at")}
    order = one({"id": 1, **fields, "line_items": None})
    assert order.delivery_name == ""
    assert order.store_id == 0
    assert order.total == Decimal(0)
    assert order.created_at is None
    assert order.line_items == ()
    assert "'None'" not in repr(order)


@pytest.mark.parametrize("envelope", ["orders", "data", None])
def test_envelopes(envelope: str | None) -> None:
    records = [{"id": 1}, {"id": 2}]
    payload = json.dumps(records if envelope is None else {envelope: records})
    assert [o.id for o in decode_orders(payload)] == [1, 2]


def test_envelope_with_null_list_is_empty() -> None:
    assert decode_orders(b'{"orders": null}') == []


def test_line_items_as_list_null_or_single_object() -> None:
    item = {"id": 5, "sku": "TOP0001", "quantity": "2", "unit_price": 40000, "tax": 7272.726}
    as_list = one({"id": 1, "line_items": [item]})
    single = one({"id": 1, "line_items": None, "line_item": item})
    single_only = one({"id": 1, "line_item": item})
    assert as_list.line_items == single.line_items == single_only.line_items
    (line,) = as_list.line_items
    assert line == LineItem(
        id=5, sku="TOP0001", quantity=2, unit_price=Decimal(40000), tax=Decimal("7272.726")
    )
    assert one({"id": 1, "line_items": None}).line_items == ()


def test_update_at_spelling_for_updated_at() -> None:
    stamp = "2018-11-07T03:46:16Z"
    order = one({"id": 1, "update_at": stamp, "line_items": [{"update_at": stamp}]})
    expected = datetime(2018, 11, 7, 3, 46, 16, tzinfo=UTC)
    assert order.updated_at == expected
    assert order.line_items[0].updated_at == expected


def test_unknown_fields_ignored_missing_defaulted() -> None:
    order = one({"id": 7, "brand_new_field": {"x": [1, 2]}, "order_id": "ORD-1"})
    assert order == Order(id=7)


def test_new_orders_and_status_updates_decode() -> None:
    assert decode_new_orders(b'{"orders": [{"remote_order_id": "R1"}]}') == [
        NewOrder(remote_order_id="R1")
    ]
    assert decode_status_updates(b'[{"id": "3", "status": "packed"}]') == [
        StatusUpdate(id=3, status="packed")
    ]


# -- bad input: always a DecodeError naming the path -------------------------------------


def test_bad_amount_names_path_and_order() -> None:
    message = error_of(b'{"orders": [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 9, "total": "abc"}]}')
    assert '$.orders[3].total: expected an amount, got "abc" (order 9)' in message


def test_every_bad_field_is_named() -> None:
    payload = {
        "orders": [
            {"id": 5, "total": "abc", "created_at": 3, "line_items": [{"quantity": 2.5}]},
            7,
            {"store_id": 1},
        ]
    }
    with pytest.raises(DecodeError) as info:
        decode_orders(json.dumps(payload))
    paths = {e.path for e in info.value.errors}
    assert paths == {
        "$.orders[0].total",
        "$.orders[0].created_at",
        "$.orders[0].line_items[0].quantity",
        "$.orders[1]",
        "$.orders[2].id",
    }
    assert "5 problems" in str(info.value)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"{not json", "$: invalid JSON"),
        (b"\xff\xfe\x00", "$: invalid JSON"),
        (b'{"orders": 5}', "$.orders: expected a list, got 5"),
        (b'{"something": []}', '$: expected a list or an object with "orders" or "data"'),
        (b'"orders"', "$: expected a list or an object"),
        (b'[{"id": 1, "total": NaN}]', "NaN is not a valid amount"),
        (b'[{"id": 1, "total": Infinity}]', "Infinity is not a valid amount"),
        (b'[{"id": 1, "total": "NaN"}]', '$[0].total: expected an amount, got "NaN"'),
        (b'[{"id": 1, "total": "1_000"}]', "$[0].total: expected an amount"),
        (b'[{"id": 1, "total": true}]', "$[0].total: expected an amount, got true"),
        (b'[{"id": 1, "store_id": true}]', "$[0].store_id: expected an integer, got true"),
        (b'[{"id": 1, "store_id": 2.5}]', "$[0].store_id: expected an integer, got 2.5"),
        (b'[{"id": 1, "store_id": "2.5"}]', '$[0].store_id: expected an integer, got "2.5"'),
        (b'[{"id": true}]', "$[0].id: expected an integer, got true"),
        (b'[{"id": null}]', "$[0].id: expected an integer, got null"),
        (b"[{}]", "$[0].id: required field is missing"),
        (b"[5]", "$[0]: expected an object, got 5"),
        (
            b'[{"id": 1, "delivery_name": ["a"]}]',
            "$[0].delivery_name: expected a string, got a list",
        ),
        (
            b'[{"id": 1, "delivery_name": false}]',
            "$[0].delivery_name: expected a string, got false",
        ),
        (b'[{"id": 1, "created_at": "yesterday"}]', "$[0].created_at: expected an RFC 3339"),
        (b'[{"id": 1, "created_at": "2018-13-07T03:46:16Z"}]', "$[0].created_at: expected an RFC"),
        (b'[{"id": 1, "created_at": 1541562376}]', "$[0].created_at: expected an RFC 3339"),
        (b'[{"id": 1, "line_items": 5}]', "$[0].line_items: expected a list of line items"),
        (b'[{"id": 1, "line_items": [7]}]', "$[0].line_items[0]: expected an object, got 7"),
        (b'[{"id": 1, "line_item": "x"}]', "$[0].line_items[0]: expected an object"),
    ],
)
def test_bad_input_message(payload: bytes, fragment: str) -> None:
    assert fragment in error_of(payload)


def test_deep_nesting_is_a_decode_error() -> None:
    assert "invalid JSON" in error_of(b"[" * 100_000 + b"]" * 100_000)


def test_decode_error_is_a_connexi_error_and_value_error() -> None:
    from connexi_async import ConnexiError

    with pytest.raises(DecodeError) as info:
        decode_orders(b"[1]")
    assert isinstance(info.value, ConnexiError)
    assert isinstance(info.value, ValueError)


# -- locations ---------------------------------------------------------------------------

LOCATIONS = {
    "locations": [
        {
            "location_code": "ID",
            "provider_data": "INDONESIA",
            "provinces": [
                {
                    "location_code": "ID-AC",
                    "provider_data": "NANGGROE ACEH DARUSSALAM (NAD)",
                    "cities": [
                        {
                            "location_code": "ID-AC01",
                            "provider_data": "ACEH BARAT",
                            "districts": [
                                {"location_code": "ID-AC0101", "provider_data": "ARONGAN"},
                                {"location_code": "ID-AC010A", "provider_data": "WOYLA"},
                            ],
                        }
                    ],
                },
                {"location_code": "ID-JK", "provider_data": "DKI JAKARTA", "cities": []},
            ],
        }
    ]
}


def test_locations_tree_walk_and_find() -> None:
    (root,) = decode_locations(json.dumps(LOCATIONS))
    codes = [loc.location_code for loc in root.walk()]
    assert codes == ["ID", "ID-AC", "ID-AC01", "ID-AC0101", "ID-AC010A", "ID-JK"]
    found = root.find("ID-AC010A")
    assert found is not None
    assert found.provider_data == "WOYLA"
    assert root.find("ID-XX") is None
    assert decode_locations(encode_locations([root])) == [root]
    assert b'"provinces"' in encode_locations([root])
    assert b'"districts"' in encode_locations([root])


def test_bad_location_names_path() -> None:
    bad = {"locations": [{"location_code": "ID", "provinces": [{"location_code": ["x"]}, 3]}]}
    with pytest.raises(DecodeError) as info:
        decode_locations(json.dumps(bad))
    assert {e.path for e in info.value.errors} == {
        "$.locations[0].provinces[0].location_code",
        "$.locations[0].provinces[1]",
    }


# -- encoding ----------------------------------------------------------------------------


def test_encoding_format() -> None:
    order = Order(
        id=1,
        created_at=datetime(2018, 11, 7, 10, 46, 16, 5, tzinfo=timezone(timedelta(hours=7))),
        total=Decimal("47500"),
        tax_rate=Decimal("0.1"),
        exchange_rate=Decimal("1E+0"),
        line_items=(LineItem(sku="A", tax=Decimal("7272.726")),),
    )
    body = json.loads(encode_orders([order]))
    record = body["orders"][0]
    assert record["created_at"] == "2018-11-07T03:46:16.000005Z"
    assert "updated_at" not in record
    text = encode_orders([order]).decode()
    assert '"total":47500,' in text
    assert '"tax_rate":0.1,' in text
    assert '"exchange_rate":1,' in text
    assert '"tax":7272.726,' in text
    assert decode_orders(encode_orders([order])) == [order]


def test_encoding_refuses_naive_datetime_and_nan() -> None:
    with pytest.raises(EncodeError, match="order_date: naive datetime"):
        encode_new_orders([NewOrder(order_date=datetime(2020, 1, 1))])
    with pytest.raises(EncodeError, match="total: NaN is not a valid amount"):
        encode_new_orders([NewOrder(total=Decimal("NaN"))])
    with pytest.raises(EncodeError, match="binary floats are not exact"):
        encode_new_orders([NewOrder(total=0.1)])  # type: ignore[arg-type]


def test_status_update_body_is_the_documented_list() -> None:
    assert encode_status_updates([StatusUpdate(id=111, status="accepted")]) == (
        b'[{"id":111,"status":"accepted"}]'
    )


def test_create_body_envelope() -> None:
    body = json.loads(encode_new_orders([NewOrder(remote_order_id="R1")]))
    assert body["orders"][0]["remote_order_id"] == "R1"
    assert "id" not in body["orders"][0]


def test_location_root_and_model_defaults() -> None:
    assert Location().children == ()


def test_models_have_nothing_the_fast_path_would_skip() -> None:
    """The fast path sets slots directly: no model may grow validators or converters."""
    import attrs

    from connexi_async import NewLineItem

    for cls in (Order, LineItem, NewOrder, NewLineItem, StatusUpdate, Location):
        assert not hasattr(cls, "__attrs_post_init__"), cls
        for field in attrs.fields(cls):
            assert field.validator is None, (cls, field.name)
            assert field.converter is None, (cls, field.name)


def test_fast_path_models_are_plain_frozen_models() -> None:
    """The fast path fills a builder subclass, then makes it the model: what comes out
    is exactly the model class, frozen, hashable, picklable, weak-referenceable and
    equal to the same record built by hand, on both the one-pass and two-phase paths."""
    import copy
    import pickle
    import weakref

    import attrs

    from connexi_async._convert import build_order, orders_steps
    from connexi_async._cooperative import run_steps

    body = json.loads(SEED)
    [record] = body["orders"] if isinstance(body, dict) else body
    record["line_items"] = [{"id": 7, "sku": "A-1", "quantity": 2, "unit_price": 1500.5}]
    payload = json.dumps([record]).encode()
    [order] = decode_orders(payload)
    assert order.line_items[0].unit_price == Decimal("1500.5")
    [prepared] = run_steps(orders_steps(payload, "", built=False))
    for decoded in (order, build_order(prepared)):
        assert type(decoded) is Order
        assert all(type(item) is LineItem for item in decoded.line_items)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            decoded.id = 1  # type: ignore[misc]
        assert decoded == order
        assert hash(decoded) == hash(order)
        assert pickle.loads(pickle.dumps(decoded)) == order
        assert copy.deepcopy(decoded) == order
        assert weakref.ref(decoded)() is decoded
        assert attrs.evolve(decoded) == order
        assert Order(**attrs.asdict(decoded, recurse=False)) == decoded


def test_memoised_values_are_equal_to_fresh_ones() -> None:
    payload = json.dumps(
        [{"id": i, "total": 45000, "created_at": "2026-10-01T00:00:00.5Z"} for i in range(3)]
    )
    first, second, third = decode_orders(payload)
    assert first.total == second.total == Decimal(45000)
    assert (
        first.created_at == third.created_at == datetime(2026, 10, 1, 0, 0, 0, 500000, tzinfo=UTC)
    )


def test_cutting_records_without_arrays_reads_ahead_a_bounded_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: with records holding no ``[`` (products, orders without line items),
    each cut looked for a bracket to the end of the body: quadratic reading."""
    from connexi_async import _chunks
    from connexi_async._chunks import Body, next_cut

    record = b'{"id":1,"sku":"SKU1","partner_sku":"P1","name":"Product ABC"}'
    raw = b"[" + b",".join([record] * 300_000) + b"]"
    body = Body([raw[i : i + 65536] for i in range(0, len(raw), 65536)])
    copied = 0
    real_slice = _chunks.Body.slice

    def counting(self: Body, a: int, b: int, before: bytes = b"", after: bytes = b"") -> bytes:
        nonlocal copied
        copied += max(0, min(b, self.size) - a)
        return real_slice(self, a, b, before, after)

    monkeypatch.setattr(_chunks.Body, "slice", counting)
    cut = next_cut(body, body.size - 1, 100)
    assert cut is not None
    assert copied < 1_000_000  # the body is 19 MB
