# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# 3 xdist workers on 2 cores: many tests wait on real workers, servers and beat ticks (idle CPU),
# so a third worker fills it; -n 2 left a core idle for minutes and ran ~10 min.
PYTEST_ARGS ?= -n 3
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
DOCS_STAMP := $(VENV)/.docs-installed
BENCH_ARGS ?=

.PHONY: run test bench docs venv clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m kai_platform.cli up

# What the tests need from the system (chromium, espeak-ng, node + npm ci, xmlsec1), installed
# when missing and possible (the installer .ci/run uses too); otherwise it says what is missing.
system-deps:
	@bash .ci/system-deps.sh

# --durations: every run's log names its slowest tests (docs/testing.md)
test: system-deps $(STAMP)
	$(PY) -m kai_platform.cli test --durations=25 $(PYTEST_ARGS)

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# B1-B10 of the benchmarks issue; BENCH_ARGS="--with-test" also times make test (minutes).
bench: $(BENCH_STAMP)
	$(PY) -m bench $(BENCH_ARGS)

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

# The documentation site (mkdocs.yml, docs/) into var/site; --strict fails on a warning (broken link, page not in nav).
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) var .pytest_cache
