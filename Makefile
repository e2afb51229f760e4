# Two commands do all the set-up on a fresh machine (README.md):
#   make run   - create .venv if missing, install the project, run the main job
#   make test  - the same set-up, then the whole test suite (slow tests included)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

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

install: $(STAMP)

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
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache .hypothesis
