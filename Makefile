# The README's commands. Each sets up .venv by itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

.PHONY: venv demo test bench clean

venv: $(STAMP)

# torch first (the CPU wheel on disk), then torch-cluster, which compiles against
# the installed torch and so needs --no-build-isolation; ninja lets it use every core.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel ninja
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	MAX_JOBS=$$(nproc) $(BIN)/pip install -q --no-build-isolation torch-cluster
	$(BIN)/pip install -q -e '.[test,dft]'
	touch $(STAMP)

demo: venv
	$(BIN)/python examples/demo.py

test: venv
	$(BIN)/python -m pytest -q tests

bench: venv
	$(BIN)/gdlphys bench

clean:
	rm -rf $(VENV) build *.egg-info
