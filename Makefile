# The two commands: `make report` (the study) and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= quick
STAMP := $(VENV)/.installed

.PHONY: setup data report test bench lab clean

setup: $(STAMP) data

# Reinstall only when the dependency list changes; a second `make setup` takes seconds.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name mnistlab --display-name "Python (mnistlab)"
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/mnistlab fetch

report: setup
	$(BIN)/mnistlab sweep params/$(PROFILE) --out reports/$(PROFILE)
	@echo "report: $(CURDIR)/reports/$(PROFILE)/index.html"

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/epoch_speed.py

lab: setup
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf build .pytest_cache
