# `make demo` and `make test` each create .venv when it is missing, install, and run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-gpu bench install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m dropreg.demo

test: $(STAMP)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

test-gpu: $(STAMP)
	$(PY) -m pytest -m gpu

bench: $(STAMP)
	$(PY) -m dropreg.bench

clean:
	rm -rf results/demo outputs
