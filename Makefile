# Two commands matter: `make serve` and `make test`. Both work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export NOCTIS_TEST_PG_URL ?= postgresql://postgres@127.0.0.1:5432/noctis_test

.PHONY: serve test venv deps lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## Start the server on the embedded default: SQLite under ./data, HTTP 8042, DIMSE 4242.
serve: $(STAMP)
	$(BIN)/noctis-pacs serve

## Install test-time system tools (dcmtk, PostgreSQL check) then run the whole suite.
deps:
	bash scripts/setup-test-deps.sh

# Integration tests share two cores with real servers; a test that fails on a timing
# hiccup is re-run once and reported as rerun (R) in the summary, never hidden.
test: $(STAMP) deps
	$(BIN)/pytest -n 2 -q --reruns 1 --reruns-delay 1

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	bash bench/run-all.sh

clean:
	rm -rf $(VENV) data .pytest_cache
