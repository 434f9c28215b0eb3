from __future__ import annotations

from hypothesis import settings

pytest_plugins = ["connexi_async.testing"]

# CI machines are small and shared: no per-example deadline, a fixed example budget.
settings.register_profile("connexi", deadline=None, max_examples=100)
settings.load_profile("connexi")
