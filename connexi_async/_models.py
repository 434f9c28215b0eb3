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
from typing import Any, ClassVar

import attrs

from ._errors import InvalidTransitionError, PartialFailureError

__all__ = [
    "Accept",
    "Cancel",
    "ChannelStock",
    "Complete",
    "CreateFailure",
    "CreateResult",
    "CreatedProduct",
    "DeliveryLine",
    "DeliveryOrder",
    "LineItem",
    "Location",
    "NewLineItem",
    "NewOrder",
    "NewPartnerLineItem",
    "NewPartnerOrder",
    "NewProduct",
    "Order",
    "OrderStatus",
    "Pack",
    "PartnerLineItem",
    "PartnerOrder",
    "PartnerVariant",
    "ProductFailure",
    "ProductResult",
    "ProductStock",
    "Reconciliation",
    "StatusChange",
    "StatusFailure",
    "StatusResult",
    "StatusSuccess",
    "StatusUpdate",
    "StockUpdate",
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


# -- the partner API, writes -------------------------------------------------------------
# What is sent has defaults everywhere, so a missing field is named by the client's check
# before sending (an EncodeError listing each one), not by a TypeError from attrs.


@attrs.frozen(kw_only=True)
class NewPartnerLineItem:
    """A line of a partner order to create. ``sku``, ``name``, ``quantity`` (1 or more)
    and ``raw_price`` (the unit price before discount) are required."""

    order_item_id: str = ""
    sku: str = ""
    name: str = ""
    quantity: int = 0
    raw_price: Decimal | None = None
    discount: Decimal = _ZERO


@attrs.frozen(kw_only=True)
class NewPartnerOrder:
    """A partner order to create with ``PartnerClient.create_orders``.

    Required (checked before sending): ``order_id`` (your own id: the natural key the
    server refuses twice), ``order_date`` (aware), ``customer_reference``, the
    ``delivery_*`` address fields, ``delivery_method``, ``payment_method`` and at least
    one line item. ``status`` empty means pending.

    >>> NewPartnerOrder(order_id="ORD-123", order_date=datetime(2026, 10, 1, tzinfo=UTC),
    ...     line_items=(NewPartnerLineItem(sku="TOP0001", name="Kaos", quantity=2,
    ...                                    raw_price=Decimal("45000")),)).order_id
    'ORD-123'
    """

    order_id: str = ""
    order_date: datetime | None = None
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
    discount_total: Decimal = _ZERO
    shipping_total: Decimal = _ZERO
    line_items: tuple[NewPartnerLineItem, ...] = ()


@attrs.frozen(kw_only=True)
class CreateFailure:
    """An order the server refused, with its reason (``already_exists`` when the
    ``order_id`` was taken)."""

    order_id: str = ""
    reason: str = ""

    @property
    def already_exists(self) -> bool:
        return "already exist" in self.reason.lower()


class _Partial:
    """What partial-success results share."""

    __slots__ = ()
    failed: tuple[Any, ...]

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def raise_for_failures(self) -> None:
        """Raise :class:`PartialFailureError` (carrying this result) if anything failed."""
        if self.failed:
            raise PartialFailureError(self)


@attrs.frozen(kw_only=True)
class CreateResult(_Partial):
    """What ``PartnerClient.create_orders`` did: ``created`` (the server's records) and
    ``failed`` (refused, with reasons). A partial failure is a result, not an exception:

    >>> result = await client.create_orders(orders)
    >>> for failure in result.failed:
    ...     print(failure.order_id, failure.reason)
    >>> result.raise_for_failures()  # if you prefer an exception
    """

    created: tuple[PartnerOrder, ...] = ()
    failed: tuple[CreateFailure, ...] = ()


class _Change:
    """A status change of the partner API; ``status`` is the one it asks for."""

    __slots__ = ()
    status: ClassVar[str]
    # The statuses it may be applied to (the documented lifecycle; a change to the
    # status an order already has is a no-op the server accepts).
    after: ClassVar[frozenset[str]]
    id: int
    updated_at: datetime | None

    @classmethod
    def _checked(cls, order: PartnerOrder) -> PartnerOrder:
        if not isinstance(order, PartnerOrder):
            raise InvalidTransitionError.not_an_order(order)
        current = (order.status.strip() if isinstance(order.status, str) else "") or "pending"
        current = current.lower()
        if current not in cls.after and current != cls.status:
            raise InvalidTransitionError(order.id, current, cls.status)
        return order


@attrs.frozen
class Accept(_Change):
    """Accept order ``id``; ``updated_at`` is the order's as last read (optimistic
    concurrency). ``Accept.of(order)`` takes both from an order.

    >>> Accept.of(order)
    """

    status: ClassVar[str] = "accepted"
    after: ClassVar[frozenset[str]] = frozenset({"pending"})
    id: int
    updated_at: datetime | None = None

    @classmethod
    def of(cls, order: PartnerOrder) -> Accept:
        order = cls._checked(order)
        return cls(order.id, order.updated_at)


@attrs.frozen
class Pack(_Change):
    """Mark order ``id`` packed (sent) with its ``airwaybill_number``."""

    status: ClassVar[str] = "packed"
    after: ClassVar[frozenset[str]] = frozenset({"accepted"})
    id: int
    airwaybill_number: str = ""
    updated_at: datetime | None = None

    @classmethod
    def of(cls, order: PartnerOrder, airwaybill_number: str) -> Pack:
        order = cls._checked(order)
        return cls(order.id, airwaybill_number, order.updated_at)


@attrs.frozen
class Complete(_Change):
    """Mark order ``id`` completed (received), optionally by whom."""

    status: ClassVar[str] = "completed"
    after: ClassVar[frozenset[str]] = frozenset({"packed"})
    id: int
    received_by: str = ""
    updated_at: datetime | None = None

    @classmethod
    def of(cls, order: PartnerOrder, received_by: str = "") -> Complete:
        order = cls._checked(order)
        return cls(order.id, received_by, order.updated_at)


@attrs.frozen
class Cancel(_Change):
    """Cancel order ``id``, optionally with a reason."""

    status: ClassVar[str] = "cancelled"
    after: ClassVar[frozenset[str]] = frozenset({"pending", "accepted", "packed"})
    id: int
    cancel_reason: str = ""
    updated_at: datetime | None = None

    @classmethod
    def of(cls, order: PartnerOrder, cancel_reason: str = "") -> Cancel:
        order = cls._checked(order)
        return cls(order.id, cancel_reason, order.updated_at)


StatusChange = Accept | Pack | Complete | Cancel


@attrs.frozen(kw_only=True)
class StatusSuccess:
    """An order whose status was changed: its new ``status`` and ``updated_at``."""

    id: int
    status: str = ""
    updated_at: datetime | None = None


@attrs.frozen(kw_only=True)
class StatusFailure:
    """An order whose change was refused: its *current* ``status`` and ``updated_at``
    (re-read it, decide, and send a change with this ``updated_at``), and why."""

    id: int
    status: str = ""
    message: str = ""
    updated_at: datetime | None = None


@attrs.frozen(kw_only=True)
class StatusResult(_Partial):
    """What ``PartnerClient.change_statuses`` did, per order."""

    succeeded: tuple[StatusSuccess, ...] = ()
    failed: tuple[StatusFailure, ...] = ()


@attrs.frozen(kw_only=True)
class PartnerVariant:
    """The variant of a new product: its SKU and name (both required)."""

    variant_sku: str = ""
    variant_name: str = ""


@attrs.frozen(kw_only=True)
class NewProduct:
    """A product to create with ``PartnerClient.create_products``; every field is
    required (amounts and sizes are non-negative ``Decimal``\\s).

    The documentation spells two fields two ways (``description``/``decription``,
    ``length``/``lenght``): both spellings are sent, so either reading of it works.
    """

    sku: str = ""
    partner_sku: str = ""
    partner_variant: PartnerVariant | None = None
    name: str = ""
    description: str = attrs.field(default="", metadata={"also": "decription"})
    currency: str = ""
    price: Decimal | None = None
    weight: Decimal | None = None
    height: Decimal | None = None
    length: Decimal | None = attrs.field(default=None, metadata={"also": "lenght"})
    width: Decimal | None = None


@attrs.frozen(kw_only=True)
class CreatedProduct:
    """A product the server created."""

    id: int
    sku: str = ""
    partner_sku: str = ""
    partner_variant_sku: str = ""
    name: str = ""


@attrs.frozen(kw_only=True)
class ProductFailure:
    """A product the server refused (named by its ``partner_sku``), with its reason."""

    partner_sku: str = ""
    reason: str = ""

    @property
    def already_exists(self) -> bool:
        return "already exist" in self.reason.lower()


@attrs.frozen(kw_only=True)
class ProductResult(_Partial):
    """What ``PartnerClient.create_products`` did."""

    created: tuple[CreatedProduct, ...] = ()
    failed: tuple[ProductFailure, ...] = ()


@attrs.frozen(kw_only=True)
class ChannelStock:
    """The stock to show on one marketplace channel (``code`` as Connexi names it)."""

    code: str = ""
    qty: int = 0


@attrs.frozen(kw_only=True)
class StockUpdate:
    """A stock update for one SKU in one warehouse (``"default"`` without multi-warehouse).

    Counts are non-negative whole numbers and ``buffer_stock <= available_stock``
    (checked before sending).

    >>> StockUpdate(sku="TOP0001-S", available_stock=100,
    ...             channel_stock=(ChannelStock(code="bklp", qty=30),)).warehouse
    'default'
    """

    sku: str = ""
    sync_stock: bool = False
    warehouse: str = "default"
    available_stock: int = 0
    buffer_stock: int = 0
    channel_stock: tuple[ChannelStock, ...] = ()
