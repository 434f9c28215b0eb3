"""What a user installs: one version everywhere, the typing marker, the console script.

In the "wheel" cell of ``.ci/matrix.py`` (``CONNEXI_TEST_INSTALLED=1``) these also prove that the suite
runs against the installed wheel, not a source tree that happened to be on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

import connexi_async

PACKAGE = Path(connexi_async.__file__).resolve().parent
INSTALLED = os.environ.get("CONNEXI_TEST_INSTALLED") == "1"


def test_the_version_is_one_and_the_same_everywhere() -> None:
    version = connexi_async.__version__
    assert metadata.version("connexi-async") == version, (
        "the installed metadata and connexi_async.__version__ differ: reinstall (make test does)"
    )
    module = subprocess.run(
        [sys.executable, "-m", "connexi_async", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert module.stdout.strip() == f"connexi-async {version}"
    script = Path(sysconfig.get_path("scripts")) / "connexi-async"
    assert script.exists(), f"the console script is not installed at {script}"
    console = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert console.stdout.strip() == f"connexi-async {version}"


def test_the_version_is_a_release_version() -> None:
    from packaging.version import Version

    assert str(Version(connexi_async.__version__)) == connexi_async.__version__


def test_the_package_is_marked_typed() -> None:
    assert (PACKAGE / "py.typed").is_file()


def test_every_subpackage_is_installed() -> None:
    for sub in ("sandbox", "cli", "sync", "fleet"):
        assert (PACKAGE / sub / "__init__.py").is_file(), sub


@pytest.mark.skipif(not INSTALLED, reason="only in the wheel cell (make test-wheel)")
def test_the_suite_runs_against_the_installed_wheel() -> None:
    site = Path(sysconfig.get_path("purelib")).resolve()
    assert PACKAGE.is_relative_to(site), f"connexi_async came from {PACKAGE}, not {site}"
    # A wheel install, not an editable one pointing back at a source tree.
    direct_url = json.loads(
        metadata.distribution("connexi-async").read_text("direct_url.json") or "{}"
    )
    assert not direct_url.get("dir_info", {}).get("editable"), direct_url
    assert not any(
        Path(p, "connexi_async").is_dir() for p in sys.path if p and Path(p).resolve() != site
    )
