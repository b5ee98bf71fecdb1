# headrace: every entry point. `make demo` runs the pipeline, `make test` runs the whole suite.
# Both create the virtualenv from the pinned lock first; nothing else needs installing by hand.

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
UV_VERSION := 0.13.8
# torch==2.13.0+cpu comes from a wheel directory when PIP_FIND_LINKS names one (as on the
# project's machines), otherwise from PyTorch's CPU index.
TORCH_SOURCE := $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
STAMP := $(VENV)/.installed

.PHONY: help prereqs venv test lint browser demo up down status lock bench clean package deploy audit new-pipeline

help:
	@echo "make demo    run the pipeline through the local Airflow stack and print a summary"
	@echo "make test    run the whole test suite (lint, unit, DAG integrity, end-to-end)"
	@echo "make up      start the local Airflow stack on 127.0.0.1:8080;  make down  stops it"
	@echo "make bench   run the benchmarks under bench/"
	@echo "make lock    re-resolve requirements-dev.txt from requirements-dev.in"
	@echo "make new-pipeline NAME=x   scaffold the dataset spec (and rules) of a new pipeline"
	@echo "make package build/mwaa/: the S3 layout MWAA and the jobs read;  make deploy uploads it"
	@echo "make audit   pip-audit of requirements.txt (says 'not audited' when offline)"

prereqs:
	@PYTHON=$(PYTHON) scripts/check_prereqs.sh

# The stamp depends on the lock: editing requirements-dev.txt re-syncs the environment.
$(STAMP): requirements-dev.txt
	@PYTHON=$(PYTHON) scripts/check_prereqs.sh
	@if [ ! -x $(VPY) ] || ! $(VPY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); fi
	$(VPY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync --python $(VPY) $(TORCH_SOURCE) requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

browser:
	@scripts/install_browser.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) lint browser
	$(VPY) -m pytest

demo: $(STAMP)
	$(VPY) scripts/demo.py

up: $(STAMP)
	$(VPY) scripts/airflow_stack.py up

down:
	@if [ -x $(VPY) ]; then $(VPY) scripts/airflow_stack.py down; else $(PYTHON) scripts/airflow_stack.py down; fi

status: $(STAMP)
	$(VPY) scripts/airflow_stack.py status

bench: $(STAMP)
	@for script in bench/*.py; do echo "== $$script"; $(VPY) $$script || exit 1; done

# Re-resolve the lock. --exclude-newer keeps the resolution to what existed when Airflow 3.0.6
# (the MWAA version) was current, so transitive pins match that release's ecosystem.
lock: $(STAMP)
	$(VENV)/bin/uv pip compile requirements-dev.in --python-version 3.11 $(TORCH_SOURCE) \
		--exclude-newer 2025-09-15 --exclude-newer-package torch=2026-12-01 \
		--custom-compile-command "make lock" -o requirements-dev.txt

# --- owned by the pipeline-factory work (issue 7) ---
new-pipeline: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make new-pipeline NAME=<dataset>"; exit 2; }
	$(VPY) scripts/new_pipeline.py "$(NAME)"

# --- owned by the MWAA packaging work (issue 8) ---
# The package is only good if it imports as MWAA will import it: the parity check gates it.
package: $(STAMP)
	$(VPY) scripts/package.py --out build/mwaa
	$(VPY) scripts/mwaa_parity_check.py --package build/mwaa

deploy: package
	$(VPY) scripts/deploy.py --package build/mwaa $(if $(DRY_RUN),--dry-run)

audit: $(STAMP)
	$(VPY) scripts/pip_audit.py requirements.txt

clean: down
	rm -rf .local $(VENV)
