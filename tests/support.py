"""Helpers shared by the test modules (imported as ``support``: pytest puts tests/ on the path)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from connexi_async import ConnexiClient
from connexi_async.sandbox import Sandbox
from connexi_async.sandbox._data import Dataset


def client_for(sandbox: Sandbox, **options: object) -> ConnexiClient:
    """A client of ``sandbox`` whose retries wait milliseconds."""
    defaults: dict[str, object] = {"backoff_base": 0.001, "backoff_max": 0.01}
    return ConnexiClient(**sandbox.credentials, **{**defaults, **options})  # type: ignore[arg-type]


def cli_env(sandbox: Sandbox | None) -> dict[str, str]:
    """This process's environment, with the sandbox's credentials in CONNEXI_* (or none)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CONNEXI_")}
    if sandbox is not None:
        creds = sandbox.credentials
        environment |= {
            "CONNEXI_API_KEY": creds["api_key"],
            "CONNEXI_API_SECRET": creds["api_secret"],
            "CONNEXI_BASE_URL": creds["base_url"],
        }
    return environment


def serve_inclusive_end(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every sandbox treat ``end`` as inclusive (boundary orders come twice) until
    the generator is resumed: ``undo = serve_inclusive_end(mp); next(undo) ... next(undo, None)``."""
    real_between = Dataset.between

    def inclusive(self: Dataset, start: datetime, end: datetime) -> Iterator[object]:
        yield from real_between(self, start, end + timedelta(seconds=1))

    monkeypatch.setattr(Dataset, "between", inclusive)
    yield
    monkeypatch.setattr(Dataset, "between", real_between)
