"""Run the test suite on every supported Python, with the lowest and the newest dependencies.

    python .ci/matrix.py                      # all six cells (make test-matrix)
    python .ci/matrix.py --cells 3.13-lowest  # one cell
    python .ci/matrix.py --cells wheel        # the built wheel, installed (make test-wheel)
    python .ci/matrix.py -- -k convert        # arguments after -- go to pytest

A cell is a Python (3.11, 3.12, 3.13) and a dependency set: "lowest" resolves exactly the
minimums pyproject.toml declares (uv's ``--resolution lowest-direct``: each direct
dependency at the lowest release its ``>=`` admits, found on the index), "newest" the
newest releases. Each cell keeps its venv under ``.matrix/`` and reuses it until
pyproject.toml or the interpreter changes. An interpreter that cannot be found fails the
run with a message that names it: a cell is never skipped. The "wheel" cell installs
``dist/*.whl`` in a fresh venv on this Python and runs a copy of the tests with no source
tree on ``sys.path``.

Two cells are tested at once (``--jobs``), then the tests that measure how long the event
loop is held run cell by cell, on a CPU no other cell shares.

Interpreters are looked for, in order: ``$PYTHON3_13`` (for 3.13; likewise the others),
``python3.13`` on ``PATH``, pyenv's versions (``$PYENV_ROOT`` or ``~/.pyenv``), then
``/usr/local/bin`` and ``/usr/bin``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / ".matrix"
PYTHONS = ("3.11", "3.12", "3.13")
RESOLUTIONS = ("lowest", "newest")
# The packages whose versions the summary shows (those pyproject.toml declares at runtime).
# Tests that measure how long the event loop is held: never beside another cell.
SERIAL = ("tests/test_event_loop.py",)
SHOWN = ("aiohttp", "attrs", "cattrs", "msgspec", "yarl", "procrastinate", "psycopg", "pytest")


class MatrixError(Exception):
    """A cell could not be set up (a missing interpreter, an install that failed)."""


def find_python(version: str) -> Path:
    """The interpreter for ``version`` ("3.13"), or a MatrixError naming where we looked."""
    candidates: list[Path] = []
    override = os.environ.get("PYTHON" + version.replace(".", "_"))
    if override:
        candidates.append(Path(override))
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(Path(on_path))
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    # Newest patch release first: 3.13.10 after 3.13.9, so sort numerically.
    installed = sorted(
        (pyenv_root / "versions").glob(f"{version}.*"),
        key=lambda p: [int(x) if x.isdigit() else -1 for x in p.name.split(".")],
        reverse=True,
    )
    candidates += [p / "bin" / f"python{version}" for p in installed]
    candidates += [Path(f"/usr/local/bin/python{version}"), Path(f"/usr/bin/python{version}")]
    for candidate in candidates:
        if candidate.is_file():
            found = _real_interpreter(candidate, version)
            if found is not None:
                return found
    raise MatrixError(
        f"Python {version} was not found (looked at $PYTHON{version.replace('.', '_')}, "
        f"python{version} on PATH, {pyenv_root}/versions/{version}.*, /usr/local/bin and "
        f"/usr/bin). Install it (e.g. `pyenv install {version}`) or point "
        f"PYTHON{version.replace('.', '_')} at it."
    )


def _real_interpreter(python: Path, version: str) -> Path | None:
    """The interpreter behind ``python`` (a pyenv shim, say) if it is ``version``."""
    # A pyenv shim exists for every version but fails for one that is not selected.
    try:
        out = subprocess.run(
            [
                str(python),
                "-c",
                "import sys; print('%d.%d' % sys.version_info[:2], sys.executable)",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return None
    reported, _, executable = out.stdout.strip().partition(" ")
    if out.returncode != 0 or reported != version or not executable:
        return None
    return Path(executable)


def _uv() -> str:
    here = Path(sys.executable).parent / "uv"
    found = str(here) if here.exists() else shutil.which("uv")
    if found is None:
        raise MatrixError("uv is not installed: it comes with the dev extra (make test sets it up)")
    return found


def _run(cmd: list[str], log: Path, **kwargs: object) -> None:
    with log.open("a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise MatrixError(f"`{' '.join(cmd[:4])} ...` failed (exit {done.returncode}); see {log}")


class Cell:
    """One venv and one run of the suite: a Python with the lowest or the newest
    dependencies (installed editable from this tree), or the built wheel ("wheel")."""

    def __init__(self, python_version: str, resolution: str) -> None:
        self.python_version = python_version
        self.resolution = resolution
        self.name = "wheel" if resolution == "wheel" else f"{python_version}-{resolution}"
        self.venv = MATRIX / self.name
        self.log = MATRIX / f"{self.name}.log"
        self.cwd = ROOT
        self.env: dict[str, str] = {}
        self.flags: list[str] = []
        self.versions: dict[str, str] = {}
        self.setup_seconds = 0.0
        self.test_seconds = 0.0
        self.outcome = "not run"
        self.summary = ""

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def set_up(self, interpreter: Path, dist: Path) -> None:
        started = time.monotonic()
        uv = _uv()
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        env.pop("VIRTUAL_ENV", None)
        if self.resolution == "wheel":
            self._set_up_wheel(uv, env, interpreter, dist)
        else:
            self._set_up_editable(uv, env, interpreter)
        frozen = subprocess.run(
            [uv, "pip", "freeze", "--python", str(self.python)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in frozen.splitlines():
            name, sep, version = line.partition("==")
            if sep:
                self.versions[name.lower()] = version
        self.setup_seconds = time.monotonic() - started

    def _set_up_editable(self, uv: str, env: dict[str, str], interpreter: Path) -> None:
        stamp = self.venv / ".matrix-stamp"
        key = hashlib.sha256(
            (ROOT / "pyproject.toml").read_bytes()
            + str(interpreter.resolve()).encode()
            + self.resolution.encode()
        ).hexdigest()
        if stamp.exists() and stamp.read_text() == key and self.python.exists():
            return
        venv = [uv, "venv", "--quiet", "--clear", "--python", str(interpreter), str(self.venv)]
        _run(venv, self.log, env=env)
        install = [uv, "pip", "install", "--quiet", "--python", str(self.python)]
        if self.resolution == "lowest":
            install += ["--resolution", "lowest-direct"]
        _run([*install, "-e", f"{ROOT}[test]"], self.log, env=env)
        stamp.write_text(key)

    def _set_up_wheel(self, uv: str, env: dict[str, str], interpreter: Path, dist: Path) -> None:
        """A fresh venv with the wheel and its test extra; the tests, the docs they run
        and the pytest settings copied into a folder of their own, with no source tree
        in it: what a user installs is what is tested."""
        wheels = sorted(dist.glob("connexi_async-*.whl"))
        if len(wheels) != 1:
            raise MatrixError(f"expected one wheel in {dist}, found {len(wheels)}: run `make dist`")
        venv = [uv, "venv", "--quiet", "--clear", "--python", str(interpreter), str(self.venv)]
        _run(venv, self.log, env=env)
        install = [uv, "pip", "install", "--quiet", "--python", str(self.python)]
        _run([*install, f"{wheels[0]}[test]"], self.log, env=env)
        work = MATRIX / "wheel-tests"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        shutil.copytree(
            ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copytree(ROOT / "docs", work / "docs")
        for name in ("README.md", "mkdocs.yml"):
            shutil.copy(ROOT / name, work / name)
        (work / "pytest.ini").write_text(_pytest_ini())
        self.cwd = work
        # tests/test_packaging.py then checks that connexi_async came from the venv.
        self.env = {"CONNEXI_TEST_INSTALLED": "1"}
        self.flags = ["-P"]  # not even the current folder on sys.path

    def test(self, pytest_args: list[str], phase: str = "") -> bool:
        started = time.monotonic()
        cmd = [str(self.python), *self.flags, "-X", "dev", "-W", "error", "-m", "pytest"]
        cmd += ["-q", *pytest_args]
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        with self.log.open("a") as out:
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            done = subprocess.run(
                cmd,
                cwd=self.cwd,
                env={**env, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        self.test_seconds += time.monotonic() - started
        lines = [line for line in self.log.read_text().splitlines() if line.strip()]
        summary = f"{phase}{lines[-1].strip('= ') if lines else ''}"
        self.summary = f"{self.summary}; {summary}" if self.summary else summary
        if done.returncode != 0:
            self.outcome = f"FAILED (exit {done.returncode})"
        elif self.outcome == "not run":
            self.outcome = "passed"
        return done.returncode == 0


def _pytest_ini() -> str:
    """pyproject.toml's [tool.pytest.ini_options] as a pytest.ini (the wheel's tests run
    without a pyproject.toml beside them)."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    lines = ["[pytest]"]
    for key, value in options.items():
        if isinstance(value, list):
            lines.append(f"{key} =")
            lines += [f"    {item}" for item in value]
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cells",
        default="all",
        help="comma-separated cells such as 3.11-lowest,3.13-newest,wheel (default: the six "
        "Python x dependency cells)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="cells tested at once (default 2); the timing-sensitive tests run one cell at a "
        "time afterwards whatever this is",
    )
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="where the wheel is")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = parser.parse_args(argv)

    running = "{}.{}".format(*sys.version_info[:2])
    every = [Cell(p, r) for p in PYTHONS for r in RESOLUTIONS] + [Cell(running, "wheel")]
    wanted = {c.strip() for c in args.cells.split(",")} if args.cells != "all" else None
    if wanted is not None:
        unknown = wanted - {c.name for c in every}
        if unknown:
            parser.error(
                f"unknown cell(s) {', '.join(sorted(unknown))}; cells are "
                + ", ".join(c.name for c in every)
            )
    cells = [c for c in every if (c.name in wanted if wanted else c.resolution != "wheel")]
    MATRIX.mkdir(exist_ok=True)
    started = time.monotonic()
    try:
        interpreters = {v: find_python(v) for v in sorted({c.python_version for c in cells})}
    except MatrixError as exc:
        print(f"test-matrix: {exc}", file=sys.stderr)
        return 2
    for cell in cells:
        cell.log.write_text("")
    # Set-up is mostly downloads and unpacking: all cells at once.
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=len(cells)) as pool:
        setting_up = pool.map(lambda c: _try_set_up(c, interpreters, args.dist.resolve()), cells)
        for cell, error in zip(cells, setting_up, strict=True):
            if error:
                cell.outcome = "SET-UP FAILED"
                failures.append(f"{cell.name}: {error}")
    print(
        f"test-matrix: {len(cells)} cell(s) set up in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    ready = [c for c in cells if c.outcome == "not run"]
    if args.pytest_args:  # a selection of the user's: as it is
        phases = [("", args.pytest_args, args.jobs)]
    else:
        # Two cells at once halve the time, but a test that measures how long the event
        # loop is held must not share the CPU with another cell: those run one at a time.
        ignore = [f"--ignore={path}" for path in SERIAL]
        phases = [("", ignore, args.jobs), ("serial: ", list(SERIAL), 1)]
    for phase, pytest_args, jobs in phases:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            outcomes = pool.map(lambda c: c.test(pytest_args, phase), ready)  # noqa: B023
            for cell, ok in zip(ready, outcomes, strict=True):
                print(f"  {cell.name:12} {phase}{'passed' if ok else 'FAILED'}", flush=True)
    for cell in ready:
        if cell.outcome != "passed":
            failures.append(f"{cell.name}: {cell.summary} (log: {cell.log})")
    print()
    print(f"{'cell':12} {'result':18} {'set-up':>7} {'tests':>7}  versions")
    for cell in cells:
        shown = " ".join(f"{n}={cell.versions[n]}" for n in SHOWN if n in cell.versions)
        print(
            f"{cell.name:12} {cell.outcome:18} {cell.setup_seconds:6.0f}s"
            f" {cell.test_seconds:6.0f}s  {shown}\n{'':12} {cell.summary}"
        )
    print(f"test-matrix: {time.monotonic() - started:.0f} s in all")
    for failure in failures:
        print(f"test-matrix: {failure}", file=sys.stderr)
        log = MATRIX / f"{failure.split(':')[0]}.log"
        if log.exists():
            tail = log.read_text().splitlines()[-40:]
            print("\n".join("    " + line for line in tail), file=sys.stderr)
    return 1 if failures else 0


def _try_set_up(cell: Cell, interpreters: dict[str, Path], dist: Path) -> str | None:
    try:
        cell.set_up(interpreters[cell.python_version], dist)
    except MatrixError as exc:
        return str(exc)
    return None


if __name__ == "__main__":
    sys.exit(main())
