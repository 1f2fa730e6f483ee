# `make demo` and `make test` work from a fresh clone with only Python 3.9+:
# each creates .venv and installs what it needs first. The test extra brings
# what the suite needs beyond pytest: the docs toolchain, Django, build, mypy.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pictify_tasks demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
# Each prints one JSON object as its last line; BENCH_ARGS (e.g. --quick, --redis-url) go to all.
BENCHMARKS := fanout_limit cancels_first throughput http_call_cost revoke_latency store_cost webhooks

bench: $(STAMP)
	set -e; for name in $(BENCHMARKS); do $(BIN)/python benchmarks/$$name.py $(BENCH_ARGS); done
	$(BIN)/python benchmarks/revoke_latency.py --broker rabbitmq $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist site *.egg-info .pytest_cache .mypy_cache .ruff_cache
