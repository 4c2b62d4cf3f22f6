# `make demo` and `make test` each create .venv when it is missing, install, and run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo report test test-gpu gpu-check bench install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

# the test extra (pytest, snakefmt) on top
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

install: $(STAMP)

CORES ?= $(shell nproc)

# every study in miniature on the embedded mnist5k, through Snakemake; prints the Table 9 reproduction
demo: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --config preset=demo
	@cat figures/demo/table9/table9.md

test: $(TEST_STAMP)
	$(PY) -m pytest

test-gpu: $(TEST_STAMP)
	$(PY) -m pytest -m gpu

# on a machine with a CUDA GPU: the CUDA path's own acceptance (graph vs eager, resume, kernels,
# benchmark, pytest -m gpu) into gpu-check/summary.json; exit 0 when every check passed
gpu-check: $(TEST_STAMP)
	$(PY) -m dropreg.gpu_check --out gpu-check

bench: $(STAMP)
	$(PY) -m dropreg.bench

report: $(STAMP)
	$(VENV)/bin/snakemake --report report.html --config preset=demo

clean:
	rm -rf results/demo figures/demo logs/demo outputs report.html
