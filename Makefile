# Two commands do all the set-up on a fresh machine (README.md):
#   make run   - create .venv if missing, install the project, run the main job
#   make test  - the same set-up, then the whole test suite (slow tests included)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# the serving side alone (pip install .[serve]): its own venv, where tests check a bundle decides without torch/ray
SERVE_VENV  ?= .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.installed

.PHONY: run test install lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first, pinned to the CPU build the package index offers here: otherwise ray/pip may pull a CUDA build.
TORCH  ?= torch==2.13.0

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(SERVE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SERVE_VENV)/bin/python -m pip install --quiet -e ".[serve]"
	touch $(SERVE_STAMP)

# the dashboard's browser test drives Debian's chromium (Playwright with executable_path: no browser download)
CHROMIUM ?= /usr/bin/chromium

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
	else echo "the dashboard test needs Debian's chromium: sudo apt-get install chromium"; exit 1; fi

install: $(STAMP) $(SERVE_STAMP) $(CHROMIUM)

run: install
	$(PY) -m experiments.simulate

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest

bench: install
	$(PY) -m experiments.bench

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) $(SERVE_VENV) outputs multirun .pytest_cache .ruff_cache .hypothesis
