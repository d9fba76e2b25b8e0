# The two commands a newcomer runs (see README):
#   make train   set up a virtual environment and run the embedded tiny default
#   make test    set up a virtual environment and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch lies on this machine's disk; installing it first keeps pip from pulling a
# multi-GB CUDA build. GPU users: install your own torch first, then `pip install -e .`.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup train test lint format bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,trl]"
	touch $@

setup: $(VENV)/.installed

train: setup
	$(VENV)/bin/mgs train

test: setup
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

format: setup
	$(VENV)/bin/ruff format src tests benchmarks examples
	$(VENV)/bin/ruff check --fix src tests benchmarks examples

bench: setup
	$(PY) benchmarks/surgery.py
	$(PY) benchmarks/step.py
	$(PY) benchmarks/rewards.py

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
