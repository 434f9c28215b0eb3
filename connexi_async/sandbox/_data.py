"""Deterministic, self-consistent Indonesian commerce data for the sandbox.

Only the creation instants are precomputed (8 bytes an order, sorted), so a million
orders start in about a second; each order is generated on demand from ``(seed, index)``
and is the same every time. Orders written through POST and PATCH live in overlays.
"""

from __future__ import annotations

import bisect
import heapq
import random
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import attrs

from .._cooperative import Steps
from .._models import LineItem, Location, NewOrder, Order, OrderStatus

# (province code, province, [(city, [(district, post code), ...]), ...])
REGIONS: tuple[tuple[str, str, tuple[tuple[str, tuple[tuple[str, str], ...]], ...]], ...] = (
    ("JK", "DKI Jakarta", (
        ("Jakarta Pusat", (("Gambir", "10110"), ("Menteng", "10310"), ("Tanah Abang", "10250"), ("Senen", "10410"))),
        ("Jakarta Selatan", (("Kebayoran Baru", "12110"), ("Setia Budi", "12910"), ("Tebet", "12810"), ("Pancoran", "12780"))),
        ("Jakarta Barat", (("Kembangan", "11610"), ("Grogol Petamburan", "11450"), ("Palmerah", "11480"))),
    )),
    ("JB", "Jawa Barat", (
        ("Bandung", (("Coblong", "40132"), ("Sukajadi", "40162"), ("Lengkong", "40261"))),
        ("Bekasi", (("Bekasi Barat", "17134"), ("Bekasi Selatan", "17141"), ("Rawalumbu", "17116"))),
        ("Bogor", (("Bogor Tengah", "16121"), ("Tanah Sareal", "16161"))),
    )),
    ("JT", "Jawa Tengah", (
        ("Semarang", (("Semarang Tengah", "50131"), ("Banyumanik", "50261"), ("Tembalang", "50275"))),
        ("Surakarta", (("Laweyan", "57141"), ("Banjarsari", "57131"))),
    )),
    ("YO", "DI Yogyakarta", (
        ("Yogyakarta", (("Gondokusuman", "55221"), ("Jetis", "55231"), ("Kraton", "55131"))),
        ("Sleman", (("Depok", "55281"), ("Mlati", "55284"))),
    )),
    ("JI", "Jawa Timur", (
        ("Surabaya", (("Gubeng", "60281"), ("Tegalsari", "60262"), ("Wonokromo", "60243"), ("Rungkut", "60293"))),
        ("Malang", (("Klojen", "65111"), ("Lowokwaru", "65141"))),
    )),
    ("BA", "Bali", (
        ("Denpasar", (("Denpasar Barat", "80119"), ("Denpasar Selatan", "80221"))),
        ("Badung", (("Kuta", "80361"), ("Kuta Utara", "80361"), ("Mengwi", "80351"))),
    )),
    ("SU", "Sumatera Utara", (
        ("Medan", (("Medan Baru", "20153"), ("Medan Petisah", "20112"), ("Medan Johor", "20144"))),
    )),
    ("SN", "Sulawesi Selatan", (
        ("Makassar", (("Panakkukang", "90231"), ("Tamalate", "90224"), ("Rappocini", "90222"))),
    )),
    ("BT", "Banten", (
        ("Tangerang", (("Karawaci", "15115"), ("Cipondoh", "15148"))),
        ("Tangerang Selatan", (("Serpong", "15310"), ("Pondok Aren", "15224"), ("Ciputat", "15411"))),
    )),
    ("AC", "Aceh", (
        ("Banda Aceh", (("Baiturrahman", "23241"), ("Kuta Alam", "23126"))),
        ("Aceh Barat", (("Johan Pahlawan", "23611"), ("Meureubo", "23615"), ("Woyla", "23653"))),
    )),
)  # fmt: skip

# Flattened once: (region, city, district, post code, district location code).
ADDRESSES = tuple(
    (province, city, district, post, f"ID-{code}{ci:02X}{di:02X}")
    for code, province, cities in REGIONS
    for ci, (city, districts) in enumerate(cities, 1)
    for di, (district, post) in enumerate(districts, 1)
)

FIRST_NAMES = (
    "Budi", "Siti", "Agus", "Dewi", "Rizky", "Putri", "Andi", "Ayu", "Fajar", "Indah",
    "Hendra", "Wulan", "Yusuf", "Ratna", "Bayu", "Nur", "Eko", "Sri", "Dimas", "Lestari",
)  # fmt: skip
LAST_NAMES = (
    "Santoso", "Wijaya", "Saputra", "Pratama", "Hidayat", "Kusuma", "Nasution", "Siregar",
    "Setiawan", "Gunawan", "Halim", "Lubis", "Harahap", "Simanjuntak", "Wibowo", "Rahman",
)  # fmt: skip
STREETS = (
    "Jl. Merdeka", "Jl. Jend. Sudirman", "Jl. Gatot Subroto", "Jl. Diponegoro", "Jl. Ahmad Yani",
    "Jl. Pahlawan", "Jl. Gajah Mada", "Jl. Veteran", "Jl. Melati", "Jl. Anggrek",
    "Jl. Kebon Jeruk", "Jl. Imam Bonjol", "Jl. Hayam Wuruk", "Jl. Pemuda",
)  # fmt: skip
PHONE_PREFIXES = ("0811", "0812", "0813", "0821", "0852", "0856", "0857", "0877", "0878", "0896")
MARKETPLACES = ("bklp", "tkpd", "shpe", "lzda", "blib")
STORES = (
    (1, "Toko Maju Jaya"),
    (2, "Berkah Abadi Store"),
    (3, "Sinar Mas Fashion"),
    (4, "Rumah Gadget"),
)
# (courier, method code, enterprise code, base fare in IDR)
COURIERS = (
    ("JNE REG", "REG", "jne", 9000),
    ("J&T EZ", "EZ", "jnt", 10000),
    ("SiCepat REG", "REG", "sicepat", 8000),
    ("AnterAja", "REG", "anteraja", 8500),
)
PRODUCTS = (
    ("TOP0001", "Kaos Polos Cotton Combed 30s", 45000),
    ("TOP0002", "Kemeja Batik Pria Lengan Panjang", 185000),
    ("BTM0001", "Celana Chino Slim Fit", 149000),
    ("DRS0001", "Gamis Syari Wolfis", 235000),
    ("HIJ0001", "Hijab Segi Empat Voal", 39500),
    ("SHO0001", "Sepatu Sneakers Kanvas", 219000),
    ("BAG0001", "Tas Ransel Laptop 15 inch", 275000),
    ("ACC0001", "Jam Tangan Digital Sport", 99000),
    ("GAD0001", "Powerbank 10000mAh", 165000),
    ("GAD0002", "Earphone Bluetooth TWS", 129500),
    ("GAD0003", "Kabel Data USB-C 1m", 25000),
    ("HOM0001", "Sprei Katun Jepang 180x200", 189000),
    ("FOD0001", "Kopi Gayo Arabika 250g", 85000),
    ("FOD0002", "Keripik Singkong Balado 200g", 18500),
    ("BTY0001", "Serum Wajah Niacinamide 20ml", 69000),
)
# (status, weight): the lifecycle a seller's month usually shows.
STATUS_WEIGHTS = (
    (OrderStatus.PENDING, 12),
    (OrderStatus.ACCEPTED, 12),
    (OrderStatus.PACKED, 10),
    (OrderStatus.SHIPPED, 20),
    (OrderStatus.COMPLETED, 38),
    (OrderStatus.CANCELLED, 8),
)
_STATUSES = tuple(s for s, _ in STATUS_WEIGHTS)
_CUM_WEIGHTS = tuple(sum(w for _, w in STATUS_WEIGHTS[: i + 1]) for i in range(len(STATUS_WEIGHTS)))
TAX_RATE = Decimal("0.11")  # PPN
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
FIRST_REMOTE_ID = 3_000_000_000
# A base order's order_date is 1 to this many minutes before its created_at (the buyer
# ordered, the marketplace synced it a little later): what finds them by order_date.
ORDER_DATE_LAG_MINUTES = 30


# The lifecycle stamp a status sets: (timestamp field, user field or None).
STAMPS: dict[str, tuple[str, str | None]] = {
    OrderStatus.ACCEPTED: ("accepted_at", "accepted_by"),
    OrderStatus.PACKED: ("packed_at", "packed_by"),
    OrderStatus.SHIPPED: ("shipment_tracked_at", None),
    OrderStatus.CANCELLED: ("cancelled_at", "cancelled_by"),
}
SANDBOX_USER_ID = 900  # the user id the sandbox stamps into *_by fields


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


@attrs.frozen(kw_only=True)
class DataConfig:
    """What the sandbox's base data looks like. The same config always gives the same data."""

    seed: int = 7
    orders: int = 10_000
    start: datetime = datetime(2026, 10, 1, tzinfo=UTC)
    days: float = 30.0
    # An optional burst: this many more orders inside one hour starting at burst_at.
    burst_at: datetime | None = None
    burst_orders: int = 0


def creation_instants(config: DataConfig) -> array[int]:
    """The sorted creation instants (µs since the epoch) of the base orders.

    Some instants are snapped to the whole second and some to the whole hour, so orders
    sit exactly on the boundaries of typical windows, as they do in real data.
    """
    rng = random.Random(config.seed)
    start = _micros(config.start)
    span = int(config.days * 86_400_000_000)
    instants = []
    for _ in range(config.orders):
        offset = int(rng.random() * span)
        roll = rng.random()
        if roll < 0.01:
            offset -= offset % 3_600_000_000
        elif roll < 0.06:
            offset -= offset % 1_000_000
        instants.append(start + offset)
    if config.burst_at is not None and config.burst_orders:
        burst = _micros(config.burst_at)
        instants += [burst + rng.randrange(3_600_000_000) for _ in range(config.burst_orders)]
    instants.sort()
    return array("q", instants)


class Dataset:
    """The sandbox's orders: generated base orders plus the overlays of writes."""

    def __init__(self, config: DataConfig) -> None:
        self.config = config
        self.instants: array[int] = creation_instants(config)
        self.changed: dict[int, Order] = {}  # id -> order after a PATCH
        self.created: list[Order] = []  # POSTed orders, in creation order
        self.created_keys: set[tuple[str, str]] = set()
        self.created_remote_ids: set[str] = set()  # the partner API's order_id key
        self.removed: set[int] = set()  # ids taken out (a test's "deleted" orders)
        self.version: int = 0  # bumped on every write; keys the response cache

    @property
    def base_count(self) -> int:
        return len(self.instants)

    def __len__(self) -> int:
        return len(self.instants) + len(self.created)

    # -- reading ---------------------------------------------------------------------

    def get(self, order_id: int) -> Order | None:
        if order_id in self.removed:
            return None
        if order_id in self.changed:
            return self.changed[order_id]
        if 1 <= order_id <= self.base_count:
            return generate_order(self.config.seed, order_id - 1, self.instants[order_id - 1])
        if 0 <= order_id - self.base_count - 1 < len(self.created):
            return self.created[order_id - self.base_count - 1]
        return None

    def ids_between(self, start: datetime, end: datetime) -> range:
        """The ids of base orders with ``start <= created_at < end``, in (created_at, id) order."""
        low = bisect.bisect_left(self.instants, _micros(start))
        high = bisect.bisect_left(self.instants, _micros(end))
        return range(low + 1, max(low, high) + 1)

    def between(self, start: datetime, end: datetime) -> Iterator[Order]:
        """Orders with ``start <= created_at < end``, sorted by (created_at, id)."""
        base = (o for i in self.ids_between(start, end) if (o := self.get(i)) is not None)
        extra = [
            self.changed.get(o.id, o)
            for o in self.created
            if o.created_at is not None and start <= o.created_at < end and o.id not in self.removed
        ]
        if not extra:
            yield from base
            return
        # Lazily, like the base orders: a dense window is generated as it is encoded.
        extra.sort(key=_creation_key)
        yield from heapq.merge(base, extra, key=_creation_key)

    def by_order_date(self, start: datetime, end: datetime) -> Steps[list[Order]]:
        """Orders with ``start <= order_date < end``, sorted by (order_date, id): what the
        partner API pages through. Steps (see _cooperative): a dense window is generated
        a few orders at a time."""
        lag = timedelta(minutes=ORDER_DATE_LAG_MINUTES + 1)
        found = []
        for count, order in enumerate(self.between(start, end + lag), 1):
            if order.order_date is not None and start <= order.order_date < end:
                found.append(order)
            if not count % 16:
                yield
        found += [
            self.changed.get(o.id, o)
            for o in self.created
            if o.order_date is not None
            and start <= o.order_date < end
            and o.id not in self.removed
            and not (o.created_at is not None and start <= o.created_at < end + lag)
        ]
        found.sort(key=_order_date_key)
        return found

    def remove(self, order_id: int) -> None:
        """Take an order out, as if deleted on the server."""
        self.removed.add(order_id)
        self.version += 1

    def all_ids(self) -> Iterator[int]:
        yield from range(1, self.base_count + 1)
        yield from (o.id for o in self.created)

    # -- writing ---------------------------------------------------------------------

    def remote_key_taken(self, remote_order_id: str, marketplace_code: str) -> bool:
        if (remote_order_id, marketplace_code) in self.created_keys:
            return True
        if remote_order_id.isdigit():
            index = int(remote_order_id) - FIRST_REMOTE_ID
            if 0 <= index < self.base_count:
                order = self.get(index + 1)
                return order is not None and order.marketplace_code == marketplace_code
        return False

    def order_id_taken(self, order_id: str) -> bool:
        """Whether a partner ``order_id`` (a remote order id on any marketplace) exists."""
        if order_id in self.created_remote_ids:
            return True
        if order_id.isascii() and order_id.isdigit() and len(order_id) < 19:
            index = int(order_id) - FIRST_REMOTE_ID
            return 0 <= index < self.base_count and self.get(index + 1) is not None
        return False

    def create(self, new: NewOrder, now: datetime) -> Order:
        order_id = self.base_count + len(self.created) + 1
        fields = attrs.asdict(new, recurse=False)
        items = tuple(
            LineItem(id=order_id * 10 + n, created_at=now, updated_at=now, **attrs.asdict(li))
            for n, li in enumerate(new.line_items, 1)
        )
        fields["line_items"] = items
        fields["order_status"] = new.order_status or OrderStatus.PENDING
        order = Order(id=order_id, created_at=now, updated_at=now, **fields)
        self.created.append(order)
        self.created_keys.add((new.remote_order_id, new.marketplace_code))
        self.created_remote_ids.add(new.remote_order_id)
        self.version += 1
        return order

    def replace(self, order: Order) -> None:
        self.changed[order.id] = order
        self.version += 1

    # -- stock locations -------------------------------------------------------------

    def location_changed_at(self, code: str) -> datetime:
        """When a district's stock last changed: deterministic, inside the data period."""
        rng = random.Random(f"{self.config.seed}:{code}")
        span = int(self.config.days * 86_400)
        return self.config.start + timedelta(seconds=rng.randrange(max(span, 1)))

    def locations(self, start: datetime | None, end: datetime | None) -> list[Location]:
        """The location tree; with a period, only districts whose stock changed in it."""

        def keep(code: str) -> bool:
            if start is None or end is None:
                return True
            return start <= self.location_changed_at(code) < end

        provinces = []
        for code, province, cities in REGIONS:
            city_nodes = []
            for ci, (city, districts) in enumerate(cities, 1):
                city_code = f"ID-{code}{ci:02X}"
                district_nodes = tuple(
                    Location(
                        location_code=f"{city_code}{di:02X}",
                        provider_data=f"{city.upper()}-{district.upper()}",
                    )
                    for di, (district, _post) in enumerate(districts, 1)
                    if keep(f"{city_code}{di:02X}")
                )
                if district_nodes or start is None:
                    city_nodes.append(
                        Location(
                            location_code=city_code,
                            provider_data=city.upper(),
                            children=district_nodes,
                        )
                    )
            if city_nodes or start is None:
                provinces.append(
                    Location(
                        location_code=f"ID-{code}",
                        provider_data=province.upper(),
                        children=tuple(city_nodes),
                    )
                )
        if not provinces and start is not None:
            return []
        return [Location(location_code="ID", provider_data="INDONESIA", children=tuple(provinces))]


def generate_order(seed: int, index: int, created_micros: int) -> Order:
    """Base order number ``index`` (id ``index + 1``): the same for the same seed, always."""
    rng = random.Random(seed * 1_000_003 + index)
    rand = rng.random
    created = _moment(created_micros)
    minute = 60_000_000
    region, city, district, post, _code = ADDRESSES[int(rand() * len(ADDRESSES))]
    first = FIRST_NAMES[int(rand() * len(FIRST_NAMES))]
    last = LAST_NAMES[int(rand() * len(LAST_NAMES))]
    marketplace = MARKETPLACES[int(rand() * len(MARKETPLACES))]
    store_id, store_name = STORES[int(rand() * len(STORES))]
    courier, method_code, enterprise, fare = COURIERS[int(rand() * len(COURIERS))]
    remote_id = str(FIRST_REMOTE_ID + index)

    items = []
    subtotal = Decimal(0)
    for n in range(1, 2 + int(rand() * 5)):  # 1 to 5 line items
        sku, name, price = PRODUCTS[int(rand() * len(PRODUCTS))]
        quantity = 1 + int(rand() * 3)
        gross = Decimal(price * quantity)
        discount = Decimal(int(rand() * 4) * 2500) if rand() < 0.3 else Decimal(0)
        total = gross - discount
        subtotal += total
        items.append(
            LineItem(
                id=(index + 1) * 10 + n,
                order_item_id=f"{remote_id}-{n}",
                sku=sku,
                name=name,
                quantity=quantity,
                unit_price=Decimal(price),
                raw_price=Decimal(price),
                total_price=gross,
                discount=discount,
                # PPN included in the price: the tax share of the line, to the 1/1000 rupiah.
                tax=(total * TAX_RATE / (1 + TAX_RATE)).quantize(Decimal("0.001")),
                total=total,
                created_at=created,
                updated_at=created,
            )
        )
    shipping = Decimal(fare + int(rand() * 8) * 1000)
    voucher = Decimal(int(rand() * 5) * 5000) if rand() < 0.25 else Decimal(0)
    voucher = min(voucher, subtotal)
    tax_total = (subtotal * TAX_RATE).quantize(Decimal(1)) if store_id == 3 else Decimal(0)
    grand_total = subtotal + shipping - voucher + tax_total

    status = rng.choices(_STATUSES, cum_weights=_CUM_WEIGHTS)[0]
    accepted_at = packed_at = tracked_at = cancelled_at = None
    accepted_by = packed_by = cancelled_by = 0
    updated = created + timedelta(microseconds=2)
    cancel_reason = airwaybill = ""
    moment = created_micros
    if status != OrderStatus.PENDING:
        moment += minute * (5 + int(rand() * 115))
        if status == OrderStatus.CANCELLED and rand() < 0.5:
            cancelled_at = _moment(moment)
            cancelled_by = 100 + int(rand() * 5)
            cancel_reason = "Stok habis" if rand() < 0.5 else "Dibatalkan pembeli"
        else:
            accepted_at = _moment(moment)
            accepted_by = 100 + int(rand() * 5)
            if status == OrderStatus.CANCELLED:
                moment += minute * (10 + int(rand() * 300))
                cancelled_at = _moment(moment)
                cancelled_by = accepted_by
                cancel_reason = "Stok habis"
            elif status != OrderStatus.ACCEPTED:
                moment += minute * (10 + int(rand() * 300))
                packed_at = _moment(moment)
                packed_by = accepted_by
                if status in (OrderStatus.SHIPPED, OrderStatus.COMPLETED):
                    moment += minute * (30 + int(rand() * 600))
                    tracked_at = _moment(moment)
                    airwaybill = f"{enterprise.upper()}{int(rand() * 10**12):012d}"
                    if status == OrderStatus.COMPLETED:
                        moment += minute * (1440 + int(rand() * 4320))
        updated = _moment(moment)
    phone = PHONE_PREFIXES[int(rand() * len(PHONE_PREFIXES))] + f"{int(rand() * 10**8):08d}"
    return Order(
        id=index + 1,
        created_at=created,
        updated_at=updated,
        order_date=created
        - timedelta(microseconds=minute * (1 + int(rand() * ORDER_DATE_LAG_MINUTES))),
        remote_order_id=remote_id,
        currency_code="IDR",
        exchange_rate=Decimal(1),
        customer_reference=f"INV/{created:%Y%m%d}/{marketplace.upper()}/{remote_id}",
        payment_method=("COD", "Transfer Bank", "OVO", "GoPay", "ShopeePay", "Kartu Kredit")[
            int(rand() * 6)
        ],
        delivery_name=f"{first} {last}",
        delivery_street_address=(
            f"{STREETS[int(rand() * len(STREETS))]} No. {1 + int(rand() * 200)}, "
            f"RT {1 + int(rand() * 12):03d}/RW {1 + int(rand() * 9):03d}"
        ),
        delivery_suburb=district,
        delivery_city=city,
        delivery_region=region,
        delivery_post_code=post,
        delivery_country="Indonesia",
        delivery_method=courier,
        delivery_method_code=method_code,
        delivery_enterprise_code=enterprise,
        delivery_enterprise_name=courier.split()[0],
        remote_order_status=status,
        discount=voucher,
        tax_code="PPN",
        tax_rate=TAX_RATE,
        tax_total=tax_total,
        shipping_total=shipping,
        discount_total=voucher,
        subtotal=subtotal,
        total=grand_total,
        order_status=status,
        marketplace_code=marketplace,
        phone_number=phone,
        airwaybill_number=airwaybill,
        accepted_at=accepted_at,
        packed_at=packed_at,
        cancelled_at=cancelled_at,
        shipment_tracked_at=tracked_at,
        accepted_by=accepted_by,
        packed_by=packed_by,
        cancelled_by=cancelled_by,
        line_items=tuple(items),
        store_id=store_id,
        store_name=store_name,
        cancel_reason=cancel_reason,
    )


def _order_date_key(order: Order) -> tuple[datetime, int]:
    assert order.order_date is not None
    return order.order_date, order.id


def _creation_key(order: Order) -> tuple[datetime, int]:
    assert order.created_at is not None
    return order.created_at, order.id
