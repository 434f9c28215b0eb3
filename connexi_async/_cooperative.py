"""Long CPU work in slices: give the event loop back every few milliseconds.

Decoding and encoding are written as generators that ``yield`` at safe points (after a
piece of a body, every few dozen records) and ``return`` their result. The same
generator runs to the end at once for the synchronous API (:func:`run_steps`) or, inside
the client and the sandbox, in slices of at most ``budget`` seconds with the loop given
back in between (:func:`run_sliced`). One piece of code, two ways to drive it.

Slices of concurrent work must not add up: eight windows decoding at once, each giving
the loop back every 2 ms, would still hold one turn of the loop for 16 ms (a turn runs
every task that was ready when it began). So sliced work takes turns through one gate
per event loop: one slice of ours per turn of the loop, whatever the concurrency.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Generator
from typing import TypeVar

__all__ = ["SLICE_SECONDS", "Steps", "run_sliced", "run_steps"]

T = TypeVar("T")
Steps = Generator[None, None, T]

# How long one slice may hold the loop before it is given back. A step between two
# yields is far shorter (a ~1 ms piece, a few dozen records), so a slice ends within a
# step of this.
SLICE_SECONDS = 0.0005

_clock = time.perf_counter
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def run_steps(steps: Steps[T]) -> T:
    """Run a generator of steps to its end and return its result."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


def _gate() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = asyncio.Lock()
    return gate


async def run_sliced(steps: Steps[T], budget: float = SLICE_SECONDS) -> T:
    """Run a generator of steps, giving the event loop back every ``budget`` seconds."""
    try:
        async with _gate():
            started = _clock()
            while True:
                next(steps)
                if _clock() - started >= budget:
                    await asyncio.sleep(0)
                    started = _clock()
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        steps.close()
