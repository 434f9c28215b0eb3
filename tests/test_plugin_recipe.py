"""The pytest recipe of docs/sandbox.md, as a new user's project would have it, run by pytest.

The page's ``pyproject.toml``, ``conftest.py`` and ``test_sync_job.py`` blocks (found by
their ``title="..."``) are written into a fresh project, beside a few more tests of the
plugin's fixtures, and pytest runs them there.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "sandbox.md"

MORE_TESTS = """\
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


def titled_blocks(page: Path) -> dict[str, str]:
    """The page's fenced blocks that have a ``title="file name"``, by that name."""
    fence = re.compile(r'^```\w+ title="(?P<title>[^"]+)"\n(?P<code>.*?)^```$', re.M | re.S)
    return {m["title"]: m["code"] for m in fence.finditer(page.read_text(encoding="utf-8"))}


def test_the_docs_recipe_runs_in_a_fresh_project(tmp_path: Path) -> None:
    blocks = titled_blocks(PAGE)
    for name in ("pyproject.toml", "conftest.py", "test_sync_job.py"):
        assert name in blocks, f"docs/sandbox.md has no block titled {name!r}"
        (tmp_path / name).write_text(blocks[name], encoding="utf-8")
    (tmp_path / "test_more.py").write_text(MORE_TESTS, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout, done.stdout
