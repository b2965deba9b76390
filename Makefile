VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.statemix-installed

.PHONY: setup test test-all reproduce mlflow lock clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip<26.2"
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The fast tier skips the tests marked slow (whole-pipeline runs, servers, Slurm); test-all runs everything (CI).
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

reproduce: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH snakemake

# Rebuild the MLflow store (mlflow.db) from committed result folders, idempotently; then `mlflow ui`.
GRID ?= paper
mlflow: $(STAMP)
	$(PY) -m statemix.track import results/$(GRID)

# Bring dvc.lock (and reports/cpu) up to date with the working tree: dvc reruns the stages whose code or params
# changed (Snakemake reruns only the affected jobs inside them) and rewrites dvc.lock. Commit both afterwards.
lock: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH dvc repro
	PATH=$(abspath $(VENV))/bin:$$PATH dvc status

clean-venv:
	rm -rf $(VENV)
