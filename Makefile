# DoReFa-HW: one entry point for setting up, the main job and the tests.
#   make demo   set up .venv and train on the built-in digits (Table 1 style)
#   make test   set up .venv and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest-xdist worker count; CI machines have 2 cores.
JOBS ?= auto

.PHONY: setup demo test test-all lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml .ci/setup-system
	bash .ci/setup-system
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned, so pip takes the CPU wheel and not a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/dorefa demo

test: setup
	$(BIN)/python -m pytest -n $(JOBS)

# Everything, the long sweeps included.
test-all: setup
	$(BIN)/python -m pytest -n $(JOBS) --run-slow

clean:
	rm -rf $(VENV) build sim_build .pytest_cache
