"""The sandbox's partner API, write side: partial-success creates, status changes with
optimistic concurrency on ``updated_at``, products, and stock updates that finish as
asynchronous jobs after ``stock_update_delay`` seconds.

Orders created here join the one dataset (the v1 routes see them too); a status change
is the v1 dataset's order changed, so both APIs show it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import attrs
from aiohttp import web

from .._convert import (
    decode_stock_update,
    new_partner_orders_steps,
    new_products_steps,
    partial_body_steps,
    status_changes_steps,
)
from .._cooperative import Steps, run_sliced, run_steps
from .._errors import DecodeError, EncodeError
from .._models import (
    CreatedProduct,
    CreateFailure,
    NewLineItem,
    NewOrder,
    NewPartnerOrder,
    NewProduct,
    PartnerOrder,
    ProductFailure,
    ProductStock,
    StatusFailure,
    StatusSuccess,
    StockUpdate,
    StockUpdateItem,
    StockUpdateRecord,
)
from .._writes import check_new_orders, check_products, check_stock_update
from ._data import MARKETPLACES, SANDBOX_USER_ID, STAMPS, Dataset
from ._partner import PartnerState, Send, error_response, partner_order, partner_status

__all__ = ["change_statuses", "create_orders", "create_products", "update_stocks"]

Now = Callable[[], datetime]

# The partner lifecycle: what each status may become (the same status again is a no-op).
TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"accepted", "cancelled"}),
    "accepted": frozenset({"packed", "cancelled"}),
    "packed": frozenset({"completed", "cancelled"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
}
_TAX = Decimal(11)  # prices include 10% VAT: the tax is 1/11 of the subtotal
_TAX_STEP = Decimal("0.001")


def _problems(check: Callable[[list[Any]], Steps[Any]], record: Any, prefix: str) -> str | None:
    """What the client's own checks say of one record, as a server's reason."""
    try:
        run_steps(check([record]))
    except EncodeError as exc:
        errors = exc.errors
        return "; ".join(f"{e.path.removeprefix(prefix)}: {e.message}" for e in errors) or str(exc)
    return None


async def _answer(
    request: web.Request,
    send: Send,
    succeeded: list[Any],
    ok_cls: type,
    failed: list[Any],
    failed_cls: type,
    message: str,
) -> web.StreamResponse:
    parts = await run_sliced(
        partial_body_steps(
            succeeded, ok_cls, failed, failed_cls, message=message, reference=str(uuid.uuid4())
        )
    )
    return await send(request, parts)


# -- orders ----------------------------------------------------------------------------


def _as_new_order(new: NewPartnerOrder) -> NewOrder:
    """A partner order in the dataset's terms: priced as the documentation's example
    is (unit price = raw price - discount; tax 1/11 of the subtotal)."""
    lines = []
    subtotal = Decimal(0)
    for line in new.line_items:
        raw = line.raw_price or Decimal(0)
        unit = raw - line.discount
        subtotal += unit * line.quantity
        lines.append(
            NewLineItem(
                order_item_id=line.order_item_id,
                sku=line.sku,
                name=line.name,
                quantity=line.quantity,
                raw_price=raw,
                unit_price=unit,
                discount=line.discount,
                total_price=unit * line.quantity,
            )
        )
    return NewOrder(
        order_date=new.order_date,
        remote_order_id=new.order_id,
        customer_reference=new.customer_reference,
        shipment_reference=new.shipment_reference,
        order_status=(new.status or "pending").lower(),
        delivery_name=new.delivery_name,
        phone_number=new.delivery_mobile,
        delivery_street_address=new.delivery_street_address,
        delivery_city=new.delivery_city,
        delivery_region=new.delivery_region,
        delivery_suburb=new.delivery_suburb,
        delivery_country=new.delivery_country,
        delivery_post_code=new.delivery_post_code,
        delivery_method=new.delivery_method,
        payment_method=new.payment_method,
        airwaybill_number=new.airwaybill_number,
        discount_total=new.discount_total,
        shipping_total=new.shipping_total,
        subtotal=subtotal,
        tax_total=(subtotal / _TAX).quantize(_TAX_STEP, rounding=ROUND_DOWN),
        total=subtotal - new.discount_total + new.shipping_total,
        line_items=tuple(lines),
    )


async def create_orders(
    request: web.Request, dataset: Dataset, partner: PartnerState, send: Send, now: Now
) -> web.StreamResponse:
    try:
        news = await run_sliced(new_partner_orders_steps(await request.read(), "Create Order body"))
    except DecodeError as exc:
        return error_response(400, str(exc))
    moment = now()
    created: list[PartnerOrder] = []
    failed: list[CreateFailure] = []
    seen: set[str] = set()
    for index, new in enumerate(news):
        if index % 16 == 15:
            await asyncio.sleep(0)  # a large batch never holds the loop it shares
        problem = _problems(check_new_orders, new, "orders[0].")
        if problem is None and (new.order_id in seen or dataset.order_id_taken(new.order_id)):
            problem = f"existing order with remote order id: {new.order_id} already exists"
        seen.add(new.order_id)
        if problem is not None:
            failed.append(CreateFailure(order_id=new.order_id, reason=problem))
            continue
        try:
            priced = _as_new_order(new)
        except ArithmeticError:  # decimal.InvalidOperation: amounts beyond any price
            reason = "the order's amounts are out of range"
            failed.append(CreateFailure(order_id=new.order_id, reason=reason))
            continue
        order = dataset.create(priced, moment)
        partner.emails[order.id] = new.delivery_email
        created.append(partner_order(order, with_delivery=False, email=new.delivery_email))
    message = (
        f"Requested order count: {len(news)}, Created order count: {len(created)}, "
        f"Failed to create order count: {len(failed)}"
    )
    return await _answer(request, send, created, PartnerOrder, failed, CreateFailure, message)


# -- status changes --------------------------------------------------------------------


async def change_statuses(
    request: web.Request, dataset: Dataset, partner: PartnerState, send: Send, now: Now
) -> web.StreamResponse:
    try:
        groups = await run_sliced(status_changes_steps(await request.read(), "Update Order body"))
    except DecodeError as exc:
        return error_response(400, str(exc))
    succeeded: list[StatusSuccess] = []
    failed: list[StatusFailure] = []
    count = 0
    for target, changes in groups.items():
        for change in changes:
            count += 1
            if count % 32 == 0:
                await asyncio.sleep(0)
            outcome = _change(dataset, target, change, now())
            if isinstance(outcome, StatusSuccess):
                succeeded.append(outcome)
            else:
                failed.append(outcome)
    message = f"{len(succeeded)} out of {count} order(s) updated successfully"
    return await _answer(request, send, succeeded, StatusSuccess, failed, StatusFailure, message)


def _change(
    dataset: Dataset, target: str, change: Any, moment: datetime
) -> StatusSuccess | StatusFailure:
    order = dataset.get(change.id)
    if order is None:
        return StatusFailure(id=change.id, message=f"order {change.id} not found")
    current = partner_status(order)

    def refuse(message: str) -> StatusFailure:
        return StatusFailure(
            id=order.id, status=current, message=message, updated_at=order.updated_at
        )

    if change.updated_at is None:
        return refuse("updated_at is required")
    if change.updated_at != order.updated_at:
        return refuse(
            "the order was changed after the given updated_at: read it again and send its "
            "current updated_at"
        )
    repack = target == current == "packed" and change.airwaybill_number != order.airwaybill_number
    if target == current and not repack:
        return StatusSuccess(id=order.id, status=current, updated_at=order.updated_at)
    if target not in TRANSITIONS.get(current, frozenset()) and not repack:
        return refuse(f"an order that is {current} cannot become {target}")
    fields: dict[str, Any] = {"order_status": target}
    if target == "packed":
        if not change.airwaybill_number:
            return refuse("airwaybill_number is required to pack an order")
        fields["airwaybill_number"] = change.airwaybill_number
    elif target == "cancelled":
        fields["cancel_reason"] = change.cancel_reason
    # Always later than before, even on a frozen clock: updated_at is the version.
    previous = order.updated_at
    stamp = moment if previous is None else max(moment, previous + timedelta(microseconds=1))
    fields["updated_at"] = stamp
    if target in STAMPS and not repack:  # a new airwaybill: the order was packed before
        at, by = STAMPS[target]
        fields[at] = stamp
        if by is not None:
            fields[by] = SANDBOX_USER_ID
    dataset.replace(attrs.evolve(order, **fields))
    return StatusSuccess(id=order.id, status=target, updated_at=stamp)


# -- products --------------------------------------------------------------------------


async def create_products(
    request: web.Request, dataset: Dataset, partner: PartnerState, send: Send, now: Now
) -> web.StreamResponse:
    try:
        news: list[NewProduct] = await run_sliced(
            new_products_steps(await request.read(), "Create Product body")
        )
    except DecodeError as exc:
        return error_response(400, str(exc))
    moment = now()
    created: list[CreatedProduct] = []
    failed: list[ProductFailure] = []
    taken = {product.sku for product in partner.products}
    for index, new in enumerate(news):
        if index % 16 == 15:
            await asyncio.sleep(0)  # a large batch never holds the loop it shares
        problem = _problems(check_products, new, "products[0].")
        if problem is None and new.sku in taken:
            problem = f"product with sku {new.sku} already exists"
        if problem is not None:
            failed.append(ProductFailure(partner_sku=new.partner_sku, reason=problem))
            continue
        taken.add(new.sku)
        assert new.partner_variant is not None
        stock = ProductStock(
            id=partner.products[-1].id + 3 if partner.products else 5,
            sku=new.sku,
            partner_sku=new.partner_sku,
            partner_variant_sku=new.partner_variant.variant_sku,
            name=new.name,
            stock=0,
            created_at=moment,
            updated_at=moment,
        )
        partner.products.append(stock)
        created.append(
            CreatedProduct(
                id=stock.id,
                sku=stock.sku,
                partner_sku=stock.partner_sku,
                partner_variant_sku=stock.partner_variant_sku,
                name=stock.name,
            )
        )
    message = ""  # what the documentation's example answers
    return await _answer(request, send, created, CreatedProduct, failed, ProductFailure, message)


# -- stock updates ---------------------------------------------------------------------


async def update_stocks(
    request: web.Request, dataset: Dataset, partner: PartnerState, send: Send, now: Now
) -> web.StreamResponse:
    try:
        update = decode_stock_update(await request.read(), context="Update Stocks body")
        check_stock_update(update)
    except (DecodeError, EncodeError) as exc:
        return error_response(400, str(exc))
    moment = now()
    code = str(uuid.uuid4())
    job_id = (partner.history[-1].id + 1) if partner.history else 233
    items = tuple(
        StockUpdateItem(
            id=job_id * 100 + n,
            update_stock_history_id=job_id,
            warehouse_name=update.warehouse,
            sku=update.sku,
            row_number=n,
            channel=channel.code,
            qty=channel.qty,
            progress=True,
            message="In progress",
            created_at=moment,
            updated_at=moment,
        )
        for n, channel in enumerate(update.channel_stock)
    )
    partner.history.append(
        StockUpdateRecord(
            id=job_id,
            tenant_id=123,
            transaction_code=code,
            action_name="partner_update_stocks",
            total_sku=1,
            created_at=moment,
            updated_at=moment,
            items=items,
        )
    )
    partner.jobs[job_id] = (moment + timedelta(seconds=partner.stock_update_delay), update)
    return web.json_response({"transaction_code": code})


def settle_jobs(partner: PartnerState, moment: datetime) -> None:
    """Finish the stock update jobs that are due: each channel's outcome, and the
    product's stock set."""
    for job_id, (due, update) in list(partner.jobs.items()):
        if due > moment:
            continue
        del partner.jobs[job_id]
        _finish(partner, job_id, due, update)


def _finish(partner: PartnerState, job_id: int, due: datetime, update: StockUpdate) -> None:
    index = next(i for i, r in enumerate(partner.history) if r.id == job_id)
    record = partner.history[index]
    product = next((p for p in partner.products if p.sku == update.sku), None)
    items = []
    for item in record.items:
        if product is None:
            success, message = False, f"sku {update.sku} not found"
        elif item.channel not in MARKETPLACES:
            success, message = False, f"channel {item.channel} is not connected"
        else:
            success, message = True, "Successfully Updated"
        items.append(
            attrs.evolve(
                item,
                progress=False,
                success=success,
                message=message,
                retrier_count=1,
                updated_at=due,
                finished_at=due.replace(microsecond=0),
            )
        )
    partner.history[index] = attrs.evolve(
        record, items=tuple(items), updated_at=due, finished_at=due.replace(microsecond=0)
    )
    if product is not None:
        position = partner.products.index(product)
        partner.products[position] = attrs.evolve(
            product, stock=update.available_stock, updated_at=due
        )
