"""Hostile bytes and hostile arguments, with no HTTP: every outcome a result or a typed
error, bounded in time; the fast and validating paths agree; errors pickle."""

from __future__ import annotations

import gc
import json
import pickle
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import connexi_async
import connexi_async.fleet
import connexi_async.sync
from connexi_async import (
    DecodeError,
    EncodeError,
    FieldError,
    LineItem,
    NewLineItem,
    NewOrder,
    Order,
    StatusUpdate,
    decode_locations,
    decode_new_orders,
    decode_orders,
    decode_status_updates,
    encode_new_orders,
    encode_orders,
    encode_status_updates,
)
from connexi_async import _convert as convert
from connexi_async._chunks import Body, array_pieces, next_cut
from connexi_async._retry import parse_retry_after
from connexi_async.sync import CheckpointConflictError, SyncError, SyncLockedError

DECODERS = [decode_orders, decode_new_orders, decode_status_updates, decode_locations]
# Generous: an input that takes this long is a hang, not a slow machine.
BOUND = 2.0


def outcome(decoder: Any, payload: bytes) -> list[Any] | DecodeError:
    started = time.perf_counter()
    try:
        return decoder(payload)  # type: ignore[no-any-return]
    except DecodeError as exc:
        return exc
    finally:
        assert time.perf_counter() - started < BOUND, payload[:80]


def error_of(payload: bytes, decoder: Any = decode_orders) -> str:
    result = outcome(decoder, payload)
    assert isinstance(result, DecodeError), result
    return str(result)


# -- 1, 3, 9: numbers: bounded before conversion, ASCII only ----------------------------


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b'{"orders":[{"id":1e999999}]}', "$.orders[0].id"),
        (b'{"orders":[{"id":1e99999}]}', "$.orders[0].id"),
        (b'{"orders":[{"id":18446744073709551616}]}', "$.orders[0].id: expected an integer"),
        (b'{"orders":[{"id":1,"store_id":' + b"9" * 5000 + b"}]}", "$.orders[0].store_id"),
        (b'{"orders":[{"id":1,"total":1e9999999999999999999}]}', "$.orders[0].total"),
        (b'{"orders":[{"id":1,"total":1e31}]}', "$.orders[0].total"),
        (b'{"orders":[{"id":1,"total":1e-31}]}', "$.orders[0].total"),
        (b'{"orders":[{"id":1,"total":"1e999999"}]}', "$.orders[0].total"),
        (b'{"orders":[{"id":1,"total":' + b"1" * 400 + b"}]}", "$.orders[0].total"),
        ('{"orders":[{"id":"٣"}]}'.encode(), "$.orders[0].id"),
        ('{"orders":[{"id":1,"total":"５"}]}'.encode(), "$.orders[0].total"),
        (b'{"orders":[{"id":1,"total":"NaN"}]}', "$.orders[0].total"),
        (b'{"orders":[{"id":1,"total":"1_000"}]}', "$.orders[0].total"),
        (b'{"orders":[{"id":1,"total":" 1"}]}', "$.orders[0].total"),
    ],
)
def test_out_of_range_and_non_ascii_numbers_are_decode_errors(
    payload: bytes, fragment: str
) -> None:
    assert fragment in error_of(payload)


def test_amount_bounds_are_inclusive_of_what_money_needs() -> None:
    (order,) = decode_orders(
        b'{"orders":[{"id":9223372036854775807,"total":123456789012345678901234567890.5,'
        b'"tax_rate":0.000000000000000000000000000001}]}'
    )
    assert order.id == 2**63 - 1
    assert order.total == Decimal("123456789012345678901234567890.5")
    assert order.tax_rate == Decimal("1E-30")


def test_amounts_out_of_bounds_refused_even_when_the_text_is_short() -> None:
    # 11 characters, but no Decimal to keep: the exponent is measured first.
    assert "out of range" in error_of(b'[{"id":1,"total":1e999999999}]')
    assert "out of range" in error_of(b'[{"id":1,"discount":-1E+40}]')


def test_a_decoded_order_can_always_be_printed() -> None:
    (order,) = decode_orders(b'[{"id":1,"total":1e29}]')
    assert "total=Decimal('1E+29')" in repr(order)


# -- 6: lone surrogates are refused, not passed on to writers ---------------------------


def test_lone_surrogate_in_a_string_field_is_refused() -> None:
    message = error_of(b'{"orders":[{"id":1,"delivery_name":"\\ud800"}]}')
    assert "$.orders[0].delivery_name" in message
    assert "surrogate" in message
    # A valid pair (an emoji) is text like any other.
    (order,) = decode_orders(b'[{"id":1,"remarks":"\\ud83d\\ude00"}]')
    assert order.remarks == "\U0001f600"


# -- 8: the fast path is as strict as the validating path -------------------------------


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-W40-1T10:00:00Z",
        "2026-10-01T10:00:00.1234567890Z",
        "2026-10-01T10:00:00\x00Z",
        "2026-10-01T10:00:00Z\x00",
        "２０２６-10-01T10:00:00Z",
        "2026-10-01T24:00:00Z",
        "2026-10-01T10:00:60Z",
        "2026-13-01T10:00:00Z",
        "2026-10-01T10:00:00+24:00",
    ],
)
def test_timestamps_the_rule_refuses_are_refused_on_every_path(stamp: str) -> None:
    payload = json.dumps([{"id": 1, "created_at": stamp}]).encode()
    assert "$[0].created_at: expected an RFC 3339 timestamp" in error_of(payload)


# -- 10: statuses and duplicate keys --------------------------------------------------


def test_empty_status_is_refused() -> None:
    assert "$[0].status: expected a non-empty string" in error_of(
        b'[{"id":1,"status":""}]', decode_status_updates
    )


def test_duplicate_keys_the_last_one_wins_on_both_paths() -> None:
    # Documented: as Go's encoding/json, Python's json and msgspec do.
    (fast,) = decode_orders(b'[{"id":1,"total":1,"total":2}]')
    (slow,) = decode_orders(b'[{"id":1,"total":1,"total":2,"store_id":null}]')
    assert fast.total == slow.total == 2


# -- fuzz: only a result or a DecodeError, each in bounded time -------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.text(max_size=30)
    | st.sampled_from(["", "0001-01-01T00:00:00Z", "2026-10-01T10:00:00Z", "1e999999", "NaN"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [a.name for a in attrs.fields(Order)] + ["line_item", "update_at", "status", "provinces"]
)
records = st.dictionaries(field_names, json_values, max_size=8).map(lambda d: {"id": 1, **d})
number_texts = st.from_regex(
    r"-?[0-9]{1,60}(\.[0-9]{1,60})?([eE][+-]?[0-9]{1,12})?", fullmatch=True
)


@given(st.binary(max_size=300))
def test_random_bytes(payload: bytes) -> None:
    for decoder in DECODERS:
        outcome(decoder, payload)


@given(st.lists(records, max_size=4), st.sampled_from(["orders", "data", None]))
def test_random_records(values: list[dict[str, Any]], key: str | None) -> None:
    payload = json.dumps(values if key is None else {key: values}).encode()
    for decoder in DECODERS:
        outcome(decoder, payload)


@given(number_texts, st.sampled_from(["id", "total", "store_id", "remarks", "created_at"]))
def test_huge_numbers_in_every_kind_of_field(number: str, field: str) -> None:
    payload = b'[{"id":1,"' + field.encode() + b'":' + number.encode() + b"}]"
    result = outcome(decode_orders, payload)
    if isinstance(result, list):
        (order,) = result
        repr(order)  # always printable
        encode_orders([order])  # and encodable again


# -- 19: the fast path and the validating path agree ------------------------------------


def validating(payload: bytes, kind: Any) -> list[Any] | None:
    """The validating path alone, record by record."""
    values = json.loads(payload, parse_float=Decimal)
    out = []
    for index, record in enumerate(values):
        errors: list[FieldError] = []
        try:
            record = convert._load_record(json.dumps(record, default=str).encode())
        except ValueError:
            return None
        value = kind.validate(record, f"$[{index}]", errors)
        if errors:
            return None
        out.append(value)
    return out


def fast(payload: bytes, kind: Any) -> list[Any] | None:
    """The fast path alone: msgspec and the generated converter, no fallback."""
    try:
        return [kind.convert(w) for w in kind.pieces.decode(payload)]
    except Exception:
        return None


@given(st.lists(records, min_size=1, max_size=3))
def test_fast_and_validating_paths_agree(values: list[dict[str, Any]]) -> None:
    payload = json.dumps(values).encode()
    for kind in (convert._ORDERS, convert._STATUS_UPDATES, convert._NEW_ORDERS):
        quick = fast(payload, kind)
        if quick is not None:
            # Whatever the fast path accepts, the validating path accepts the same way.
            assert validating(payload, kind) == quick


@given(
    st.lists(
        st.sampled_from(
            [
                '"2026-10-01T10:00:00Z"',
                '"2026-10-01T10:00:00.123Z"',
                '"2026-10-01T10:00:00.1234567Z"',
                '"2026-10-01 10:00:00+07:00"',
                '"0001-01-01T00:00:00Z"',
                '""',
                "null",
                "0.1",
                "47500",
                '"489000"',
                '"abc"',
                "1e40",
                '"2026-W40-1T10:00:00Z"',
            ]
        ),
        min_size=3,
        max_size=3,
    )
)
def test_paths_agree_on_every_rule(texts: list[str]) -> None:
    stamp, amount, other = texts
    payload = f'[{{"id":7,"created_at":{stamp},"total":{amount},"updated_at":{other}}}]'.encode()
    quick = fast(payload, convert._ORDERS)
    slow = validating(payload, convert._ORDERS)
    if quick is not None:
        assert slow == quick
    whole = outcome(decode_orders, payload)
    assert (whole == slow) if slow is not None else isinstance(whole, DecodeError)


# -- cutting bodies into pieces: any cut the parser accepts is right ---------------------


@given(
    st.lists(
        st.fixed_dictionaries(
            {"id": st.integers(0, 10**6), "remarks": st.text(alphabet='{}[],"\\ ab', max_size=12)},
            optional={
                "line_items": st.lists(st.fixed_dictionaries({"id": st.integers(0, 9)}), max_size=3)
            },
        ),
        max_size=30,
    ),
    st.integers(min_value=1, max_value=200),
    st.booleans(),
)
def test_pieces_decode_to_the_whole(
    values: list[dict[str, Any]], target: int, spaced: bool
) -> None:
    text = json.dumps({"orders": values}, indent=1 if spaced else None).encode()
    assert [o.id for o in decode_orders(text)] == [v["id"] for v in values]
    # A body in tiny chunks reads the same as one bytes object.
    chunked = Body([text[i : i + 7] for i in range(0, len(text), 7)])
    assert chunked.slice(0, len(text)) == text
    assert [o.id for o in decode_orders(chunked)] == [v["id"] for v in values]  # type: ignore[arg-type]
    start = text.index(b"[") + 1
    end = text.rindex(b"]")
    spans = list(array_pieces(Body([text]), start, end, target=target))
    assert spans[0][0] == start
    assert spans[-1][1] == end
    if next_cut(Body([text]), end, start) is None:
        assert len(spans) == 1


def test_dense_body_decodes_in_many_short_steps() -> None:
    record = {"id": 1, "remarks": "x" * 500, "line_items": [{"id": 2, "name": "kaos"}] * 3}
    body = json.dumps({"orders": [{**record, "id": i} for i in range(3000)]}).encode()
    steps = convert.orders_steps(body, "test")
    count = 0
    try:
        while True:
            next(steps)
            count += 1
    except StopIteration as stop:
        orders = stop.value
    assert [o.id for o in orders] == list(range(3000))
    assert count > 30  # given back many times, not decoded in one go


# -- encoding: bad arguments are EncodeErrors before anything is sent --------------------


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        (
            NewOrder(order_date=datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))),
            "order_date",
        ),
        (NewOrder(remarks="\ud800"), "surrogate"),
        (NewOrder(store_id=10**5000), "store_id"),
        (NewOrder(total=Decimal("1E+999999999999")), "total"),
        (NewOrder(total=Decimal("1E-40")), "total"),
        (NewOrder(line_items=None), "line_items"),  # type: ignore[arg-type]
        (NewOrder(line_items=({"sku": "x"},)), "line_items[0]"),  # type: ignore[arg-type]
        (NewOrder(total=0.1), "binary floats"),  # type: ignore[arg-type]
    ],
)
def test_bad_records_are_encode_errors(record: NewOrder, fragment: str) -> None:
    with pytest.raises(EncodeError, match="item 0") as info:
        encode_new_orders([record])
    assert fragment in str(info.value)


def test_encoders_refuse_what_is_not_a_model() -> None:
    with pytest.raises(EncodeError, match="item 1: expected StatusUpdate, got tuple"):
        encode_status_updates([StatusUpdate(id=1, status="accepted"), (1, "x")])  # type: ignore[list-item]


# -- 4: Retry-After: a wait or no usable value, whatever the header ---------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("9" * 400, 1e12),
        ("9" * 5000, 1e12),
        ("²", None),
        ("٣", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
        ("Wed, 01 Jan 2026 00:00:30 GMT", 30.0),
        ("Wed, 99 Jan 99999 00:00:30 GMT", None),
    ],
)
def test_retry_after_values(header: str, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected


@given(st.text(max_size=60))
def test_retry_after_fuzz(header: str) -> None:
    wait = parse_retry_after(header, NOW)
    assert wait is None or (isinstance(wait, float) and wait >= 0)


# -- 14: every error class survives pickle ----------------------------------------------


def every_error() -> list[connexi_async.ConnexiError]:
    api = {"status": 503, "method": "GET", "path": "/v1/order", "reference": "r-1"}
    errors: list[connexi_async.ConnexiError] = [
        connexi_async.ConnexiError("base"),
        connexi_async.ConfigurationError("bad option"),
        DecodeError([FieldError("$[0].id", "expected an integer", 7)], context="GET x"),
        EncodeError("field total: bad"),
        connexi_async.APIError(**api),  # type: ignore[arg-type]
        connexi_async.BadRequestError(**api, hint="h"),  # type: ignore[arg-type]
        connexi_async.AuthenticationError(**api),  # type: ignore[arg-type]
        connexi_async.PermissionDeniedError(**api),  # type: ignore[arg-type]
        connexi_async.NotFoundError(**api),  # type: ignore[arg-type]
        connexi_async.ServerError(**api),  # type: ignore[arg-type]
        connexi_async.RateLimitError(retry_after=3.0, **api),
        connexi_async.RedirectError(location="http://x", **api),
        connexi_async.TransportError("reset", method="GET", path="/v1/order"),
        connexi_async.ResponseTooLargeError("big", method="GET", path="/v1/order"),
        connexi_async.TLSError("tls", method="GET", path="/v1/order", host="api.example"),
        connexi_async.ProxyError("proxy", method="GET", path="/v1/order"),
        connexi_async.PagingError("the server does not honour offset"),
        connexi_async.PagesShiftedError("kept changing"),
        SyncError("unreadable"),
        SyncLockedError("running", key="k", holder="pid 1"),
        CheckpointConflictError("moved", key="k", expected=1, found=2),
        connexi_async.sync.CheckpointStoreUnavailableError("database restarting"),
        connexi_async.fleet.FleetRunTimeoutError("an hour"),
        connexi_async.OutcomeUnknownError(
            "maybe", method="POST", path="/v1/order", orders=[connexi_async.NewOrder()], sent_at=NOW
        ),
        connexi_async.OutcomeUnknownError(
            "maybe",
            method="POST",
            path="/v1/partner/order",
            orders=[connexi_async.NewPartnerOrder(order_id="A")],
            result=connexi_async.CreateResult(),
            unsent=[connexi_async.NewPartnerOrder(order_id="B")],
        ),
        connexi_async.PartialFailureError(
            connexi_async.CreateResult(
                failed=(connexi_async.CreateFailure(order_id="A", reason="r"),)
            )
        ),
        connexi_async.InvalidTransitionError(7, "completed", "accepted"),
        connexi_async.StockUpdateTimeoutError("slow", transaction_code="t-1"),
        connexi_async.WindowError(NOW, NOW + timedelta(days=1), "boom"),
        connexi_async.WindowTooDenseError(NOW, NOW + timedelta(seconds=1), 100),
    ]
    return errors


def test_every_error_class_is_covered() -> None:
    covered = {type(e) for e in every_error()}
    public = {
        obj
        for module in (connexi_async, connexi_async.sync, connexi_async.fleet)
        for name in module.__all__
        if isinstance(obj := getattr(module, name), type)
        and issubclass(obj, connexi_async.ConnexiError)
    }
    assert public <= covered


@pytest.mark.parametrize("error", every_error(), ids=lambda e: type(e).__name__)
def test_errors_survive_pickle(error: connexi_async.ConnexiError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert vars(back) == vars(error)


def test_models_round_trip_through_the_encoder_with_bounds() -> None:
    order = Order(
        id=2**63 - 1,
        total=Decimal("-99999999999999999999999999999.999999999999999999999999999999"),
        line_items=(LineItem(quantity=-(2**63)),),
        created_at=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    )
    assert decode_orders(encode_orders([order])) == [order]
    assert NewLineItem().quantity == 0


# -- found by an adversarial review: the cutter stays linear, a bait costs one short step --


@pytest.mark.parametrize(
    "payload",
    [
        b'[{"id":1,"line_items":[' + b",".join([b"{}"] * 80_000) + b"]}]",
        json.dumps({"orders": [{"id": 1, "remarks": "},{" * 80_000 + "]"}, {"id": 2}]}).encode(),
    ],
    ids=["many line items", "a string of cuts"],
)
def test_cut_candidates_are_looked_at_once(payload: bytes) -> None:
    started = time.perf_counter()
    orders = decode_orders(payload)
    assert time.perf_counter() - started < BOUND  # was 1.8 s and growing quadratically
    data = json.loads(payload)
    expected = data["orders"] if isinstance(data, dict) else data
    assert [o.id for o in orders] == [r["id"] for r in expected]


def test_a_bait_for_the_cutter_costs_no_long_step() -> None:
    records: list[dict[str, Any]] = [{"id": i, "remarks": "x" * 150} for i in range(40_000)]
    records[300]["remarks"] = "},{[" * 3000  # straddles the first cut: fools every guess
    steps = convert.orders_steps(json.dumps({"orders": records}).encode(), "bait")
    longest = 0.0
    # Our steps, not the collector's walks of this test process's heap, are measured.
    gc.disable()
    try:
        while True:
            started = time.perf_counter()
            try:
                next(steps)
            except StopIteration as stop:
                orders = stop.value
                break
            finally:
                longest = max(longest, time.perf_counter() - started)
    finally:
        gc.enable()
    assert [o.id for o in orders] == list(range(40_000))
    assert longest < 0.080  # the rest of an 8 MB body typed in one step took 105 ms; now ~12
