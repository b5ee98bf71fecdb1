# headrace: every entry point. `make demo` runs the pipeline, `make test` runs the whole suite.
# Both create the virtualenv from the pinned lock first; nothing else needs installing by hand.

SHELL := /bin/bash
.DEFAULT_GOAL := help
# Three environments, each from its own pinned lock under envs/ (DESIGN.md "Environments like
# AWS's"): the worker (MWAA 3.3.1 on Python 3.12), Spark (Glue 5.1 on Python 3.11) and training
# (the SageMaker PyTorch container; the torch wheel here is for Python 3.11).
WORKER_PYTHON ?= $(shell scripts/find_python.sh 3.12)
JOB_PYTHON ?= $(shell scripts/find_python.sh 3.11)
VENV := .venv
VPY := $(VENV)/bin/python
SPARK_VENV := .venv-spark
TRAINING_VENV := .venv-training
UV := $(VENV)/bin/uv
UV_VERSION := 0.12.3
MWAA_DIR := infra/mwaa/3.3.1
# torch==2.13.0+cpu comes from a wheel directory when PIP_FIND_LINKS names one (as on the
# project's machines), otherwise from PyTorch's CPU index. scripts/verify_serving_toolkit.py
# (torch_source) installs its side virtualenv by the same rule: change both together.
TORCH_SOURCE := $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
STAMPS := $(VENV)/.installed $(SPARK_VENV)/.installed $(TRAINING_VENV)/.installed
# Every package's bytecode is compiled at install, as pip does and uv does not by default: with
# PYTHONDONTWRITEBYTECODE set (as on the project's machines) nothing would cache it, and every task,
# job and test process would compile its imports from source again. Measured on 2 cores: import
# great_expectations 9.9 s -> 3.6-4.0 s, airflow's models 3.8 s -> 1.9 s, torch 4.1 s -> 1.3 s,
# pyspark with pandas and pyarrow 1.8 s -> 0.4 s; about 50 s more at install.
# Not the packages' own test suites (pandas/tests, scipy's, sympy's, ...): nothing imports them,
# and a whole fresh-clone run of `make test` read none of their files (2026-12-07: 230 of the
# three environments' 701 MiB of bytecode; `make envs bytecode` from a fresh clone 84.6-90.8 s ->
# 76.4-78.1 s, docs/benchmarks.md). Files that do not compile on the environment's Python
# (torch's helpers written for 3.12) stay uncompiled, as uv's --compile-bytecode leaves them, so
# compileall's status is ignored.
SYNC := $(UV) pip sync
COMPILE_PACKAGES = $(1) -W ignore -m compileall -q -j0 -x '/site-packages/.+/tests?/' \
	"$$($(1) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" > /dev/null || true

.PHONY: help prereqs venv envs envs-parallel bytecode test test-fast test-jobs test-worker test-e2e test-e2e-days lint browser demo up down status lock bench clean package deploy audit new-pipeline

help:
	@echo "make demo    run the pipeline through the local Airflow stack and print a summary"
	@echo "make test    run the whole test suite (lint, unit, DAG integrity, end-to-end)"
	@echo "make test-fast   the inner loop: unit, DAG integrity and request-builder tests (minutes)"
	@echo "make up      start the local Airflow stack on 127.0.0.1:8080 (HEADRACE_API_PORT in .env);  make down  stops it"
	@echo "make bench   run the benchmarks under bench/"
	@echo "make lock    re-resolve the three environment locks under envs/"
	@echo "make new-pipeline NAME=x   scaffold the dataset spec (and rules) of a new pipeline"
	@echo "make package build/mwaa/: the S3 layout MWAA and the jobs read;  make deploy uploads it"
	@echo "make audit   pip-audit of requirements.txt (says 'not audited' when offline)"

prereqs:
	@WORKER_PYTHON=$(WORKER_PYTHON) JOB_PYTHON=$(JOB_PYTHON) scripts/check_prereqs.sh

# Each stamp depends on its lock: editing a lock re-syncs that environment.
$(VENV)/.installed: envs/worker.txt
	@WORKER_PYTHON=$(WORKER_PYTHON) JOB_PYTHON=$(JOB_PYTHON) scripts/check_prereqs.sh
	@if [ ! -x $(VPY) ] || ! $(VPY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then \
		rm -rf $(VENV) && $(WORKER_PYTHON) -m venv $(VENV); fi
	$(VPY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(SYNC) --python $(VPY) envs/worker.txt
	@$(call COMPILE_PACKAGES,$(VPY))
	@touch $@

# The jobs' environments get no pip of their own (uv installs into them, and its sync would only
# remove pip again): ensurepip took 3.7 s of each one's creation.
$(SPARK_VENV)/.installed: envs/spark.txt $(VENV)/.installed
	@if [ ! -x $(SPARK_VENV)/bin/python ]; then $(JOB_PYTHON) -m venv --without-pip $(SPARK_VENV); fi
	$(SYNC) --python $(SPARK_VENV)/bin/python envs/spark.txt
	@$(call COMPILE_PACKAGES,$(SPARK_VENV)/bin/python)
	@touch $@

$(TRAINING_VENV)/.installed: envs/training.txt $(VENV)/.installed
	@if [ ! -x $(TRAINING_VENV)/bin/python ]; then $(JOB_PYTHON) -m venv --without-pip $(TRAINING_VENV); fi
	$(SYNC) --python $(TRAINING_VENV)/bin/python $(TORCH_SOURCE) envs/training.txt
	@$(call COMPILE_PACKAGES,$(TRAINING_VENV)/bin/python)
	@touch $@

# The class archive local Spark drivers start with (spark_jobs/spark_session.py, CLASS_ARCHIVE_NAME).
SPARK_CLASS_ARCHIVE := $(SPARK_VENV)/headrace-spark-driver.jsa
$(SPARK_CLASS_ARCHIVE): $(SPARK_VENV)/.installed scripts/spark_class_archive.py
	$(SPARK_VENV)/bin/python scripts/spark_class_archive.py

venv: $(VENV)/.installed
# Two at a time: once the worker's environment (which holds uv) is there, the Spark and training
# environments install side by side, and the class archive (its JVM keeps about 1.4 cores busy) is
# built while the training one still compiles. From a fresh clone to the end of lint, with the job
# environments pip-less as above: 99.3 s and 111.3 s, against 109.8 s and 114.9 s before both.
envs:
	@$(MAKE) --no-print-directory -O -j2 envs-parallel
envs-parallel: $(STAMPS) $(SPARK_CLASS_ARCHIVE)
	@:

# The repository's own modules as bytecode, for the worker's Python and the jobs' (3.12 and 3.11
# keep separate files). With PYTHONDONTWRITEBYTECODE set (as on the project's machines) nothing
# else writes it, and every task, job and dag-processor parse compiled include/ and plugins/ from
# source: half of a DAG file's parse time (bench/dag_parse_times.py: 118-150 ms -> 37-73 ms a file).
# Cheap to run again (up-to-date files are skipped); a file edited since is compiled in memory on
# import, as before, until the next run.
CODE_DIRS := bench dags include plugins scripts spark_jobs tests training
bytecode: envs
	@$(VPY) -m compileall -q -j0 $(CODE_DIRS) > /dev/null
	@$(SPARK_VENV)/bin/python -m compileall -q -j0 $(CODE_DIRS) > /dev/null

browser:
	@scripts/install_browser.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The suite runs in the environment of the code under test: spark_jobs/ in Spark's, training/ in
# training's, everything else (DAGs, operators, the stack) in the worker's. Three lanes at a time
# (-O prints each lane's output whole when it ends): the end-to-end tests in two lanes (the
# every-day-once test alone: it is the longest), the worker's other tests, and the jobs' tests
# when the first lane ends. The end-to-end tests spend much of their time waiting on a scheduler
# loop or a job: with two lanes, vmstat over a run showed the 2 cores 25 % idle while the tests
# ran (2026-12-05). Not more: four at a time (the worker's tests and the jobs' each in two lanes)
# left the cores under 1 % idle but took 1,158 s from a fresh clone against 1,073-1,106 s for
# three, every lane slower (the demo test 450 s against 373 s); five made the longest end-to-end
# test 2.4x slower and the demo test ran past its 15-minute limit. Every test runs in exactly one
# lane: the --ignore lists and the files named below are the only things that divide them
# (tests/test_make_test_lanes.py checks it).
# The environments first, on their own: `envs` builds them in a make of its own, so with `make -j`
# lint must not start on the worker's environment beside it.
test: envs
	@$(MAKE) --no-print-directory lint browser bytecode
	@$(MAKE) --no-print-directory -O -j3 test-e2e-days test-worker test-e2e test-jobs

# Each lane ends with its slowest tests, where to look when the suite gets slower.
DURATIONS := --durations=15

# The tests' days are a few thousand rows: the local Spark jobs they start take the quick JIT
# (spark_jobs/spark_session.py). Not the Spark lane: its one session runs many jobs.
QUICK_JIT := HEADRACE_SPARK_QUICK_JIT=1

# The end-to-end test that drops seven days on a stack of its own (the longest test).
EVERY_DAY_ONCE := tests/e2e/test_every_day_once.py

# DAG tests of the worker's environment that run in the end-to-end lane, not the worker's, to even
# the lanes out. In a fresh-clone run (2026-12-07) the worker's lane ended 176 s after this one; the
# scoring and monitoring module takes 69 s alone. With it moved, the worker's lane still ended last,
# 66 s after this one (904 s against 838 s, `319957f`); the reconciliation DAG's test takes 24-46 s
# in the suite.
WORKER_DAGS_IN_E2E := tests/include/test_scoring_monitoring.py tests/include/test_reconciliation.py

# The other tests that start an Airflow stack (tests/e2e), and the DAG tests above.
# No browser prerequisite here: a phony one's recipe would take one of test's job slots and
# make would start test-jobs before this lane (seen); test installs the browser first.
test-e2e: envs
	$(QUICK_JIT) $(VPY) -m pytest $(DURATIONS) tests/e2e $(WORKER_DAGS_IN_E2E) --ignore=$(EVERY_DAY_ONCE)

test-e2e-days: envs
	$(QUICK_JIT) $(VPY) -m pytest $(DURATIONS) $(EVERY_DAY_ONCE)

# The worker environment's other tests, the AWS contract suite (DAGs on moto) included: it ran in
# the end-to-end lane until that lane was the critical path by 430 s (1,549 s against 1,121 s for
# this lane and the jobs' tests together); the contract suite takes 172 s alone.
test-worker: envs
	$(QUICK_JIT) $(VPY) -m pytest $(DURATIONS) --ignore=tests/spark_jobs --ignore=tests/training --ignore=tests/e2e \
		$(addprefix --ignore=,$(WORKER_DAGS_IN_E2E))

# The inner loop: the worker environment's tests but the end-to-end and slow ones (markers e2e and
# slow, pyproject.toml) and the contract suite (it runs DAGs on moto). Some start a short local job
# or a moto server. One process waited on those with a core idle: pytest-xdist runs a worker per
# core (at most four), each taking whole files, so a module's fixtures are built once. On 2 cores
# on a slow day (2026-12-06): 128 s and 143 s against 320 s and 340 s in one process.
test-fast: $(VENV)/.installed
	$(VPY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile -m "not e2e and not slow" \
		--ignore=tests/spark_jobs --ignore=tests/training --ignore=tests/contract

test-jobs: envs
	$(SPARK_VENV)/bin/python -m pytest $(DURATIONS) tests/spark_jobs
	$(TRAINING_VENV)/bin/python -m pytest $(DURATIONS) tests/training

demo: envs bytecode
	$(VPY) scripts/demo.py

up: envs bytecode
	$(VPY) scripts/airflow_stack.py up

down:
	@if [ -x $(VPY) ]; then $(VPY) scripts/airflow_stack.py down; else $(PYTHON) scripts/airflow_stack.py down; fi

status: envs
	$(VPY) scripts/airflow_stack.py status

# Each benchmark in the environment that has its libraries (docs/benchmarks.md).
# bench/data_quality.py also needs duckdb, which no lock has: docs/benchmarks.md says how to run it.
bench: envs
	$(VPY) bench/dag_parse_times.py
	$(VPY) bench/job_startup.py
	$(VPY) bench/drift.py
	$(VPY) bench/monitoring_memory.py
	$(VPY) bench/worker_memory.py
	$(VPY) bench/task_handoff.py
	$(SPARK_VENV)/bin/python bench/ingestion.py
	$(TRAINING_VENV)/bin/python bench/scoring.py
	$(TRAINING_VENV)/bin/python bench/training.py

# Re-resolve the three locks. The worker's resolves under MWAA's constraints (less the pins that
# envs/worker-overrides.txt overrides, each explained there) with requirements.txt beside
# envs/worker.in (without its --constraint URL, which names the same file as $(MWAA_DIR)).
lock: $(VENV)/.installed
	@mkdir -p .local/lock
	grep -v '^--constraint' requirements.txt > .local/lock/requirements-mwaa.txt
	grep -v -f <(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/^\1==/p' envs/worker-overrides.txt) \
		$(MWAA_DIR)/airflow_constraints.txt > .local/lock/mwaa-constraints.txt
	$(UV) pip compile envs/worker.in .local/lock/requirements-mwaa.txt --python-version 3.12 \
		--constraint .local/lock/mwaa-constraints.txt --override envs/worker-overrides.txt \
		--custom-compile-command "make lock" -o envs/worker.txt
	$(UV) pip compile envs/spark.in --python-version 3.11 \
		--custom-compile-command "make lock" -o envs/spark.txt
	$(UV) pip compile envs/training.in --python-version 3.11 $(TORCH_SOURCE) \
		--custom-compile-command "make lock" -o envs/training.txt

# --- owned by the pipeline-factory work (issue 7) ---
new-pipeline: envs
	@test -n "$(NAME)" || { echo "usage: make new-pipeline NAME=<dataset>"; exit 2; }
	$(VPY) scripts/new_pipeline.py "$(NAME)"

# --- owned by the MWAA packaging work (issue 8) ---
# The package is only good if it imports as MWAA will import it: the parity check gates it.
package: envs
	$(VPY) scripts/package.py --out build/mwaa
	$(VPY) scripts/mwaa_parity_check.py --package build/mwaa

deploy: package
	$(VPY) scripts/deploy.py --package build/mwaa $(if $(DRY_RUN),--dry-run)

audit: envs
	$(VPY) scripts/pip_audit.py requirements.txt

clean: down
	rm -rf .local $(VENV) $(SPARK_VENV) $(TRAINING_VENV)
