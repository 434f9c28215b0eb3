"""A response body as the chunks it arrived in, cut into pieces of whole records.

A window's body can hold 20 MB of orders. Two things about such a body would hold the
event loop far longer than the ~20 ms we allow:

* joining it into one object: a fresh 20 MB allocation is thousands of page faults at
  once (tens of milliseconds on a virtual machine), and a regrown buffer is a copy;
* decoding it in one call: a quarter of a second.

So the body stays a list of chunks (:class:`Body`), and is cut into pieces of about
``target`` bytes, each a run of whole records, decoded one by one with the loop given
back in between. Only a piece is ever copied out.

Finding record boundaries exactly needs a full JSON scan, itself one long call. Instead
the cuts are *speculative* and *verified*:

* a candidate cut is a ``}`` ``,`` ``{`` run (white space allowed) after which the
  first bracket opens an array rather than closing one (see ``_next_cut``);
* every piece is then decoded by a real JSON parser. A cut in the wrong place (inside a
  string whose brackets fooled the count, or between two line items) always leaves a
  piece that is not valid JSON, since the piece then ends inside an open string or an
  open object; the caller then moves the cut on to the next candidate, and after a
  few misses decodes the rest of the array as one piece.

So a wrong guess costs time, never correctness. Nothing here touches the network or
the clock.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence

__all__ = ["DEFAULT_PIECE_BYTES", "Body", "array_pieces", "find_array", "next_cut"]

# About a millisecond of msgspec work: small enough to keep every step of the loop short,
# large enough that the per-piece overhead (a copy, a decoder call) is noise.
DEFAULT_PIECE_BYTES = 64 * 1024

_CUT = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{")
_SEARCH_SPAN = 8 * 1024  # how far ahead a cut is looked for at a time (records are ~2 kB)
# What may follow the records array and still be read without a full scan.
_MAX_TAIL = 64 * 1024
_HEAD = 512


class Body:
    """Bytes held as a list of chunks, read by offset without joining them.

    >>> body = Body([b'{"orders":[', b'{"id":1}]}'])
    >>> len(body), body.slice(11, 19), body.slice(11, 19, b"[", b"]")
    (21, b'{"id":1}', b'[{"id":1}]')
    """

    __slots__ = ("_chunks", "_starts", "size")

    def __init__(self, chunks: Sequence[bytes | bytearray | memoryview]) -> None:
        self._chunks = [c for c in chunks if len(c)]
        self._starts: list[int] = []
        size = 0
        for chunk in self._chunks:
            self._starts.append(size)
            size += len(chunk)
        self.size = size

    def __len__(self) -> int:
        return self.size

    def _parts(self, a: int, b: int) -> Iterator[tuple[bytes | bytearray | memoryview, int, int]]:
        """(chunk, start, end) within each chunk overlapping ``[a, b)``."""
        a, b = max(a, 0), min(b, self.size)
        index = max(bisect.bisect_right(self._starts, a) - 1, 0)
        while a < b and index < len(self._chunks):
            start = self._starts[index]
            chunk = self._chunks[index]
            low, high = a - start, min(b - start, len(chunk))
            if high > low:
                yield chunk, low, high
            a = start + len(chunk)
            index += 1

    def slice(self, a: int, b: int, before: bytes = b"", after: bytes = b"") -> bytes:
        """A copy of ``[a, b)``, optionally between ``before`` and ``after`` (one copy)."""
        parts = [before]
        for chunk, low, high in self._parts(a, b):
            parts.append(bytes(chunk[low:high]) if low or high < len(chunk) else bytes(chunk))
        parts.append(after)
        return b"".join(parts)

    def whole(self) -> bytes:
        """Everything joined: only for the layouts the piecewise reading cannot handle."""
        return self.slice(0, self.size)


def find_array(body: Body, keys: tuple[str, ...]) -> tuple[int, int, str | None, bytes] | None:
    """Where the records array of a body probably is: ``(start, end, key, envelope)``.

    ``[start, end)`` is the text between the array's brackets, ``key`` the envelope key
    (``None`` for a bare array) and ``envelope`` the body with the array emptied, for the
    caller to verify with a real parser. ``None`` when the layout is not the plain one
    (the caller then reads the whole body at once).
    """
    match = _prefix(keys).match(body.slice(0, _HEAD))
    if match is None:
        return None
    start = match.end()
    tail_start = max(start, body.size - _MAX_TAIL)
    tail = body.slice(tail_start, body.size)
    last = tail.rfind(b"]")
    if last < 0:
        return None
    end = tail_start + last
    key = match.group(1)
    envelope = body.slice(0, start) + tail[last:]
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
    body: Body, start: int, end: int, target: int = DEFAULT_PIECE_BYTES
) -> Iterator[tuple[int, int]]:
    """Spans ``(a, b)`` covering the array text ``[start, end)``, each about ``target``
    bytes of whole records if the guesses hold (see the module's docstring).

    >>> body = Body([b'[{"id":1},{"i', b'd":2},{"id":3}]'])
    >>> [body.slice(a, b) for a, b in array_pieces(body, 1, len(body) - 1, target=1)]
    [b'{"id":1}', b'{"id":2}', b'{"id":3}']
    """
    a = start
    while end - a > target:
        cut = next_cut(body, end, a + target)
        if cut is None:
            break
        close, following = cut
        yield a, close
        a = following
    yield a, end


def next_cut(body: Body, end: int, at_least: int) -> tuple[int, int] | None:
    """The first likely record boundary at or after ``at_least``: (end of the left
    piece, start of the right one).

    A ``},{`` between two records of the array is followed by a record, whose first
    bracket (if any before the next boundary) opens one of its arrays (``[``); a ``},{``
    between two line items is followed, sooner or later, by the ``]`` that closes their
    array. So: the first ``},{`` whose next bracket is not ``]``. Two ``find`` calls
    each, at memchr speed; a string holding a bracket may fool it, and the caller's
    parser then refuses the piece.
    """
    position = at_least
    while position < end:
        window_end = min(end, position + _SEARCH_SPAN)
        text = body.slice(position, window_end)
        offset = skip_to = 0
        while True:
            found = _candidate(text, offset)
            if found is None:
                break
            close, following = found
            after = position + following
            opens, bracket = _next_bracket(body, after + 1, end)
            if opens:
                return position + close, after
            # Every candidate before that "]" sees it first too: skip them all, so a long
            # run of line items (or of "},{" inside a string) is looked at once, not once
            # per candidate.
            if bracket >= window_end:
                skip_to = bracket
                break
            offset = max(close, bracket - position)
        if window_end >= end or skip_to >= end:
            return None
        position = max(window_end - 256, position + 1, skip_to)
    return None


def _candidate(text: bytes, offset: int) -> tuple[int, int] | None:
    """The next ``}`` ``,`` ``{`` in ``text`` from ``offset``: (just past the ``}``,
    the ``{``). The compact form first (a ``find``), white space by the regex."""
    compact = text.find(b"},{", offset)
    spaced = _CUT.search(text, offset, compact + 3 if compact >= 0 else len(text))
    if spaced is not None:
        return spaced.start() + 1, spaced.end() - 1
    if compact >= 0:
        return compact + 1, compact + 2
    return None


def _next_bracket(body: Body, position: int, end: int) -> tuple[bool, int]:
    """Whether the first ``[`` or ``]`` at or after ``position`` is a ``[`` (or there is
    none), and where it is: looked for in growing spans, so a long record costs no more
    than it needs."""
    span = 2048
    limit = min(end, position + _BRACKET_REACH)
    while position < limit:
        text = body.slice(position, min(limit, position + span))
        opening, closing = text.find(b"["), text.find(b"]")
        if closing >= 0 and (opening < 0 or closing < opening):
            return False, position + closing
        if opening >= 0:
            return True, position + opening
        position += len(text)
        span *= 4
    # No bracket near: records without arrays (products, orders without line items).
    # Looking on to the end of the body for each cut would make reading quadratic; a
    # wrong cut is refused by the parser, and the next candidate is tried.
    return True, limit


# How far a cut looks for the bracket that tells a record boundary from one inside a
# record's array: far past any record's first array, short of a whole body.
_BRACKET_REACH = 256 * 1024
