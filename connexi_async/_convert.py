"""JSON bytes to models and back, exactly.

Two structuring paths share one set of value rules:

* the **fast path**: one straight-line function per model, generated from the attrs
  fields the way cattrs generates its own, with the common cases inline (a value that
  already has the right type, the Go zero time, a ``...Z`` timestamp). It does no error
  bookkeeping at all;
* the **validating path**: cattrs with ``detailed_validation``, the same value hooks, run
  only for a record the fast path gave up on. It collects every bad field with its JSON
  path, so a :class:`DecodeError` names them all.

JSON is parsed with ``parse_float=Decimal``, so the JSON text ``0.1`` becomes
``Decimal("0.1")`` without ever being a binary float.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, override

from ._errors import DecodeError, EncodeError, FieldError
from ._models import LineItem, Location, NewLineItem, NewOrder, Order, StatusUpdate

__all__ = [
    "decode_locations",
    "decode_new_orders",
    "decode_orders",
    "decode_status_updates",
    "encode_locations",
    "encode_new_orders",
    "encode_orders",
    "encode_status_updates",
]

T = TypeVar("T")

GO_ZERO_TIME: Final = "0001-01-01T00:00:00Z"
_ZERO = Decimal(0)
_MISSING: Final = object()

# ---------------------------------------------------------------------------------------
# Value rules, shared by both paths. Each takes the raw JSON value (after the common case
# was ruled out by the caller) and returns the model value or raises ValueError with the
# message that ends up in DecodeError.
# ---------------------------------------------------------------------------------------

_NUMERIC_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER_TEXT = re.compile(r"[+-]?\d+")
_TIMESTAMP_TEXT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)


def _show(value: object) -> str:
    """A short, JSON-looking rendering of a bad value for an error message."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + '..."'
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__  # pragma: no cover - json.loads makes nothing else


def _to_str(value: Any) -> str:
    if value.__class__ is str:
        return value
    if value is None:
        return ""
    if value.__class__ is int or value.__class__ is Decimal:
        # A number in a string field (a post code sent as 10150) becomes its decimal text.
        return str(value)
    raise ValueError(f"expected a string, got {_show(value)}")


def _to_int(value: Any) -> int:
    cls = value.__class__
    if cls is int:
        return int(value)
    if value is None or value == "":
        return 0
    if cls is str and _INTEGER_TEXT.fullmatch(value):
        return int(value)
    if cls is Decimal and value.is_finite() and value == value.to_integral_value():
        return int(value)
    raise ValueError(f"expected an integer, got {_show(value)}")


def _to_required_int(value: Any) -> int:
    if value is None or value == "":
        raise ValueError(f"expected an integer, got {_show(value)}")
    return _to_int(value)


def _to_required_str(value: Any) -> str:
    if value is None or value == "":
        raise ValueError(f"expected a non-empty string, got {_show(value)}")
    return _to_str(value)


def _to_decimal(value: Any) -> Decimal:
    cls = value.__class__
    if cls is Decimal:
        # parse_float only ever makes finite Decimals; NaN/Infinity literals are refused
        # by parse_constant before they get here.
        return value  # type: ignore[no-any-return]
    if cls is int:
        return Decimal(value)
    if value is None or value == "":
        return _ZERO
    if cls is str and _NUMERIC_TEXT.fullmatch(value):
        return Decimal(value)
    raise ValueError(f"expected an amount, got {_show(value)}")


def _to_timestamp(value: Any) -> datetime | None:
    if value is None or value == "" or value == GO_ZERO_TIME:
        return None
    if value.__class__ is not str:
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


_fromisoformat = datetime.fromisoformat
# Line items usually carry their order's timestamps, and neighbouring records share many:
# a small memo of recent strings saves a parse. Cleared when full, so memory stays bounded.
_recent_stamps: dict[str, datetime] = {}
_RECENT_STAMPS_MAX = 4096


# Whole IDR amounts repeat (0, prices, fares): Decimal(int) costs five dict look-ups.
_whole_amounts: dict[int, Decimal] = {}


def _whole_amount(value: int) -> Decimal:
    if len(_whole_amounts) >= _RECENT_STAMPS_MAX:
        _whole_amounts.clear()
    amount = _whole_amounts[value] = Decimal(value)
    return amount


def _fast_timestamp(value: Any) -> datetime | None:
    """A memo miss (the generated code looks in ``_recent_stamps`` first): the common
    shape ``2018-11-07T03:46:16.457936Z`` parsed and remembered; anything else general."""
    if (
        value.__class__ is str
        and len(value) > 19
        and value[-1] == "Z"
        and value[10] == "T"
        and value[0] != "0"
    ):
        stamp = _fromisoformat(value)
        if len(_recent_stamps) >= _RECENT_STAMPS_MAX:
            _recent_stamps.clear()
        _recent_stamps[value] = stamp
        return stamp
    return _to_timestamp(value)


# ---------------------------------------------------------------------------------------
# The models' field kinds, read once from their attrs fields.
# ---------------------------------------------------------------------------------------

_STR, _INT, _DEC, _TS, _ITEMS = "str", "int", "dec", "ts", "items"
_KIND_OF_TYPE: dict[object, str] = {
    str: _STR,
    int: _INT,
    Decimal: _DEC,
    datetime | None: _TS,
    tuple[LineItem, ...]: _ITEMS,
    tuple[NewLineItem, ...]: _ITEMS,
}
_ITEM_CLASS: dict[type, type] = {Order: LineItem, NewOrder: NewLineItem}
_RECORD_CLASSES = (Order, LineItem, NewOrder, NewLineItem, StatusUpdate)


def _field_kinds(cls: type) -> list[tuple[str, str, bool]]:
    """(name, kind, required) for every field of a record model."""
    hints = attrs.resolve_types(cls)
    return [
        (a.name, _KIND_OF_TYPE[a.type], a.default is attrs.NOTHING) for a in attrs.fields(hints)
    ]


# ---------------------------------------------------------------------------------------
# The fast path: generated straight-line structure functions.
# ---------------------------------------------------------------------------------------


class _GiveUp(Exception):
    """The fast path met something it does not handle; the validating path takes over."""


def _fast_body(cls: type, subscript: bool, indent: str) -> tuple[list[str], list[str]]:
    """Straight-line statements structuring every field of ``cls`` from the dict ``d``.

    With ``subscript`` the fields are read as ``d["name"]`` (a missing one raises
    KeyError: the caller falls back to the ``.get`` version, which applies defaults).
    """
    lines: list[str] = []
    args: list[str] = []

    def fetch(name: str, default: str) -> str:
        return f"d[{name!r}]" if subscript else f"g({name!r}, {default})"

    for index, (name, kind, required) in enumerate(_field_kinds(cls)):
        var = f"v{index}"
        args.append(f"{name}={var}")
        if required:
            cls_name, check = (
                ("int", "to_required_int") if kind == _INT else ("str", "to_required_str")
            )
            lines += [
                f"{var} = {fetch(name, 'None')}",
                f"if {var}.__class__ is not {cls_name}:",
                f"    {var} = {check}({var})",
            ]
        elif kind == _STR:
            lines += [
                f"{var} = {fetch(name, repr(''))}",
                f"if {var}.__class__ is not str:",
                f"    {var} = to_str({var})",
            ]
        elif kind == _INT:
            lines += [
                f"{var} = {fetch(name, '0')}",
                f"if {var}.__class__ is not int:",
                f"    {var} = to_int({var})",
            ]
        elif kind == _DEC:
            # Amounts arrive as Decimal (JSON decimals, via parse_float) or int (whole).
            lines += [
                f"{var} = {fetch(name, 'ZERO')}",
                f"if {var}.__class__ is not Decimal:",
                f"    if {var}.__class__ is int:",
                f"        w = whole_get({var})",
                f"        {var} = w if w is not None else whole_amount({var})",
                "    else:",
                f"        {var} = to_decimal({var})",
            ]
        elif kind == _TS:
            # Unset timestamps are often left out rather than sent as the zero time.
            lines.append(f"{var} = g({name!r})")
            if name == "updated_at":  # one revision of the API spells it update_at
                lines += [f"if {var} is None:", f"    {var} = g('update_at')"]
            lines.append(
                f"{var} = None if {var} is None or {var} == ZERO_TIME"
                f" else (recent_stamp({var}) or fast_timestamp({var}))"
            )
        else:  # line items: a list, null, or one object under "line_item"
            lines += [
                f"{var} = {fetch(name, 'None')}",
                f"if {var}.__class__ is list:",
                f"    {var} = tuple([item(x) for x in {var}])",
                f"elif {var} is None:",
                f"    {var} = g('line_item')",
                f"    {var} = () if {var} is None else (item({var}),)",
                "else:",
                "    raise GiveUp",
            ]
    return [indent + line for line in lines], args


def _generate_fast(cls: type, item_fn: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    complete, args = _fast_body(cls, subscript=True, indent="        ")
    partial_body, _ = _fast_body(cls, subscript=False, indent="    ")

    # Build the instance the way attrs' own __init__ does, minus its per-field
    # object.__setattr__ lookups: the slot descriptors' setters, called directly. Safe
    # because the models have no validators, converters or __attrs_post_init__
    # (tests/test_convert.py checks that this stays true).
    def build(indent: str) -> list[str]:
        lines = [f"{indent}o = new(cls)"]
        lines += [f"{indent}set{i}(o, v{i})" for i in range(len(args))]
        return [*lines, f"{indent}return o"]

    lines = [
        "def structure(d):",
        "    if d.__class__ is not dict:",
        "        raise GiveUp",
        "    g = d.get",
        # Go servers send every field: plain subscripts are the fastest read.
        "    try:",
        *complete,
        *build("        "),
        "    except KeyError:",
        "        pass",
        *partial_body,
        *build("    "),
    ]
    namespace: dict[str, Any] = {
        "GiveUp": _GiveUp,
        "cls": cls,
        "new": object.__new__,
        **{f"set{i}": getattr(cls, a.name).__set__ for i, a in enumerate(attrs.fields(cls))},
        "item": item_fn,
        "to_str": _to_str,
        "to_int": _to_int,
        "to_required_int": _to_required_int,
        "to_required_str": _to_required_str,
        "to_decimal": _to_decimal,
        "whole_get": _whole_amounts.get,
        "whole_amount": _whole_amount,
        "fast_timestamp": _fast_timestamp,
        "recent_stamp": _recent_stamps.get,
        "Decimal": Decimal,
        "ZERO": _ZERO,
        "ZERO_TIME": GO_ZERO_TIME,
    }
    exec(
        compile("\n".join(lines), f"<connexi_async fast structure {cls.__name__}>", "exec"),
        namespace,
    )
    return namespace["structure"]  # type: ignore[no-any-return]


_FAST: dict[type, Callable[[Any], Any]] = {}
_FAST[LineItem] = _generate_fast(LineItem, None)
_FAST[NewLineItem] = _generate_fast(NewLineItem, None)
_FAST[Order] = _generate_fast(Order, _FAST[LineItem])
_FAST[NewOrder] = _generate_fast(NewOrder, _FAST[NewLineItem])
_FAST[StatusUpdate] = _generate_fast(StatusUpdate, None)


# ---------------------------------------------------------------------------------------
# The validating path: cattrs with detailed validation, the same value rules as hooks.
# ---------------------------------------------------------------------------------------


def _make_validating_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(str, lambda v, _: _to_str(v))
    converter.register_structure_hook(int, lambda v, _: _to_int(v))
    converter.register_structure_hook(Decimal, lambda v, _: _to_decimal(v))
    converter.register_structure_hook(datetime | None, lambda v, _: _to_timestamp(v))

    def items_hook(item_cls: type) -> Callable[[Any, Any], tuple[Any, ...]]:
        def structure_items(value: Any, _: Any) -> tuple[Any, ...]:
            if not isinstance(value, list):
                raise ValueError(f"expected a list of line items, got {_show(value)}")
            items: list[Any] = []
            errors: list[Exception] = []
            for index, raw in enumerate(value):
                try:
                    items.append(converter.structure(raw, item_cls))
                except Exception as exc:
                    exc.add_note(IterableValidationNote(f"@ index {index}", index, item_cls))
                    errors.append(exc)
            if errors:
                raise IterableValidationError("line items", errors, tuple)
            return tuple(items)

        return structure_items

    for item_cls in (LineItem, NewLineItem):
        hook = items_hook(item_cls)
        tuple_type: Any = tuple[item_cls, ...]  # type: ignore[valid-type]
        converter.register_structure_hook_func(partial(operator.eq, tuple_type), hook)

    for cls in _RECORD_CLASSES:
        overrides = {
            name: override(
                struct_hook=(lambda v, _: _to_required_int(v))
                if kind == _INT
                else (lambda v, _: _to_required_str(v))
            )
            for name, kind, required in _field_kinds(cls)
            if required
        }
        generated = make_dict_structure_fn(cls, converter, **overrides)  # type: ignore[arg-type]
        converter.register_structure_hook(cls, _with_aliases(generated))
    return converter


def _with_aliases(generated: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def structure(value: Any, cls: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, got {_show(value)}")
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


def _collect(exc: BaseException, path: str, out: list[FieldError], order_id: int | None) -> None:
    """Flatten a cattrs error tree into FieldErrors with JSON paths."""
    if isinstance(exc, ClassValidationError):
        with_notes, others = exc.group_exceptions()
        for sub, note in with_notes:
            _collect(sub, f"{path}.{note.name}", out, order_id)
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
# Payloads: JSON parsing and envelopes.
# ---------------------------------------------------------------------------------------


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not a valid amount")


def _load(payload: bytes | bytearray | memoryview | str, context: str) -> Any:
    if isinstance(payload, memoryview | bytearray):
        payload = bytes(payload)
    if not isinstance(payload, bytes | str):
        raise DecodeError([FieldError("$", f"expected bytes or str, got {type(payload).__name__}")])
    try:
        return json.loads(payload, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        # JSONDecodeError, UnicodeDecodeError and the NaN refusal are all ValueErrors.
        raise DecodeError([FieldError("$", f"invalid JSON: {exc}")], context=context) from None


def _records(data: Any, keys: Sequence[str], context: str) -> tuple[list[Any], str]:
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
                raise DecodeError(
                    [FieldError(f"$.{key}", f"expected a list, got {_show(inner)}")],
                    context=context,
                )
        wanted = " or ".join(f'"{k}"' for k in keys)
        raise DecodeError(
            [
                FieldError(
                    "$", f"expected a list or an object with {wanted}, got keys {sorted(data)[:10]}"
                )
            ],
            context=context,
        )
    raise DecodeError(
        [FieldError("$", f"expected a list or an object, got {_show(data)}")], context=context
    )


def _structure_records(records: list[Any], base: str, cls: type[T], context: str) -> list[T]:
    fast = _FAST[cls]
    try:
        return [fast(record) for record in records]
    except Exception:
        pass
    result: list[T] = []
    errors: list[FieldError] = []
    for index, record in enumerate(records):
        try:
            result.append(fast(record))
            continue
        except Exception:
            pass
        path = f"{base}[{index}]"
        try:
            result.append(_VALIDATING.structure(record, cls))
        except Exception as exc:
            _collect(
                exc, path, errors, _record_id(record) if cls in (Order, StatusUpdate) else None
            )
    if errors:
        raise DecodeError(errors, context=context)
    return result


def decode_orders(payload: bytes | str, *, context: str = "") -> list[Order]:
    """Decode a Get Order (or Create Order) response body into :class:`Order` records.

    Accepts ``{"orders": [...]}``, ``{"data": [...]}`` and a bare ``[...]``. Raises
    :class:`DecodeError` naming every bad field, and nothing else, whatever the bytes.

    >>> [o.id for o in decode_orders(b'{"orders": [{"id": 111, "total": 47500}]}')]
    [111]
    """
    records, base = _records(_load(payload, context), ("orders", "data"), context)
    return _structure_records(records, base, Order, context)


def decode_new_orders(payload: bytes | str, *, context: str = "") -> list[NewOrder]:
    """Decode a Create Order request body (what the sandbox receives)."""
    records, base = _records(_load(payload, context), ("orders", "data"), context)
    return _structure_records(records, base, NewOrder, context)


def decode_status_updates(payload: bytes | str, *, context: str = "") -> list[StatusUpdate]:
    """Decode an Update Order request body: ``[{"id": 1, "status": "accepted"}, ...]``."""
    records, base = _records(_load(payload, context), ("data",), context)
    return _structure_records(records, base, StatusUpdate, context)


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


def decode_locations(payload: bytes | str, *, context: str = "") -> list[Location]:
    """Decode a Get Stocks response body into the trees of :class:`Location`.

    >>> decode_locations(b'{"locations": [{"location_code": "ID"}]}')[0].location_code
    'ID'
    """
    records, base = _records(_load(payload, context), ("locations", "data"), context)
    errors: list[FieldError] = []
    try:
        result = [_location(r, f"{base}[{i}]", errors) for i, r in enumerate(records)]
    except RecursionError:
        raise DecodeError(
            [FieldError(base, "location tree nested too deeply")], context=context
        ) from None
    if errors:
        raise DecodeError(errors, context=context)
    return [loc for loc in result if loc is not None]


# ---------------------------------------------------------------------------------------
# Encoding: generated per model, writing JSON text directly so amounts keep their digits.
# ---------------------------------------------------------------------------------------

_json_string: Callable[[str], str] = json.encoder.encode_basestring


def _encode_str(value: object, name: str) -> str:
    if value.__class__ is str or isinstance(value, str):
        return _json_string(value)
    raise EncodeError(f"field {name}: expected a str, got {type(value).__name__}")


def _encode_int(value: object, name: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__repr__(value)
    raise EncodeError(f"field {name}: expected an int, got {type(value).__name__}")


def _encode_decimal(value: object, name: str) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise EncodeError(f"field {name}: {value} is not a valid amount")
        return format(value, "f")
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__repr__(value)
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
    offset = value.utcoffset()
    if offset is None:
        raise EncodeError(
            f"field {name}: naive datetime {value.isoformat()} refused; "
            "pass an aware one, e.g. datetime(..., tzinfo=UTC)"
        )
    if offset:
        value = value.astimezone(UTC)
    return '"' + value.replace(tzinfo=None).isoformat() + 'Z"'


def _decimal_text(value: object, name: str) -> str:
    """An amount as JSON number text with its exact digits (fast path: plain notation)."""
    if value.__class__ is Decimal:
        text = str(value)
        if "E" not in text and text[-1].isdigit():
            return text
    return _encode_decimal(value, name)


# datetime.isoformat costs over a microsecond and records repeat their instants (line
# items carry their order's); a bounded memo of recent texts, keyed by the datetime.
_recent_texts: dict[datetime, str] = {}


def _timestamp_text(value: Any, name: str) -> str:
    if value.__class__ is datetime and value.tzinfo is UTC:
        text = _recent_texts.get(value)
        if text is None:
            if len(_recent_texts) >= _RECENT_STAMPS_MAX:
                _recent_texts.clear()
            text = _recent_texts[value] = '"' + value.isoformat()[:-6] + 'Z"'
        return text
    return _encode_timestamp(value, name)


def _generate_encoder(cls: type, item_fn: Callable[[Any], str] | None) -> Callable[[Any], str]:
    """``encode(record) -> str``: one join of literal keys and per-field value texts, the
    common types handled inline (a C call each), anything else through the checked path."""
    fields = _field_kinds(cls)
    lines = ["def encode(o):"]
    lines += [f"    v{i} = o.{name}" for i, (name, _kind, _req) in enumerate(fields)]
    pieces: list[str] = []
    literal = "{"
    for i, (name, kind, _required) in enumerate(fields):
        key = json.dumps(name)
        sep = "" if i == 0 else ","
        var = f"v{i}"
        if kind == _TS:
            if i == 0:  # pragma: no cover - no model starts with a timestamp
                raise AssertionError(cls)
            pieces += [
                repr(literal),
                f"('' if {var} is None else {sep + key + ':'!r} + timestamp({var}, {name!r}))",
            ]
            literal = ""
            continue
        literal += f"{sep}{key}:"
        pieces.append(repr(literal))
        literal = ""
        if kind == _STR:
            pieces.append(f"(js({var}) if {var}.__class__ is str else string({var}, {name!r}))")
        elif kind == _INT:
            pieces.append(f"(irepr({var}) if {var}.__class__ is int else integer({var}, {name!r}))")
        elif kind == _DEC:
            pieces.append(f"decimal({var}, {name!r})")
        else:
            pieces.append(f"('[' + ','.join([item(x) for x in {var}]) + ']')")
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
        "item": item_fn,
    }
    exec(compile("\n".join(lines), f"<connexi_async encoder {cls.__name__}>", "exec"), namespace)
    return namespace["encode"]  # type: ignore[no-any-return]


_ENCODE: dict[type, Callable[[Any], str]] = {}
_ENCODE[LineItem] = _generate_encoder(LineItem, None)
_ENCODE[NewLineItem] = _generate_encoder(NewLineItem, None)
_ENCODE[Order] = _generate_encoder(Order, _ENCODE[LineItem])
_ENCODE[NewOrder] = _generate_encoder(NewOrder, _ENCODE[NewLineItem])
_ENCODE[StatusUpdate] = _generate_encoder(StatusUpdate, None)

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


def _encode_list(records: Iterable[Any], cls: type, envelope: str | None) -> bytes:
    encode = _ENCODE[cls]
    texts = []
    for index, record in enumerate(records):
        if record.__class__ is not cls and not isinstance(record, cls):
            raise EncodeError(f"item {index}: expected {cls.__name__}, got {type(record).__name__}")
        texts.append(encode(record))
    body = "[" + ",".join(texts) + "]"
    return (body if envelope is None else f'{{"{envelope}":{body}}}').encode()


def encode_orders(orders: Iterable[Order]) -> bytes:
    """The Get Order response body for these orders: ``{"orders": [...]}``.

    Timestamps are RFC 3339 UTC with ``Z`` (unset ones left out), amounts are JSON
    numbers with their exact decimal digits.
    """
    return _encode_list(orders, Order, "orders")


def encode_new_orders(orders: Iterable[NewOrder]) -> bytes:
    """The Create Order request body: ``{"orders": [...]}``.

    >>> encode_new_orders([NewOrder(remote_order_id="1", total=Decimal("0.10"))])[:40]
    b'{"orders":[{"order_number":"","customer_'
    """
    return _encode_list(orders, NewOrder, "orders")


def encode_status_updates(updates: Iterable[StatusUpdate]) -> bytes:
    """The Update Order request body: ``[{"id": 111, "status": "accepted"}]``."""
    return _encode_list(updates, StatusUpdate, None)


def encode_locations(locations: Iterable[Location]) -> bytes:
    """The Get Stocks response body: ``{"locations": [...]}``."""
    parts: list[str] = ['{"locations":[']
    for index, loc in enumerate(locations):
        if index:
            parts.append(",")
        _encode_location(loc, parts.append, 0)
    parts.append("]}")
    return "".join(parts).encode()


def encode_record(record: Order | NewOrder | Location | StatusUpdate) -> str:
    """One record as compact JSON text (a JSON Lines line, without the newline)."""
    parts: list[str] = []
    if isinstance(record, Location):
        _encode_location(record, parts.append, 0)
    else:
        return _ENCODE[type(record)](record)
    return "".join(parts)
