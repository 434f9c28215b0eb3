"""Run the test suite against the built wheel: ``python .ci/test_wheel.py dist [-- pytest args]``.

The wheel goes into a fresh venv (``.matrix/wheel``) with its ``test`` extra; the tests,
the docs they run and the pytest settings are copied into an empty folder and run from
there, with no source tree on ``sys.path``. ``CONNEXI_TEST_INSTALLED=1`` tells
tests/test_packaging.py to check that ``connexi_async`` really came from the venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".matrix" / "wheel"


def main() -> int:
    args = sys.argv[1:]
    pytest_args: list[str] = []
    if "--" in args:
        pytest_args = args[args.index("--") + 1 :]
        args = args[: args.index("--")]
    dist = Path(args[0] if args else "dist").resolve()
    wheels = sorted(dist.glob("connexi_async-*.whl"))
    if len(wheels) != 1:
        print(
            f"test_wheel: expected one wheel in {dist}, found {wheels}; run `make dist`",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    uv = str(Path(sys.executable).parent / "uv")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run(
        [uv, "venv", "--quiet", "--python", sys.executable, str(VENV)], env=env, check=True
    )
    python = VENV / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), f"{wheels[0]}[test]"],
        env=env,
        check=True,
    )
    print(
        f"test_wheel: {wheels[0].name} installed in {time.monotonic() - started:.0f} s", flush=True
    )
    with tempfile.TemporaryDirectory(prefix="connexi-wheel-") as scratch:
        work = Path(scratch)
        shutil.copytree(
            ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copytree(ROOT / "docs", work / "docs")
        shutil.copy(ROOT / "README.md", work / "README.md")
        shutil.copy(ROOT / "mkdocs.yml", work / "mkdocs.yml")
        (work / "pytest.ini").write_text(_pytest_ini())
        env["CONNEXI_TEST_INSTALLED"] = "1"
        # -P: the current folder is not put on sys.path either.
        cmd = [str(python), "-P", "-X", "dev", "-W", "error", "-m", "pytest", "-q", *pytest_args]
        done = subprocess.run(cmd, cwd=work, env=env, check=False)
    print(f"test_wheel: {time.monotonic() - started:.0f} s in all", flush=True)
    return done.returncode


def _pytest_ini() -> str:
    """pyproject.toml's [tool.pytest.ini_options], as a pytest.ini (no pyproject to copy)."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    lines = ["[pytest]"]
    for key, value in options.items():
        if isinstance(value, list):
            lines.append(f"{key} =")
            lines += [f"    {item}" for item in value]
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
