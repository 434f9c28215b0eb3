"""connexi-async: the asyncio client for SIRCLO's Connexi API.

>>> from connexi_async import decode_orders
>>> decode_orders(b'{"orders": [{"id": 1, "tax_rate": 0.1}]}')[0].tax_rate
Decimal('0.1')
"""

import logging

from ._auth import partner_signature
from ._client import DEFAULT_BASE_URL, ConnexiClient
from ._convert import (
    decode_locations,
    decode_new_orders,
    decode_orders,
    decode_partner_orders,
    decode_product_stocks,
    decode_status_updates,
    decode_stock_updates,
    encode_locations,
    encode_new_orders,
    encode_orders,
    encode_status_updates,
    to_dict,
    to_json,
)
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnexiError,
    DecodeError,
    EncodeError,
    FieldError,
    NotFoundError,
    OutcomeUnknownError,
    PagesShiftedError,
    PagingError,
    PermissionDeniedError,
    ProxyError,
    RateLimitError,
    RedirectError,
    ResponseTooLargeError,
    ServerError,
    TLSError,
    TransportError,
    WindowError,
    WindowTooDenseError,
)
from ._models import (
    DeliveryLine,
    DeliveryOrder,
    LineItem,
    Location,
    NewLineItem,
    NewOrder,
    Order,
    OrderStatus,
    PartnerLineItem,
    PartnerOrder,
    ProductStock,
    Reconciliation,
    StatusUpdate,
    StockUpdateItem,
    StockUpdateRecord,
)
from ._partner import PartnerClient
from ._retry import RetryPolicy
from ._stream import Batch, RecordStream, StreamStats
from ._windows import Window, plan_windows, split_window

__version__ = "0.1.0.dev0"

# A library logs; the application decides where it goes (no "last resort" stderr lines).
logging.getLogger("connexi_async").addHandler(logging.NullHandler())

__all__ = [
    "DEFAULT_BASE_URL",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "ConfigurationError",
    "ConnexiClient",
    "ConnexiError",
    "DecodeError",
    "DeliveryLine",
    "DeliveryOrder",
    "EncodeError",
    "FieldError",
    "LineItem",
    "Location",
    "NewLineItem",
    "NewOrder",
    "NotFoundError",
    "Order",
    "OrderStatus",
    "OutcomeUnknownError",
    "PagesShiftedError",
    "PagingError",
    "PartnerClient",
    "PartnerLineItem",
    "PartnerOrder",
    "PermissionDeniedError",
    "ProductStock",
    "ProxyError",
    "RateLimitError",
    "Reconciliation",
    "RecordStream",
    "RedirectError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "ServerError",
    "StatusUpdate",
    "StockUpdateItem",
    "StockUpdateRecord",
    "StreamStats",
    "TLSError",
    "TransportError",
    "Window",
    "WindowError",
    "WindowTooDenseError",
    "__version__",
    "decode_locations",
    "decode_new_orders",
    "decode_orders",
    "decode_partner_orders",
    "decode_product_stocks",
    "decode_status_updates",
    "decode_stock_updates",
    "encode_locations",
    "encode_new_orders",
    "encode_orders",
    "encode_status_updates",
    "partner_signature",
    "plan_windows",
    "split_window",
    "to_dict",
    "to_json",
]
