from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import pytest_asyncio
from hypothesis import settings
from packaging.version import Version

pytest_plugins = ["connexi_async.testing"]

# CI machines are small and shared: no per-example deadline, a fixed example budget.
settings.register_profile("connexi", deadline=None, max_examples=100)
settings.load_profile("connexi")


_LEAVES_A_LOOP_OPEN = Version(pytest_asyncio.__version__) < Version("1.0")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """pytest-asyncio before 1.0 sets a new event loop for the thread after each async
    test and never closes it; the next ``asyncio.run()`` of a plain test drops it, and it
    is collected unclosed some tests later (a ResourceWarning about its self-pipe socket,
    an error under ``-W error``, pinned on whichever test is running). Close it here."""
    result = yield
    if _LEAVES_A_LOOP_OPEN:
        policy = asyncio.get_event_loop_policy()
        loop = getattr(getattr(policy, "_local", None), "_loop", None)
        if isinstance(loop, asyncio.AbstractEventLoop) and not (
            loop.is_running() or loop.is_closed()
        ):
            loop.close()
            policy.set_event_loop(None)
    return result
