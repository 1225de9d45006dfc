# Patchbay: `make run` serves the demo portal; `make test` runs the whole suite against
# the real services. Both do every set-up step themselves on a fresh machine.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

PG_HOST ?= 127.0.0.1
PG_PORT ?= 5432
REDIS_URL_TEST ?= redis://127.0.0.1:6379/14
TEST_DATABASE_URL ?= postgres://postgres@$(PG_HOST):$(PG_PORT)/patchbay

.PHONY: run test lint venv services chromium clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Patchbay needs Python 3.11, found " + sys.version.split()[0]' \
		|| { echo "error: set PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing Python packages into $(VENV)"
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

run: venv
	@bash scripts/run-demo.sh

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "==> installing Debian's chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| { echo "error: chromium is missing and could not be installed; run 'apt-get install chromium' as root"; exit 1; }; }

services:
	@bash scripts/ensure-services.sh

lint: venv
	@echo "==> ruff check and ruff format --check"
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check . > /dev/null || { $(VENV)/bin/ruff format --check .; echo "error: run '$(VENV)/bin/ruff format .'"; exit 1; }

test: venv chromium services lint
	@echo "==> pytest against PostgreSQL ($(TEST_DATABASE_URL)) and Redis"
	@DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL_TEST=$(REDIS_URL_TEST) \
		$(VENV)/bin/pytest -p no:cacheprovider -q --durations=10 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var *.egg-info
