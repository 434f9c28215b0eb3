# One venv for everything: `make test`, `make demo` and `make bench` all create it when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check connexi_async tests benchmarks
	$(BIN)/ruff format --check connexi_async tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy --strict connexi_async

pytest: $(STAMP)
	$(BIN)/python -X dev -W error -m pytest -q

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/connexi-async demo -o demo-orders.jsonl

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis demo-orders.jsonl
