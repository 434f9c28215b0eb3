# One venv for everything: `make test`, `make demo` and `make bench` all create it when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench clean test-matrix dist test-wheel docs docs-serve typecheck-public

# connexi_async/__init__.py holds the version: an editable install's metadata follows it.
$(STAMP): pyproject.toml connexi_async/__init__.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check connexi_async tests benchmarks .ci docs/hooks.py
	$(BIN)/ruff format --check connexi_async tests benchmarks .ci docs/hooks.py

typecheck: $(STAMP)
	$(BIN)/mypy --strict connexi_async

pytest: $(STAMP)
	$(BIN)/python -X dev -W error -m pytest -q

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/connexi-async demo -o demo-orders.jsonl

# Python 3.11, 3.12 and 3.13, each with the lowest declared and the newest dependencies
# (six cells, venvs kept under .matrix/). CELLS=3.13-lowest,3.12-newest picks some.
test-matrix: $(STAMP)
	$(BIN)/python .ci/matrix.py $(if $(CELLS),--cells $(CELLS))

# The sdist and the wheel, checked by twine and for what they must (and must not) carry.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --installer uv --outdir dist .
	$(BIN)/twine check --strict dist/*
	$(BIN)/python .ci/check_dist.py dist

# The test suite against the built wheel, installed in a fresh venv, no source tree in sight.
test-wheel: dist
	$(BIN)/python .ci/matrix.py --cells wheel

# Strict: a broken link, anchor or API reference fails the build. (The variable quiets
# Material's banner about its end of life in 2027; it is not a build warning.)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# How completely the public API is typed, as a user's type checker sees it: pyright reads
# the installed wheel (it cannot follow an editable install). Anything under 100% fails.
TYPED := .matrix/typed
typecheck-public: dist
	rm -rf $(TYPED)
	$(BIN)/uv venv --quiet --python $(BIN)/python $(TYPED)
	$(BIN)/uv pip install --quiet --python $(TYPED)/bin/python "$$(ls dist/*.whl)[fleet,testing]"
	VIRTUAL_ENV=$(CURDIR)/$(TYPED) PATH=$(CURDIR)/$(TYPED)/bin:$$PATH \
		$(BIN)/pyright --verifytypes connexi_async --ignoreexternal > $(TYPED)/report.txt; \
		status=$$?; sed -n '/^Symbols exported/,$$p' $(TYPED)/report.txt; \
		grep -q "Type completeness score: 100%" $(TYPED)/report.txt || { grep -A2 "error:" $(TYPED)/report.txt; exit 1; }; \
		exit $$status

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .matrix dist site .mypy_cache .ruff_cache .hypothesis demo-orders.jsonl
