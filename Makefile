# labops.itsm — the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/$(VENV)/collections

.PHONY: venv demo test sanity units integration e2e lint changelog-lint bench bench-latency bench-ingest bench-ledger clean

venv:
	@LABOPS_WITH_POSTGRES=$${LABOPS_WITH_POSTGRES:-1} bash scripts/bootstrap.sh

demo: venv
	@$(PY) scripts/demo.py $(DEMO_ARGS)

test: venv
	@bash scripts/test.sh

sanity: venv
	@bash scripts/sanity.sh $(VENV)

units: venv
	@bash scripts/run_pytest.sh $(PY) tests/unit

integration: venv
	@bash scripts/run_pytest.sh $(PY) tests/integration

e2e: venv
	@bash scripts/run_pytest.sh $(PY) tests/e2e

lint: venv
	@$(VENV)/bin/ansible-lint --profile production

bench: bench-latency bench-ingest bench-ledger

bench-latency: venv
	@$(PY) bench/latency.py

bench-ingest: venv
	@$(PY) bench/ingest.py

bench-ledger: venv
	@$(PY) bench/ledger.py

clean:
	rm -rf .build tests/output .demo bench/results
