# The README's commands. Each sets up .venv by itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

.PHONY: venv demo test bench bench-env clean

venv: $(STAMP)

# torch first (the CPU wheel on disk), then torch-cluster, which compiles against
# the installed torch and so needs --no-build-isolation; ninja lets it use every core.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel ninja
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	MAX_JOBS=$$(nproc) $(BIN)/pip install -q --no-build-isolation torch-cluster
	$(BIN)/pip install -q -e '.[test,dft,openmm]'
	touch $(STAMP)

demo: venv
	$(BIN)/python examples/demo.py

test: venv
	$(BIN)/python -m pytest -q tests

# MACE (which pins its own e3nn) and the peer neighbour lists for `gdlphys bench`, in their own venv: MACE never enters .venv.
BENCH_VENV := .bench/venv
BENCH_STAMP := $(BENCH_VENV)/.installed
MACE_VERSION ?= 0.3.16
BENCH_ARGS ?=

bench-env: $(BENCH_STAMP)

$(BENCH_STAMP):
	test -x $(BENCH_VENV)/bin/python || $(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q torch==$(TORCH_VERSION)
	$(BENCH_VENV)/bin/pip install -q mace-torch==$(MACE_VERSION) vesin matscipy
	touch $(BENCH_STAMP)

# Every benchmark, gdlphys and MACE side by side (about 45 minutes on 2 cores); BENCH_ARGS=--quick for a smoke run.
bench: venv bench-env
	$(BIN)/gdlphys bench all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .bench build *.egg-info
