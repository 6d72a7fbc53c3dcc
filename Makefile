# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# 4 xdist workers on 2 cores: many tests wait on real workers, servers and beat ticks (idle CPU),
# which the workers beyond two fill (docs/testing.md). loadfile: a file is a unit of work on one
# worker, the kai up platforms' files one unit, longest units first (tests/ordering.py).
PYTEST_ARGS ?= -n 4 --dist loadfile --no-loadscope-reorder
STAMP := $(VENV)/.installed

BENCH_ARGS ?=
# Every install comes from the lock (exact versions, hashes checked): run, test, bench, lint and CI
# see the same packages. `make lock` refreshes it after a change of pyproject.toml's dependencies
# (tests/test_lock.py fails while they disagree).
LOCK := requirements.lock
LOCK_EXTRAS := --extra test --extra lint --extra bench --extra docs

.PHONY: run test test-durations bench docs venv clean system-deps lint typecheck lock

$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
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

# the whole suite, writing each test's seconds into tests/durations.json (the slow-first order:
# docs/testing.md); commit the file when the slow tests changed
test-durations: system-deps $(STAMP)
	$(PY) -m kai_platform.cli test --durations=25 --store-durations $(PYTEST_ARGS)

# B1-B10 of the benchmarks issue; BENCH_ARGS="--with-test" also times make test (minutes).
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

# The documentation site (mkdocs.yml, docs/) into var/site; --strict fails on a warning (broken link, page not in nav).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

# ruff (lint and format), no missing migration, the layers contract (pyproject.toml [tool.importlinter]), mypy
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/lint-imports
	$(MAKE) --no-print-directory typecheck

# mypy with django-stubs over kai_platform/ and apps/ (pyproject.toml [tool.mypy]); the plugin reads the settings,
# so URLs are given (no service is contacted) lest a bare run start the embedded ones
typecheck: $(STAMP)
	DATABASE_URL=$${DATABASE_URL:-postgres://127.0.0.1/kai} REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} $(VENV)/bin/mypy

lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_EXTRAS) --generate-hashes --universal \
		--python-version 3.11 --quiet --custom-compile-command "make lock" -o $(LOCK)

clean:
	rm -rf $(VENV) var .pytest_cache
