"""The README's pytest recipe, as a new user's project would have it, run by pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PYPROJECT = """\
[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
"""

CONFTEST = """\
pytest_plugins = ["connexi_async.testing"]
"""

TESTS = """\
async def test_sync_job_survives_an_outage(connexi_sandbox, connexi_client):
    connexi_sandbox.faults.script("GET /v1/order", "unavailable", "unavailable")
    from datetime import UTC, datetime, timedelta
    since = datetime(2026, 10, 1, tzinfo=UTC)
    orders = [o async for o in connexi_client.orders(since, since + timedelta(days=2))]
    assert orders
    assert connexi_sandbox.recorder.count("GET /v1/order") >= 3


async def test_fixtures_alone(connexi_sandbox):
    assert connexi_sandbox.base_url.startswith("http://127.0.0.1")


async def test_a_partner_write_job(connexi_sandbox, connexi_partner_client):
    from connexi_async import Accept
    from datetime import UTC, datetime, timedelta
    since = datetime(2026, 10, 1, tzinfo=UTC)
    async with connexi_partner_client.orders(since, since + timedelta(days=3)) as stream:
        pending = [o async for o in stream if o.status == "pending"][:2]
    connexi_sandbox.faults.script("PATCH /v1/partner/order/status", "disconnect_after")
    result = await connexi_partner_client.change_statuses([Accept.of(o) for o in pending])
    assert result.ok and len(result.succeeded) == 2
    assert connexi_sandbox.recorder.count("PATCH /v1/partner/order/status") == 2
"""


def test_the_readme_recipe_runs_in_a_fresh_project(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_mine.py").write_text(TESTS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
