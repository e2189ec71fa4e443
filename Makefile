# Two entry points a fresh machine needs (see README):
#   make demo   install wirelearn and run it on a bundled capture
#   make test   install everything the tests need and run lint, types and the whole suite
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python

.PHONY: demo test check system-deps install install-dev clean

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.core
install-dev: $(VENV)/.dev

system-deps:
	scripts/install-system-deps

demo: install
	$(VENV)/bin/wirelearn replay fixtures/scenarios/mixed.pcap --labels fixtures/scenarios/mixed.labels.csv --speed 2

test: system-deps install-dev
	PY=$(PY) scripts/check

check: install-dev
	PY=$(PY) scripts/check

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
