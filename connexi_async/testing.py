"""A pytest plugin for your own tests: a running sandbox and a client connected to it.

Enable it in your ``conftest.py`` (it needs pytest-asyncio)::

    pytest_plugins = ["connexi_async.testing"]

    async def test_my_sync_job(connexi_sandbox, connexi_client):
        connexi_sandbox.faults.script("GET /v1/order", "unavailable")
        await my_sync_job(connexi_client)
        assert connexi_sandbox.recorder.count("PATCH /v1/order") == 1

Fixtures: ``connexi_sandbox`` (a :class:`~connexi_async.sandbox.Sandbox` with 1,000
orders in October 2026, seed 7), ``connexi_client`` (a ``ConnexiClient`` on it with
fast retries) and ``connexi_partner_client`` (a ``PartnerClient`` on the same sandbox,
signing with its partner credentials). Override ``connexi_sandbox_options`` to change the sandbox. The HTTPS
variants, ``connexi_tls_sandbox`` and ``connexi_tls_client``, serve the same data over
TLS with a throwaway CA that the client trusts (they need ``trustme``, in the
``testing`` extra).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ._client import ConnexiClient
from ._partner import PartnerClient
from .sandbox import Sandbox

__all__ = [
    "connexi_client",
    "connexi_partner_client",
    "connexi_sandbox",
    "connexi_sandbox_options",
    "connexi_tls_client",
    "connexi_tls_sandbox",
]


@pytest.fixture
def connexi_sandbox_options() -> dict[str, Any]:
    """Keyword arguments for the sandbox; override this fixture to change them."""
    return {"orders": 1_000, "seed": 7}


@pytest_asyncio.fixture
async def connexi_sandbox(connexi_sandbox_options: dict[str, Any]) -> AsyncIterator[Sandbox]:
    """A sandbox server running on loopback for the duration of one test."""
    async with Sandbox(**connexi_sandbox_options) as sandbox:
        yield sandbox


@pytest_asyncio.fixture
async def connexi_client(connexi_sandbox: Sandbox) -> AsyncIterator[ConnexiClient]:
    """A client for ``connexi_sandbox``, with retries that wait milliseconds, not seconds."""
    async with ConnexiClient(
        **connexi_sandbox.credentials,
        backoff_base=0.001,
        backoff_max=0.01,
        ssl=connexi_sandbox.client_ssl_context() if connexi_sandbox.tls else None,
    ) as client:
        yield client


@pytest_asyncio.fixture
async def connexi_partner_client(connexi_sandbox: Sandbox) -> AsyncIterator[PartnerClient]:
    """A partner client for ``connexi_sandbox`` (the same data through the partner API:
    reads, partial-success creates, status changes, stock jobs), with fast retries."""
    async with PartnerClient(
        **connexi_sandbox.partner_credentials,
        backoff_base=0.001,
        backoff_max=0.01,
        ssl=connexi_sandbox.client_ssl_context() if connexi_sandbox.tls else None,
    ) as client:
        yield client


@pytest_asyncio.fixture
async def connexi_tls_sandbox(connexi_sandbox_options: dict[str, Any]) -> AsyncIterator[Sandbox]:
    """The sandbox over HTTPS, with a throwaway CA made for this test."""
    async with Sandbox(**{**connexi_sandbox_options, "tls": True}) as sandbox:
        yield sandbox


@pytest_asyncio.fixture
async def connexi_tls_client(connexi_tls_sandbox: Sandbox) -> AsyncIterator[ConnexiClient]:
    """A client for ``connexi_tls_sandbox`` that trusts its CA, with fast retries."""
    async with ConnexiClient(
        **connexi_tls_sandbox.credentials,
        ssl=connexi_tls_sandbox.client_ssl_context(),
        backoff_base=0.001,
        backoff_max=0.01,
    ) as client:
        yield client
