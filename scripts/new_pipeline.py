"""``make new-pipeline NAME=<dataset>``: scaffold the spec, quality rules and drift thresholds of a
new dataset, from which the DAG factories build its six DAGs.

Writes ``<datasets dir>/<name>.yaml``, ``<name>.quality.yaml`` and ``<name>.monitoring.yaml``
with commented placeholders (an id, a day, an event time, two features and a 0/1 label) that
already pass every validation the pipelines run, so the DAGs appear at once and each file can
then be edited into the real dataset. Refuses a name that is not a lowercase identifier, or one
that already has any of the three files, and writes nothing then. Prints the next steps.

    python scripts/new_pipeline.py benefit_claims [--datasets-dir include/datasets]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DATASETS_DIR = REPO_ROOT / "include" / "datasets"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
# DAG ids are <name>_<stage> and job names carry the name: keep it readable in both.
MAX_NAME_LENGTH = 40
STAGES = ("ingestion", "validation", "training", "model_approval", "scoring", "monitoring")

SPEC_TEMPLATE = """\
# {name}: TODO one or two sentences: what a record is, who produces it, what the label means.
#
# Scaffolded by `make new-pipeline NAME={name}`. Every line below is a placeholder that already
# validates; replace the columns with the real ones (spark_jobs/dataset_spec.py documents every
# key, include/datasets/churn.yaml and benefit_claims.yaml are complete examples).
# The DAG factories build {name}_ingestion, _validation, _training, _model_approval, _scoring and
# _monitoring from this file, {name}.quality.yaml and {name}.monitoring.yaml.
# Bump schema_version whenever a change alters what curated data looks like.
dataset: {name}
schema_version: 1
description: TODO what one row is, and what the label says about it.

# One record per entity per day; the partition column must be part of the key.
primary_key: [record_id, record_date]
# Duplicates of a key are resolved by the latest event time.
event_time: event_ts
# Curated data is partitioned ds=YYYY-MM-DD by this column.
partition_column: record_date
# Files without a date column: uncomment day_from and delete record_date from columns: below;
# the ingest job then gives every row the day of the landing folder it came from (ds=YYYY-MM-DD)
# as record_date. event_time becomes optional: files without a time either can drop the
# event_time line and the event_ts column (a key's duplicates are then settled by a hash of
# their values instead of by the latest time).
# day_from: landing_folder   # default: column (record_date is read from every file)
# 0/1 (or boolean): what the model predicts.
label: label

landing:
  formats: [csv, jsonl]
  encoding: UTF-8
  csv: {{delimiter: ",", quote: '"', escape: '"', header: true}}
  null_tokens: ["NULL", "null"]
  # When a landing day is complete and flows downstream (include/landing.py), one of:
  #   files: N          once N data files have landed (one file per day: 1)
  #   marker: _SUCCESS  once the producer writes this marker after the day's last file
  #   cutoff_hours: H   H hours after the day ends (UTC), with whatever has landed
  # A file landing after that re-ingests the day.
  complete_when: {{files: 1}}   # TODO how your producer delivers a day

columns:
  - name: record_id
    type: string
    nullable: false
    pattern: '^R[0-9]{{9}}$'   # TODO the id's real shape
  - name: record_date
    type: date
    nullable: false
  - name: event_ts
    type: timestamp
    nullable: false
  - name: category          # TODO a real categorical column (allowed fixes its one-hot columns)
    type: string
    nullable: false
    allowed: [a, b, c]
  - name: amount            # TODO a real numeric column
    type: double
    nullable: true
    min: 0
    max: 1000
  # PII: a column with a pii: block is hashed, masked or dropped before curated data, e.g.
  # - name: email
  #   type: string
  #   nullable: true
  #   pii: {{treatment: hash, output: email_sha256, lowercase: true,
  #         detect: '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]*'}}
  - name: label
    type: int
    nullable: false
    allowed: [0, 1]

features:
  # Rows are split by a hash of this key: one entity never straddles train and test.
  split_key: record_id
  split_seed: headrace-{split_name}-split-v1
  split: {{train: 70, validation: 15, test: 15}}
  lookback_days: 1
  numeric: [amount]
  categorical: [category]
  # Categorical features whose groups the model card reports fairness metrics for.
  sensitive_groups: [category]

# Which validated days a training run reads: its day and the days before it (days without a
# committed features partition are left out and named on the model card). One day is rarely
# enough rows for a model; the window's document (every day's manifest digest) is the data version.
training:
  window_days: 28     # 1..366
  split: random       # random: every day's hash split; time: earlier days train, the latest tests

# How big each job of this dataset runs on AWS (the local target runs every job on this machine;
# of this block only the Spark and training runtimes apply there). Every value here is the
# default: a spec without this block runs at exactly these sizes. Checked by
# spark_jobs/dataset_spec.py (instance and worker types against botocore's service models), each
# error naming this file and the field.
# What the defaults are sized for, and the basis; nothing here was measured on AWS:
#   spark    2 x G.1X = the driver plus one executor of 4 vCPU / 16 GB (AWS's worker sizes).
#            Sized for ~1M rows a day, the scale measured here: the ingest job takes 15.5-19.8 s
#            per 1M rows (191 MiB of CSV) on 2 local cores in a warm JVM (bench/ingestion.py,
#            docs/benchmarks.md "Ingestion speed"), i.e. ~31-40 core-seconds per 1M rows; a local
#            job with its JVM start, 41.6 s. More rows: add workers in proportion to
#            rows (an estimate from that local rate: deduplication's shuffle grows faster than
#            linear, so leave headroom), or a bigger type (G.2X: 8 vCPU / 32 GB per worker).
#   quality  Glue Data Quality on 2 G.1X workers (AWS's own default is 5): the smallest Spark
#            run, a driver and one executor, like the Spark jobs. Not measured.
#   training / transform: the training instance follows the deployment's HEADRACE_TRAINING_*
#            settings unless set here (here wins); transform runs on one ml.m5.xlarge (4 vCPU,
#            16 GB). Neither is measured per row count.
#   processing: one ml.m5.xlarge per job. The jobs stream record batches, but the baseline and
#            drift jobs hold the day's keys and scores whole for the join. Not measured on AWS.
capacity:   # TODO size for your rows a day; these are the defaults
  spark:                       # ingest and features (and the Deequ quality job on EMR)
    max_runtime_minutes: 120   # 5..10079; Glue Timeout, EMR Serverless executionTimeoutMinutes
    glue:                      # per run (StartJobRun): the Glue job definition is shared
      worker_type: G.1X        # G.1X, G.2X, G.4X, G.8X (Glue's WorkerType)
      number_of_workers: 2     # >= 2: one worker is the driver
    emr_serverless:            # per run, as Spark properties; null: EMR's defaults, bounded by
      max_executors: null      # the application's maximum capacity
      executor_cores: null     # 1, 2, 4, 8 or 16, with executor_memory_gb
      executor_memory_gb: null # heap; plus 10% overhead it must fit the worker size
    emr_step:                  # the same, for a step on the EMR cluster
      max_executors: null
      executor_cores: null
      executor_memory_gb: null
  quality:
    max_runtime_minutes: 60    # the gate's remote run (Glue Data Quality or the Deequ job)
    glue_data_quality:
      number_of_workers: 2     # G.1X workers, >= 2
  training:                    # training and every tuning trial; null: HEADRACE_TRAINING_*
    instance_type: null        # e.g. ml.g5.xlarge (SageMaker's TrainingInstanceType)
    instance_count: null
    max_runtime_minutes: null  # StoppingCondition; a longer one than the spot wait doubles it
  transform:                   # batch scoring
    instance_type: ml.m5.xlarge  # SageMaker's TransformInstanceType
    instance_count: 1
    # The operator stops the job after this (SageMaker has no limit of its own for a transform);
    # null: HEADRACE_TRAINING_MAX_WAIT_S.
    max_runtime_minutes: null
  processing:                  # each processing job: baseline, drift check, scoring input,
    instance_type: ml.m5.xlarge  # predictions files (SageMaker's ProcessingInstanceType)
    instance_count: 1
    max_runtime_minutes: 60    # StoppingCondition.MaxRuntimeInSeconds

# What one job, and one run of a stage DAG, of this dataset may cost at worst on AWS, in US
# dollars. Before a job starts, its worst case is computed from its request (instance price x
# count x maximum runtime, Glue DPU-hours, EMR Serverless capacity-hours; include/cost.py, prices
# in include/aws_prices.json) and logged; a job over its budget is refused, naming the job, its
# estimate and the budget. The defaults fit a run at the default sizes: the dearest is training,
# whose tuning job (4 trials on ml.g5.xlarge spot) costs at most $11.26 at us-east-1 prices.
cost:
  budget_per_run_usd: 50       # one run of one stage DAG, all its jobs together
  budget_per_job_usd: 25       # any one job; at most budget_per_run_usd

# Cost allocation tags of every AWS job of this dataset, beside headrace's own (project,
# dataset, dag, run; include/job_tags.py). Activate their keys in the Billing console to split
# the bill by them (docs/operating-on-mwaa.md).
# TODO name who pays for this dataset, e.g. cost-center: "1234", owner: claims-team
tags: {{}}
"""

QUALITY_TEMPLATE = """\
# Quality rules of {name}'s curated partitions, checked by the data-quality gate before
# training and scoring read them. Rule kinds: include/dq/rules.py (RULE_KINDS).
# severity: error blocks the partition; warn is reported and lets it through.
# TODO add the dataset's real rules: allowed values, ranges, patterns, means, freshness…
dataset: {name}
spec: {name}.yaml

rules:
  - kind: schema
    description: Curated columns and types exactly as {name}.yaml declares them.
  - kind: uniqueness
    id: primary_key_unique
    columns: [record_id, record_date]
  - {{kind: completeness, column: record_id}}
  - {{kind: completeness, column: label}}
  - {{kind: allowed_values, column: label, values: [0, 1]}}
  - kind: row_count
    min: 1
    max: 100000000
    description: An empty partition is a failed producer, not a quiet day.
  # What ingestion refused, from the ingest manifest (the gate evaluates these on every engine).
  # TODO tighten once you know the producer's usual quarantine rate and daily volume.
  - kind: quarantine_rate
    max_fraction: 0.05
    description: Ingest refused more than 5% of the day's landing rows.
  - kind: quarantine_rate
    reason: required_null:label
    max_fraction: 0.01
    description: A blank label on more than 1% of rows is a producer bug, not missing data.
  - kind: rows_in_change
    min_ratio: 0.25
    max_ratio: 4.0
    days: 7
    description: A quarter or four times the usual landing rows is a broken export, not a day.
"""

MONITORING_TEMPLATE = """\
# {name} monitoring: what the drift check of a scored day calls "drifted".
# Read by include/monitoring/thresholds.py; the monitored columns are {name}.yaml's features
# plus the score. churn.monitoring.yaml explains every metric.
# TODO tighten or loosen per feature under features: once the real columns are in.
dataset: {name}

monitoring:
  score_column: score
  reference_sample_rows: 200000
  reference_sample_seed: 20260101
  psi_bins: 10
  domain_max_values: 50
  thresholds:
    numeric: {{psi: 0.2, ks: 0.1, missing_rate_change: 0.05}}
    categorical: {{psi: 0.2, js: 0.1, linf: 0.1, missing_rate_change: 0.05, unseen_rate: 0.0}}
  features: {{}}
"""


class ScaffoldError(ValueError):
    """The name cannot be scaffolded; the message says why and what to do."""


def scaffold_files(name: str) -> dict[str, str]:
    """``{file name: text}`` of the three files of ``name``."""
    split_name = name.replace("_", "-")
    return {
        f"{name}.yaml": SPEC_TEMPLATE.format(name=name, split_name=split_name),
        f"{name}.quality.yaml": QUALITY_TEMPLATE.format(name=name),
        f"{name}.monitoring.yaml": MONITORING_TEMPLATE.format(name=name),
    }


def check_name(name: str, datasets_dir: Path) -> None:
    if not NAME_PATTERN.match(name):
        raise ScaffoldError(
            f"NAME={name!r} is not a lowercase identifier (a letter, then letters, digits or _), "
            "e.g. benefit_claims"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(f"NAME={name!r} is {len(name)} characters; {MAX_NAME_LENGTH} at most")
    existing = [f for f in scaffold_files(name) if (datasets_dir / f).exists()]
    if existing:
        raise ScaffoldError(
            f"dataset {name!r} exists already: {', '.join(existing)} in {datasets_dir}; "
            "edit those files, or pick another name"
        )


def validate_scaffold(directory: Path, name: str) -> None:
    """Everything the pipelines check of a dataset's files, on the files in ``directory``."""
    from include.dq.rules import load_rules
    from include.monitoring.thresholds import load_monitoring_config
    from include.pipelines.datasets import pipeline_dataset

    pipeline_dataset(name, directory)
    load_rules(directory / f"{name}.quality.yaml")
    load_monitoring_config(directory / f"{name}.monitoring.yaml")


def scaffold(name: str, datasets_dir: Path = DATASETS_DIR) -> list[Path]:
    """Write the three files of ``name`` (validated in a scratch folder first); their paths."""
    check_name(name, datasets_dir)
    files = scaffold_files(name)
    with tempfile.TemporaryDirectory(prefix="new-pipeline-") as scratch:
        for file_name, text in files.items():
            (Path(scratch) / file_name).write_text(text, encoding="utf-8")
        validate_scaffold(Path(scratch), name)
        datasets_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for file_name in files:
            target = datasets_dir / file_name
            shutil.copyfile(Path(scratch) / file_name, target)
            written.append(target)
    return written


def next_steps(name: str, written: list[Path]) -> str:
    shown = [_shown(path) for path in written]
    dag_ids = ", ".join(f"{name}_{stage}" for stage in STAGES)
    return f"""\
Scaffolded dataset {name!r}:
  {chr(10).join("  " + p for p in shown).lstrip()}

Next steps (CONTRIBUTING.md walks through each):
  1. Edit {shown[0]}: the real columns, key, label, PII treatment and features:.
  2. Edit {shown[1]}: the quality rules the gate enforces.
  3. Edit {shown[2]}: the drift thresholds.
  4. Generate sample landing data:
       .venv/bin/python -m include.datagen.from_spec --spec {shown[0]} \\
         --out .local/lake/landing --start 2026-01-01 --days 2 --rows-per-day 5000
  5. Run the checks: .venv/bin/python -m pytest tests/dags/test_dag_integrity.py \\
       tests/include/test_pipeline_datasets.py -q
Its DAGs appear in Airflow with no Python written: {dag_ids}.
"""


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make new-pipeline NAME=<dataset>",
        description="Scaffold the dataset spec, quality rules and drift thresholds of a pipeline.",
    )
    parser.add_argument("name", help="the dataset's name: a lowercase identifier")
    parser.add_argument(
        "--datasets-dir", type=Path, default=DATASETS_DIR, help="where the specs live"
    )
    args = parser.parse_args(argv)
    try:
        written = scaffold(args.name, args.datasets_dir)
    except ScaffoldError as error:
        print(f"new-pipeline: {error}", file=sys.stderr)
        return 2
    print(next_steps(args.name, written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
