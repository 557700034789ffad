# Set-up and entry points. Everything installs into .venv; a torch already in .venv (for
# example a CUDA build) is kept. Override TORCH to choose another build.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/clbounds verify --preset quick

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

# The benchmarks' peer libraries go into .venv here only. None of them changes torch:
# torchattacks lists torchvision but never imports it, hence --no-deps.
bench: install
	$(BIN)/python -m pip install --quiet pytorch-metric-learning PyHessian
	$(BIN)/python -m pip install --quiet --no-deps torchattacks
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
