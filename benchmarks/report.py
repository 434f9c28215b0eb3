"""The tables of a benchmark run: for the terminal (``table``) and for
docs/performance.md (``markdown``, which ``tests/test_docs.py`` checks against
``results.json``). No imports beyond the standard library, so the tests can load it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["markdown", "table"]


def _target(row: dict[str, Any]) -> str:
    """The row's target and whether this run met it, or nothing."""
    target: str = row.get("target", "")
    if target:
        target += " ✔" if row.get("met") else " ✘"
    return target


def table(rows: list[dict[str, Any]]) -> Iterator[str]:
    yield f"| {'figure':<62} | {'median':>12} | {'min':>10} | {'max':>10} | unit | target |"
    yield f"|{'-' * 64}|{'-' * 14}|{'-' * 12}|{'-' * 12}|------|--------|"
    for row in rows:
        low = f"{row['min']:,.2f}" if "min" in row else ""
        high = f"{row['max']:,.2f}" if "max" in row else ""
        yield f"| {row['name']:<62} | {row['value']:>12,.2f} | {low:>10} | {high:>10} | {row['unit']} | {_target(row)} |"


def markdown(rows: list[dict[str, Any]]) -> Iterator[str]:
    """The table of docs/performance.md, from results.json (``--markdown``)."""

    def shown(row: dict[str, Any], key: str) -> str:
        if key not in row:
            return ""
        value = row[key]
        if row["unit"] in ("orders/s", "requests") or value >= 1000:
            return f"{value:,.0f}"
        return f"{value:,.2f}"

    yield "| figure | median | min | max | unit | target |"
    yield "| --- | ---: | ---: | ---: | --- | --- |"
    for row in rows:
        cells = [shown(row, "value"), shown(row, "min"), shown(row, "max")]
        yield f"| {row['name']} | {' | '.join(cells)} | {row['unit']} | {_target(row)} |"
