"""The sandbox's partner API, read side: signed requests, offset pages, partner data.

The partner orders are the v1 dataset's orders seen through the partner API (one
dataset, two APIs): filtered and paged by ``order_date`` then ``id``, with delivery
orders and airwaybill numbers that follow each order's status. Products and the stock
update history are generated from the same seed.
"""

from __future__ import annotations

import hmac
import random
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from .._auth import partner_signature
from .._convert import page_body_steps
from .._cooperative import run_sliced
from .._models import (
    DeliveryLine,
    DeliveryOrder,
    Order,
    OrderStatus,
    PartnerLineItem,
    PartnerOrder,
    ProductStock,
    StockUpdate,
    StockUpdateItem,
    StockUpdateRecord,
)
from ._data import MARKETPLACES, PRODUCTS, STORES, Dataset

__all__ = [
    "PartnerState",
    "get_history",
    "get_orders",
    "get_product_stock",
    "partner_authorised",
]

MAX_LIMIT = 100
# v1 has "shipped"; the partner API's statuses stop at packed (sent, with an airwaybill).
_STATUS = {OrderStatus.SHIPPED: "packed"}
_WITH_DELIVERY = frozenset({"accepted", "packed", "completed"})

PageHook = Callable[[str, Mapping[str, str]], Awaitable[None] | None]
# How a page goes out: the v1 routes' streaming writer, passed in by the app.
Send = Callable[[web.Request, list[bytes]], Awaitable[web.StreamResponse]]
Now = Callable[[], datetime]


class PartnerState:
    """The partner API's part of the sandbox state."""

    def __init__(
        self,
        *,
        partner_id: str,
        partner_secret: str,
        seed: int,
        cache_bytes: int = 64 * 2**20,
        stock_update_delay: float = 0.5,
    ) -> None:
        self.partner_id = partner_id
        self.partner_secret = partner_secret
        # "slash": the request target as sent; "no-slash": without its leading "/" (the
        # documentation's Create Order example); "either": both accepted.
        self.signature_form = "either"
        self.page_hook: PageHook | None = None
        self.products: list[ProductStock] = generate_products(seed)
        self.history: list[StockUpdateRecord] = generate_history(seed)
        self._windows: OrderedDict[tuple[datetime, datetime, int], list[Order]] = OrderedDict()
        # Encoded pages (their records; the envelope's tail is added per response), so a
        # listing read again costs the server little, as a real one's would.
        self._pages: OrderedDict[tuple[Any, ...], list[bytes]] = OrderedDict()
        self._page_bytes = 0
        self.cache_bytes = cache_bytes
        # Writes: the e-mail each created order was given (the dataset has no field for
        # it), and the stock update jobs still running: id -> (when due, the update).
        self.emails: dict[int, str] = {}
        self.jobs: dict[int, tuple[datetime, StockUpdate]] = {}
        self.stock_update_delay = stock_update_delay

    def cached_page(self, key: tuple[Any, ...]) -> list[bytes] | None:
        parts = self._pages.get(key)
        if parts is not None:
            self._pages.move_to_end(key)
        return parts

    def keep_page(self, key: tuple[Any, ...], parts: list[bytes]) -> None:
        size = sum(len(p) for p in parts)
        if size > self.cache_bytes:
            return
        self._pages[key] = parts
        self._page_bytes += size
        while self._page_bytes > self.cache_bytes:
            _, old = self._pages.popitem(last=False)
            self._page_bytes -= sum(len(p) for p in old)

    def settle(self, moment: datetime) -> None:
        """Finish the stock update jobs due by ``moment`` (see _partner_writes)."""
        if self.jobs:
            from ._partner_writes import settle_jobs

            settle_jobs(self, moment)

    async def orders(self, dataset: Dataset, since: datetime, until: datetime) -> list[Order]:
        """The window's orders by (order_date, id), kept for the pages that follow."""
        key = (since, until, dataset.version)
        found = self._windows.get(key)
        if found is None:
            found = await run_sliced(dataset.by_order_date(since, until))
            self._windows[key] = found
            while len(self._windows) > 64:
                self._windows.popitem(last=False)
        return found


def error_response(status: int, message: str, **extra: Any) -> web.Response:
    """A JSON error body like a Go API sends: a message and a reference to quote."""
    body = {"message": message, "reference": str(uuid.uuid4()), **extra}
    return web.json_response(body, status=status)


def partner_authorised(request: web.Request, body: bytes, state: PartnerState) -> bool:
    """The signature recomputed over the raw request target and body, compared in
    constant time."""
    if request.headers.get("partner-id") != state.partner_id:
        return False
    given = request.headers.get("secret", "")
    target = request.raw_path.encode("latin-1")
    forms = {
        "slash": [target],
        "no-slash": [target.removeprefix(b"/")],
        "either": [target, target.removeprefix(b"/")],
    }[state.signature_form]
    return any(
        hmac.compare_digest(partner_signature(state.partner_secret, form + body), given)
        for form in forms
    )


# -- data ------------------------------------------------------------------------------


def partner_status(order: Order) -> str:
    """An order's status as the partner API names it (its lifecycle has no "shipped")."""
    status: str = _STATUS.get(order.order_status, order.order_status)  # type: ignore[call-overload]
    return status or "pending"


def partner_order(order: Order, *, with_delivery: bool, email: str | None = None) -> PartnerOrder:
    """An order as the partner API shows it (``email``: the one it was created with)."""
    status = partner_status(order)
    awb = order.airwaybill_number
    if status in ("packed", "completed") and not awb:
        awb = f"AWB{order.id:012d}"
    elif status not in ("packed", "completed"):
        awb = ""
    items = tuple(
        PartnerLineItem(
            id=li.id,
            order_item_id=li.order_item_id,
            sku=li.sku,
            name=li.name,
            quantity=li.quantity,
            unit_price=li.unit_price,
            raw_price=li.raw_price,
            discount=li.discount,
            created_at=li.created_at,
            updated_at=li.updated_at,
        )
        for li in order.line_items
    )
    deliveries: tuple[DeliveryOrder, ...] = ()
    if with_delivery and status in _WITH_DELIVERY:
        deliveries = (
            DeliveryOrder(
                id=order.id * 10,
                order_id=order.remote_order_id,
                delivery_number=f"DO/{order.id}",
                airwaybill_number=awb,
                do_status="pending" if status == "accepted" else status,
                delivery_lines=tuple(
                    DeliveryLine(
                        id=li.id,
                        name=f"{li.name} delivery",
                        sku=li.sku,
                        product_name=li.name,
                        order_quantity=li.quantity,
                        location="Stock/Commerce",
                        created_at=order.accepted_at or order.created_at,
                        updated_at=order.accepted_at or order.created_at,
                    )
                    for li in order.line_items
                ),
                sent_at=order.packed_at if status != "accepted" else None,
                created_at=order.accepted_at or order.created_at,
                updated_at=order.updated_at,
            ),
        )
    name = order.delivery_name.lower().replace(" ", ".") or f"buyer{order.id}"
    return PartnerOrder(
        id=order.id,
        order_id=order.remote_order_id,
        order_date=order.order_date,
        order_number=order.order_number,
        customer_reference=order.customer_reference,
        shipment_reference=order.shipment_reference,
        status=str(status),
        delivery_name=order.delivery_name,
        delivery_mobile=order.phone_number,
        delivery_email=f"{name}@example.id" if email is None else email,
        delivery_street_address=order.delivery_street_address,
        delivery_city=order.delivery_city,
        delivery_region=order.delivery_region,
        delivery_suburb=order.delivery_suburb,
        delivery_country=order.delivery_country,
        delivery_post_code=order.delivery_post_code,
        delivery_method=order.delivery_method,
        payment_method=order.payment_method,
        airwaybill_number=awb,
        currency_code=order.currency_code,
        subtotal=order.subtotal,
        discount_total=order.discount_total,
        shipping_total=order.shipping_total,
        tax_total=order.tax_total,
        total=order.total,
        line_items=items,
        delivery_orders=deliveries,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


_CATALOG_START = datetime(2026, 1, 5, 2, 9, 25, tzinfo=UTC)


def generate_products(seed: int, count: int = 240) -> list[ProductStock]:
    """The products and their stock, by id: the same for the same seed."""
    rng = random.Random(seed * 7_919)
    products = []
    for n in range(count):
        sku, name, _price = PRODUCTS[n % len(PRODUCTS)]
        size = ("S", "M", "L", "XL")[n // len(PRODUCTS) % 4]
        created = _CATALOG_START + timedelta(hours=n * 7, microseconds=n * 1_019)
        products.append(
            ProductStock(
                id=3 * n + 5,
                sku=f"{sku}-{size}",
                partner_sku=f"PROD{n:05d}",
                partner_variant_sku=f"PROD{n:05d}-{size}",
                name=f"{name} {size}",
                stock=int(rng.random() * 200),
                created_at=created,
                updated_at=created + timedelta(days=int(rng.random() * 60)),
            )
        )
    return products


def generate_history(seed: int, count: int = 120) -> list[StockUpdateRecord]:
    """The stock update jobs, by id, each with one item per channel it reached."""
    rng = random.Random(seed * 104_729)
    records = []
    for n in range(count):
        created = _CATALOG_START + timedelta(days=n // 2, hours=n % 24, microseconds=424_625)
        finished = created + timedelta(seconds=40)
        channels = MARKETPLACES[: 1 + int(rng.random() * len(MARKETPLACES))]
        sku = PRODUCTS[n % len(PRODUCTS)][0]
        store_id, store_name = STORES[n % len(STORES)]
        items = tuple(
            StockUpdateItem(
                id=11_701 + n * 10 + k,
                update_stock_history_id=233 + n,
                store_id=store_id,
                store_name=store_name,
                warehouse_name="default",
                variant_id=334_621 + n,
                sku=sku,
                remote_variant=f'{{"item_id": {12_346 + n}, "variation_id": 0}}',
                channel=channel,
                qty=int(rng.random() * 50),
                retrier_count=1,
                client_response=f'{{"item":{{"item_id":{12_345 + n}}}}}',
                message="Successfully Updated",
                success=True,
                created_at=created,
                updated_at=finished,
                finished_at=finished.replace(microsecond=0),
            )
            for k, channel in enumerate(channels)
        )
        records.append(
            StockUpdateRecord(
                id=233 + n,
                tenant_id=123,
                transaction_code=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                action_name="partner_update_stocks",
                total_sku=1,
                created_at=created,
                updated_at=finished,
                finished_at=finished.replace(microsecond=0),
                items=items,
            )
        )
    return records


# -- routes ----------------------------------------------------------------------------


def _page_params(request: web.Request) -> tuple[int, int]:
    """``limit`` (1-100, default 100) and ``offset`` (0 or more), or a 400."""
    values = []
    for name, default in (("limit", MAX_LIMIT), ("offset", 0)):
        text = request.query.get(name)
        if text is None:
            values.append(default)
            continue
        if not text.isascii() or not text.isdigit() or len(text) > 9:
            raise web.HTTPBadRequest(reason=f"{name} must be a whole number, got {text[:20]!r}")
        values.append(int(text))
    limit, offset = values
    if not 1 <= limit <= MAX_LIMIT:
        raise web.HTTPBadRequest(reason=f"limit must be from 1 to {MAX_LIMIT}, got {limit}")
    return limit, offset


def _instant(request: web.Request, name: str, *, required: bool) -> datetime | None:
    text = request.query.get(name)
    if text is None:
        if required:
            raise web.HTTPBadRequest(reason=f"{name} is required (RFC 3339)")
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise web.HTTPBadRequest(reason=f"{name} must be RFC 3339, got {text[:40]!r}") from None
    if value.tzinfo is None:
        raise web.HTTPBadRequest(reason=f"{name} must carry a time zone, got {text[:40]!r}")
    return value.astimezone(UTC)


async def _page(
    request: web.Request,
    state: PartnerState,
    send: Send,
    records: list[Any],
    cls: type,
    convert: Callable[[Any], Any] | None = None,
    key: tuple[Any, ...] | None = None,
) -> web.StreamResponse:
    """One page of ``records``; ``key`` (the listing and its version) lets it be cached."""
    limit, offset = _page_params(request)
    page_key = None if key is None else (*key, offset, limit)
    parts = None if page_key is None else state.cached_page(page_key)
    if parts is None:
        chosen = records[offset : offset + limit]
        page = [convert(r) for r in chosen] if convert is not None else chosen
        encoded = await run_sliced(
            page_body_steps(page, cls, total=len(records), offset=offset, limit=limit, reference="")
        )
        # Cut before the reference: each response gets its own.
        last = encoded[-1]
        parts = [*encoded[:-1], last[: last.rindex(b',"reference":')]]
        if page_key is not None:
            state.keep_page(page_key, parts)
    if state.page_hook is not None:
        # A test changes the data between two page requests of one listing.
        done = state.page_hook(request.path, request.query)
        if done is not None:
            await done
    reference = f',"reference":"{uuid.uuid4()}"}}'.encode()
    return await send(request, [*parts, reference])


async def get_orders(
    request: web.Request, dataset: Dataset, partner: PartnerState, send: Send, now: Now
) -> web.StreamResponse:
    since = _instant(request, "since", required=True)
    until = _instant(request, "until", required=True)
    assert since is not None
    assert until is not None
    flag = request.query.get("withDO")
    if flag not in ("true", "false"):
        raise web.HTTPBadRequest(reason="withDO is required: true or false")
    orders = await partner.orders(dataset, since, until)
    with_delivery = flag == "true"
    return await _page(
        request,
        partner,
        send,
        orders,
        PartnerOrder,
        lambda order: partner_order(
            order, with_delivery=with_delivery, email=partner.emails.get(order.id)
        ),
        key=(request.path, since, until, with_delivery, dataset.version),
    )


async def get_product_stock(
    request: web.Request, dataset: Dataset, partner: PartnerState, send: Send, now: Now
) -> web.StreamResponse:
    partner.settle(now())
    return await _page(request, partner, send, partner.products, ProductStock)


async def get_history(
    request: web.Request, dataset: Dataset, partner: PartnerState, send: Send, now: Now
) -> web.StreamResponse:
    partner.settle(now())
    since = _instant(request, "updated_at", required=False)
    records = partner.history
    if since is not None:
        records = [r for r in records if r.updated_at is not None and r.updated_at >= since]
    return await _page(request, partner, send, records, StockUpdateRecord)
