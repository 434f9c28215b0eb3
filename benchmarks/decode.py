"""Decode speed: ``decode_orders`` against ``json.loads`` alone and a hand-written decoder.

Run: ``.venv/bin/python benchmarks/decode.py`` (or ``make bench``, which includes it).

It generates 10,000 seed-shaped orders (the v1 document's example, about 1.7 kB each with
its line items), then measures in one process, side by side in several rounds (in each,
every contender runs five times, interleaved, and keeps its fastest run):

(a) ``json.loads`` alone (the untyped floor of any decoder);
(b) what a careful user writes by hand: ``json.loads``, then per record ``Order(...)``
    with ``datetime.fromisoformat`` per timestamp (zero time -> None),
    ``Decimal(str(v))`` per amount and a ``LineItem(...)`` per line item;
(c) pydantic v2, ``TypeAdapter(...).validate_json`` over models with the same fields and
    a Go-zero-time hook: what an openai-python-style client does (optional: skipped
    when pydantic is not installed; ``make bench`` installs it);
(d) ``decode_orders``.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs

from connexi_async import LineItem, Order, PartnerLineItem, PartnerOrder, decode_orders

ZERO_TIME = "0001-01-01T00:00:00Z"
ORDER_TIMESTAMPS = [
    "created_at",
    "updated_at",
    "order_date",
    "quote_expiry_date",
    "required_date",
    "processed_at",
    "accepted_at",
    "packed_at",
    "cancelled_at",
    "shipment_tracked_at",
    "edited_at",
    "exported_at",
    "printed_at",
]
ORDER_AMOUNTS = [
    "exchange_rate",
    "discount",
    "tax_rate",
    "tax_total",
    "shipping_total",
    "discount_total",
    "subtotal",
    "total",
    "price_adjustment",
]
ORDER_STRINGS = tuple(a.name for a in attrs.fields(Order) if a.type in (str, "str"))
ORDER_INTS = ["accepted_by", "packed_by", "cancelled_by", "printed_by", "store_id"]
ITEM_AMOUNTS = [
    "unit_price",
    "raw_price",
    "total_price",
    "discount",
    "tax",
    "shipping_total",
    "total",
]
ITEM_TIMESTAMPS = ("created_at", "updated_at")


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_payload(count: int = 10_000, seed: int = 1) -> bytes:
    """``count`` orders shaped like the v1 document's example, with 1-2 line items."""
    rng = random.Random(seed)
    base = datetime(2018, 11, 7, tzinfo=UTC)
    orders = []
    for index in range(count):
        created = base + timedelta(seconds=index * 7, microseconds=rng.randrange(10**6))
        items = []
        subtotal = 0
        for line in range(rng.randint(1, 2)):
            price = rng.randrange(10, 500) * 500
            qty = rng.randint(1, 3)
            subtotal += price * qty
            items.append(
                {
                    "id": index * 10 + line,
                    "order_item_id": f"{rng.randrange(10**5):05d}HDLJR",
                    "sku": f"SKU{rng.randrange(10**4):04d}",
                    "name": "Kaos Polos Cotton Combed 30s",
                    "quantity": qty,
                    "unit_price": price,
                    "raw_price": price,
                    "total_price": price * qty,
                    "discount": 0,
                    "tax": float(Decimal(price * qty) / Decimal("11")).__round__(3),
                    "shipping_total": 0,
                    "total": price * qty,
                    "created_at": _stamp(created),
                    "updated_at": _stamp(created + timedelta(microseconds=2)),
                }
            )
        shipping = rng.choice([9000, 18000, 45000])
        orders.append(
            {
                "id": 111 + index,
                "created_at": _stamp(created),
                "updated_at": _stamp(created + timedelta(microseconds=2)),
                "order_number": "",
                "order_date": (created - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "customer_code": "",
                "remote_order_id": str(1362230256 + index),
                "currency_code": "IDR",
                "exchange_rate": 1,
                "customer_reference": f"18{1362230256 + index}",
                "quote_expiry_date": ZERO_TIME,
                "required_date": ZERO_TIME,
                "warehouse_code": "",
                "payment_method": "",
                "delivery_name": "Danny",
                "delivery_street_address": "Jl Biak no 19C\r\nsebelah Bank Permata",
                "delivery_street_address_2": "",
                "delivery_suburb": "Gambir",
                "delivery_city": "Jakarta Pusat",
                "delivery_region": "DKI Jakarta",
                "delivery_post_code": "10150",
                "delivery_country": "Indonesia",
                "delivery_method": "JNE REG",
                "delivery_number": "",
                "delivery_method_code": "",
                "delivery_enterprise_code": "",
                "delivery_enterprise_name": "",
                "buyer_delivery_number": "",
                "remote_order_status": "pending",
                "discount": 0,
                "tax_code": "PPN",
                "tax_rate": 0.1,
                "tax_total": 0,
                "shipping_total": shipping,
                "discount_total": 0,
                "subtotal": subtotal,
                "total": subtotal + shipping,
                "order_status": "",
                "remarks": "",
                "marketplace_code": rng.choice(["bklp", "tkpd", "shpe", "lzda", "blib"]),
                "phone_number": "087867255331",
                "airwaybill_number": "",
                "shipment_reference": "",
                "shipment_extras": "",
                "processed_at": ZERO_TIME,
                "accepted_at": ZERO_TIME,
                "packed_at": ZERO_TIME,
                "cancelled_at": ZERO_TIME,
                "shipment_tracked_at": ZERO_TIME,
                "edited_at": ZERO_TIME,
                "exported_at": ZERO_TIME,
                "printed_at": ZERO_TIME,
                "accepted_by": 0,
                "packed_by": 0,
                "cancelled_by": 0,
                "printed_by": 0,
                "line_items": items,
                "store_id": 4,
                "store_name": "",
                "comment": "",
                "price_adjustment": 0,
                "edit_reason": "",
                "cancel_reason": "",
            }
        )
    return json.dumps({"orders": orders}, separators=(",", ":")).encode()


def _ts(value: Any) -> datetime | None:
    if not value or value == ZERO_TIME:
        return None
    return datetime.fromisoformat(value)


def hand_written_order(d: dict[str, Any]) -> Order:
    """What a careful user writes without the library: every field spelled out."""
    items = tuple(
        LineItem(
            id=li.get("id", 0),
            order_item_id=li.get("order_item_id", ""),
            sku=li.get("sku", ""),
            name=li.get("name", ""),
            quantity=li.get("quantity", 0),
            unit_price=Decimal(str(li.get("unit_price", 0))),
            raw_price=Decimal(str(li.get("raw_price", 0))),
            total_price=Decimal(str(li.get("total_price", 0))),
            discount=Decimal(str(li.get("discount", 0))),
            tax=Decimal(str(li.get("tax", 0))),
            shipping_total=Decimal(str(li.get("shipping_total", 0))),
            total=Decimal(str(li.get("total", 0))),
            created_at=_ts(li.get("created_at")),
            updated_at=_ts(li.get("updated_at")),
        )
        for li in d.get("line_items") or ()
    )
    return Order(
        id=d["id"],
        created_at=_ts(d.get("created_at")),
        updated_at=_ts(d.get("updated_at")),
        order_number=d.get("order_number", ""),
        order_date=_ts(d.get("order_date")),
        customer_code=d.get("customer_code", ""),
        remote_order_id=d.get("remote_order_id", ""),
        currency_code=d.get("currency_code", ""),
        exchange_rate=Decimal(str(d.get("exchange_rate", 0))),
        customer_reference=d.get("customer_reference", ""),
        quote_expiry_date=_ts(d.get("quote_expiry_date")),
        required_date=_ts(d.get("required_date")),
        warehouse_code=d.get("warehouse_code", ""),
        payment_method=d.get("payment_method", ""),
        delivery_name=d.get("delivery_name", ""),
        delivery_street_address=d.get("delivery_street_address", ""),
        delivery_street_address_2=d.get("delivery_street_address_2", ""),
        delivery_suburb=d.get("delivery_suburb", ""),
        delivery_city=d.get("delivery_city", ""),
        delivery_region=d.get("delivery_region", ""),
        delivery_post_code=d.get("delivery_post_code", ""),
        delivery_country=d.get("delivery_country", ""),
        delivery_method=d.get("delivery_method", ""),
        delivery_number=d.get("delivery_number", ""),
        delivery_method_code=d.get("delivery_method_code", ""),
        delivery_enterprise_code=d.get("delivery_enterprise_code", ""),
        delivery_enterprise_name=d.get("delivery_enterprise_name", ""),
        buyer_delivery_number=d.get("buyer_delivery_number", ""),
        remote_order_status=d.get("remote_order_status", ""),
        discount=Decimal(str(d.get("discount", 0))),
        tax_code=d.get("tax_code", ""),
        tax_rate=Decimal(str(d.get("tax_rate", 0))),
        tax_total=Decimal(str(d.get("tax_total", 0))),
        shipping_total=Decimal(str(d.get("shipping_total", 0))),
        discount_total=Decimal(str(d.get("discount_total", 0))),
        subtotal=Decimal(str(d.get("subtotal", 0))),
        total=Decimal(str(d.get("total", 0))),
        order_status=d.get("order_status", ""),
        remarks=d.get("remarks", ""),
        marketplace_code=d.get("marketplace_code", ""),
        phone_number=d.get("phone_number", ""),
        airwaybill_number=d.get("airwaybill_number", ""),
        shipment_reference=d.get("shipment_reference", ""),
        shipment_extras=d.get("shipment_extras", ""),
        processed_at=_ts(d.get("processed_at")),
        accepted_at=_ts(d.get("accepted_at")),
        packed_at=_ts(d.get("packed_at")),
        cancelled_at=_ts(d.get("cancelled_at")),
        shipment_tracked_at=_ts(d.get("shipment_tracked_at")),
        edited_at=_ts(d.get("edited_at")),
        exported_at=_ts(d.get("exported_at")),
        printed_at=_ts(d.get("printed_at")),
        accepted_by=d.get("accepted_by", 0),
        packed_by=d.get("packed_by", 0),
        cancelled_by=d.get("cancelled_by", 0),
        printed_by=d.get("printed_by", 0),
        line_items=items,
        store_id=d.get("store_id", 0),
        store_name=d.get("store_name", ""),
        comment=d.get("comment", ""),
        price_adjustment=Decimal(str(d.get("price_adjustment", 0))),
        edit_reason=d.get("edit_reason", ""),
        cancel_reason=d.get("cancel_reason", ""),
    )


def hand_written_partner_order(d: dict[str, Any]) -> PartnerOrder:
    """The same care for a partner order (what the sequential pager builds)."""
    items = tuple(
        PartnerLineItem(
            id=li.get("id", 0),
            order_item_id=li.get("order_item_id", ""),
            sku=li.get("sku", ""),
            name=li.get("name", ""),
            quantity=li.get("quantity", 0),
            unit_price=Decimal(str(li.get("unit_price", 0))),
            raw_price=Decimal(str(li.get("raw_price", 0))),
            discount=Decimal(str(li.get("discount", 0))),
            created_at=_ts(li.get("created_at")),
            updated_at=_ts(li.get("updated_at")),
        )
        for li in d.get("line_items") or ()
    )
    return PartnerOrder(
        id=d["id"],
        order_id=d.get("order_id", ""),
        order_date=_ts(d.get("order_date")),
        order_number=d.get("order_number", ""),
        customer_reference=d.get("customer_reference", ""),
        shipment_reference=d.get("shipment_reference", ""),
        status=d.get("status", ""),
        delivery_name=d.get("delivery_name", ""),
        delivery_mobile=d.get("delivery_mobile", ""),
        delivery_email=d.get("delivery_email", ""),
        delivery_street_address=d.get("delivery_street_address", ""),
        delivery_city=d.get("delivery_city", ""),
        delivery_region=d.get("delivery_region", ""),
        delivery_suburb=d.get("delivery_suburb", ""),
        delivery_country=d.get("delivery_country", ""),
        delivery_post_code=d.get("delivery_post_code", ""),
        delivery_method=d.get("delivery_method", ""),
        payment_method=d.get("payment_method", ""),
        airwaybill_number=d.get("airwaybill_number", ""),
        currency_code=d.get("currency_code", ""),
        subtotal=Decimal(str(d.get("subtotal", 0))),
        discount_total=Decimal(str(d.get("discount_total", 0))),
        shipping_total=Decimal(str(d.get("shipping_total", 0))),
        tax_total=Decimal(str(d.get("tax_total", 0))),
        total=Decimal(str(d.get("total", 0))),
        line_items=items,
        created_at=_ts(d.get("created_at")),
        updated_at=_ts(d.get("updated_at")),
    )


def hand_written_decode(payload: bytes) -> list[Order]:
    return [hand_written_order(d) for d in json.loads(payload)["orders"]]


def pydantic_decoder() -> Callable[[bytes], list[Any]] | None:
    """pydantic v2 models of the same fields, validated from the JSON bytes in Rust."""
    try:
        import pydantic
    except ImportError:
        return None
    from typing import Annotated

    def zero_is_none(value: Any) -> Any:
        return None if value in ("", ZERO_TIME) else value

    Stamp = Annotated[datetime | None, pydantic.BeforeValidator(zero_is_none)]
    types = {str: str, int: int, Decimal: Decimal}

    def model(cls: type, **extra: Any) -> type[pydantic.BaseModel]:
        fields: dict[str, Any] = {}
        for a in attrs.fields(attrs.resolve_types(cls)):
            if a.name in extra:
                fields[a.name] = extra[a.name]
            elif a.type in types:
                default = a.default if a.default is not attrs.NOTHING else ...
                fields[a.name] = (types[a.type], default)
            else:
                fields[a.name] = (Stamp, None)
        return pydantic.create_model(f"P{cls.__name__}", **fields)  # type: ignore[call-overload,no-any-return]

    item = model(LineItem)
    order = model(Order, line_items=(list[item] | None, None))  # type: ignore[valid-type]
    envelope = pydantic.create_model("POrders", orders=(list[order], ...))  # type: ignore[valid-type]
    adapter = pydantic.TypeAdapter(envelope)
    return lambda payload: adapter.validate_json(payload).orders  # type: ignore[no-any-return]


def measure(fn: Callable[[], object], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def run(count: int = 10_000, rounds: int = 7, repeats: int = 5) -> dict[str, Any]:
    """``rounds`` side-by-side rounds; in each, every contender runs ``repeats`` times,
    interleaved with the others, and its round's time is its fastest run (as ``timeit``
    advises: on a shared machine the noise only ever adds time, so the fastest run is
    the least disturbed measure of the code itself). Every ratio is taken per round."""
    payload = make_payload(count)
    assert hand_written_decode(payload) == decode_orders(payload), "decoders disagree"
    contenders: dict[str, Callable[[], object]] = {
        "json.loads": lambda: json.loads(payload),
        "hand-written": lambda: hand_written_decode(payload),
        "decode_orders": lambda: decode_orders(payload),
    }
    peer = pydantic_decoder()
    if peer is not None:
        assert len(peer(payload)) == count
        contenders["pydantic v2"] = lambda: peer(payload)
    results: dict[str, Any] = {"orders": count, "bytes_per_order": len(payload) // count}
    # A warm-up round, not counted: the first runs of a process pay for growing its
    # heap (a first round measured ~25% slower for decode_orders than the ones after).
    for _ in range(repeats):
        for fn in contenders.values():
            fn()
    # Interleave the runs so drift of the machine hits every contender alike.
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        runs: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(repeats):
            for name, fn in contenders.items():
                runs[name] += measure(fn, 1)
        for name, times in runs.items():
            samples[name].append(min(times))
    for name, times in samples.items():
        rates = sorted(count / t for t in times)
        results[name] = {
            "median": statistics.median(rates),
            "min": rates[0],
            "max": rates[-1],
        }
    results["ratio_vs_json_loads"] = (
        results["decode_orders"]["median"] / results["json.loads"]["median"]
    )
    results["ratio_vs_hand_written"] = (
        results["decode_orders"]["median"] / results["hand-written"]["median"]
    )
    # Per round, side by side: a target must hold in every round, not only at the median.
    results["rounds_vs_hand_written"] = [
        h / d for d, h in zip(samples["decode_orders"], samples["hand-written"], strict=True)
    ]
    if peer is not None:
        results["ratio_vs_pydantic"] = (
            results["decode_orders"]["median"] / results["pydantic v2"]["median"]
        )
        results["rounds_vs_pydantic"] = [
            p / d for d, p in zip(samples["decode_orders"], samples["pydantic v2"], strict=True)
        ]
    return results


def main() -> int:
    results = run()
    print(f"{results['orders']} orders, {results['bytes_per_order']} bytes each")
    for name in ("json.loads", "hand-written", "pydantic v2", "decode_orders"):
        if name not in results:
            continue
        r = results[name]
        print(
            f"  {name:<14} {r['median']:>10,.0f} orders/s "
            f"(min {r['min']:,.0f}, max {r['max']:,.0f})"
        )
    print(f"  decode_orders / json.loads    = {results['ratio_vs_json_loads']:.2f}")
    print(f"  decode_orders / hand-written  = {results['ratio_vs_hand_written']:.2f}")
    if "ratio_vs_pydantic" in results:
        print(f"  decode_orders / pydantic v2   = {results['ratio_vs_pydantic']:.2f}")
    worst = min(results["rounds_vs_hand_written"])
    print(f"  worst round vs hand-written   = {worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
