"""JSON bytes to models and back, exactly, in slices that never hold the event loop long.

Two structuring paths share one set of value rules (the ``_to_*`` functions below):

* the **fast path**: msgspec parses a piece of the body straight into typed wire
  structs (strings, bounded integers, timestamps as text, amounts as exact ``Decimal``
  from the JSON number's own text), then one generated straight-line function per model
  turns a wire struct into the attrs model, applying the rules inline for the common
  cases and calling them otherwise. It does no error bookkeeping;
* the **validating path**: cattrs with ``detailed_validation`` and the same rules as
  hooks, run only for a record the fast path refused. It collects every bad field with
  its JSON path, so a :class:`DecodeError` names them all.

Whatever the fast path accepts, the validating path accepts with the same value
(a property test holds them to it); the validating path also accepts the rarer shapes
(``null`` strings, numeric strings) the fast path leaves to it.

Bounds come before conversion: integers fit in 64 bits, amounts are below 10**30 with
at most 30 digits after the point, and a number's text is measured before it is turned
into anything. Out of bounds is a :class:`DecodeError` naming the field.

Bodies are cut into pieces of whole records (:mod:`._chunks`) and decoded piece by
piece as a generator of steps (:mod:`._cooperative`): ``decode_orders`` runs it at once,
the client and the sandbox in slices that give the loop back.
"""

from __future__ import annotations

import difflib
import json
import operator
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache, partial
from typing import Annotated, Any, Final, Optional, TypeVar

import attrs
import cattrs
import msgspec
from cattrs.errors import ClassValidationError, IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, override

from ._chunks import DEFAULT_PIECE_BYTES, Body, find_array, next_cut
from ._cooperative import Steps, run_steps
from ._errors import DecodeError, EncodeError, FieldError
from ._models import (
    Accept,
    Cancel,
    ChannelStock,
    Complete,
    CreatedProduct,
    CreateFailure,
    DeliveryLine,
    DeliveryOrder,
    LineItem,
    Location,
    NewLineItem,
    NewOrder,
    NewPartnerLineItem,
    NewPartnerOrder,
    NewProduct,
    Order,
    Pack,
    PartnerLineItem,
    PartnerOrder,
    PartnerVariant,
    ProductFailure,
    ProductStock,
    StatusFailure,
    StatusSuccess,
    StatusUpdate,
    StockUpdate,
    StockUpdateItem,
    StockUpdateRecord,
)

__all__ = [
    "AMOUNT_DIGITS",
    "INT_MAX",
    "INT_MIN",
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
    "to_dict",
    "to_json",
]

T = TypeVar("T")
Buffer = bytes | bytearray | memoryview | Body

GO_ZERO_TIME: Final = "0001-01-01T00:00:00Z"
_ZERO = Decimal(0)

# ---------------------------------------------------------------------------------------
# Bounds, checked on a number's text before it is converted.
# ---------------------------------------------------------------------------------------

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
# An amount is below 10**30 in magnitude and has at most 30 digits after the point:
# far beyond any price or rate, far below what makes Decimal arithmetic or formatting slow.
AMOUNT_DIGITS: Final = 30
_AMOUNT_LIMIT: Final = 10**AMOUNT_DIGITS
_LONGEST_NUMBER_TEXT = 200  # digits; the exponent is measured on its own


class _OutOfRange:
    """A JSON number too large or too precise to convert: kept as text for the message."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _number_text(text: str) -> str:
    return text if len(text) <= 30 else f"{text[:12]}...{text[-6:]} ({len(text)} characters)"


def _bounded_int(text: str) -> int | _OutOfRange:
    """``parse_int`` for the validating path: no int() on a text of thousands of digits."""
    return int(text) if len(text) <= 40 else _OutOfRange(text)


_NUMBER_PARTS = re.compile(r"[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?", re.ASCII)


def _bounded_decimal(text: str) -> Decimal | _OutOfRange:
    """A number's text (JSON, or a numeric string already checked) to an exact Decimal.

    The text is measured first: ``1e999999999`` is 11 characters but no Decimal to keep.
    """
    if len(text) <= 24 and "e" not in text and "E" not in text:
        return Decimal(text)  # 24 plain characters are within both bounds
    parts = _NUMBER_PARTS.fullmatch(text)
    if parts is None:  # pragma: no cover - callers pass number texts only
        return _OutOfRange(text)
    whole, fraction, exponent = parts.groups()
    if exponent is not None and len(exponent.lstrip("+-").lstrip("0")) > 5:
        return _OutOfRange(text)
    if len(whole) + len(fraction or "") > _LONGEST_NUMBER_TEXT:
        return _OutOfRange(text)
    value = Decimal(text)
    exponent_of_last_digit = value.as_tuple().exponent
    assert isinstance(exponent_of_last_digit, int)  # finite: no NaN or Infinity text here
    if (value and value.adjusted() >= AMOUNT_DIGITS) or exponent_of_last_digit < -AMOUNT_DIGITS:
        return _OutOfRange(text)
    return value


# ---------------------------------------------------------------------------------------
# Value rules, shared by both paths. Each takes the raw JSON value (after the common case
# was ruled out by the caller) and returns the model value or raises ValueError with the
# message that ends up in DecodeError. Numbers and timestamps are ASCII only.
# ---------------------------------------------------------------------------------------

_NUMERIC_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER_TEXT = re.compile(r"[+-]?\d{1,19}", re.ASCII)
_TIMESTAMP_TEXT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?",
    re.ASCII,
)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _show(value: object) -> str:
    """A short, JSON-looking rendering of a bad value for an error message."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=True)
        return text if len(text) <= 60 else text[:56] + '..."'
    if isinstance(value, int):
        if value.bit_length() > 200:  # str() of a huge int is slow, or refused outright
            return f"an integer of {value.bit_length():,} bits"
        return _number_text(str(value))
    if isinstance(value, Decimal):
        return _number_text(str(value))
    if isinstance(value, _OutOfRange):
        return _number_text(value.text)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _out_of_range(value: _OutOfRange, what: str) -> ValueError:
    return ValueError(f"number {_number_text(value.text)} is out of range for {what}")


def _to_str(value: Any) -> str:
    if value.__class__ is str:
        if _SURROGATE.search(value) is not None:
            # Not text: UTF-8 cannot carry it, so nothing downstream could write it.
            raise ValueError(f"a string with a lone UTF-16 surrogate: {_show(value)}")
        return value
    if value is None:
        return ""
    if value.__class__ is int or value.__class__ is Decimal:
        # A number in a string field (a post code sent as 10150) becomes its decimal text.
        return str(value)
    if value.__class__ is _OutOfRange:
        raise _out_of_range(value, "a string")
    raise ValueError(f"expected a string, got {_show(value)}")


def _to_int(value: Any) -> int:
    cls = value.__class__
    if cls is int:
        if INT_MIN <= value <= INT_MAX:
            return int(value)
        raise ValueError(f"expected an integer within 64 bits, got {_show(value)}")
    if value is None or value == "":
        return 0
    if cls is str and _INTEGER_TEXT.fullmatch(value):
        return _to_int(int(value))
    if cls is Decimal and value == value.to_integral_value():
        return _to_int(int(value))  # bounded below 10**30: a cheap int()
    if cls is _OutOfRange:
        raise _out_of_range(value, "an integer")
    raise ValueError(f"expected an integer, got {_show(value)}")


def _to_bool(value: Any) -> bool:
    if value is True or value is False:
        return value
    if value is None:
        return False
    raise ValueError(f"expected true or false, got {_show(value)}")


def _to_required_int(value: Any) -> int:
    if value is None or value == "":
        raise ValueError(f"expected an integer, got {_show(value)}")
    return _to_int(value)


def _to_required_str(value: Any) -> str:
    if value is None or value == "":
        raise ValueError(f"expected a non-empty string, got {_show(value)}")
    return _to_str(value)


def _whole_amount(value: int) -> Decimal:
    if not -_AMOUNT_LIMIT < value < _AMOUNT_LIMIT:
        raise ValueError(f"expected an amount below 10**{AMOUNT_DIGITS}, got {_show(value)}")
    if len(_whole_amounts) >= _MEMO_MAX:
        _whole_amounts.clear()
    amount = _whole_amounts[value] = Decimal(value)
    return amount


def _to_decimal(value: Any) -> Decimal:
    cls = value.__class__
    if cls is Decimal:
        # Only _bounded_decimal makes Decimals while decoding: finite and in bounds.
        return value  # type: ignore[no-any-return]
    if cls is int:
        return _whole_amount(value)
    if value is None or value == "":
        return _ZERO
    if cls is str and len(value) <= _LONGEST_NUMBER_TEXT and _NUMERIC_TEXT.fullmatch(value):
        amount = _bounded_decimal(value)
        if isinstance(amount, Decimal):
            return amount
        raise ValueError(f"amount {_show(value)} is out of range")
    if cls is _OutOfRange:
        raise _out_of_range(value, "an amount")
    raise ValueError(f"expected an amount, got {_show(value)}")


def _to_optional_decimal(value: Any) -> Decimal | None:
    """An amount that may be unset: ``null`` and ``""`` are ``None``, not zero."""
    if value is None or value == "":
        return None
    return _to_decimal(value)


def _to_timestamp(value: Any) -> datetime | None:
    if value is None or value == "" or value == GO_ZERO_TIME:
        return None
    if value.__class__ is not str or len(value) > 40:
        raise ValueError(f"expected an RFC 3339 timestamp, got {_show(value)}")
    match = _TIMESTAMP_TEXT.fullmatch(value)
    if match is None:
        raise ValueError(f"expected an RFC 3339 timestamp, got {_show(value)}")
    year, month, day, hour, minute, second, fraction, _zulu, sign, off_h, off_m = match.groups()
    fields = (int(year), int(month), int(day), int(hour), int(minute), int(second))
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    if fields == (1, 1, 1, 0, 0, 0) and micro == 0:
        return None  # the Go zero time, whatever its zone or fraction digits
    try:
        # Digits past the sixth (nanoseconds) are beyond datetime's resolution: truncated.
        stamp = datetime(*fields, micro, tzinfo=UTC)
        if sign:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            stamp = stamp.replace(tzinfo=timezone(offset if sign == "+" else -offset))
            stamp = stamp.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"expected an RFC 3339 timestamp, got {_show(value)}") from None
    return stamp


# The shape Go servers send (``2018-11-07T03:46:16.457936Z``), for which fromisoformat,
# a C call, gives exactly what _to_timestamp gives.
_COMMON_STAMP = re.compile(r"[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z", re.ASCII)
_fromisoformat = datetime.fromisoformat
_common_stamp = _COMMON_STAMP.fullmatch

# Line items usually carry their order's timestamps, and neighbouring records share many,
# as whole amounts repeat: small memos save a parse. Cleared when full, so bounded.
_MEMO_MAX = 4096
_recent_stamps: dict[str, datetime] = {}
_whole_amounts: dict[int, Decimal] = {}


def _timestamp_miss(value: str) -> datetime | None:
    """A memo miss of the fast path: parse by the one rule, remember the result."""
    if _common_stamp(value) is not None:
        try:
            stamp: datetime | None = _fromisoformat(value)
        except ValueError:
            stamp = _to_timestamp(value)  # raises with the rule's own message
    else:
        stamp = _to_timestamp(value)
    if stamp is not None:
        if len(_recent_stamps) >= _MEMO_MAX:
            _recent_stamps.clear()
        _recent_stamps[value] = stamp
    return stamp


# ---------------------------------------------------------------------------------------
# The models' field kinds, read once from their attrs fields.
# ---------------------------------------------------------------------------------------

_STR, _INT, _DEC, _TS, _ITEMS, _BOOL = "str", "int", "dec", "ts", "items", "bool"
_ODEC = "odec"  # an amount that may be unset (None): a required one the client checks
_ONE = "one"  # one nested record, or None
_KIND_OF_TYPE: dict[object, str] = {
    str: _STR,
    int: _INT,
    Decimal: _DEC,
    Decimal | None: _ODEC,
    datetime | None: _TS,
    bool: _BOOL,
}
# Every record model; nested ones (tuples of a model) are found from the annotations.
_RECORD_CLASSES = (
    Order,
    LineItem,
    NewOrder,
    NewLineItem,
    StatusUpdate,
    PartnerOrder,
    PartnerLineItem,
    DeliveryOrder,
    DeliveryLine,
    ProductStock,
    StockUpdateRecord,
    StockUpdateItem,
    NewPartnerOrder,
    NewPartnerLineItem,
    CreateFailure,
    Accept,
    Pack,
    Complete,
    Cancel,
    StatusSuccess,
    StatusFailure,
    NewProduct,
    PartnerVariant,
    CreatedProduct,
    ProductFailure,
    StockUpdate,
    ChannelStock,
)


@attrs.frozen
class _Field:
    """What the generators need of one model field: its name on the model and on the
    wire, its kind, whether it is required, and for a nested record its model.
    ``also``: a second wire name, sent too and read when the first is absent (for the
    documentation's two spellings of one field)."""

    name: str
    wire: str
    kind: str
    required: bool
    item: type | None
    also: str | None = None


@cache
def _fields(cls: type) -> tuple[_Field, ...]:
    hints = attrs.resolve_types(cls)
    fields = []
    for a in attrs.fields(hints):
        kind = _KIND_OF_TYPE.get(a.type)
        item = None
        if kind is None:
            args: tuple[Any, ...] = getattr(a.type, "__args__", ())
            if len(args) == 2 and args[1] is Ellipsis and attrs.has(args[0]):
                kind, item = _ITEMS, args[0]
            elif len(args) == 2 and args[1] is type(None) and attrs.has(args[0]):
                kind, item = _ONE, args[0]
            else:  # pragma: no cover - a model field of a type no rule covers
                raise TypeError(f"{cls.__name__}.{a.name}: no value rule for {a.type}")
        wire = a.metadata.get("wire", a.name)
        also = a.metadata.get("also")
        fields.append(_Field(a.name, wire, kind, a.default is attrs.NOTHING, item, also))
    return tuple(fields)


def _field_kinds(cls: type) -> list[tuple[str, str, bool]]:
    """(name, kind, required) for every field of a record model."""
    return [(f.name, f.kind, f.required) for f in _fields(cls)]


# ---------------------------------------------------------------------------------------
# The fast path: msgspec wire structs, and generated wire -> model functions.
# ---------------------------------------------------------------------------------------

_Int64 = Annotated[int, msgspec.Meta(ge=INT_MIN, le=INT_MAX)]


@cache
def _wire_struct(cls: type) -> type[msgspec.Struct]:
    """A msgspec struct mirroring ``cls`` as it travels: amounts untyped (``Any``: a
    JSON number's text goes through ``_bounded_decimal``, an int or a string is left to
    the rules), timestamps as text, nested records as their own wire structs (line items
    under either key), fields under their wire names."""
    fields: list[tuple[str, Any, Any]] = []
    for f in _fields(cls):
        if f.kind == _STR:
            spec: Any = str
            default: Any = ""
        elif f.kind == _INT:
            spec, default = _Int64, 0
        elif f.kind == _DEC:
            spec, default = Any, _ZERO
        elif f.kind == _ODEC:
            spec, default = Any, None
        elif f.kind == _ONE:
            assert f.item is not None
            spec, default = Optional[_wire_struct(f.item)], None  # noqa: UP045
        elif f.kind == _TS:
            spec, default = str | None, None
        elif f.kind == _BOOL:
            spec, default = bool, False
        else:
            assert f.item is not None
            item_wire = _wire_struct(f.item)
            spec, default = list[item_wire] | None, None  # type: ignore[valid-type]
            if f.name == "line_items":  # one revision of the API: a single "line_item"
                fields.append(("line_item", Optional[item_wire], None))  # noqa: UP045
        if f.required:
            default = msgspec.NODEFAULT
        if f.wire != f.name:
            default = msgspec.field(default=default, name=f.wire)
        fields.append((f.name, spec, default))
        if f.name == "updated_at":  # one revision of the API spells it update_at
            fields.append(("update_at", str | None, None))
        if f.also is not None:
            fields.append((f"also_{f.name}", Any, msgspec.field(default=None, name=f.also)))
    return msgspec.defstruct(f"{cls.__name__}Wire", fields, kw_only=True, gc=False)


def _rule_lines(cls: type) -> list[tuple[str, list[str]]]:
    """Per field: its name and the statements that leave its model value in ``v``, read
    from the wire struct ``w`` with the value rules' common cases inline (an empty list:
    msgspec already checked the type and the bounds, the value is ``w.<name>`` as is).
    Raises ValueError where a rule refuses a value (the validating path then names it).
    The one source of the fast path's rules, for all three functions generated below."""
    fields: list[tuple[str, list[str]]] = []
    for f in _fields(cls):
        name, kind, required = f.name, f.kind, f.required
        item = f"item_{name}"
        lines: list[str] = []
        if f.also is not None:  # the second spelling counts where the first is unset
            convert = "to_str" if kind == _STR else "to_optional_decimal"
            lines += [
                f"v = w.{name}",
                f"if (v is None or v == '') and w.also_{name} is not None:",
                f"    w.{name} = {convert}(w.also_{name})",
            ]
        if kind == _STR and required:
            lines += [f"v = w.{name}", "if not v:", "    to_required_str(v)"]
        elif kind == _STR and f.also is not None:
            lines.append(f"v = w.{name}")
        elif kind == _ODEC:
            lines += [
                f"v = w.{name}",
                "if v is not None and v.__class__ is not Decimal:",
                "    v = to_optional_decimal(v)",
            ]
        elif kind == _ONE:
            lines += [f"v = w.{name}", "if v is not None:", f"    v = {item}(v)"]
        elif kind == _DEC:
            lines += [
                f"v = w.{name}",
                "if v.__class__ is not Decimal:",
                "    if v.__class__ is int:",
                "        d = whole_get(v)",
                "        v = d if d is not None else whole_amount(v)",
                "    else:",
                "        v = to_decimal(v)",
            ]
        elif kind == _TS:
            lines.append(f"v = w.{name}")
            if name == "updated_at":  # one revision of the API spells it update_at
                lines += ["if v is None:", "    v = w.update_at"]
            lines.append("v = None if v is None or v == ZERO_TIME else (recent(v) or stamp(v))")
        elif kind == _ITEMS and name == "line_items":  # a list, null, or one "line_item"
            lines += [
                f"v = w.{name}",
                "if v is None:",
                "    v = w.line_item",
                f"    v = () if v is None else ({item}(v),)",
                "else:",
                f"    v = tuple([{item}(x) for x in v])",
            ]
        elif kind == _ITEMS:  # a list or null
            lines += [f"v = w.{name}", f"v = () if v is None else tuple([{item}(x) for x in v])"]
        fields.append((name, lines))
    return fields


_RULES_NAMESPACE: dict[str, Any] = {
    "to_str": _to_str,
    "to_optional_decimal": _to_optional_decimal,
    "to_required_str": _to_required_str,
    "to_decimal": _to_decimal,
    "whole_get": _whole_amounts.get,
    "whole_amount": _whole_amount,
    "stamp": _timestamp_miss,
    "recent": _recent_stamps.get,
    "Decimal": Decimal,
    "ZERO_TIME": GO_ZERO_TIME,
}


def _compile(source: list[str], name: str, namespace: dict[str, Any]) -> Callable[[Any], Any]:
    namespace = {**_RULES_NAMESPACE, **namespace}
    function = source[0].split()[1].split("(")[0]
    exec(compile("\n".join(source), f"<connexi_async {function} {name}>", "exec"), namespace)
    return namespace[function]  # type: ignore[no-any-return]


def _builder(cls: type) -> dict[str, Any]:
    """What a generated function needs to make a ``cls`` without its ``__init__``: an
    instance is born a ``builder`` (a subclass that adds no slot and takes back
    ``object``'s ``__setattr__`` and ``__delattr__``, so that ``o.field = v`` is the
    interpreter's plain slot store, several times cheaper than calling a frozen model's
    slot setters one by one), filled, then made a ``cls`` (``o.__class__ = cls``: the
    same layout, so allowed, and from then on frozen like any other). Safe because the
    models have no validators, converters or ``__attrs_post_init__``
    (tests/test_convert.py checks that this stays true); nothing half-built escapes."""
    builder = type(
        f"_{cls.__name__}Builder",
        (cls,),
        {
            "__slots__": (),
            "__setattr__": object.__setattr__,
            # Both: either one overridden keeps the generic (slow) attribute store.
            "__delattr__": object.__delattr__,
            "__module__": __name__,
        },
    )
    return {"cls": cls, "new": object.__new__, "builder": builder}


def _items(cls: type, generate: Callable[[type], Callable[[Any], Any]]) -> dict[str, Any]:
    """``item_<field>``: the generated function of each nested record field."""
    return {f"item_{f.name}": generate(f.item) for f in _fields(cls) if f.item is not None}


@cache
def _generate_convert(cls: type) -> Callable[[Any], Any]:
    """``convert(wire) -> model`` in one pass: what ``decode_orders`` uses."""
    source = ["def convert(w):", "    o = new(builder)"]
    for name, lines in _rule_lines(cls):
        source += [f"    {line}" for line in lines]
        source.append(f"    o.{name} = {'v' if lines else f'w.{name}'}")
    source += ["    o.__class__ = cls", "    return o"]
    return _compile(source, cls.__name__, {**_items(cls, _generate_convert), **_builder(cls)})


@cache
def _generate_prepare(cls: type) -> Callable[[Any], Any]:
    """``prepare(wire) -> wire``: the rules applied in place, the model not built yet.

    A prepared wire struct holds the final values; :func:`_generate_build` copies them
    into the model. Two phases so that a window's worth of records can wait in wire
    structs, which msgspec keeps out of the garbage collector's sight (``gc=False``),
    and the models are made one by one as they are handed out: they die young, and no
    collection has to walk a whole window of them (what RecordStream uses).
    """
    source = ["def prepare(w):"]
    for name, lines in _rule_lines(cls):
        if lines:
            source += [f"    {line}" for line in lines]
            source.append(f"    w.{name} = v")
    source.append("    return w")
    return _compile(source, cls.__name__, _items(cls, _generate_prepare))


@cache
def _generate_build(cls: type) -> Callable[[Any], Any]:
    """``build(prepared wire) -> model``; a model (from the validating path) passes as is."""
    source = [
        "def build(w):",
        "    if w.__class__ is not wire:",
        "        return w",
        "    o = new(builder)",
    ]
    for name, kind, _required in _field_kinds(cls):
        value = f"w.{name}"
        if kind == _ITEMS:
            value = f"tuple([item_{name}(x) for x in w.{name}])"
        elif kind == _ONE:
            value = f"(None if w.{name} is None else item_{name}(w.{name}))"
        source.append(f"    o.{name} = {value}")
    source += ["    o.__class__ = cls", "    return o"]
    namespace = {"wire": _wire_struct(cls), **_items(cls, _generate_build), **_builder(cls)}
    return _compile(source, cls.__name__, namespace)


# ---------------------------------------------------------------------------------------
# The validating path: cattrs with detailed validation, the same value rules as hooks.
# ---------------------------------------------------------------------------------------


def _make_validating_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(str, lambda v, _: _to_str(v))
    converter.register_structure_hook(int, lambda v, _: _to_int(v))
    converter.register_structure_hook(Decimal, lambda v, _: _to_decimal(v))
    # Unions by an equality predicate: cattrs 23.2 passes over a hook registered for
    # `X | None` for its own Optional handler, which then finds no hook for a datetime.
    optional_decimal: Any = Decimal | None
    optional_datetime: Any = datetime | None
    converter.register_structure_hook_func(
        partial(operator.eq, optional_decimal), lambda v, _: _to_optional_decimal(v)
    )
    converter.register_structure_hook_func(
        partial(operator.eq, optional_datetime), lambda v, _: _to_timestamp(v)
    )
    converter.register_structure_hook(bool, lambda v, _: _to_bool(v))

    def items_hook(item_cls: type) -> Callable[[Any, Any], tuple[Any, ...]]:
        # "line items" for LineItem, NewLineItem, PartnerLineItem; "delivery orders"...
        words = re.findall("[A-Z][a-z]+", item_cls.__name__)
        what = " ".join(w.lower() for w in words if w not in ("New", "Partner")) + "s"

        def structure_items(value: Any, _: Any) -> tuple[Any, ...]:
            if not isinstance(value, list):
                raise ValueError(f"expected a list of {what}, got {_show(value)}")
            items: list[Any] = []
            errors: list[Exception] = []
            for index, raw in enumerate(value):
                try:
                    items.append(converter.structure(raw, item_cls))
                except Exception as exc:
                    exc.add_note(IterableValidationNote(f"@ index {index}", index, item_cls))
                    errors.append(exc)
            if errors:
                raise IterableValidationError(what, errors, tuple)
            return tuple(items)

        return structure_items

    nested = {f.item for cls in _RECORD_CLASSES for f in _fields(cls) if f.item is not None}
    for item_cls in nested:
        hook = items_hook(item_cls)
        tuple_type: Any = tuple[item_cls, ...]  # type: ignore[valid-type]
        converter.register_structure_hook_func(partial(operator.eq, tuple_type), hook)

    for cls in _RECORD_CLASSES:
        overrides = {
            f.name: override(
                struct_hook=(lambda v, _: _to_required_int(v))
                if f.kind == _INT
                else (lambda v, _: _to_required_str(v))
            )
            for f in _fields(cls)
            if f.required
        }
        for f in _fields(cls):
            if f.wire != f.name:
                overrides[f.name] = override(rename=f.wire)
        generated = make_dict_structure_fn(cls, converter, **overrides)  # type: ignore[arg-type]
        converter.register_structure_hook(cls, _with_aliases(generated))
    return converter


def _with_aliases(generated: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def structure(value: Any, cls: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, got {_show(value)}")
        for f in _fields(cls):
            if f.also is not None and value.get(f.name) in (None, "") and f.also in value:
                value = {**value, f.name: value[f.also]}
        if value.get("updated_at") is None and "update_at" in value:
            value = {**value, "updated_at": value["update_at"]}
        if "line_items" in value or "line_item" in value:
            items = value.get("line_items")
            if items is None:
                single = value.get("line_item")
                value = {**value, "line_items": [] if single is None else [single]}
        return generated(value, cls)

    return structure


_VALIDATING = _make_validating_converter()
# Paths name a field as it is on the wire (the partner history's renamed fields).
_WIRE_NAMES = {f.name: f.wire for c in _RECORD_CLASSES for f in _fields(c) if f.wire != f.name}


def _collect(exc: BaseException, path: str, out: list[FieldError], order_id: int | None) -> None:
    """Flatten a cattrs error tree into FieldErrors with JSON paths."""
    if isinstance(exc, ClassValidationError):
        with_notes, others = exc.group_exceptions()
        for sub, note in with_notes:
            _collect(sub, f"{path}.{_WIRE_NAMES.get(note.name, note.name)}", out, order_id)
        for sub in others:
            _collect(sub, path, out, order_id)
    elif isinstance(exc, IterableValidationError):
        item_notes, others = exc.group_exceptions()
        for sub, item_note in item_notes:
            _collect(sub, f"{path}[{item_note.index}]", out, order_id)
        for sub in others:
            _collect(sub, path, out, order_id)
    elif isinstance(exc, KeyError):
        out.append(FieldError(path, "required field is missing", order_id))
    elif isinstance(exc, ValueError):
        out.append(FieldError(path, str(exc), order_id))
    else:
        out.append(
            FieldError(path, f"could not be decoded ({type(exc).__name__}: {exc})", order_id)
        )


def _record_id(record: object) -> int | None:
    if isinstance(record, dict):
        try:
            return _to_required_int(record.get("id"))
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------------------------------
# Record kinds: what the decoding machinery needs to know about each.
# ---------------------------------------------------------------------------------------


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a valid amount")


def _load_record(raw: bytes) -> Any:
    """One record for the validating path, numbers bounded as on the fast path."""
    return json.loads(
        raw,
        parse_float=_bounded_decimal,
        parse_int=_bounded_int,
        parse_constant=_refuse_constant,
    )


@attrs.frozen
class _Kind:
    """How to decode one kind of record: the envelope keys, the fast path's decoders,
    its two phases (``prepare`` checks and converts, ``build`` makes the model), and the
    validating path for one record (appends FieldErrors or returns the model)."""

    keys: tuple[str, ...]
    pieces: msgspec.json.Decoder[Any]
    single: msgspec.json.Decoder[Any]
    convert: Callable[[Any], Any]
    prepare: Callable[[Any], Any]
    build: Callable[[Any], Any]
    validate: Callable[[Any, str, list[FieldError]], Any]


def _model_kind(cls: type, keys: tuple[str, ...]) -> _Kind:
    """The kind of an attrs record model, its nested records included."""
    wire = _wire_struct(cls)
    name_ids = cls in (Order, StatusUpdate, PartnerOrder)  # "(order 111)" in messages

    def validate(record: Any, path: str, errors: list[FieldError]) -> Any:
        try:
            return _VALIDATING.structure(record, cls)
        except Exception as exc:
            _collect(exc, path, errors, _record_id(record) if name_ids else None)
            return None

    return _Kind(
        keys=keys,
        pieces=msgspec.json.Decoder(list[wire], float_hook=_bounded_decimal),  # type: ignore[valid-type]
        single=msgspec.json.Decoder(wire, float_hook=_bounded_decimal),
        convert=_generate_convert(cls),
        prepare=_generate_prepare(cls),
        build=_generate_build(cls),
        validate=validate,
    )


_ORDERS = _model_kind(Order, ("orders", "data"))
_NEW_ORDERS = _model_kind(NewOrder, ("orders", "data"))
_STATUS_UPDATES = _model_kind(StatusUpdate, ("data",))
_PARTNER_ORDERS = _model_kind(PartnerOrder, ("data",))
_PRODUCT_STOCKS = _model_kind(ProductStock, ("data",))
_STOCK_UPDATES = _model_kind(StockUpdateRecord, ("data",))
_NEW_PARTNER_ORDERS = _model_kind(NewPartnerOrder, ("orders", "data"))
_NEW_PRODUCTS = _model_kind(NewProduct, ("products", "data"))
# The parts of partner write bodies (found under their own keys, see _sections_steps).
_SECTION_KINDS: dict[type, _Kind] = {
    cls: _model_kind(cls, ("data",))
    for cls in (
        PartnerOrder,
        CreateFailure,
        StatusSuccess,
        StatusFailure,
        CreatedProduct,
        ProductFailure,
        Accept,
        Pack,
        Complete,
        Cancel,
    )
}


def _location(value: Any, path: str, errors: list[FieldError]) -> Location | None:
    if not isinstance(value, dict):
        errors.append(FieldError(path, f"expected an object, got {_show(value)}"))
        return None
    texts = []
    for key in ("location_code", "provider_data"):
        try:
            texts.append(_to_str(value.get(key)))
        except ValueError as exc:
            errors.append(FieldError(f"{path}.{key}", str(exc)))
            texts.append("")
    children: list[Location] = []
    for key in ("provinces", "cities", "districts", "children"):
        inner = value.get(key)
        if inner is None:
            continue
        if not isinstance(inner, list):
            errors.append(FieldError(f"{path}.{key}", f"expected a list, got {_show(inner)}"))
            continue
        for index, child in enumerate(inner):
            node = _location(child, f"{path}.{key}[{index}]", errors)
            if node is not None:
                children.append(node)
    return Location(location_code=texts[0], provider_data=texts[1], children=tuple(children))


def _validate_location(record: Any, path: str, errors: list[FieldError]) -> Location | None:
    try:
        return _location(record, path, errors)
    except RecursionError:
        errors.append(FieldError(path, "location tree nested too deeply"))
        return None


def _identity(value: Any) -> Any:
    return value


def _convert_location(record: Any) -> Location:
    errors: list[FieldError] = []
    location = _validate_location(record, "$", errors)
    if errors or location is None:
        raise ValueError("a location the validating path must report")
    return location


# Location trees have one rule-set only (no fast variant): msgspec parses them untyped.
_LOCATIONS = _Kind(
    keys=("locations", "data"),
    pieces=msgspec.json.Decoder(list[Any], float_hook=_bounded_decimal),
    single=msgspec.json.Decoder(Any, float_hook=_bounded_decimal),
    convert=_convert_location,
    prepare=_convert_location,
    build=_identity,
    validate=_validate_location,
)

# ---------------------------------------------------------------------------------------
# Decoding a body, piece by piece.
# ---------------------------------------------------------------------------------------

_CONVERT_BATCH = 16  # records prepared or built between two yields (~0.2 ms)


@attrs.frozen
class _Pace:
    """How finely decoding is cut: the bytes of a piece, the records between two yields.
    Fine for the loop (the client, the sandbox); coarse when nothing else waits (the
    synchronous ``decode_*``), where the cuts would only cost time."""

    piece_bytes: int
    batch: int


_SLICED = _Pace(DEFAULT_PIECE_BYTES, _CONVERT_BATCH)
_AT_ONCE = _Pace(DEFAULT_PIECE_BYTES, 512)
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_any_value = msgspec.json.Decoder(Any)
_envelope = msgspec.json.Decoder(list[msgspec.Raw] | dict[str, msgspec.Raw])


def _as_body(payload: object, context: str) -> Body:
    if isinstance(payload, Body):
        return payload
    if isinstance(payload, bytes | bytearray | memoryview):
        return Body([payload])  # read in place: a copy of a 20 MB body is a stall of its own
    if isinstance(payload, str):
        try:
            return Body([payload.encode()])
        except UnicodeEncodeError:
            raise DecodeError(
                [FieldError("$", "invalid JSON: text with a lone UTF-16 surrogate")],
                context=context,
            ) from None
    raise DecodeError([FieldError("$", f"expected bytes or str, got {type(payload).__name__}")])


class _Refused(Exception):
    """msgspec would not parse the body: Python's json is asked (see _json_path)."""


def _json_path(text: bytes, kind: _Kind, context: str) -> list[Any]:
    """The whole body through Python's json and the validating path, record by record.

    Only for a body msgspec refuses: Python's json words its complaints better (NaN,
    line and column), and it accepts what msgspec does not (a lone surrogate escape),
    which the validating path then judges field by field. One long step, for malformed
    input only.
    """
    try:
        data = _load_record(text)
    except (ValueError, RecursionError) as exc:
        raise DecodeError([FieldError("$", f"invalid JSON: {exc}")], context=context) from None
    records, base = _records(data, kind.keys, context)
    results: list[Any] = []
    errors: list[FieldError] = []
    for index, record in enumerate(records):
        value = kind.validate(record, f"{base}[{index}]", errors)
        if value is not None:
            results.append(value)
    if errors:
        raise DecodeError(errors, context=context)
    return results


def _records(data: Any, keys: tuple[str, ...], context: str) -> tuple[list[Any], str]:
    """The list of records inside any of the envelopes, and its JSON path."""
    if isinstance(data, list):
        return data, "$"
    if isinstance(data, dict):
        for key in keys:
            if key in data:
                inner = data[key]
                if inner is None:
                    return [], f"$.{key}"
                if isinstance(inner, list):
                    return inner, f"$.{key}"
                raise _not_a_list(key, _show(inner), context)
        raise _no_records_key(keys, data, context)
    raise DecodeError(
        [FieldError("$", f"expected a list or an object, got {_show(data)}")], context=context
    )


def _plain_region(body: Body, keys: tuple[str, ...]) -> tuple[int, int, str] | None:
    """The records array of a body laid out the plain way, verified: (start, end, path)."""
    found = find_array(body, keys)
    if found is None:
        return None
    start, end, key, envelope = found
    try:
        outer: Any = _any_value.decode(envelope)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if key is None:
        return (start, end, "$") if outer == [] else None
    if not isinstance(outer, dict) or outer.get(key) != []:
        return None  # a repeated key, or the text after the array was not what it seemed
    if any(k in outer for k in keys[: keys.index(key)]):
        return None  # a preferred envelope key comes later in the body
    return start, end, f"$.{key}"


def _general_region(body: Body, keys: tuple[str, ...], context: str) -> tuple[bytes, str]:
    """The records array of any body, by a full parse of its outer layers: (array, path).

    One C call over the body: only for layouts the plain scan does not recognise.
    """
    whole = body.whole()
    try:
        outer = _envelope.decode(whole)
    except msgspec.ValidationError:
        try:
            value = _any_value.decode(whole)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            raise _Refused from None
        raise DecodeError(
            [FieldError("$", f"expected a list or an object, got {_show(value)}")],
            context=context,
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise _Refused from None
    if isinstance(outer, list):
        return b"[" + b",".join(bytes(r) for r in outer) + b"]", "$"
    for key in keys:
        if key in outer:
            inner = bytes(outer[key])
            if inner == b"null":
                return b"[]", f"$.{key}"
            if inner.startswith(b"["):
                return inner, f"$.{key}"
            try:
                shown = _show(_any_value.decode(inner))
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                shown = "an unreadable value"
            raise _not_a_list(key, shown, context)
    raise _no_records_key(keys, outer, context)


def _not_a_list(key: str, shown: str, context: str) -> DecodeError:
    return DecodeError([FieldError(f"$.{key}", f"expected a list, got {shown}")], context=context)


def _no_records_key(keys: tuple[str, ...], envelope: dict[str, Any], context: str) -> DecodeError:
    wanted = " or ".join(f'"{k}"' for k in keys)
    found = sorted(envelope)[:10]
    return DecodeError(
        [FieldError("$", f"expected a list or an object with {wanted}, got keys {found}")],
        context=context,
    )


def _decode_steps(
    payload: object, kind: _Kind, context: str, *, built: bool = True, pace: _Pace = _SLICED
) -> Steps[list[Any]]:
    """Decode a body of records as a generator of short steps (see _cooperative).

    With ``built=False`` the records come back prepared but not yet made into models:
    pass each through ``kind.build`` as it is handed out (what RecordStream does)."""
    body = _as_body(payload, context)
    try:
        return (yield from _msgspec_path(body, kind, context, built, pace))
    except _Refused:
        return _json_path(body.whole(), kind, context)


def _msgspec_path(
    body: Body, kind: _Kind, context: str, built: bool, pace: _Pace
) -> Steps[list[Any]]:
    region = _plain_region(body, kind.keys)
    if region is None:
        array, base = _general_region(body, kind.keys, context)
        body = Body([array])
        start, end = 1, len(array) - 1
        yield
    else:
        start, end, base = region
    return (yield from _region_steps(body, start, end, base, kind, context, built, pace))


def _region_steps(
    body: Body,
    start: int,
    end: int,
    base: str,
    kind: _Kind,
    context: str,
    built: bool,
    pace: _Pace,
) -> Steps[list[Any]]:
    """The records between ``start`` and ``end`` (the inside of a JSON array in
    ``body``), piece by piece; raises _Refused when that is not a list of values."""
    # Models at once, or prepared wire structs to build as they are handed out.
    convert = kind.convert if built else kind.prepare
    results: list[Any] = []
    errors: list[FieldError] = []
    index = 0
    a = start
    while True:
        b, following = _cut(body, end, a + pace.piece_bytes)
        for _miss in range(_CUT_MISSES):
            piece = body.slice(a, b, b"[", b"]")
            count = yield from _decode_piece(
                piece, kind, base, index, results, errors, convert, pace.batch
            )
            if count is not None or b >= end:
                break
            # Not whole records after all (a bracket inside a string fooled the cut):
            # the same piece, on to the next candidate.
            yield
            b, following = _cut(body, end, b + 1)
        if count is None:
            # Still no valid piece: the rest of the array, split into records by one
            # fast C pass (no typed decoding in that step), settles what it is.
            rest = body.slice(a, end, b"[", b"]")
            count = yield from _decode_piece(
                rest, kind, base, index, results, errors, convert, pace.batch, typed=False
            )
            if count is None:
                raise _Refused
            break
        index += count
        if b >= end:
            break
        a = following
    if errors:
        raise DecodeError(errors, context=context)
    return results


_CUT_MISSES = 8  # candidates tried for one piece before the rest is read as one


def _cut(body: Body, end: int, at_least: int) -> tuple[int, int]:
    """Where the next piece ends and the one after starts (the array's end at the last)."""
    if at_least >= end:
        return end, end
    return next_cut(body, end, at_least) or (end, end)


def _decode_piece(
    piece: bytes,
    kind: _Kind,
    base: str,
    first: int,
    results: list[Any],
    errors: list[FieldError],
    convert: Callable[[Any], Any],
    batch_size: int,
    *,
    typed: bool = True,
) -> Steps[int | None]:
    """Decode one piece of whole records (a JSON list) into ``results``: how many it
    held, or ``None`` when the piece is not a valid JSON list of values. With
    ``typed=False`` the piece is first split into records, then decoded one by one."""
    wires = None
    if typed:
        try:
            wires = kind.pieces.decode(piece)
        except (msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            pass  # some record needs the validating path
        except msgspec.DecodeError:
            return None
    yield
    if wires is not None:
        for offset in range(0, len(wires), batch_size):
            batch = wires[offset : offset + batch_size]
            try:
                results += [convert(w) for w in batch]
            except Exception:
                break  # a value the rules refuse: find it record by record
            yield
        else:
            return len(wires)
        done = offset
    else:
        done = 0
    try:
        raws = _raw_list.decode(piece)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    for index in range(done, len(raws)):
        _decode_one(raws[index], kind, f"{base}[{first + index}]", results, errors, convert)
        if index % batch_size == 0:
            yield
    return len(raws)


def _decode_one(
    raw: msgspec.Raw,
    kind: _Kind,
    path: str,
    results: list[Any],
    errors: list[FieldError],
    convert: Callable[[Any], Any],
) -> None:
    try:
        results.append(convert(kind.single.decode(raw)))
        return
    except Exception:
        pass
    try:
        record = _load_record(bytes(raw))
    except (ValueError, RecursionError) as exc:
        errors.append(FieldError(path, f"invalid JSON: {exc}"))
        return
    value = kind.validate(record, path, errors)
    if value is not None:
        results.append(value)


def decode_orders(payload: bytes | str, *, context: str = "") -> list[Order]:
    """Decode a Get Order (or Create Order) response body into :class:`Order` records.

    Accepts ``{"orders": [...]}``, ``{"data": [...]}`` and a bare ``[...]``. Raises
    :class:`DecodeError` naming every bad field, and nothing else, whatever the bytes.

    >>> [o.id for o in decode_orders(b'{"orders": [{"id": 111, "total": 47500}]}')]
    [111]
    """
    return run_steps(_decode_steps(payload, _ORDERS, context, pace=_AT_ONCE))


def decode_new_orders(
    payload: bytes | str, *, context: str = "", strict: bool = False
) -> list[NewOrder]:
    """Decode a Create Order request body (what the sandbox receives).

    With ``strict=True``, for orders a *person* wrote (the CLI's ``create``): a field the
    model does not have is refused, naming the closest known one, and so is a timestamp
    without a zone, rather than read as UTC.

    >>> decode_new_orders(b'[{"totl": 150000}]', strict=True)
    Traceback (most recent call last):
    ...
    connexi_async._errors.DecodeError: could not decode the payload (1 problem): $[0].totl: unknown field (did you mean total?)
    """
    if strict:
        _check_written_by_hand(payload, context, _NEW_ORDERS.keys, NewOrder)
    return run_steps(_decode_steps(payload, _NEW_ORDERS, context, pace=_AT_ONCE))


def decode_new_partner_orders(
    payload: bytes | str, *, context: str = "", strict: bool = False
) -> list[NewPartnerOrder]:
    """Decode a partner Create Order body (``{"orders": [...]}``, a list, or one per
    line joined into a list by the caller); ``strict`` as in :func:`decode_new_orders`."""
    if strict:
        _check_written_by_hand(payload, context, _NEW_PARTNER_ORDERS.keys, NewPartnerOrder)
    return run_steps(_decode_steps(payload, _NEW_PARTNER_ORDERS, context, pace=_AT_ONCE))


_ZONED = re.compile(r".*(?:[Zz]|[+-]\d{2}:?\d{2})", re.ASCII | re.DOTALL)
# A date and a time of day (else the usual decoding says it is no timestamp at all).
_LOOKS_LIKE_TIME = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d", re.ASCII)


def _check_written_by_hand(
    payload: bytes | str, context: str, keys: tuple[str, ...], cls: type
) -> None:
    """The strict checks of :func:`decode_new_orders`; the rest is the usual decoding."""
    try:
        data = _load_record(payload.encode() if isinstance(payload, str) else payload)
    except (ValueError, RecursionError, UnicodeEncodeError):
        return  # the usual decoding names what is wrong with it
    try:
        records, base = _records(data, keys, context)
    except DecodeError:
        return
    errors: list[FieldError] = []
    for index, record in enumerate(records):
        _check_record_by_hand(record, cls, f"{base}[{index}]", errors)
    if errors:
        raise DecodeError(errors, context=context)


def _check_record_by_hand(record: object, cls: type, path: str, errors: list[FieldError]) -> None:
    """Unknown fields (with the closest known one) and zoneless timestamps, nested
    records included."""
    if not isinstance(record, dict):
        return
    fields = _fields(cls)
    known = {f.wire for f in fields} | {f.also for f in fields if f.also is not None}
    for name in record.keys() - known:
        close = difflib.get_close_matches(str(name), sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        errors.append(FieldError(f"{path}.{name}", f"unknown field{hint}"))
    for f in fields:
        value = record.get(f.wire)
        if f.kind == _TS and isinstance(value, str) and _LOOKS_LIKE_TIME.match(value):
            if not _ZONED.fullmatch(value) and value not in ("", GO_ZERO_TIME):
                errors.append(
                    FieldError(
                        f"{path}.{f.wire}",
                        f"{_show(value)} has no time zone: add Z (UTC) or an offset such "
                        "as +07:00; it is not guessed",
                    )
                )
        elif f.kind == _ITEMS and isinstance(value, list):
            assert f.item is not None
            for index, item in enumerate(value):
                _check_record_by_hand(item, f.item, f"{path}.{f.wire}[{index}]", errors)
        elif f.kind == _ONE and f.item is not None:
            _check_record_by_hand(value, f.item, f"{path}.{f.wire}", errors)


def decode_status_updates(payload: bytes | str, *, context: str = "") -> list[StatusUpdate]:
    """Decode an Update Order request body: ``[{"id": 1, "status": "accepted"}, ...]``."""
    return run_steps(_decode_steps(payload, _STATUS_UPDATES, context, pace=_AT_ONCE))


def decode_locations(payload: bytes | str, *, context: str = "") -> list[Location]:
    """Decode a Get Stocks response body into the trees of :class:`Location`.

    >>> decode_locations(b'{"locations": [{"location_code": "ID"}]}')[0].location_code
    'ID'
    """
    return run_steps(_decode_steps(payload, _LOCATIONS, context, pace=_AT_ONCE))


# The same decoders as generators of steps, for the client and the sandbox to run sliced.
def orders_steps(payload: Buffer, context: str, *, built: bool = True) -> Steps[list[Any]]:
    return _decode_steps(payload, _ORDERS, context, built=built)


def new_orders_steps(payload: Buffer, context: str) -> Steps[list[NewOrder]]:
    return _decode_steps(payload, _NEW_ORDERS, context)


def status_updates_steps(payload: Buffer, context: str) -> Steps[list[StatusUpdate]]:
    return _decode_steps(payload, _STATUS_UPDATES, context)


def locations_steps(payload: Buffer, context: str) -> Steps[list[Location]]:
    return _decode_steps(payload, _LOCATIONS, context)


# -- the partner API's pages ----------------------------------------------------------

_PARTNER_KINDS: dict[type, _Kind] = {
    PartnerOrder: _PARTNER_ORDERS,
    ProductStock: _PRODUCT_STOCKS,
    StockUpdateRecord: _STOCK_UPDATES,
}


def _envelope_fields(body: Body, keys: tuple[str, ...]) -> dict[str, Any]:
    """The envelope of a page without its records (``total_record``, ``offset``...):
    the plain layout's small envelope, else one parse of the whole body."""
    found = find_array(body, keys)
    text = found[3] if found is not None else body.whole()
    try:
        outer = _any_value.decode(text)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return {}
    return outer if isinstance(outer, dict) else {}


def page_steps(
    payload: Buffer | str, cls: type, context: str, *, built: bool = True
) -> Steps[tuple[list[Any], int | None]]:
    """One page of the partner API (``{"data": [...], "total_record": n, ...}``): its
    records (prepared only, with ``built=False``; see :func:`build_partner`) and the
    ``total_record`` it announces (``None`` when it does not say)."""
    body = _as_body(payload, context)
    records = yield from _decode_steps(body, _PARTNER_KINDS[cls], context, built=built)
    total = _envelope_fields(body, ("data",)).get("total_record")
    if total is None or total == "":
        return records, None  # not announced: the pager reads on to a short page
    try:
        count = _to_int(total)
        if count < 0:
            raise ValueError(f"expected a count of records, got {_show(total)}")
    except ValueError as exc:
        raise DecodeError([FieldError("$.total_record", str(exc))], context=context) from None
    return records, count


def build_partner(cls: type) -> Callable[[Any], Any]:
    """Makes a prepared record of ``cls`` into its model (see RecordStream's ``build``)."""
    return _PARTNER_KINDS[cls].build


def decode_partner_orders(payload: bytes | str, *, context: str = "") -> list[PartnerOrder]:
    """Decode a partner Get Order page into :class:`PartnerOrder` records (its
    ``total_record`` is read by the client's pager)."""
    return run_steps(page_steps(payload, PartnerOrder, context or "partner orders"))[0]


def decode_product_stocks(payload: bytes | str, *, context: str = "") -> list[ProductStock]:
    """Decode a partner Get Stock page into :class:`ProductStock` records."""
    return run_steps(page_steps(payload, ProductStock, context or "product stock"))[0]


def decode_stock_updates(payload: bytes | str, *, context: str = "") -> list[StockUpdateRecord]:
    """Decode a partner inventory history page into :class:`StockUpdateRecord` records."""
    return run_steps(page_steps(payload, StockUpdateRecord, context or "stock update history"))[0]


def page_body_steps(
    records: Iterable[Any], cls: type, *, total: int, offset: int, limit: int, reference: str
) -> Steps[list[bytes]]:
    """A partner page as the server sends it, in parts (the sandbox's encoder)."""
    tail = (
        f',"total_record":{int(total)},"offset":{int(offset)},"limit":{int(limit)},'
        f'"message":"","reference":{_json_string(reference)}'
    )
    return _encode_steps(records, cls, "data", chunked=True, tail=tail)


# Makes an Order of what ``orders_steps(..., built=False)`` gave (a model passes as is).
build_order: Callable[[Any], Order] = _ORDERS.build


# -- the partner API's writes ---------------------------------------------------------

# Where each status change goes in an Update Order body, in the documentation's order.
STATUS_CHANGE_KEYS: dict[type, str] = {
    Accept: "accepted",
    Pack: "packed",
    Complete: "completed",
    Cancel: "cancelled",
}
_members = msgspec.json.Decoder(dict[str, msgspec.Raw] | None)


def _members_of(text: bytes | memoryview, where: str, context: str) -> dict[str, msgspec.Raw]:
    try:
        members = _members.decode(text)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DecodeError(
            [FieldError(where, f"expected a JSON object ({exc})")], context=context
        ) from None
    return members or {}


def _sections_steps(
    text: bytes | memoryview, wanted: dict[str, type], context: str, where: str
) -> Steps[dict[str, list[Any]]]:
    """The record lists under some members of a JSON object (absent or null: empty),
    each decoded piece by piece as any list of records is. Members are views into
    ``text``, never copies (a step each: a C pass over megabytes is milliseconds)."""
    members = _members_of(text, where, context)
    yield
    found: dict[str, list[Any]] = {}
    for key, cls in wanted.items():
        raw = members.get(key)
        records: list[Any] = []
        view = None if raw is None else memoryview(raw)
        if view is not None and bytes(view[:4]) != b"null":
            if bytes(view[:1]) != b"[":
                shown = _show(bytes(view[:40]).decode("utf-8", "replace"))
                raise DecodeError(
                    [FieldError(f"{where}.{key}", f"expected a list, got {shown}")],
                    context=context,
                )
            records = yield from _decode_steps(
                view, _SECTION_KINDS[cls], f"{context} (at {where}.{key})"
            )
        found[key] = records
        yield
    return found


# The plain layout of a partner write's answer: "succeed" first inside "data" first.
_PARTIAL_HEAD = re.compile(rb'\s*\{\s*"data"\s*:\s*\{\s*"succeed"\s*:\s*\[')
# What ends the "succeed" array: the "failed" member next, or the end of "data".
_BEFORE_FAILED = re.compile(rb'\]\s*,\s*"failed"\s*:')
_END_OF_DATA = re.compile(rb"\]\s*\}")
_PARTIAL_TAIL = 1024 * 1024  # the envelope after "succeed" ("failed" included), parsed at once


def _plain_answer(
    body: Body, ok_cls: type, failed_cls: type, context: str
) -> Steps[tuple[list[Any], list[Any]] | None]:
    """The plain layout's "succeed" records read as a region of the body (never joined,
    never scanned whole: a large answer never holds the loop), the rest of the envelope
    parsed and checked; ``None`` when the body is not laid out that way."""
    head = _PARTIAL_HEAD.match(body.slice(0, 512))
    if head is None:
        return None
    start = head.end()
    tail_start = max(start, body.size - _PARTIAL_TAIL)
    tail = body.slice(tail_start, body.size)
    # The last "failed" member first, then the end of "data": a candidate counts when
    # the envelope without the records parses with "succeed" empty.
    candidates = [
        *reversed(list(_BEFORE_FAILED.finditer(tail))[-4:]),
        *reversed(list(_END_OF_DATA.finditer(tail))[-2:]),
    ]
    for candidate in candidates:
        envelope = body.slice(0, start) + tail[candidate.start() :]
        try:
            outer = _any_value.decode(envelope)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            continue
        data = outer.get("data") if isinstance(outer, dict) else None
        if isinstance(data, dict) and data.get("succeed") == []:
            end = tail_start + candidate.start()
            break
    else:
        return None
    yield
    try:
        succeeded = yield from _region_steps(
            body, start, end, "$.data.succeed", _SECTION_KINDS[ok_cls], context, True, _SLICED
        )
    except _Refused:
        return None  # not whole records after all: read whole, it says what is wrong
    members = _members_of(envelope, "$", context)
    found = yield from _sections_steps(
        memoryview(members["data"]), {"failed": failed_cls}, context, "$.data"
    )
    return succeeded, found["failed"]


def partial_steps(
    payload: Buffer | str, ok_cls: type, failed_cls: type, context: str
) -> Steps[tuple[list[Any], list[Any]]]:
    """A partner write's answer, ``{"data": {"succeed": [...], "failed": [...]}, ...}``,
    as (succeeded, failed) records."""
    body = _as_body(payload, context)
    plain = yield from _plain_answer(body, ok_cls, failed_cls, context)
    if plain is not None:
        return plain
    text = body.whole()
    yield
    outer = _members_of(text, "$", context)
    data = outer.get("data")
    if data is None:
        raise DecodeError([FieldError("$.data", "required field is missing")], context=context)
    yield
    found = yield from _sections_steps(
        memoryview(data), {"succeed": ok_cls, "failed": failed_cls}, context, "$.data"
    )
    return found["succeed"], found["failed"]


def partial_body_steps(
    succeeded: Iterable[Any],
    ok_cls: type,
    failed: Iterable[Any],
    failed_cls: type,
    *,
    message: str,
    reference: str,
) -> Steps[list[bytes]]:
    """A partner write's answer as the server sends it, in parts (the sandbox's)."""
    parts = [b'{"data":{"succeed":']
    parts += yield from _encode_steps(succeeded, ok_cls, None, chunked=True)
    parts.append(b',"failed":')
    parts += yield from _encode_steps(failed, failed_cls, None, chunked=True)
    tail = f'}},"message":{_json_string(message)},"reference":{_json_string(reference)}}}'
    parts.append(tail.encode())
    return parts


def new_partner_orders_body_steps(orders: Iterable[NewPartnerOrder]) -> Steps[list[bytes]]:
    """The partner Create Order body, ``{"orders": [...]}``, in parts."""
    return _encode_steps(orders, NewPartnerOrder, "orders", chunked=True)


def new_products_body_steps(products: Iterable[NewProduct]) -> Steps[list[bytes]]:
    """The Create Product body, ``{"products": [...]}``, in parts."""
    return _encode_steps(products, NewProduct, "products", chunked=True)


def status_changes_body_steps(changes: Iterable[Any]) -> Steps[list[bytes]]:
    """The partner Update Order body: the changes grouped under ``accepted``,
    ``packed``, ``completed`` and ``cancelled`` (empty groups left out)."""
    changes = list(changes)
    parts: list[bytes] = []
    for cls, key in STATUS_CHANGE_KEYS.items():
        group = [change for change in changes if change.__class__ is cls]
        if group:
            parts.append(f'{"," if parts else "{"}"{key}":'.encode())
            parts += yield from _encode_steps(group, cls, None, chunked=True)
    parts.append(b"}" if parts else b"{}")
    return parts


def stock_update_body(update: StockUpdate) -> bytes:
    """The Update Stocks body: one JSON object."""
    return _ENCODE[StockUpdate](update).encode()


# What the sandbox reads of the partner writes.
def new_partner_orders_steps(payload: Buffer, context: str) -> Steps[list[NewPartnerOrder]]:
    return _decode_steps(payload, _NEW_PARTNER_ORDERS, context)


def new_products_steps(payload: Buffer, context: str) -> Steps[list[NewProduct]]:
    return _decode_steps(payload, _NEW_PRODUCTS, context)


def status_changes_steps(payload: Buffer, context: str) -> Steps[dict[str, list[Any]]]:
    body = _as_body(payload, context)
    wanted = {key: cls for cls, key in STATUS_CHANGE_KEYS.items()}
    return _sections_steps(body.whole(), wanted, context, "$")


_STOCK_UPDATE = _model_kind(StockUpdate, ())


def decode_stock_update(payload: bytes, *, context: str = "") -> StockUpdate:
    """One Update Stocks body (a JSON object) as a :class:`StockUpdate`."""
    results: list[Any] = []
    errors: list[FieldError] = []
    _decode_one(msgspec.Raw(payload), _STOCK_UPDATE, "$", results, errors, _STOCK_UPDATE.convert)
    if errors or not results:
        raise DecodeError(errors or [FieldError("$", "expected an object")], context=context)
    update: StockUpdate = results[0]
    return update


# ---------------------------------------------------------------------------------------
# Encoding: generated per model, writing JSON text directly so amounts keep their digits.
# Every value is checked against the same bounds decoding applies.
# ---------------------------------------------------------------------------------------

_json_string: Callable[[str], str] = json.encoder.encode_basestring


def _encode_str(value: object, name: str) -> str:
    if isinstance(value, str):
        if _SURROGATE.search(value) is not None:
            raise EncodeError(
                f"field {name}: the string holds a lone UTF-16 surrogate, which UTF-8 "
                "cannot carry (text decoded with errors='surrogateescape'?)"
            )
        return _json_string(value)
    raise EncodeError(f"field {name}: expected a str, got {type(value).__name__}")


def _encode_int(value: object, name: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if INT_MIN <= value <= INT_MAX:
            return int.__repr__(value)
        raise EncodeError(f"field {name}: {_show(value)} does not fit in 64 bits")
    raise EncodeError(f"field {name}: expected an int, got {type(value).__name__}")


def _encode_decimal(value: object, name: str) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise EncodeError(f"field {name}: {value} is not a valid amount")
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        if (value and value.adjusted() >= AMOUNT_DIGITS) or exponent < -AMOUNT_DIGITS:
            raise EncodeError(
                f"field {name}: amount {_show(value)} is out of range (below 10**{AMOUNT_DIGITS}, "
                f"at most {AMOUNT_DIGITS} digits after the point)"
            )
        return format(value, "f")
    if isinstance(value, int) and not isinstance(value, bool):
        if -_AMOUNT_LIMIT < value < _AMOUNT_LIMIT:
            return int.__repr__(value)
        raise EncodeError(f"field {name}: amount {_show(value)} is out of range")
    raise EncodeError(
        f"field {name}: expected a Decimal, got {type(value).__name__}"
        + (
            " (binary floats are not exact: use Decimal(str(x)))"
            if isinstance(value, float)
            else ""
        )
    )


def _encode_timestamp(value: object, name: str) -> str:
    if not isinstance(value, datetime):
        raise EncodeError(f"field {name}: expected a datetime, got {type(value).__name__}")
    try:
        offset = value.utcoffset()
    except (TypeError, ValueError) as exc:  # a tzinfo of one's own that misbehaves
        raise EncodeError(f"field {name}: its tzinfo gives no usable offset ({exc})") from None
    if offset is None:
        raise EncodeError(
            f"field {name}: naive datetime {value.isoformat()} refused; "
            "pass an aware one, e.g. datetime(..., tzinfo=UTC)"
        )
    try:
        if offset:
            value = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise EncodeError(
            f"field {name}: {value.isoformat()} is outside the range of UTC datetimes"
        ) from None
    return '"' + value.replace(tzinfo=None).isoformat() + 'Z"'


def _decimal_text(value: object, name: str) -> str:
    """An amount as JSON number text with its exact digits (fast path: plain notation)."""
    if value.__class__ is Decimal:
        text = str(value)
        # Short plain text is within the bounds: no exponent, at most 24 digits.
        if len(text) <= 25 and "E" not in text and text[-1].isdigit():
            return text
    return _encode_decimal(value, name)


# datetime.isoformat costs over a microsecond and records repeat their instants (line
# items carry their order's); a bounded memo of recent texts, keyed by the datetime.
_recent_texts: dict[datetime, str] = {}


def _timestamp_text(value: Any, name: str) -> str:
    if value.__class__ is datetime and value.tzinfo is UTC:
        text = _recent_texts.get(value)
        if text is None:
            if len(_recent_texts) >= _MEMO_MAX:
                _recent_texts.clear()
            text = _recent_texts[value] = '"' + value.isoformat()[:-6] + 'Z"'
        return text
    return _encode_timestamp(value, name)


def _items_text(value: object, name: str, item_cls: type, encode: Callable[[Any], str]) -> str:
    if not isinstance(value, tuple | list):
        raise EncodeError(
            f"field {name}: expected a tuple of {item_cls.__name__}, got {type(value).__name__}"
        )
    for index, item in enumerate(value):
        if not isinstance(item, item_cls):
            raise EncodeError(
                f"field {name}[{index}]: expected {item_cls.__name__}, got {type(item).__name__}"
            )
    return "[" + ",".join([encode(x) for x in value]) + "]"


def _one_text(value: object, name: str, item_cls: type, encode: Callable[[Any], str]) -> str:
    if not isinstance(value, item_cls):
        raise EncodeError(f"field {name}: expected {item_cls.__name__}, got {type(value).__name__}")
    return encode(value)


def _bool_text(value: object, name: str) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    raise EncodeError(f"field {name}: expected a bool, got {type(value).__name__}")


@cache
def _generate_encoder(cls: type) -> Callable[[Any], str]:
    """``encode(record) -> str``: one join of literal keys and per-field value texts, the
    common types handled inline (a C call each), anything else through the checked path.
    Keys are the fields' wire names; nested records go through their own encoders."""
    fields = _fields(cls)
    lines = ["def encode(o):"]
    lines += [f"    v{i} = o.{f.name}" for i, f in enumerate(fields)]
    pieces: list[str] = []
    literal = "{"
    items: dict[str, Any] = {}
    for i, f in enumerate(fields):
        name, kind = f.name, f.kind
        key = json.dumps(f.wire)
        sep = "" if i == 0 else ","
        var = f"v{i}"
        # Unset optional values are left out; a field with a second spelling is sent
        # under both names.
        keys = [key] if f.also is None else [key, json.dumps(f.also)]
        optional = {_TS: "timestamp", _ODEC: "decimal", _ONE: "one"}.get(kind)
        if optional is not None:
            if i == 0:  # pragma: no cover - no model starts with an optional field
                raise AssertionError(cls)
            text = f"{optional}({var}, {name!r})"
            if kind == _ONE:
                assert f.item is not None
                items[f"cls_{name}"] = f.item
                items[f"item_{name}"] = _generate_encoder(f.item)
                text = f"one({var}, {name!r}, cls_{name}, item_{name})"
            lines.append(f"    t{i} = '' if {var} is None else {text}")
            joined = " + ".join(f"{',' + k + ':'!r} + t{i}" for k in keys)
            pieces += [repr(literal), f"('' if {var} is None else {joined})"]
            literal = ""
            continue
        if f.also is not None:
            if kind != _STR:  # pragma: no cover - only strings and optional amounts have one
                raise AssertionError(cls, name)
            lines.append(
                f"    t{i} = js({var}) if {var}.__class__ is str and {var}.isascii()"
                f" else string({var}, {name!r})"
            )
            pieces += [repr(f"{literal}{sep}{key}:"), f"t{i}", repr(f",{keys[1]}:"), f"t{i}"]
            literal = ""
            continue
        literal += f"{sep}{key}:"
        pieces.append(repr(literal))
        literal = ""
        if kind == _STR:
            pieces.append(
                f"(js({var}) if {var}.__class__ is str and {var}.isascii()"
                f" else string({var}, {name!r}))"
            )
        elif kind == _INT:
            pieces.append(
                f"(irepr({var}) if {var}.__class__ is int and MIN <= {var} <= MAX"
                f" else integer({var}, {name!r}))"
            )
        elif kind == _DEC:
            pieces.append(f"decimal({var}, {name!r})")
        elif kind == _BOOL:
            pieces.append(f"boolean({var}, {name!r})")
        else:
            assert f.item is not None
            items[f"cls_{name}"] = f.item
            items[f"item_{name}"] = _generate_encoder(f.item)
            pieces.append(f"items({var}, {name!r}, cls_{name}, item_{name})")
    pieces.append(repr(literal + "}"))
    lines.append("    return ''.join((")
    lines += [f"        {piece}," for piece in pieces if piece != "''"]
    lines.append("    ))")
    namespace: dict[str, Any] = {
        "js": _json_string,
        "irepr": int.__repr__,
        "string": _encode_str,
        "integer": _encode_int,
        "decimal": _decimal_text,
        "timestamp": _timestamp_text,
        "items": _items_text,
        "one": _one_text,
        "boolean": _bool_text,
        "MIN": INT_MIN,
        "MAX": INT_MAX,
        **items,
    }
    exec(compile("\n".join(lines), f"<connexi_async encoder {cls.__name__}>", "exec"), namespace)
    return namespace["encode"]  # type: ignore[no-any-return]


_ENCODE: dict[type, Callable[[Any], str]] = {cls: _generate_encoder(cls) for cls in _RECORD_CLASSES}

_CHILD_KEYS = ("provinces", "cities", "districts")


def _encode_location(loc: Location, out: Callable[[str], None], depth: int) -> None:
    out('{"location_code":' + _encode_str(loc.location_code, "location_code"))
    out(',"provider_data":' + _encode_str(loc.provider_data, "provider_data"))
    if loc.children:
        key = _CHILD_KEYS[min(depth, len(_CHILD_KEYS) - 1)]
        out(f',"{key}":[')
        for index, child in enumerate(loc.children):
            if index:
                out(",")
            _encode_location(child, out, depth + 1)
        out("]")
    out("}")


def _location_text(location: Location) -> str:
    parts: list[str] = []
    _encode_location(location, parts.append, 0)
    return "".join(parts)


_ENCODE[Location] = _location_text
_ENCODE_BATCH = 16  # records encoded (or generated, in the sandbox) between two yields


def _encode_steps(
    records: Iterable[Any],
    cls: type,
    envelope: str | None,
    *,
    chunked: bool = False,
    tail: str = "",
) -> Steps[list[bytes]]:
    """Encode records as a generator of short steps; the result is the body's parts
    (one part, or with ``chunked`` one per batch, for a response written as it goes).
    ``tail``: more members of the envelope object, after the records."""
    encode = _ENCODE[cls]
    opening = "[" if envelope is None else f'{{"{envelope}":['
    closing = "]" if envelope is None else f"]{tail}}}"
    parts: list[bytes] = []
    texts: list[str] = [opening]
    count = 0
    iterator = iter(records)
    while True:
        batch = [r for _, r in zip(range(_ENCODE_BATCH), iterator, strict=False)]
        for offset, record in enumerate(batch):
            if record.__class__ is not cls and not isinstance(record, cls):
                raise EncodeError(
                    f"item {count + offset}: expected {cls.__name__}, got {type(record).__name__}"
                )
            try:
                texts.append(("," if count + offset else "") + encode(record))
            except EncodeError as exc:
                raise EncodeError(f"item {count + offset}: {exc}") from None
        count += len(batch)
        if len(batch) < _ENCODE_BATCH:
            break
        parts.append("".join(texts).encode())
        texts = []
        yield
    texts.append(closing)
    parts.append("".join(texts).encode())
    # One join of bytes at the end (about a millisecond a megabyte): a str joined and then
    # encoded would be two copies of the whole body in one step.
    return parts if chunked else [b"".join(parts)]


def orders_body_steps(orders: Iterable[Order], *, chunked: bool = False) -> Steps[list[bytes]]:
    return _encode_steps(orders, Order, "orders", chunked=chunked)


def new_orders_body_steps(orders: Iterable[NewOrder]) -> Steps[list[bytes]]:
    """The Create Order body in parts, never joined (see the transport)."""
    return _encode_steps(orders, NewOrder, "orders", chunked=True)


def status_updates_body_steps(updates: Iterable[StatusUpdate]) -> Steps[list[bytes]]:
    """The Update Order body in parts, never joined (see the transport)."""
    return _encode_steps(updates, StatusUpdate, None, chunked=True)


def locations_body_steps(locations: Iterable[Location]) -> Steps[list[bytes]]:
    return _encode_steps(locations, Location, "locations")


def encode_orders(orders: Iterable[Order]) -> bytes:
    """The Get Order response body for these orders: ``{"orders": [...]}``.

    Timestamps are RFC 3339 UTC with ``Z`` (unset ones left out), amounts are JSON
    numbers with their exact decimal digits.
    """
    return run_steps(orders_body_steps(orders))[0]


def encode_new_orders(orders: Iterable[NewOrder]) -> bytes:
    """The Create Order request body: ``{"orders": [...]}``.

    >>> encode_new_orders([NewOrder(remote_order_id="1", total=Decimal("0.10"))])[:40]
    b'{"orders":[{"order_number":"","customer_'
    """
    return b"".join(run_steps(new_orders_body_steps(orders)))


def encode_status_updates(updates: Iterable[StatusUpdate]) -> bytes:
    """The Update Order request body: ``[{"id": 111, "status": "accepted"}]``."""
    return b"".join(run_steps(status_updates_body_steps(updates)))


def encode_locations(locations: Iterable[Location]) -> bytes:
    """The Get Stocks response body: ``{"locations": [...]}``."""
    return run_steps(locations_body_steps(locations))[0]


def encode_record(record: object) -> str:
    """One record of any model as compact JSON text (a JSON Lines line, without the
    newline); an :class:`EncodeError` for anything else."""
    encode = _ENCODE.get(type(record))
    if encode is None:
        raise EncodeError(f"expected a model, got {type(record).__name__}")
    return encode(record)


def to_json(record: object) -> str:
    """One model as compact JSON text, by exactly the rules the encoders send with:
    amounts with their exact digits, timestamps RFC 3339 UTC with ``Z`` (unset ones left
    out), bounds and strictness included (an :class:`EncodeError` otherwise).

    >>> to_json(StatusUpdate(id=111, status="accepted"))
    '{"id":111,"status":"accepted"}'
    """
    return encode_record(record)


def to_dict(record: object) -> dict[str, Any]:
    """One model as a JSON-ready dict: :func:`to_json` read back, so the values are what
    would be sent. Amounts stay exact: a ``Decimal``, or an ``int`` when whole (as the JSON
    number is written); timestamps are RFC 3339 text.

    >>> to_dict(Order(id=1, total=Decimal("0.10")))["total"]
    Decimal('0.10')
    """
    value: dict[str, Any] = json.loads(to_json(record), parse_float=Decimal)
    return value
