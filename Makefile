# Two commands on a fresh machine:
#   make book   set everything up and build the HTML book into _build/html (Korean: _build/html/ko)
#   make test   set everything up and run every test: pytest, nbval over every notebook, the book build
# And for authors:
#   make execute            re-run every notebook in place to refresh its stored outputs
#   make execute NB=book/03_lstm.ipynb   re-run one notebook
#   make translations       refresh the Korean edition's catalogues after editing the English
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# The first of python3.11, 3.12, 3.13, 3.14 on the PATH (the supported versions; see README.md).
# Override with PYTHON=/path/to/python3.X.
PYTHON ?= $(firstword $(foreach v,11 12 13 14,$(shell command -v python3.$(v) 2>/dev/null)))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))
NB ?= $(NOTEBOOKS)
# The venv's own kernel spec comes first, so notebooks never run in another Python by accident.
export JUPYTER_PATH := $(CURDIR)/$(VENV)/share/jupyter
# Hash randomisation off, so any set or dict order a notebook prints repeats.
export PYTHONHASHSEED := 0
# One intra-op thread when executing and when comparing notebooks (tiny models run faster on one
# thread). What nbval compares does not depend on it: README.md, "What the tests check".
export OMP_NUM_THREADS := 1
# The claims step runs every notebook again at this thread count, with the default arithmetic.
CLAIMS_THREADS ?= 2
ARCH := $(shell uname -m)

.PHONY: help setup lint test test-unit test-notebooks test-claims test-latest test-site book \
	book-strict translations execute clean

help:
	@echo "make book     build the HTML book, English and Korean (sets up .venv first)"
	@echo "make translations  refresh locales/ko's catalogues after editing the English"
	@echo "make test     run ruff, pytest, nbval over every notebook, every notebook's asserts"
	@echo "              at $(CLAIMS_THREADS) threads, the strict book build and the site in a browser"
	@echo "make test-latest  every notebook as on Colab: newest torch, numpy, matplotlib (network)"
	@echo "make lint     ruff check and ruff format --check (notebooks at 80 columns)"
	@echo "make execute  re-run notebooks in place (NB=book/xx.ipynb for one)"

$(BIN)/python:
	@if [ -z "$(PYTHON)" ]; then \
		echo "make: no python3.11, python3.12, python3.13 or python3.14 on the PATH;" \
			"install one, or run make PYTHON=/path/to/python3.X" >&2; \
		exit 1; \
	fi
	@echo "make: creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version 2>&1))"
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (book)" >/dev/null
	$(BIN)/python -m pip check
	touch $(STAMP)

setup: $(STAMP)

test: lint test-unit test-notebooks test-claims book-strict test-site

# Code at 100 columns; notebooks at 80, the width the HTML shows without scrolling.
LINT_PATHS := companion tests benchmarks book/scripts book/_ext
lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/ruff check --line-length 80 $(NOTEBOOKS)
	$(BIN)/ruff format --check --line-length 80 $(NOTEBOOKS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/ --ignore=tests/site -q

# The replay: every notebook runs and every compared output must equal the stored one. Only
# outputs that are the same on every x86-64 CPU are compared (README.md); other processors skip it.
# Two notebooks at a time, each in its own worker on one thread (--dist loadscope keeps a
# notebook's cells together and in order), so the 2-core machine replays the book in half the time.
test-notebooks: $(STAMP)
	@if [ "$(ARCH)" != x86_64 ]; then \
		echo "make: exact replay of stored outputs skipped on $(ARCH) (stored on x86-64);" \
			"every assert still runs in test-claims"; \
	else \
		$(BIN)/python -m pytest --nbval --nbval-current-env --nbval-cell-timeout=300 \
			--nbval-sanitize-with tests/nbval_sanitize.cfg -n 2 --dist loadscope -q book/; \
	fi

# The claims, anywhere: every notebook again, at $(CLAIMS_THREADS) threads and whatever arithmetic
# this CPU picks by default; only errors count, so every assert of every chapter must hold.
test-claims: $(STAMP)
	OMP_NUM_THREADS=$(CLAIMS_THREADS) $(BIN)/python -m pytest --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=300 -q book/

# The reader's environment (needs the network; not part of make test): a fresh venv with the newest
# torch, numpy and matplotlib and no pins, companion installed by each chapter's own setup cell
# from this checkout's HEAD (commit first) with google.colab faked, every notebook run from an
# empty folder, the time per chapter printed. PIP_CONFIG_FILE=/dev/null: no local caps or indexes.
LATEST := .venv-latest
LATEST_PYTHON ?= $(PYTHON)
test-latest:
	rm -rf $(LATEST)
	$(LATEST_PYTHON) -m venv $(LATEST)
	PIP_CONFIG_FILE=/dev/null $(LATEST)/bin/python -m pip install --quiet --upgrade pip
	PIP_CONFIG_FILE=/dev/null $(LATEST)/bin/python -m pip install --quiet --upgrade \
		torch numpy matplotlib tqdm ipykernel nbclient nbformat setuptools
	$(LATEST)/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(LATEST)/bin/python -c "import sys, torch, numpy, matplotlib; print('test-latest: Python', \
		sys.version.split()[0], '| torch', torch.__version__, '| numpy', numpy.__version__, \
		'| matplotlib', matplotlib.__version__)"
	JUPYTER_PATH=$(CURDIR)/$(LATEST)/share/jupyter OMP_NUM_THREADS=$(CLAIMS_THREADS) \
		PIP_CONFIG_FILE=/dev/null $(LATEST)/bin/python tests/replay/execute.py --colab \
		_build/latest

# English from the CLI; the Korean edition (locales/ko) by book/_ext/editions.py into _build/html/ko.
book: $(STAMP)
	$(BIN)/jupyter-book build --builder html .
	$(BIN)/python book/_ext/editions.py html ko
	@echo "The book is in _build/html/index.html, its Korean edition in _build/html/ko/index.html"

# Strict: both editions, and the catalogues must hold the current English (else: make translations).
book-strict: $(STAMP)
	$(BIN)/jupyter-book build --builder html --all --warningiserror --keep-going .
	$(BIN)/python book/_ext/editions.py html ko --strict
	$(BIN)/python book/_ext/editions.py check

# After editing the English: merge its messages into locales/ko (README.md, "The Korean edition").
translations: $(STAMP)
	$(BIN)/python book/_ext/editions.py update

# Both editions in headless Chromium, with MathJax served by the site itself (the pinned pip package
# django-static-mathjax) and every request that leaves it refused; Chromium (and a Korean font, for
# legible screenshots) from Debian's packages.
CHROMIUM ?= /usr/bin/chromium
export CHROMIUM

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-noto-cjk >/dev/null

test-site: $(STAMP) $(CHROMIUM)
	test -f _build/html/ko/index.html || $(MAKE) book
	$(BIN)/python -m pytest tests/site -q

execute: $(STAMP)
	for nb in $(NB); do \
		echo "executing $$nb"; \
		start=$$(date +%s); \
		$(BIN)/jupyter-execute --inplace --kernel_name=python3 --timeout=600 "$$nb"; \
		echo "$$nb: $$(( $$(date +%s) - start )) s"; \
	done

clean:
	rm -rf _build
