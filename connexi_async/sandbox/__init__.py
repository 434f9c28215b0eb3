"""An embedded Connexi v1 sandbox server: the real HTTP peer for tests, demos, benchmarks.

>>> from connexi_async.sandbox import Sandbox
>>> async def main():
...     async with Sandbox(orders=1_000) as sandbox:
...         print(sandbox.base_url, sandbox.credentials["api_key"])

From a shell: ``python -m connexi_async.sandbox --port 8080 --orders 100000 --seed 7``.
"""

from ._data import DataConfig, Dataset, generate_order
from ._faults import RETRYABLE_FAULTS, FaultKind, Faults, Recorder
from ._server import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_PARTNER_ID,
    DEFAULT_PARTNER_SECRET,
    Sandbox,
    SandboxAccount,
)

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "DEFAULT_PARTNER_ID",
    "DEFAULT_PARTNER_SECRET",
    "RETRYABLE_FAULTS",
    "DataConfig",
    "Dataset",
    "FaultKind",
    "Faults",
    "Recorder",
    "Sandbox",
    "SandboxAccount",
    "generate_order",
]
