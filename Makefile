VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.statemix-installed

.PHONY: setup test reproduce mlflow clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip<26.2"
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

reproduce: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH snakemake

# Rebuild the MLflow store (mlflow.db) from committed result folders, idempotently; then `mlflow ui`.
GRID ?= paper
mlflow: $(STAMP)
	$(PY) -m statemix.track import results/$(GRID)

clean-venv:
	rm -rf $(VENV)
