from __future__ import annotations

pytest_plugins = ["connexi_async.testing"]
