"""Property tests: every model round-trips; mutated payloads give a DecodeError or a result."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connexi_async import (
    DecodeError,
    LineItem,
    Location,
    NewLineItem,
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

SEED = json.loads((Path(__file__).parent / "seed_order.json").read_text())

offsets = st.sampled_from([UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-5))])
timestamps = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=offsets),
)
# Within the documented bounds: below 10**30, at most 30 digits after the point, 64 bits.
amounts = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: d.adjusted() < 30 and d.as_tuple().exponent >= -30  # type: ignore[operator]
)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
texts = st.text(max_size=20)

_BY_TYPE: dict[Any, st.SearchStrategy[Any]] = {
    str: texts,
    int: ints,
    Decimal: amounts,
    datetime | None: timestamps,
}


def builds(cls: type, **extra: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    hints = attrs.resolve_types(cls)
    fields = {a.name: extra.get(a.name, _BY_TYPE.get(a.type)) for a in attrs.fields(hints)}
    return st.builds(cls, **{k: v for k, v in fields.items() if v is not None})


line_items = builds(LineItem)
orders = builds(Order, line_items=st.lists(line_items, max_size=3).map(tuple))
new_orders = builds(NewOrder, line_items=st.lists(builds(NewLineItem), max_size=3).map(tuple))
locations = st.recursive(
    builds(Location, children=st.just(())),
    lambda kids: st.builds(
        Location,
        location_code=texts,
        provider_data=texts,
        children=st.lists(kids, max_size=3).map(tuple),
    ),
    max_leaves=12,
)


@given(st.lists(orders, max_size=3))
def test_orders_round_trip(values: list[Order]) -> None:
    assert decode_orders(encode_orders(values)) == values


@given(st.lists(new_orders, max_size=3))
def test_new_orders_round_trip(values: list[NewOrder]) -> None:
    assert decode_new_orders(encode_new_orders(values)) == values


@given(st.lists(builds(StatusUpdate, status=texts.filter(bool)), max_size=5))
def test_status_updates_round_trip(values: list[StatusUpdate]) -> None:
    assert decode_status_updates(encode_status_updates(values)) == values


@given(st.lists(locations, max_size=3))
def test_locations_round_trip(values: list[Location]) -> None:
    assert decode_locations(encode_locations(values)) == values


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(
    key=st.sampled_from([*SEED["orders"][0].keys(), "line_item", "update_at", "new"]),
    value=json_values,
)
def test_mutated_field_gives_decode_error_or_result(key: str, value: Any) -> None:
    record = {**SEED["orders"][0], key: value}
    try:
        payload = json.dumps({"orders": [record]})
    except ValueError:
        return
    try:
        (order,) = decode_orders(payload)
    except DecodeError as exc:
        assert exc.errors
        # NaN and Infinity are refused while parsing, so they are reported at "$".
        assert all(
            e.path.startswith(("$.orders[0]", "$: invalid JSON")) or e.path == "$"
            for e in exc.errors
        )
    else:
        assert isinstance(order, Order)


@settings(max_examples=300)
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_give_decode_error_or_result(data: bytes) -> None:
    for decoder in (decode_orders, decode_locations, decode_status_updates):
        try:
            decoder(data)
        except DecodeError:
            pass


@settings(max_examples=200)
@given(cut=st.integers(min_value=0, max_value=len(json.dumps(SEED))), junk=st.binary(max_size=3))
def test_truncated_or_spliced_payload(cut: int, junk: bytes) -> None:
    text = json.dumps(SEED).encode()
    try:
        decode_orders(text[:cut] + junk + text[cut:])
    except DecodeError:
        pass
