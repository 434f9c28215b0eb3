"""Cutting a JSON response body into pieces that can be decoded one at a time.

A window's body can hold 20 MB of orders. Decoding it in one call would hold the event
loop for a quarter of a second, so the body is cut into pieces of about ``target`` bytes,
each a run of whole records, and the pieces are decoded one by one with the loop given
back in between.

Finding record boundaries exactly needs a full JSON scan, which is itself one long
call. Instead the cuts are *speculative* and *verified*:

* a candidate cut is a ``}`` ``,`` ``{`` run (white space allowed) where the brackets
  counted since the last cut balance (C-speed ``bytes.count``);
* every piece is then decoded by a real JSON parser. A cut in the wrong place (inside a
  string whose brackets fooled the count, or between two line items) always leaves a
  piece that is not valid JSON, since the piece then ends inside an open string or an
  open object; the caller then decodes the rest of the region as one piece.

So a wrong guess costs time, never correctness. Nothing here touches the network or
the clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["DEFAULT_PIECE_BYTES", "array_pieces", "find_array"]

# About a millisecond of msgspec work: small enough to keep every step of the loop short,
# large enough that the per-piece overhead (a copy, a decoder call) is noise.
DEFAULT_PIECE_BYTES = 192 * 1024

_CUT = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{")
# What may follow the records array and still be read without a full scan.
_MAX_TAIL = 64 * 1024


def find_array(body: bytes, keys: tuple[str, ...]) -> tuple[int, int, str | None, bytes] | None:
    """Where the records array of a body probably is: ``(start, end, key, envelope)``.

    ``body[start:end]`` is the text between the array's brackets, ``key`` the envelope
    key (``None`` for a bare array) and ``envelope`` the body with the array emptied,
    for the caller to verify with a real parser. ``None`` when the layout is not the
    plain one (the caller then scans the whole body).
    """
    match = _prefix(keys).match(body)
    if match is None:
        return None
    start = match.end()
    end = body.rfind(b"]")
    if end < start or len(body) - end > _MAX_TAIL:
        return None
    key = match.group(1)
    envelope = body[:start] + body[end:]
    return start, end, (key.decode() if key is not None else None), envelope


_PREFIXES: dict[tuple[str, ...], re.Pattern[bytes]] = {}


def _prefix(keys: tuple[str, ...]) -> re.Pattern[bytes]:
    pattern = _PREFIXES.get(keys)
    if pattern is None:
        alternatives = b"|".join(re.escape(k.encode()) for k in keys)
        pattern = _PREFIXES[keys] = re.compile(
            rb'[ \t\r\n]*(?:\[|\{[ \t\r\n]*"(' + alternatives + rb')"[ \t\r\n]*:[ \t\r\n]*\[)'
        )
    return pattern


def array_pieces(
    body: bytes, start: int, end: int, target: int = DEFAULT_PIECE_BYTES
) -> Iterator[tuple[int, int]]:
    """Spans ``(a, b)`` covering the array text ``body[start:end]``, each about ``target``
    bytes of whole records if the guesses hold (see the module's docstring).

    >>> body = b'[{"id":1},{"id":2},{"id":3}]'
    >>> [body[a:b] for a, b in array_pieces(body, 1, len(body) - 1, target=1)]
    [b'{"id":1}', b'{"id":2}', b'{"id":3}']
    """
    a = start
    while end - a > target:
        cut = _next_cut(body, a, end, a + target)
        if cut is None:
            break
        close, following = cut
        yield a, close
        a = following
    yield a, end


def _next_cut(body: bytes, a: int, end: int, at_least: int) -> tuple[int, int] | None:
    """The first balanced ``},{`` at or after ``at_least``: (end of the left piece, start
    of the right one)."""
    counted_to, depth = a, 0
    position = at_least
    while True:
        match = _CUT.search(body, position, end)
        if match is None:
            return None
        close = match.start() + 1  # just past the "}"
        depth += (
            body.count(b"{", counted_to, close)
            - body.count(b"}", counted_to, close)
            + body.count(b"[", counted_to, close)
            - body.count(b"]", counted_to, close)
        )
        counted_to = close
        if depth == 0:
            return close, match.end() - 1  # the next piece starts at its "{"
        position = close
