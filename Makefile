# Set-up and entry points. Everything installs into .venv; a torch already in .venv (for
# example a CUDA build) is kept. Override TORCH to choose another build.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install autoattack run test test-fast docs serve-docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The optional AutoAttack extra (experiments/measurement/autoattack.py). torchattacks lists torchvision,
# requests and a torch >= 1.7 as dependencies, which would pull a CUDA torch; its attacks
# import none of them (tests/test_robustness.py checks), hence --no-deps.
AUTOATTACK_STAMP := $(VENV)/.autoattack
$(AUTOATTACK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps torchattacks==3.5.1
	touch $(AUTOATTACK_STAMP)

autoattack: $(AUTOATTACK_STAMP)

run: install
	$(BIN)/clbounds verify --preset quick

test: install autoattack
	$(BIN)/python -m pytest
	$(MAKE) docs

# The documentation site (mkdocs.yml): strict, so a broken link, a missing page or a public
# function without a docstring fails `make test`. The API and CLI references are generated.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet --site-dir site

serve-docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve --strict

test-fast: install autoattack
	$(BIN)/python -m pytest -m "not slow"

# The benchmarks' peer libraries go into .venv here only. None of them changes torch:
# torchattacks lists torchvision but never imports it, hence --no-deps.
# lightly (the fair peer of info_nce) declares torchvision, which would pull a CUDA torch; its
# loss path needs none of it (benchmarks/bench_info_nce_lightly.py), hence --no-deps.
# The last part, the measure-scaling run (benchmarks/measure_scaling.py), takes about an hour
# on two cores; `python -m benchmarks.run --no-measure-scaling` quotes the stored one instead.
bench: install autoattack
	$(BIN)/python -m pip install --quiet pytorch-metric-learning PyHessian
	$(BIN)/python -m pip install --quiet --no-deps lightly==1.6.0
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) runs site .pytest_cache .hypothesis
