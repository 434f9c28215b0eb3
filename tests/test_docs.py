"""Every ```python block of the documentation (docs/**/*.md and README.md) runs.

The blocks of one page run in order in one shared namespace (a later block may use the
names an earlier one defined), against an embedded sandbox on loopback whose
credentials are in the environment the examples read (``CONNEXI_API_KEY``...), in a
fresh temporary working directory. A block may use top-level ``await`` (all such blocks
of a page share one event loop) or be a complete program ending in
``asyncio.run(main())``. A failing block fails its page's test with the page, the
block's line and the exception.

An HTML comment on the line before a fence changes what happens to the block:

* ``<!-- docs-test: module myapp/fleet.py -->``: written to that file (under the working
  directory, packages made as needed) and imported as ``myapp.fleet``, not executed as a
  script; a later block of the page may import it too.
* ``<!-- docs-test: tested-by tests/test_x.py -->``: run by that test module (a pytest
  recipe runs in a project of its own there); here we check that the module exists and
  reads this page.
* ``<!-- docs-test: requires fastapi httpx -->``: run only when those modules can be
  imported; otherwise the block is skipped, visibly (the page's test is reported as
  skipped after its other blocks ran, naming the block and the missing module).
* ``<!-- docs-test: skip reason=... -->``: not run, reported as a skipped test of its own.

The ``$ connexi-async ...`` commands of the console blocks must parse with the command
line's own parser.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import importlib.util
import inspect
import json
import os
import re
import shlex
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from connexi_async.cli import build_parser
from connexi_async.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^\n]*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>[\w-]+)\s*(?P<args>.*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    info: str
    code: str
    marker: str = ""
    marker_args: str = ""
    skipped: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, with the docs-test marker before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""
        ):
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        marker = _MARKER.match(lines[i - 1]) if i > 0 else None
        found.append(
            Block(
                page=page,
                line=i + 1,
                language=info.split()[0] if info else "",
                info=info,
                code="\n".join(body) + "\n",
                marker=marker["kind"] if marker else "",
                marker_args=marker["args"] if marker else "",
            )
        )
        i = j + 1
    return found


def python_blocks(page: Path) -> list[Block]:
    return [b for b in blocks_of(page) if b.language == "python"]


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_there_are_pages_and_examples() -> None:
    names = {_page_id(p) for p in PAGES}
    assert {"README.md", "docs/index.md", "docs/quickstart.md", "docs/streaming.md"} <= names
    assert sum(len(python_blocks(p)) for p in PAGES) >= 20
    markers = {b.marker for p in PAGES for b in blocks_of(p)}
    assert markers <= {"", "module", "tested-by", "requires", "skip"}, markers


# -- the sandbox the examples talk to ----------------------------------------------------


class RunningSandbox:
    """A sandbox served by a loop of its own in a thread, so that the examples may start
    and stop event loops of their own (``asyncio.run``) while it keeps serving."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.sandbox: Sandbox | None = None
        self._thread = threading.Thread(target=self._run, name="docs-sandbox", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with Sandbox(**self._options) as sandbox:
            self.sandbox = sandbox
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Sandbox:
        self._thread.start()
        if not self._ready.wait(60) or self.sandbox is None:
            raise RuntimeError(f"the docs' sandbox did not start: {self._error!r}")
        return self.sandbox

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "the docs' sandbox did not stop"


@pytest.fixture
def docs_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A sandbox (orders from October 2026 to today), its credentials in the environment, and a fresh
    working directory on ``sys.path`` (for the modules a page writes)."""
    # October 2026 (what most examples read) up to today (what a sync's first run reads).
    start = datetime(2026, 10, 1, tzinfo=UTC)
    days = max(31, (datetime.now(UTC) - start).days + 2)
    with RunningSandbox(orders=2_000 + 20 * days, seed=7, start=start, days=days) as sandbox:
        for name in list(os.environ):
            if name.startswith("CONNEXI_"):
                monkeypatch.delenv(name)
        v1, partner = sandbox.credentials, sandbox.partner_credentials
        monkeypatch.setenv("CONNEXI_API_KEY", v1["api_key"])
        monkeypatch.setenv("CONNEXI_API_SECRET", v1["api_secret"])
        monkeypatch.setenv("CONNEXI_BASE_URL", v1["base_url"])
        monkeypatch.setenv("CONNEXI_PARTNER_ID", partner["partner_id"])
        monkeypatch.setenv("CONNEXI_PARTNER_SECRET", partner["partner_secret"])
        monkeypatch.setenv("CONNEXI_PARTNER_BASE_URL", partner["base_url"])
        monkeypatch.chdir(tmp_path)
        monkeypatch.syspath_prepend(str(tmp_path))
        yield tmp_path


# -- running a page -----------------------------------------------------------------------


def _failure(block: Block, what: str) -> str:
    return f"{block.where}: the ```python block starting on line {block.line} failed: {what}"


def _missing(modules: list[str]) -> list[str]:
    return [name for name in modules if importlib.util.find_spec(name) is None]


def _import_module_block(block: Block, workdir: Path) -> None:
    relative = block.marker_args.split()[0]
    target = workdir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    for parent in target.relative_to(workdir).parents:
        if str(parent) != ".":
            (workdir / parent / "__init__.py").touch()
    target.write_text(block.code, encoding="utf-8")
    dotted = relative.removesuffix(".py").replace("/", ".")
    importlib.import_module(dotted)


def run_page(page: Path, workdir: Path) -> list[str]:
    """Run the page's Python blocks in order; the reasons of the blocks not run."""
    module = ModuleType("docs_page_" + re.sub(r"\W", "_", _page_id(page)))
    module.__file__ = str(page)
    namespace = module.__dict__
    sys.modules[module.__name__] = module
    not_run: list[str] = []
    runner: asyncio.Runner | None = None
    try:
        for block in python_blocks(page):
            if block.marker in ("skip", "tested-by"):
                continue  # tests of their own: see test_skipped_blocks, test_tested_elsewhere
            if block.marker == "requires":
                missing = _missing(block.marker_args.split())
                if missing:
                    not_run.append(f"{block.where} needs {', '.join(missing)}, not installed")
                    continue
            try:
                if block.marker == "module":
                    _import_module_block(block, workdir)
                    continue
                # Padded so that tracebacks name the page's own line numbers.
                source = "\n" * block.line + block.code
                code = compile(source, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                if code.co_flags & inspect.CO_COROUTINE:
                    if runner is None:
                        runner = asyncio.Runner()
                    runner.run(eval(code, namespace))
                else:
                    exec(code, namespace)
            except (Exception, asyncio.CancelledError) as exc:
                shown = "".join(traceback.format_exception(exc))
                pytest.fail(_failure(block, f"{type(exc).__name__}: {exc}\n{shown}"), pytrace=False)
    finally:
        if runner is not None:
            runner.close()
        del sys.modules[module.__name__]
        for name, imported in list(sys.modules.items()):  # the modules the page wrote
            if str(getattr(imported, "__file__", None) or "").startswith(str(workdir)):
                del sys.modules[name]
    return not_run


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_page_examples_run(page: Path, docs_environment: Path) -> None:
    if not python_blocks(page):
        return  # nothing to run here (its console commands are checked below)
    not_run = run_page(page, docs_environment)
    if not_run:
        pytest.skip("the other blocks ran; not run: " + "; ".join(not_run))


def _marked(kind: str) -> list[Block]:
    return [b for p in PAGES for b in python_blocks(p) if b.marker == kind]


@pytest.mark.parametrize("block", _marked("skip"), ids=lambda b: b.where)
def test_skipped_blocks(block: Block) -> None:  # pragma: no cover - ideally none
    reason = block.marker_args.removeprefix("reason=").strip()
    assert reason, f"{block.where}: a docs-test skip must say why (reason=...)"
    pytest.skip(f"{block.where}: {reason}")


@pytest.mark.parametrize("block", _marked("tested-by"), ids=lambda b: b.where)
def test_tested_elsewhere(block: Block) -> None:
    """A block run by another test module: that module exists and reads this page."""
    tester = ROOT / block.marker_args.split()[0]
    assert tester.is_file(), f"{block.where}: {tester} does not exist"
    assert _page_id(block.page) in tester.read_text(encoding="utf-8"), (
        f"{block.where}: {tester.name} does not read {_page_id(block.page)}"
    )


# -- the command line ---------------------------------------------------------------------


def cli_commands() -> list[Any]:
    """Every ``$ connexi-async ...`` line of the pages' console blocks, as arguments."""
    found = []
    for block in (b for page in PAGES for b in blocks_of(page)):
        if block.language != "console":
            continue
        joined = block.code.replace("\\\n", " ")
        for offset, line in enumerate(joined.splitlines()):
            if not line.startswith("$ connexi-async"):
                continue
            for command in line[2:].split(";"):
                words = shlex.split(command, comments=True)
                for i, word in enumerate(words):  # the shell's redirections and pipes
                    if word[0] in "<>|" or word.startswith("2>"):
                        words = words[:i]
                        break
                if words and words[0] == "connexi-async":
                    where = f"{block.where}+{offset}"
                    found.append(pytest.param(where, words[1:], id=f"{where} {shlex.join(words)}"))
    return found


@pytest.mark.parametrize(("where", "arguments"), cli_commands())
def test_cli_commands_of_the_docs_parse(where: str, arguments: list[str]) -> None:
    try:
        build_parser().parse_args(arguments)
    except SystemExit as exc:
        pytest.fail(f"{where}: connexi-async {shlex.join(arguments)} does not parse ({exc})")


def test_the_performance_figures_are_the_last_benchmark_run() -> None:
    """docs/performance.md's table is ``benchmarks/run.py --markdown`` of results.json,
    and the pages that quote the run name its date: a rerun of ``make bench`` must be
    carried into the documentation, not left beside it."""
    bench = ROOT / "benchmarks"
    if not (bench / "report.py").exists():  # the wheel's cell copies tests and docs only
        pytest.skip("benchmarks/ is not beside the tests")
    spec = importlib.util.spec_from_file_location("bench_report", bench / "report.py")
    assert spec is not None
    assert spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    results = json.loads((bench / "results.json").read_text())
    page = (ROOT / "docs" / "performance.md").read_text()
    table = "\n".join(report.markdown(results["results"]))
    assert table in page, "docs/performance.md: paste in `benchmarks/run.py --markdown`"
    machine = results["machine"]
    assert f"Python {machine['python']}, {machine['date']};" in page
    assert f"`make bench`, {machine['date']}:" in (ROOT / "README.md").read_text()
