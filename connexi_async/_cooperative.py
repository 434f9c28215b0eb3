"""Long CPU work in slices: give the event loop back every few milliseconds.

Decoding and encoding are written as generators that ``yield`` at safe points (after a
piece of a body, every few dozen records) and ``return`` their result. The same
generator runs to the end at once for the synchronous API (:func:`run_steps`) or, inside
the client and the sandbox, in slices of at most ``budget`` seconds with the loop given
back in between (:func:`run_sliced`). One piece of code, two ways to drive it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import TypeVar

__all__ = ["SLICE_SECONDS", "Steps", "run_sliced", "run_steps"]

T = TypeVar("T")
Steps = Generator[None, None, T]

# How long one slice may hold the loop before it is given back. A step between two
# yields is far shorter (a ~1 ms piece, a few dozen records), so a slice ends within a
# step of this.
SLICE_SECONDS = 0.004

_clock = time.perf_counter


def run_steps(steps: Steps[T]) -> T:
    """Run a generator of steps to its end and return its result."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


async def run_sliced(steps: Steps[T], budget: float = SLICE_SECONDS) -> T:
    """Run a generator of steps, giving the event loop back every ``budget`` seconds."""
    started = _clock()
    try:
        while True:
            next(steps)
            if _clock() - started >= budget:
                await asyncio.sleep(0)
                started = _clock()
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        steps.close()
