# sparsejax: set-up, main job, tests. Everything installs into ./.venv from the package index
# (PyPI and this machine's local wheels); versions are pinned by constraints.txt.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
BASE := $(VENV)/.installed-base
DEV := $(VENV)/.installed-dev

.PHONY: setup demo test test-fast lint clean fashion-mnist bench-setup

$(BASE): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "sparsejax needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	@touch $@

$(DEV): $(BASE)
	$(PIP) -e '.[port,dev]'
	@touch $@

setup: $(BASE)

# The main job: train the embedded default (LeNet-5 on scikit-learn's digits, real offline
# data), evaluate it and report. Results go to runs/demo/.
demo: $(BASE)
	$(BIN)/sparsejax demo --out runs/demo

# The whole suite, slow real-model tests included (they skip with a reason without ../shared).
test: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-fast: $(DEV)
	$(BIN)/python -m pytest -m "not slow"

lint: $(DEV)
	$(BIN)/ruff check .

# Peers for benchmarks/ (not needed by the library or the tests). torchattacks is installed
# without its dependencies: they would pull a torchvision that does not import beside the
# local torch 2.13.0, and torchattacks' SparseFool does not need it.
bench-setup: $(DEV)
	$(PIP) scipy requests
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps torchattacks==3.5.1

# Optional real data: Debian's Fashion-MNIST (train + test IDX) under /usr/share/datasets.
fashion-mnist:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then echo "fashion-mnist: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  timeout 300 apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
	  && echo "fashion-mnist: installed" || echo "fashion-mnist: could not install (tests skip)"; \
	else echo "fashion-mnist: not installed and no root apt-get (tests skip)"; fi

clean:
	rm -rf $(VENV) runs .pytest_cache
