"""Typed records of the Connexi v1 API (orders, line items, locations, status updates)
and of SIRCLO's partner API (partner orders with delivery orders, product stock, the
stock update history).

All models are attrs classes, frozen, slotted and keyword-only. Timestamps are aware
UTC datetimes or ``None`` when unset (the API's Go zero time); amounts and rates are
``decimal.Decimal`` (never a binary float); ids are ``int``. Status fields stay ``str``
so a status the server adds later still decodes; :class:`OrderStatus` names the known ones.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import attrs

__all__ = [
    "DeliveryLine",
    "DeliveryOrder",
    "LineItem",
    "Location",
    "NewLineItem",
    "NewOrder",
    "Order",
    "OrderStatus",
    "PartnerLineItem",
    "PartnerOrder",
    "ProductStock",
    "Reconciliation",
    "StatusUpdate",
    "StockUpdateItem",
    "StockUpdateRecord",
]

_ZERO = Decimal(0)


class OrderStatus(enum.StrEnum):
    """The order statuses the API documents. Compare with ``order.order_status``.

    >>> OrderStatus.ACCEPTED == "accepted"
    True
    """

    PENDING = "pending"
    ACCEPTED = "accepted"
    PACKED = "packed"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


@attrs.frozen(kw_only=True)
class LineItem:
    """One line of an order, as the server returns it."""

    id: int = 0
    order_item_id: str = ""
    sku: str = ""
    name: str = ""
    quantity: int = 0
    unit_price: Decimal = _ZERO
    raw_price: Decimal = _ZERO
    total_price: Decimal = _ZERO
    discount: Decimal = _ZERO
    tax: Decimal = _ZERO
    shipping_total: Decimal = _ZERO
    total: Decimal = _ZERO
    created_at: datetime | None = None
    updated_at: datetime | None = None


@attrs.frozen(kw_only=True)
class NewLineItem:
    """A line item to create: a :class:`LineItem` without the fields the server assigns."""

    order_item_id: str = ""
    sku: str = ""
    name: str = ""
    quantity: int = 0
    unit_price: Decimal = _ZERO
    raw_price: Decimal = _ZERO
    total_price: Decimal = _ZERO
    discount: Decimal = _ZERO
    tax: Decimal = _ZERO
    shipping_total: Decimal = _ZERO
    total: Decimal = _ZERO


@attrs.frozen(kw_only=True)
class Order:
    """An order as Get Order returns it: every field of the v1 document.

    Only ``id`` is required; every other field defaults to its "not set" value
    (``""``, ``0``, ``Decimal(0)``, ``None`` or an empty tuple).

    >>> Order(id=111, marketplace_code="bklp").total
    Decimal('0')
    """

    id: int
    created_at: datetime | None = None
    updated_at: datetime | None = None
    order_number: str = ""
    order_date: datetime | None = None
    customer_code: str = ""
    remote_order_id: str = ""
    currency_code: str = ""
    exchange_rate: Decimal = _ZERO
    customer_reference: str = ""
    quote_expiry_date: datetime | None = None
    required_date: datetime | None = None
    warehouse_code: str = ""
    payment_method: str = ""
    delivery_name: str = ""
    delivery_street_address: str = ""
    delivery_street_address_2: str = ""
    delivery_suburb: str = ""
    delivery_city: str = ""
    delivery_region: str = ""
    delivery_post_code: str = ""
    delivery_country: str = ""
    delivery_method: str = ""
    delivery_number: str = ""
    delivery_method_code: str = ""
    delivery_enterprise_code: str = ""
    delivery_enterprise_name: str = ""
    buyer_delivery_number: str = ""
    remote_order_status: str = ""
    discount: Decimal = _ZERO
    tax_code: str = ""
    tax_rate: Decimal = _ZERO
    tax_total: Decimal = _ZERO
    shipping_total: Decimal = _ZERO
    discount_total: Decimal = _ZERO
    subtotal: Decimal = _ZERO
    total: Decimal = _ZERO
    order_status: str = ""
    remarks: str = ""
    marketplace_code: str = ""
    phone_number: str = ""
    airwaybill_number: str = ""
    shipment_reference: str = ""
    shipment_extras: str = ""
    processed_at: datetime | None = None
    accepted_at: datetime | None = None
    packed_at: datetime | None = None
    cancelled_at: datetime | None = None
    shipment_tracked_at: datetime | None = None
    edited_at: datetime | None = None
    exported_at: datetime | None = None
    printed_at: datetime | None = None
    accepted_by: int = 0
    packed_by: int = 0
    cancelled_by: int = 0
    printed_by: int = 0
    line_items: tuple[LineItem, ...] = ()
    store_id: int = 0
    store_name: str = ""
    comment: str = ""
    price_adjustment: Decimal = _ZERO
    edit_reason: str = ""
    cancel_reason: str = ""


@attrs.frozen(kw_only=True)
class NewOrder:
    """An order to create with ``client.create_orders``: what a partner system sends.

    Every :class:`Order` field except those the server assigns (``id``, ``created_at``,
    ``updated_at``, the lifecycle ``*_at`` stamps and the ``*_by`` user ids).

    >>> NewOrder(remote_order_id="1362230256", marketplace_code="bklp",
    ...          line_items=(NewLineItem(sku="TOP0001", quantity=2),)).line_items[0].sku
    'TOP0001'
    """

    order_number: str = ""
    order_date: datetime | None = None
    customer_code: str = ""
    remote_order_id: str = ""
    currency_code: str = ""
    exchange_rate: Decimal = _ZERO
    customer_reference: str = ""
    quote_expiry_date: datetime | None = None
    required_date: datetime | None = None
    warehouse_code: str = ""
    payment_method: str = ""
    delivery_name: str = ""
    delivery_street_address: str = ""
    delivery_street_address_2: str = ""
    delivery_suburb: str = ""
    delivery_city: str = ""
    delivery_region: str = ""
    delivery_post_code: str = ""
    delivery_country: str = ""
    delivery_method: str = ""
    delivery_number: str = ""
    delivery_method_code: str = ""
    delivery_enterprise_code: str = ""
    delivery_enterprise_name: str = ""
    buyer_delivery_number: str = ""
    remote_order_status: str = ""
    discount: Decimal = _ZERO
    tax_code: str = ""
    tax_rate: Decimal = _ZERO
    tax_total: Decimal = _ZERO
    shipping_total: Decimal = _ZERO
    discount_total: Decimal = _ZERO
    subtotal: Decimal = _ZERO
    total: Decimal = _ZERO
    order_status: str = ""
    remarks: str = ""
    marketplace_code: str = ""
    phone_number: str = ""
    airwaybill_number: str = ""
    shipment_reference: str = ""
    shipment_extras: str = ""
    line_items: tuple[NewLineItem, ...] = ()
    store_id: int = 0
    store_name: str = ""
    comment: str = ""
    price_adjustment: Decimal = _ZERO


@attrs.frozen(kw_only=True)
class StatusUpdate:
    """One entry of an Update Order body: set order ``id`` to ``status``.

    >>> StatusUpdate(id=111, status=OrderStatus.ACCEPTED)
    StatusUpdate(id=111, status=<OrderStatus.ACCEPTED: 'accepted'>)
    """

    id: int
    status: str


@attrs.frozen(kw_only=True)
class Location:
    """A node of the stock location tree: country, province, city or district.

    The wire format nests children under ``provinces``, ``cities`` and ``districts``;
    here they are all ``children``.

    >>> tree = Location(location_code="ID", provider_data="INDONESIA",
    ...     children=(Location(location_code="ID-AC", provider_data="ACEH"),))
    >>> [loc.location_code for loc in tree.walk()]
    ['ID', 'ID-AC']
    >>> tree.find("ID-AC").provider_data
    'ACEH'
    """

    location_code: str = ""
    provider_data: str = ""
    children: tuple[Location, ...] = ()

    def walk(self) -> Iterator[Location]:
        """Yield this location and every descendant, depth first, parents before children."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def find(self, location_code: str) -> Location | None:
        """The location with this code in this subtree, or ``None``."""
        for node in self.walk():
            if node.location_code == location_code:
                return node
        return None


@attrs.frozen(kw_only=True)
class Reconciliation:
    """What ``client.reconcile(exc)`` found out about orders whose create had no known
    outcome. Send ``missing`` again; ``created`` pairs each attempted order with the
    server's record of it.

    >>> result = await client.reconcile(exc)
    >>> await client.create_orders(result.missing)
    """

    created: tuple[tuple[NewOrder, Order], ...] = ()
    missing: tuple[NewOrder, ...] = ()
    # No remote_order_id or marketplace_code to look for: the server cannot tell us.
    unidentifiable: tuple[NewOrder, ...] = ()


# -- the partner API ---------------------------------------------------------------------
# Same exactness rules as v1. A field whose name on the wire differs (a typo of the
# documentation kept by the server) says so in its metadata: {"wire": "..."}.


def _wire(name: str, default: object) -> object:
    return attrs.field(default=default, metadata={"wire": name})


@attrs.frozen(kw_only=True)
class PartnerLineItem:
    """One line of a partner order (``raw_price``: the price before discount, on create)."""

    id: int = 0
    order_item_id: str = ""
    sku: str = ""
    name: str = ""
    quantity: int = 0
    unit_price: Decimal = _ZERO
    raw_price: Decimal = _ZERO
    discount: Decimal = _ZERO
    created_at: datetime | None = None
    updated_at: datetime | None = None


@attrs.frozen(kw_only=True)
class DeliveryLine:
    """One line of a delivery order: what leaves which stock location."""

    id: int = 0
    name: str = ""
    sku: str = ""
    product_name: str = ""
    order_quantity: int = 0
    location: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


@attrs.frozen(kw_only=True)
class DeliveryOrder:
    """A delivery order of a partner order (``with_delivery_orders=True``)."""

    id: int = 0
    order_id: str = ""
    delivery_number: str = ""
    airwaybill_number: str = ""
    do_status: str = ""
    delivery_lines: tuple[DeliveryLine, ...] = ()
    sent_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@attrs.frozen(kw_only=True)
class PartnerOrder:
    """An order as the partner API's Get Order returns it.

    ``order_id`` is the partner's own id (a natural key the server refuses twice);
    ``id`` is Connexi's. ``status`` is one of pending, accepted, packed, completed,
    cancelled (kept a ``str``: a new one still decodes).

    >>> PartnerOrder(id=2886789, order_id="ORD-123").status
    ''
    """

    id: int
    order_id: str = ""
    order_date: datetime | None = None
    order_number: str = ""
    customer_reference: str = ""
    shipment_reference: str = ""
    status: str = ""
    delivery_name: str = ""
    delivery_mobile: str = ""
    delivery_email: str = ""
    delivery_street_address: str = ""
    delivery_city: str = ""
    delivery_region: str = ""
    delivery_suburb: str = ""
    delivery_country: str = ""
    delivery_post_code: str = ""
    delivery_method: str = ""
    payment_method: str = ""
    airwaybill_number: str = ""
    currency_code: str = ""
    subtotal: Decimal = _ZERO
    discount_total: Decimal = _ZERO
    shipping_total: Decimal = _ZERO
    tax_total: Decimal = _ZERO
    total: Decimal = _ZERO
    line_items: tuple[PartnerLineItem, ...] = ()
    delivery_orders: tuple[DeliveryOrder, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None


@attrs.frozen(kw_only=True)
class ProductStock:
    """A product's stock (Get Stock). The server spells ``updated_at`` as ``update_at``."""

    id: int
    sku: str = ""
    partner_sku: str = ""
    partner_variant_sku: str = ""
    name: str = ""
    stock: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


@attrs.frozen(kw_only=True)
class StockUpdateItem:
    """One channel's outcome of a stock update job (``client_reponse`` on the wire)."""

    id: int = 0
    update_stock_history_id: int = 0
    store_id: int = 0
    store_name: str = ""
    warehouse_id: int = 0
    warehouse_name: str = ""
    variant_id: int = 0
    sku: str = ""
    remote_variant: str = ""
    row_number: int = 0
    channel: str = ""
    qty: int = 0
    retrier_count: int = 0
    progress: bool = False
    client_response: str = _wire("client_reponse", "")  # type: ignore[assignment]
    message: str = ""
    success: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None


@attrs.frozen(kw_only=True)
class StockUpdateRecord:
    """One stock update job of the inventory history, with its per-channel ``items``
    (``update_stock_history_item`` on the wire)."""

    id: int
    tenant_id: int = 0
    user_id: int = 0
    transaction_code: str = ""
    action_name: str = ""
    upload_file_url: str = ""
    total_sku: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    items: tuple[StockUpdateItem, ...] = _wire("update_stock_history_item", ())  # type: ignore[assignment]
