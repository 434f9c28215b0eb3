"""Check what the built sdist and wheel carry: ``python .ci/check_dist.py dist``.

The wheel must hold the whole package (the sandbox, the command line, ``py.typed``) and
the console script; the sdist must hold the tests, the docs and the README, so that a
source release can be tested and rebuilt; neither may hold a venv, a cache or demo output.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

WHEEL_MUST = (
    "connexi_async/__init__.py",
    "connexi_async/py.typed",
    "connexi_async/sandbox/__main__.py",
    "connexi_async/cli/__init__.py",
    "connexi_async/fleet/testing.py",
    "connexi_async/testing.py",
)
SDIST_MUST = (
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "mkdocs.yml",
    "docs/index.md",
    "tests/conftest.py",
    "tests/seed_order.json",
    "connexi_async/py.typed",
)
# Path parts that never ship.
NEVER = (
    ".venv",
    ".matrix",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    ".pytest_cache",
    "site",
    "dist",
    ".git",
    "demo-orders.jsonl",
)


def check(dist: Path) -> list[str]:
    problems: list[str] = []
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [f"expected one wheel and one sdist in {dist}, found {wheels + sdists}"]
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
        if (
            entry_points is None
            or "connexi-async = connexi_async.cli:main" not in wheel.read(entry_points).decode()
        ):
            problems.append("wheel: the connexi-async console script is not declared")
    problems += [f"wheel: missing {m}" for m in WHEEL_MUST if m not in names]
    problems += [f"wheel: must not ship {n}" for n in names if _never(n)]
    with tarfile.open(sdists[0]) as sdist:
        # Every member sits under "<name>-<version>/".
        members = [m.split("/", 1)[1] for m in sdist.getnames() if "/" in m]
    problems += [f"sdist: missing {m}" for m in SDIST_MUST if m not in members]
    problems += [f"sdist: must not ship {m}" for m in members if _never(m)]
    return problems


def _never(name: str) -> bool:
    return any(part in NEVER for part in name.split("/"))


def main() -> int:
    dist = Path(sys.argv[1] if len(sys.argv) > 1 else "dist")
    problems = check(dist)
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if not problems:
        print(
            f"check_dist: {', '.join(p.name for p in sorted(dist.iterdir()))}: contents as expected"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
