# Two commands: `make demo` sets up and runs the main job on the built-in data;
# `make test` sets up and runs the test suite (CI runs exactly this, via .ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.deid-installed

.PHONY: setup demo test test-fast bench ui clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(BIN)/deid demo

# One worker per core the machine gives (tests/conftest.py shares the cores out among them); a test file
# stays on one worker, so its module fixtures and the flow tests' Prefect harness are made once.
test: setup
	$(BIN)/python -m pytest -q -n auto --dist loadfile

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

# A quick performance table (N = 1000 of the built-in set, every stage beside its bare-library loop) under
# work/bench; `deid perf` with more sizes and the demo timing rewrites docs/PERFORMANCE.md.
bench: setup
	OMP_NUM_THREADS=1 $(BIN)/deid perf --sizes 1000 --no-demo --out work/bench

ui: setup
	$(BIN)/deid ui

clean:
	rm -rf work
