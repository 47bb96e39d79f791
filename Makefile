# Self-documenting: `make help` lists every target with its `## ` comment.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP_VERSION := 25.2
# The stamp records what was installed; make reinstalls only when a requirements or
# constraints file is newer, so a second `make install` is a no-op.
STAMP  := $(VENV)/.installed
REQS   := requirements/local.txt requirements.txt constraints/mwaa-airflow-3.0.6-constraints.txt
# A second venv at MWAA's Airflow 3.3.1 pins, where the DAG and etl end-to-end tests run too.
COMPAT := .venv-airflow-3.3.1
COMPAT_STAMP := $(COMPAT)/.installed
# MWAA runs Airflow 3.3.1 on Python 3.12, and its pins need it (numpy 2.5.1 requires 3.12):
# python3.12 from PATH, or pyenv's newest 3.12 where pyenv provides one.
COMPAT_PYTHON ?= $(shell PYENV_VERSION=$$(pyenv versions --bare 2>/dev/null | grep '^3\.12' | tail -1) python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null)

SCALE  ?= 1
DAYS   ?= 1
CYCLES ?= 50
SEED   ?= 1

.DEFAULT_GOAL := help
.PHONY: help install demo test lint typecheck pytest compat up down status seed simulate airflow bench soak browser-test screenshots clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)

$(STAMP): $(PY) $(REQS)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/local.txt
	@touch $(STAMP)

install: $(STAMP) ## Create .venv with Airflow 3.0.6 at MWAA's pins plus the project's pinned tools

demo: install ## The main job: local stack, seeded totesys, summary (no Docker, no AWS)
	$(PY) -m devstack.demo --scale $(SCALE)

test: install lint typecheck pytest compat ## Set up and run every check: ruff, mypy, pytest, DAG and etl tests on 3.3.1

lint: install ## ruff (style and the import boundaries between etl/, dags/ and deploy/)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install ## mypy, strict on every package, dags/ included
	$(VENV)/bin/mypy

# Two workers, whole files each (module fixtures stay together; the files that start
# `airflow standalone` share one worker, see tests/conftest.py): most slow tests wait on a
# real scheduler's clock, so the other worker runs beside them. Each worker starts its own
# stack. WORKERS=0 runs in one process.
WORKERS ?= 2

pytest: install ## pytest only (all but the browser tests), WORKERS=2 files at a time
	$(PY) -m pytest -m "not browser" -n $(WORKERS) --dist loadgroup

$(COMPAT_STAMP): requirements/airflow-3.3.1.txt constraints/mwaa-airflow-3.3.1-constraints.txt
	@test -n "$(COMPAT_PYTHON)" || { echo "Python 3.12 is needed for $(COMPAT) (MWAA's Airflow 3.3.1 runs on it); set COMPAT_PYTHON"; exit 1; }
	rm -rf $(COMPAT)
	$(COMPAT_PYTHON) -m venv $(COMPAT)
	$(COMPAT)/bin/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(COMPAT)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/airflow-3.3.1.txt
	@touch $(COMPAT_STAMP)

# The etl end to end under MWAA's newest pins (pyarrow, pandas, numpy, psycopg, the amazon
# provider's boto): ingest, transform and load against the real services, each compared
# with the SQL-computed warehouse, and the processed lake read by that pandas.
COMPAT_ETL_TESTS := tests/etl/ingest/test_run.py tests/etl/transform/test_batch.py tests/etl/load/test_loader.py tests/etl/test_lake_pandas.py

compat: $(COMPAT_STAMP) ## The DAG, plugin and etl end-to-end tests on Airflow 3.3.1 (MWAA's newest) in a second venv
	$(COMPAT)/bin/python -m pytest -p no:cacheprovider -m "not slow" -n $(WORKERS) --dist loadgroup tests/dags $(COMPAT_ETL_TESTS)

up: install ## Start the local stack (PostgreSQL, moto S3, SMTP sink) and print its settings
	$(PY) -m devstack up

down: install ## Stop the local stack
	$(PY) -m devstack down

status: install ## Show whether the local stack is running
	$(PY) -m devstack status

seed: install ## Create and seed totesys on the running stack (SCALE=1)
	$(PY) -m devstack seed --scale $(SCALE) --replace

simulate: install ## Advance the totesys clock (DAYS=1)
	$(PY) -m devstack simulate --days $(DAYS)

# the benchmark's own default scale (make bench SCALE=N still wins)
bench: SCALE = 10
bench: install ## Speed and memory of every stage against raw-COPY limits (SCALE=10; COMPARE=<git ref> measures that code too)
	$(PY) -m benchmarks.run --scale $(SCALE) $(if $(COMPARE),--compare-with $(COMPARE))

soak: install ## Reliability soak: CYCLES cycles with injected faults, then nothing lost or duplicated (CYCLES=50 SEED=1)
	$(PY) -m soak --cycles $(CYCLES) --seed $(SEED)

airflow: install ## Airflow on localhost:8080 running the DAG against the local stack, totesys changing live (Ctrl-C stops)
	$(PY) -m devstack airflow

browser-test: install ## The Airflow UI tests in headless Chromium (needs Debian's chromium; CI installs it)
	$(PY) -m pytest -p no:cacheprovider -m browser

screenshots: install ## Screenshots of the Airflow UI into docs/images (headless Chromium against `make airflow`)
	SCREENSHOTS_DIR=docs/images $(PY) -m pytest -p no:cacheprovider tests/docs/test_screenshots.py

clean: ## Remove the venv, caches and local stack state
	-$(PY) -m devstack down 2>/dev/null
	rm -rf $(VENV) $(COMPAT) .local .pytest_cache .mypy_cache .ruff_cache
