# labops.itsm — the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/$(VENV)/collections

.PHONY: venv demo test sanity units integration e2e lint bench bench-latency bench-ingest bench-ledger bench-storm bench-servicenow bench-jira clean docs-rst docs-lint build

venv:
	@bash scripts/bootstrap.sh

demo: venv
	@$(PY) scripts/demo.py $(DEMO_ARGS)

test:
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
	@$(VENV)/bin/ansible-lint --profile production --offline

bench: bench-latency bench-ingest bench-ledger

bench-latency: venv
	@$(PY) bench/latency.py $(BENCH_ARGS)

bench-ingest: venv
	@$(PY) bench/ingest.py $(BENCH_ARGS)

# 1,000 alerts in 50 groups through a real AlertManager, this checkout beside the rulebook before issue 7 (bench/README.md).
bench-storm: venv
	@$(PY) bench/storm.py $(BENCH_ARGS)

# servicenow_incident over 200 incidents against the ServiceNow simulator: s/task and HTTP calls per task (bench/README.md).
bench-servicenow: venv
	@$(PY) bench/servicenow.py $(BENCH_ARGS)

# jira_issue over 200 issues against the Jira simulator: s/task and HTTP calls per task (bench/README.md).
bench-jira: venv
	@$(PY) bench/jira.py $(BENCH_ARGS)

bench-ledger:
	@LABOPS_WITH_POSTGRES=1 bash scripts/bootstrap.sh && $(PY) bench/ledger.py $(BENCH_ARGS)

clean:
	rm -rf .build tests/output .demo bench/results

# The docsite's RST guides are generated from docs/*.md (tests/integration/test_docs.py checks they match).
docs-rst: venv
	@$(PY) docs/docsite/md2rst.py

docs-lint: venv
	@$(VENV)/bin/antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs --validate-collection-refs self .

# The collection tarball (galaxy.yml build_ignore keeps runtime state and the developer tree out).
build: venv
	@mkdir -p .build && $(VENV)/bin/ansible-galaxy collection build --force --output-path .build .
