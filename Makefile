# Two commands matter: `make serve` and `make test`. Both work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := noctis_pacs dimse dicomweb storage
# One throw-away database per checkout (noctis_test_<folder>): `make test` drops and
# re-creates it, so two checkouts testing on one server never drop each other's.
TEST_DB := noctis_test_$(subst -,_,$(subst .,_,$(notdir $(CURDIR))))
export NOCTIS_TEST_PG_URL ?= postgresql://postgres@127.0.0.1:5432/$(TEST_DB)
# Whole-suite runs of several checkouts on one machine take turns: the suite's timing
# tolerances assume its two workers have the two cores (uncontended in CI).
TEST_LOCK ?= /tmp/noctis-make-test.lock

.PHONY: bytecode serve test test-fast test-stock-dimse check venv deps lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	$(MAKE) --no-print-directory bytecode
	touch $(STAMP)

## The project's bytecode, as an installed wheel has it: an editable checkout run with
## PYTHONDONTWRITEBYTECODE=1 otherwise compiles ~130 modules at every start (0.4 s idle,
## seconds under load; docs/reliability.md, restart to serving). Stale files are ignored.
bytecode:
	$(BIN)/python -m compileall -q $(PACKAGES)

venv: $(STAMP)

## Start the server on the embedded default: SQLite under ./data, HTTP 8042, DIMSE 4242.
serve: $(STAMP)
	$(BIN)/noctis-pacs serve

## Install test-time system tools (dcmtk, PostgreSQL check) then run the whole suite.
deps:
	bash scripts/setup-test-deps.sh

# The whole check, as CI runs it (.ci/run): lint and types first (seconds, fail fast),
# then every test. Integration tests share two cores with real servers; a test that
# fails on a timing hiccup is re-run once and reported as rerun (R), never hidden.
test: $(STAMP)
	$(MAKE) --no-print-directory check
	$(MAKE) --no-print-directory deps
	$(MAKE) --no-print-directory bytecode
	flock $(TEST_LOCK) $(BIN)/pytest -n 2 -q --reruns 1 --reruns-delay 1 -rR
	flock $(TEST_LOCK) $(MAKE) --no-print-directory test-stock-dimse

## The DIMSE wire tests again on stock pynetdicom (dimse.fast_path off: every patch of
## dimse/fastpath/ out), so the stock path stays correct; SQLite only (the fast path
## does not reach the index).
STOCK_DIMSE_TESTS := tests/test_dimse_store.py tests/test_dimse_find.py \
	tests/test_dimse_retrieve.py tests/test_dimse_access.py tests/test_dimse_workers.py \
	tests/test_dimse_fastpath.py tests/test_workflow_mwl.py tests/test_workflow_mpps.py
test-stock-dimse: $(STAMP)
	NOCTIS_DIMSE_FAST_PATH=0 $(BIN)/pytest -n 2 -q --reruns 1 --reruns-delay 1 -rR \
		-m "not postgres" $(STOCK_DIMSE_TESTS)

## The edit-test loop: no PostgreSQL, no dcmtk (tests marked `postgres` or `dcmtk` are
## deselected; one that reaches either without its marker fails). No lint, no mypy.
test-fast: $(STAMP)
	$(MAKE) --no-print-directory bytecode
	NOCTIS_TEST_FAST=1 $(BIN)/pytest -n 2 -q --reruns 1 --reruns-delay 1 -rR -m "not postgres and not dcmtk"

check: lint typecheck

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict

bench: $(STAMP)
	bash bench/run-all.sh

clean:
	rm -rf $(VENV) data .pytest_cache
