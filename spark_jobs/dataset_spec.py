"""Dataset specs: one YAML file per dataset says what its records must look like and how to treat them.

A spec declares the schema (names, types, nullability, legacy aliases), the primary key, the
event-time and partition columns (``day_from``: whether the files carry the day or it is their
landing folder's), the label, the PII columns with their treatment (a salted SHA-256 ``hash``,
a ``mask`` or a ``drop``), row-level rules (ranges, allowed values, regex patterns, maximum
lengths) and how features are built (with the categorical features whose
groups the model's fairness metrics compare, the audit attributes kept out of the model but carried
for the fairness audit, and the audit's decision threshold and limits), which validated days a
training run reads (``training:``: the window and its split), how big each job of the dataset runs on AWS
(``capacity:``: Glue workers, EMR executors, Glue Data Quality workers, SageMaker instances and
every kind's maximum runtime), what a job and a run may cost at worst there (``cost:``: the
budgets :mod:`include.cost` checks before a job starts) and the dataset's own cost allocation
tags on every AWS job (``tags:``, :mod:`include.job_tags`). The ingest and features jobs read it;
so can the DAGs and tests (``include/`` may import this module, never the other way round).

Pure Python plus PyYAML: this module ships to Glue/EMR inside the ``spark_jobs`` package and must
not import Spark or anything from ``include/``. Every problem in a spec is reported at once, each
naming the file and the field, e.g. ``churn.yaml: columns[4] (plan).allowed: must be a list``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

TYPES = ("string", "int", "long", "double", "boolean", "date", "timestamp")
NUMERIC_TYPES = frozenset({"int", "long", "double"})
TEMPORAL_TYPES = frozenset({"date", "timestamp"})
PII_TREATMENTS = ("hash", "mask", "drop")
# A date/timestamp bound that means "the logical date being ingested".
DS_TOKEN = "$ds"  # noqa: S105 - a placeholder, not a secret
LANDING_FORMATS = ("csv", "jsonl")
# Where a row's day (the partition column) comes from: ``column``, a date column every landing
# file carries (checked against the day ingested); ``landing_folder``, the ``ds=YYYY-MM-DD``
# folder the file landed in (the ingest job adds the partition column; files need no date).
DAY_FROM_COLUMN = "column"
DAY_FROM_LANDING_FOLDER = "landing_folder"
DAY_FROM = (DAY_FROM_COLUMN, DAY_FROM_LANDING_FOLDER)

# Every reason a row can be quarantined for, in priority order: a row failing several rules is
# filed under the first (``reasons`` keeps them all). Column-level codes read ``code:column``.
REASON_CODES: dict[str, str] = {
    "bad_encoding": "bytes that are not valid UTF-8, or NUL/control characters, in the record",
    "malformed_record": "the parser could not split the line into the declared columns",
    "header_mismatch": "the file's header shares no column with the spec (wrong delimiter?)",
    "missing_column": "a required column is absent from the file's header",
    "type_mismatch": "a value cannot be read as the column's declared type",
    "non_finite": "NaN or infinity in a numeric column",
    "required_null": "a non-nullable column is empty",
    "out_of_range": "a value is below the column's min or above its max",
    "not_allowed": "a value outside the column's allowed set",
    "pattern_mismatch": "a value does not match the column's regex pattern",
    "too_long": "a string longer than the column's max_length",
    "formula_injection": "free text starting with = + - @ (spreadsheet formula injection)",
    "pii_detected": "free text holding something PII-shaped (an email, phone or id)",
    "partition_mismatch": "the partition column differs from the logical date being ingested",
    "duplicate_key": "another record with the same primary key won deduplication",
}
# Free text starting with one of these is executed by spreadsheet apps (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

_TOP_KEYS = {
    "dataset",
    "schema_version",
    "description",
    "primary_key",
    "event_time",
    "partition_column",
    "day_from",
    "label",
    "landing",
    "columns",
    "features",
    "training",
    "capacity",
    "cost",
    "tags",
}
_LANDING_KEYS = {"formats", "csv", "encoding", "null_tokens", "complete_when", "sweep_days"}
# When a landing day is complete: exactly one of these rules (include/landing.py applies it).
LANDING_COMPLETE_RULES = ("files", "marker", "cutoff_hours")
DEFAULT_COMPLETE_WHEN = ("files", 1)
DEFAULT_SWEEP_DAYS = 31
_CSV_KEYS = {"delimiter", "quote", "escape", "header"}
_COLUMN_KEYS = {
    "name",
    "type",
    "nullable",
    "description",
    "aliases",
    "min",
    "max",
    "allowed",
    "pattern",
    "max_length",
    "formula_guard",
    "pii",
}
_PII_KEYS = {"treatment", "output", "keep_last", "lowercase", "detect"}
_FEATURE_KEYS = {
    "split_key",
    "split",
    "split_seed",
    "lookback_days",
    "numeric",
    "categorical",
    "boolean",
    "days_since",
    "rolling_mean",
    "ratios",
    "sensitive_groups",
    "audit_attributes",
    "fairness",
}
_FAIRNESS_KEYS = {
    "decision_threshold",
    "min_group_rows",
    "max_group_difference",
    "min_disparate_impact",
}
# How training may choose the decision threshold on the validation split (training/evaluation.py
# THRESHOLD_METHODS); a number in (0, 1) fixes it instead.
THRESHOLD_METHODS = ("f1", "youden")
# Column types whose values can name a group of the fairness audit.
AUDIT_TYPES = frozenset({"string", "int", "long", "boolean"})
_SPLITS = ("train", "validation", "test")

# --- capacity: how big each job of the dataset runs on AWS --------------------------------------
# The sizes every job ran at before specs had a capacity: block; a spec that says nothing still
# runs at these.
DEFAULT_GLUE_WORKER_TYPE = "G.1X"
DEFAULT_GLUE_WORKERS = 2
DEFAULT_SPARK_MAX_RUNTIME_MINUTES = 120
DEFAULT_GLUE_DATA_QUALITY_WORKERS = 2
DEFAULT_QUALITY_MAX_RUNTIME_MINUTES = 60
DEFAULT_TRANSFORM_INSTANCE_TYPE = "ml.m5.xlarge"
DEFAULT_TRANSFORM_INSTANCE_COUNT = 1
# The processing jobs (monitoring baseline, drift check, scoring input, predictions files):
# one ml.m5.xlarge (4 vCPU, 16 GB) for at most an hour each.
DEFAULT_PROCESSING_INSTANCE_TYPE = "ml.m5.xlarge"
DEFAULT_PROCESSING_INSTANCE_COUNT = 1
DEFAULT_PROCESSING_MAX_RUNTIME_MINUTES = 60
# One ceiling for every kind's runtime: Glue's (StartJobRun ``Timeout`` must be under 7 days).
MAX_RUNTIME_MINUTES_LIMIT = 7 * 24 * 60 - 1
# Worker types botocore's Glue model lists that cannot run a Glue 5 Spark ETL job.
GLUE_WORKER_TYPES_NOT_FOR_SPARK_ETL = {
    "Standard": "a Glue 1.0 worker type (MaxCapacity jobs)",
    "Z.2X": "for Ray jobs only",
    "G.025X": "for streaming jobs only",
}
# EMR Serverless worker sizes (AWS, "Supported worker configurations"): vCPUs → (min, max) GB of
# worker memory. The worker holds the executor's heap plus Spark's overhead (10%, >= 384 MB).
EMR_SERVERLESS_WORKER_MEMORY_GB = {1: (2, 8), 2: (4, 16), 4: (8, 30), 8: (16, 60), 16: (32, 120)}
_CAPACITY_KEYS = {"spark", "quality", "training", "transform", "processing"}
_SPARK_CAPACITY_KEYS = {"max_runtime_minutes", "glue", "emr_serverless", "emr_step"}
_GLUE_CAPACITY_KEYS = {"worker_type", "number_of_workers"}
_EXECUTOR_CAPACITY_KEYS = {"max_executors", "executor_cores", "executor_memory_gb"}
_QUALITY_CAPACITY_KEYS = {"max_runtime_minutes", "glue_data_quality"}
_GDQ_CAPACITY_KEYS = {"number_of_workers"}
_INSTANCE_CAPACITY_KEYS = {"instance_type", "instance_count", "max_runtime_minutes"}
_TRAINING_KEYS = {"window_days", "split"}
# How a training window is split: ``random`` keeps the features job's hash split of every day;
# ``time`` trains on the earlier days and validates and tests on the latest.
TRAINING_SPLITS = ("random", "time")
MAX_TRAINING_WINDOW_DAYS = 366
_COST_KEYS = {"budget_per_run_usd", "budget_per_job_usd"}
# --- cost: what a dataset's jobs may cost at worst on AWS (include/cost.py checks them) ---------
# Sized so a run at the default capacity and settings passes. Its worst cases, from
# include/aws_prices.json (us-east-1 list prices; include.cost.estimate_stage_run), per stage run:
#   ingestion   Glue ingest, 2 x G.1X for 2 h = 4 DPU-h x $0.44            $1.76 a day ingested
#   validation  Glue Data Quality 2 DPU x 1 h $0.88 + Glue features $1.76  $2.64
#   training    tuning: 4 trials (the DAG's default) x ml.g5.xlarge $1.408/h x 4 h (the spot wait)
#               x 0.5 (spot) = $11.26; monitoring baseline ml.m5.xlarge 1 h $0.23   $11.49
#   scoring     scoring input $0.23 + transform ml.m5.xlarge x 5 h (the operator stops it at the
#               4 h spot wait + 25%) $1.15 + predictions $0.23              $1.61
#   monitoring  drift check ml.m5.xlarge 1 h                                $0.23
# The tuning job is the dearest job and training the dearest run: $25 a job and $50 a run leave
# room for about twice the default trials or a dearer region, and refuse the 20-trial tuning job
# at the deployment's HEADRACE_TUNING_MAX_JOBS default ($56.32).
DEFAULT_BUDGET_PER_JOB_USD = 25.0
DEFAULT_BUDGET_PER_RUN_USD = 50.0

# --- tags: cost allocation tags on every AWS job of the dataset (include/job_tags.py) -----------
# The keys headrace sets on a job itself: project, dataset, dag and run on every job, and each
# job kind's own (the features day of training, the day and model version of a transform, the
# Spark entry point, a quality ruleset's severity). A spec's tags cannot set them.
RESERVED_TAG_KEYS = frozenset(
    {
        "project",
        "dataset",
        "dag",
        "run",
        "features-ds",
        "ds",
        "model-version",
        "spark_job",
        "severity",
    }
)
# AWS allows 50 user tags on a resource; the reserved keys keep their room.
MAX_TAGS = 50
MAX_SPEC_TAGS = MAX_TAGS - len(RESERVED_TAG_KEYS)
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256
# AWS's tag rule is letters, digits, spaces and _ . : / = + - @ in any script
# ([\p{L}\p{Z}\p{N}_.:/=+\-@], SageMaker's TagKey); EMR Serverless's StartJobRun allows only their
# ASCII forms ([A-Za-z0-9 /_.:=+@-]), and the same tags go to every job, so ASCII is the rule.
_TAG_TEXT = re.compile(r"[A-Za-z0-9 _.:/=+\-@]*")
TAG_CHARACTERS = "ASCII letters, digits, spaces and _ . : / = + - @"


def aws_tag_problem(key: Any, value: Any) -> str | None:
    """What is wrong with the tag ``key: value`` under the AWS tag rules every service headrace
    tags accepts, or ``None``: key 1-128 characters, value 0-256, only :data:`TAG_CHARACTERS`,
    no ``aws:`` prefix on the key (AWS's own, in any case)."""
    if not isinstance(key, str):
        return f"the key must be a string, got {type(key).__name__} {key!r}"
    if not isinstance(value, str):
        return (
            f"the value must be a string (quote it in YAML), got {type(value).__name__} {value!r}"
        )
    if not 1 <= len(key) <= MAX_TAG_KEY_LENGTH:
        return f"the key must be 1 to {MAX_TAG_KEY_LENGTH} characters, got {len(key)}"
    if len(value) > MAX_TAG_VALUE_LENGTH:
        return f"the value must be at most {MAX_TAG_VALUE_LENGTH} characters, got {len(value)}"
    if key.lower().startswith("aws:"):
        return "the key must not start with 'aws:' (reserved for AWS's own tags)"
    for what, text in (("key", key), ("value", value)):
        if not _TAG_TEXT.fullmatch(text):
            bad = sorted({char for char in text if not _TAG_TEXT.fullmatch(char)})
            return f"the {what} may hold only {TAG_CHARACTERS}, found {''.join(bad)!r}"
    return None


class SpecError(ValueError):
    """A dataset spec is invalid; the message lists every problem, each naming file and field."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(
            f"invalid dataset spec {source}:\n  - "
            + "\n  - ".join(f"{source}: {p}" for p in problems)
        )


@dataclass(frozen=True)
class PiiSpec:
    """How one PII column leaves the raw zone.

    ``hash``: salted SHA-256 (hex) into ``output`` (joinable, irreversible without the salt);
    ``mask``: every letter and digit but the last ``keep_last`` replaced by ``*``; ``drop``: gone.
    ``detect`` is a regex that finds the value inside free text (quarantined raw lines are
    scrubbed with it).
    """

    treatment: str
    detect: str
    output: str | None = None
    keep_last: int = 0
    lowercase: bool = False

    @property
    def detect_search(self) -> str:
        """``detect`` as the Java regex to search text with (see :func:`search_pattern`)."""
        return search_pattern(self.detect)

    @property
    def detect_partial(self) -> str:
        """A Java regex finding a cut-off value of this kind at the end of a text (see
        :func:`partial_detect_pattern`): what a truncated line leaves, e.g. ``+1-555-37``."""
        return partial_detect_pattern(self.detect)


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str
    nullable: bool = True
    description: str = ""
    aliases: tuple[str, ...] = ()
    min: Any = None
    max: Any = None
    allowed: tuple[Any, ...] | None = None
    pattern: str | None = None
    max_length: int | None = None
    formula_guard: bool = False
    pii: PiiSpec | None = None

    @property
    def curated_name(self) -> str | None:
        """The column's name in curated data; ``None`` when its PII treatment drops it."""
        if self.pii is None or self.pii.treatment == "mask":
            return self.name
        if self.pii.treatment == "hash":
            return self.pii.output
        return None


@dataclass(frozen=True)
class RatioFeature:
    name: str
    numerator: str
    denominator: str


@dataclass(frozen=True)
class FairnessSpec:
    """How the fairness audit judges the model (``features.fairness``); ``None``: the trainer's
    default (train.py's flags)."""

    # "f1" / "youden" (chosen on the validation split) or a fixed number in (0, 1).
    decision_threshold: str | float | None = None
    min_group_rows: int | None = None
    max_group_difference: float | None = None
    min_disparate_impact: float | None = None

    def hyperparameters(self) -> dict[str, str]:
        """The train.py flags of the fields the spec sets."""
        values = {
            "decision-threshold": self.decision_threshold,
            "min-group-rows": self.min_group_rows,
            "max-group-difference": self.max_group_difference,
            "min-disparate-impact": self.min_disparate_impact,
        }
        return {name: str(value) for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class FeatureSpec:
    """How the features job turns curated snapshots into model inputs."""

    split_key: str
    split: tuple[tuple[str, int], ...]
    split_seed: str
    lookback_days: int = 1
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    boolean: tuple[str, ...] = ()
    days_since: tuple[str, ...] = ()
    rolling_mean: tuple[str, ...] = ()
    ratios: tuple[RatioFeature, ...] = ()
    # Categorical features whose values are the groups of the fairness metrics (per-group ROC
    # AUC, recall… in the model card). ``None``: the spec does not say (older specs), and the
    # trainer keeps its own default; ``()``: no group metrics.
    sensitive_groups: tuple[str, ...] | None = None
    # Curated columns kept out of the model's inputs and carried into the features partition
    # (as strings, beside the id columns) only so that the fairness audit can group by them:
    # sex or ethnicity are audited without the model ever seeing them.
    audit_attributes: tuple[str, ...] = ()
    fairness: FairnessSpec = FairnessSpec()

    def split_bounds(self) -> list[tuple[str, int, int]]:
        """``[(split, lo, hi)]`` over the key-hash buckets 0..99: bucket in [lo, hi) → split."""
        bounds, lo = [], 0
        for name, share in self.split:
            bounds.append((name, lo, lo + share))
            lo += share
        return bounds


@dataclass(frozen=True)
class GlueCapacity:
    """Glue workers of one Spark job run (StartJobRun ``WorkerType`` / ``NumberOfWorkers``)."""

    worker_type: str = DEFAULT_GLUE_WORKER_TYPE
    number_of_workers: int = DEFAULT_GLUE_WORKERS


@dataclass(frozen=True)
class ExecutorCapacity:
    """Spark executors of one run on EMR (Serverless or a cluster step); ``None``: Spark's and
    the application's / cluster's own default."""

    max_executors: int | None = None
    executor_cores: int | None = None
    executor_memory_gb: int | None = None

    def spark_conf(self) -> dict[str, str]:
        """The ``--conf`` properties that carry these sizes, only those set."""
        conf = {}
        if self.max_executors is not None:
            conf["spark.dynamicAllocation.maxExecutors"] = str(self.max_executors)
        if self.executor_cores is not None:
            conf["spark.executor.cores"] = str(self.executor_cores)
        if self.executor_memory_gb is not None:
            conf["spark.executor.memory"] = f"{self.executor_memory_gb}g"
        return conf


@dataclass(frozen=True)
class SparkCapacity:
    """The Spark jobs of a dataset (ingest, features; the Deequ quality job on EMR)."""

    max_runtime_minutes: int = DEFAULT_SPARK_MAX_RUNTIME_MINUTES
    glue: GlueCapacity = GlueCapacity()
    emr_serverless: ExecutorCapacity = ExecutorCapacity()
    emr_step: ExecutorCapacity = ExecutorCapacity()


@dataclass(frozen=True)
class QualityCapacity:
    """The data-quality gate's remote run (Glue Data Quality; the Deequ job's runtime)."""

    max_runtime_minutes: int = DEFAULT_QUALITY_MAX_RUNTIME_MINUTES
    glue_data_quality_workers: int = DEFAULT_GLUE_DATA_QUALITY_WORKERS


@dataclass(frozen=True)
class InstanceCapacity:
    """SageMaker instances of one job; ``None``: the deployment's setting (training) or the
    operator's default (transform)."""

    instance_type: str | None = None
    instance_count: int | None = None
    max_runtime_minutes: int | None = None


@dataclass(frozen=True)
class Capacity:
    """How big each job kind of a dataset runs on AWS (the spec's ``capacity:`` block)."""

    spark: SparkCapacity = SparkCapacity()
    quality: QualityCapacity = QualityCapacity()
    training: InstanceCapacity = InstanceCapacity()
    transform: InstanceCapacity = InstanceCapacity(
        instance_type=DEFAULT_TRANSFORM_INSTANCE_TYPE,
        instance_count=DEFAULT_TRANSFORM_INSTANCE_COUNT,
    )
    processing: InstanceCapacity = InstanceCapacity(
        instance_type=DEFAULT_PROCESSING_INSTANCE_TYPE,
        instance_count=DEFAULT_PROCESSING_INSTANCE_COUNT,
        max_runtime_minutes=DEFAULT_PROCESSING_MAX_RUNTIME_MINUTES,
    )


@dataclass(frozen=True)
class CostBudget:
    """The most one job, and one stage DAG run, of a dataset may cost at worst on AWS, in US
    dollars (the spec's ``cost:`` block); :func:`include.cost.check_budget` refuses a job or run
    whose worst-case estimate is over either."""

    budget_per_run_usd: float = DEFAULT_BUDGET_PER_RUN_USD
    budget_per_job_usd: float = DEFAULT_BUDGET_PER_JOB_USD


@dataclass(frozen=True)
class TrainingSpec:
    """Which validated days a training run reads (the spec's ``training:`` block).

    ``window_days``: the run's day and the ``window_days - 1`` days before it; days without a
    committed features partition are left out. ``split``: ``random`` (every day's
    train/validation/test split into the channel of that name) or ``time`` (every split of the
    earlier days trains; the latest day's validation and test splits validate and test).
    The default is one day, split at random.
    """

    window_days: int = 1
    split: str = "random"


@dataclass(frozen=True)
class DatasetSpec:
    dataset: str
    schema_version: int
    # Every curated column before PII treatment, in spec order; with ``day_from:
    # landing_folder`` the partition column the ingest job adds comes last.
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[str, ...]
    # ``None``: no event time (only with ``day_from: landing_folder``).
    event_time: str | None
    partition_column: str
    label: str
    source: str
    fingerprint: str
    description: str = ""
    day_from: str = DAY_FROM_COLUMN
    formats: tuple[str, ...] = LANDING_FORMATS
    csv_delimiter: str = ","
    csv_quote: str = '"'
    csv_escape: str = '"'
    csv_header: bool = True
    encoding: str = "UTF-8"
    null_tokens: tuple[str, ...] = ("",)
    # (rule, value): ("files", N), ("marker", "_SUCCESS") or ("cutoff_hours", H).
    landing_complete_when: tuple[str, Any] = DEFAULT_COMPLETE_WHEN
    # How many days back from the newest landed day an ingestion run looks for complete days
    # that were never ingested (a lost landing event); older days are ingested when named.
    landing_sweep_days: int = DEFAULT_SWEEP_DAYS
    features: FeatureSpec | None = None
    training: TrainingSpec = TrainingSpec()
    capacity: Capacity = Capacity()
    cost: CostBudget = CostBudget()
    # Cost allocation tags of every AWS job of the dataset besides headrace's own: (key, value)
    # pairs in spec order (a tuple, so the spec stays hashable).
    tags: tuple[tuple[str, str], ...] = ()
    _by_name: Mapping[str, ColumnSpec] = field(default_factory=dict, repr=False, compare=False)

    def column(self, name: str) -> ColumnSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"{self.source}: dataset {self.dataset!r} has no column {name!r}"
            ) from None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def landing_columns(self) -> tuple[ColumnSpec, ...]:
        """The columns read from landing files: all but a partition column taken from the
        landing folder (``day_from: landing_folder``), which the ingest job adds itself."""
        if self.day_from != DAY_FROM_LANDING_FOLDER:
            return self.columns
        return tuple(c for c in self.columns if c.name != self.partition_column)

    @property
    def landing_column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.landing_columns)

    @property
    def pii_columns(self) -> tuple[ColumnSpec, ...]:
        return tuple(c for c in self.columns if c.pii is not None)

    def curated_columns(self) -> list[tuple[str, str]]:
        """``[(name, type)]`` of curated data, in spec order (hashed PII is a string)."""
        out = []
        for column in self.columns:
            name = column.curated_name
            if name is not None:
                out.append((name, "string" if column.pii else column.type))
        return out

    def alias_map(self) -> dict[str, str]:
        """Every accepted header name (the column's own and its aliases) → column name, for the
        columns read from landing files."""
        mapping = {}
        for column in self.landing_columns:
            mapping[column.name] = column.name
            for alias in column.aliases:
                mapping[alias] = column.name
        return mapping


@functools.cache
def aws_enum_values(service: str, shape: str) -> tuple[str, ...] | None:
    """The values botocore's ``service`` model allows for the enum ``shape``; ``None`` where
    botocore is not installed (a Spark job's environment: the Airflow worker, which builds the
    requests, always has it and checks the spec there first)."""
    try:
        import botocore.session  # slow to import; only a value that is not today's default needs it
    except ImportError:
        return None
    model = botocore.session.get_session().get_service_model(service)
    return tuple(model.shape_for(shape).enum)


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and validate a spec file; :class:`SpecError` names the file and every bad field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(str(path), [f"cannot read the file: {error.strerror or error}"]) from None
    return parse_spec(text, source=str(path))


def safe_load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with PyYAML's C parser (libyaml, in its wheels) where it has one: the
    same documents and errors, churn.yaml in 1.3 ms instead of 11.7 ms. Every Airflow task
    parses its DAG file, which loads the dataset specs."""
    import yaml  # PyYAML; imported here so importing this module stays dependency-free

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (safe loaders only)


def parse_spec(text: str, source: str = "<spec>") -> DatasetSpec:
    """Validate YAML text as a dataset spec; ``source`` names it in error messages."""
    import yaml

    try:
        raw = safe_load_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(
            source, [f"not valid YAML{where}: {getattr(error, 'problem', error)}"]
        ) from None
    return spec_from_mapping(raw, source)


def spec_from_mapping(raw: Any, source: str = "<spec>") -> DatasetSpec:
    """Validate an already-parsed spec mapping (what :func:`parse_spec` does after YAML)."""
    v = _Validator(source)
    spec = v.validate(raw)
    if v.problems:
        raise SpecError(source, v.problems)
    assert spec is not None
    return spec


class _Validator:
    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []
        # Columns declared with an error already reported: references to them are not errors too.
        self.broken_columns: set[str] = set()

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def unknown_keys(self, where: str, mapping: Mapping, allowed: set[str]) -> None:
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(f"{where}{'.' if where else ''}{key}", f"unknown key{hint}")

    def mapping(self, where: str, value: Any) -> Mapping:
        if not isinstance(value, Mapping):
            self.fail(where, f"must be a mapping, got {type(value).__name__}")
            return {}
        return value

    def name(self, where: str, value: Any) -> str | None:
        if not isinstance(value, str) or not _NAME.match(value):
            self.fail(where, f"must be a lower_snake_case name, got {value!r}")
            return None
        return value

    def names(self, where: str, value: Any, *, allow_empty: bool = True) -> tuple[str, ...]:
        if value is None:
            value = []
        if not isinstance(value, list):
            self.fail(where, f"must be a list of column names, got {type(value).__name__}")
            return ()
        if not value and not allow_empty:
            self.fail(where, "must name at least one column")
        out = []
        for i, item in enumerate(value):
            name = self.name(f"{where}[{i}]", item)
            if name:
                out.append(name)
        if len(set(out)) != len(out):
            self.fail(where, "lists a column more than once")
        return tuple(out)

    def regex(self, where: str, value: Any) -> str | None:
        if not isinstance(value, str) or not value:
            self.fail(where, f"must be a non-empty regex string, got {value!r}")
            return None
        # Spark evaluates patterns with java.util.regex; Python-only syntax would fail there.
        if "(?P" in value:
            self.fail(where, "uses Python-only named-group syntax (?P…); write (?<name>…)")
            return None
        try:
            # Java's named groups (?<name>…) are spelled (?P<name>…) in Python's re.
            re.compile(re.sub(r"\(\?<(?=[A-Za-z])", "(?P<", value))
        except re.error as error:
            self.fail(where, f"is not a valid regex: {error}")
            return None
        return value

    def validate(self, raw: Any) -> DatasetSpec | None:
        top = self.mapping("(top level)", raw)
        if not top:
            return None
        self.unknown_keys("", top, _TOP_KEYS)
        day_from = self.day_from(top.get("day_from", DAY_FROM_COLUMN))
        for key in (
            "dataset",
            "schema_version",
            "columns",
            "primary_key",
            "event_time",
            "partition_column",
            "label",
        ):
            # Without a date column the files may have no time either: dedup then goes by content.
            if key == "event_time" and day_from != DAY_FROM_COLUMN:
                continue
            if key not in top:
                self.fail(key, "is required")
        dataset = self.name("dataset", top.get("dataset")) or "?"
        version = top.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            self.fail("schema_version", f"must be a positive integer, got {version!r}")
            version = 0

        columns = self.columns(top.get("columns"))
        if day_from == DAY_FROM_LANDING_FOLDER:
            columns = self.landing_day_column(top, columns)
        elif day_from is None and isinstance(top.get("partition_column"), str):
            # day_from is reported already; whether the files carry the column is unknown.
            self.broken_columns.add(top["partition_column"])
        by_name = {c.name: c for c in columns}
        pk = (
            self.names("primary_key", top["primary_key"], allow_empty=False)
            if "primary_key" in top
            else ()
        )
        for i, key in enumerate(pk):
            column = by_name.get(key)
            if column is None:
                if key not in self.broken_columns:
                    self.fail(f"primary_key[{i}]", f"{key!r} is not a declared column")
            elif column.nullable:
                self.fail(f"primary_key[{i}]", f"{key!r} must be nullable: false")
            elif column.pii is not None:
                self.fail(f"primary_key[{i}]", f"{key!r} is PII; a key must survive curation as is")
        event_time = self.typed_ref("event_time", top.get("event_time"), by_name, {"timestamp"})
        partition = self.typed_ref(
            "partition_column", top.get("partition_column"), by_name, {"date"}
        )
        label = self.typed_ref(
            "label", top.get("label"), by_name, {"int", "long", "boolean", "double", "string"}
        )
        for where, name in (
            ("event_time", event_time),
            ("partition_column", partition),
            ("label", label),
        ):
            column = by_name.get(name) if name else None
            if column is not None and column.nullable:
                self.fail(where, f"{name!r} must be nullable: false")
            if column is not None and column.pii is not None:
                self.fail(where, f"{name!r} cannot be a PII column")
        if partition and pk and partition not in pk:
            self.fail(
                "partition_column",
                f"{partition!r} must be part of primary_key (one key per partition)",
            )

        landing = self.landing(top.get("landing", {}))
        features = (
            self.features(top.get("features"), by_name, label, partition)
            if "features" in top
            else None
        )
        training = self.training(top.get("training"), has_features="features" in top)
        capacity = self.capacity(top.get("capacity"))
        cost = self.cost(top.get("cost"))
        tags = self.tags(top.get("tags"))
        description = top.get("description", "")
        if not isinstance(description, str):
            self.fail("description", "must be a string")
            description = ""
        if self.problems:
            return None
        # Capacity sizes the jobs, training picks the days a model reads, cost caps the bill and
        # tags label it, none of them the data: changing them is not a new spec version.
        shape = {
            key: value
            for key, value in raw.items()
            if key not in ("capacity", "training", "cost", "tags")
        }
        canonical = json.dumps(shape, sort_keys=True, default=str, separators=(",", ":"))
        return DatasetSpec(
            dataset=dataset,
            schema_version=version,
            columns=tuple(columns),
            primary_key=pk,
            event_time=event_time,
            partition_column=partition or "",
            label=label or "",
            source=self.source,
            fingerprint=hashlib.sha256(canonical.encode()).hexdigest(),
            description=description,
            day_from=day_from or DAY_FROM_COLUMN,
            features=features,
            training=training,
            capacity=capacity,
            cost=cost,
            tags=tags,
            _by_name=by_name,
            **landing,
        )

    def day_from(self, value: Any) -> str | None:
        """``day_from``: where a row's day comes from, or ``None`` after reporting it."""
        if value in DAY_FROM:
            return value
        self.fail(
            "day_from",
            f"must be {DAY_FROM_COLUMN} (the partition column is a date column of every file) "
            f"or {DAY_FROM_LANDING_FOLDER} (the ingest job adds it from the landing folder's "
            f"ds=YYYY-MM-DD), got {value!r}",
        )
        return None

    def landing_day_column(self, top: Mapping, columns: list[ColumnSpec]) -> list[ColumnSpec]:
        """With ``day_from: landing_folder``, ``columns`` and the partition column the ingest job
        adds (a non-nullable date, last), which no declared column may name or alias."""
        name = top.get("partition_column")
        if not isinstance(name, str) or not _NAME.match(name):
            return columns  # partition_column reports it
        raw_columns = top.get("columns") if isinstance(top.get("columns"), list) else []
        declared = False
        for i, item in enumerate(raw_columns):
            if not isinstance(item, Mapping):
                continue
            label = f"columns[{i}] ({item['name']})" if isinstance(item.get("name"), str) else ""
            label = label or f"columns[{i}]"
            aliases = item.get("aliases") if isinstance(item.get("aliases"), list) else []
            pii = item.get("pii") if isinstance(item.get("pii"), Mapping) else {}
            if item.get("name") == name:
                declared = True
                self.fail(
                    label,
                    f"{name!r} is the partition column, and day_from: {DAY_FROM_LANDING_FOLDER} "
                    "has the ingest job add it from the landing folder (ds=YYYY-MM-DD): remove "
                    f"it from columns, or set day_from: {DAY_FROM_COLUMN} to read it from the "
                    "files",
                )
            elif name in aliases:
                self.fail(
                    f"{label}.aliases",
                    f"{name!r} is the partition column the ingest job adds (day_from: "
                    f"{DAY_FROM_LANDING_FOLDER}); a file's column cannot take its name",
                )
            elif pii.get("output") == name:
                self.fail(
                    f"{label}.pii.output",
                    f"{name!r} is the partition column the ingest job adds (day_from: "
                    f"{DAY_FROM_LANDING_FOLDER}); name the hash column otherwise",
                )
        if declared:
            return columns
        day = ColumnSpec(
            name=name,
            type="date",
            nullable=False,
            description="the day of the landing folder (ds=YYYY-MM-DD) the row was ingested from",
        )
        return [*columns, day]

    def typed_ref(
        self, where: str, value: Any, by_name: Mapping[str, ColumnSpec], types: set[str]
    ) -> str | None:
        if value is None:
            return None
        name = self.name(where, value)
        if name is None:
            return None
        column = by_name.get(name)
        if column is None:
            if name not in self.broken_columns:
                self.fail(where, f"{name!r} is not a declared column")
            return None
        if column.type not in types:
            self.fail(
                where, f"{name!r} has type {column.type}; expected {' or '.join(sorted(types))}"
            )
        return name

    def landing(self, raw: Any) -> dict:
        landing = self.mapping("landing", raw) if raw is not None else {}
        self.unknown_keys("landing", landing, _LANDING_KEYS)
        out: dict[str, Any] = {}
        formats = landing.get("formats", list(LANDING_FORMATS))
        if (
            not isinstance(formats, list)
            or not formats
            or any(f not in LANDING_FORMATS for f in formats)
        ):
            self.fail(
                "landing.formats",
                f"must be a non-empty list drawn from {list(LANDING_FORMATS)}, got {formats!r}",
            )
        else:
            out["formats"] = tuple(formats)
        csv = self.mapping("landing.csv", landing.get("csv", {}))
        self.unknown_keys("landing.csv", csv, _CSV_KEYS)
        for key, attr in (
            ("delimiter", "csv_delimiter"),
            ("quote", "csv_quote"),
            ("escape", "csv_escape"),
        ):
            if key in csv:
                value = csv[key]
                if not isinstance(value, str) or len(value) != 1:
                    self.fail(f"landing.csv.{key}", f"must be exactly one character, got {value!r}")
                else:
                    out[attr] = value
        if "header" in csv:
            if csv["header"] is not True:
                # Header-less CSV would make schema drift invisible: refuse it rather than guess.
                self.fail("landing.csv.header", "must be true (files are read by header name)")
            out["csv_header"] = True
        encoding = landing.get("encoding", "UTF-8")
        if not isinstance(encoding, str) or encoding.upper().replace("-", "") != "UTF8":
            self.fail(
                "landing.encoding", f"only UTF-8 landing files are supported, got {encoding!r}"
            )
        else:
            out["encoding"] = "UTF-8"
        tokens = landing.get("null_tokens", [""])
        if not isinstance(tokens, list) or any(not isinstance(t, str) for t in tokens):
            self.fail("landing.null_tokens", f"must be a list of strings, got {tokens!r}")
        else:
            out["null_tokens"] = tuple(dict.fromkeys(["", *tokens]))
        if "complete_when" in landing:
            rule = self.complete_when(landing["complete_when"])
            if rule is not None:
                out["landing_complete_when"] = rule
        sweep = landing.get("sweep_days", DEFAULT_SWEEP_DAYS)
        if isinstance(sweep, bool) or not isinstance(sweep, int) or not 1 <= sweep <= 366:
            self.fail("landing.sweep_days", f"must be a whole number of days 1..366, got {sweep!r}")
        else:
            out["landing_sweep_days"] = sweep
        return out

    def complete_when(self, raw: Any) -> tuple[str, Any] | None:
        """``landing.complete_when``: one rule saying when a landing day is complete."""
        where = "landing.complete_when"
        rule = self.mapping(where, raw)
        self.unknown_keys(where, rule, set(LANDING_COMPLETE_RULES))
        given = [key for key in LANDING_COMPLETE_RULES if key in rule]
        if len(given) != 1:
            self.fail(where, f"needs exactly one of {', '.join(LANDING_COMPLETE_RULES)}")
            return None
        key = given[0]
        value = rule[key]
        if key == "files" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            self.fail(f"{where}.files", f"must be a whole number of files >= 1, got {value!r}")
        elif key == "marker" and not (
            isinstance(value, str) and re.fullmatch(r"[_.][A-Za-z0-9_.-]{1,63}", value)
        ):
            # Data files never start with "_" or ".", so a marker can never be read as data.
            self.fail(
                f"{where}.marker",
                f"must be a file name starting with '_' or '.' (like _SUCCESS), got {value!r}",
            )
        elif key == "cutoff_hours" and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 168
        ):
            self.fail(
                f"{where}.cutoff_hours",
                f"must be hours after the day ends (UTC), 0..168, got {value!r}",
            )
        else:
            return key, value
        return None

    # --- training ---------------------------------------------------------------------------

    def training(self, raw: Any, *, has_features: bool) -> TrainingSpec:
        if raw is None:
            return TrainingSpec()
        block = self.mapping("training", raw)
        self.unknown_keys("training", block, _TRAINING_KEYS)
        if block and not has_features:
            self.fail("training", "needs a features: block (training reads the features)")
        default = TrainingSpec()
        window_days = default.window_days
        if "window_days" in block:
            window_days = self.whole(
                "training.window_days", block["window_days"], 1, MAX_TRAINING_WINDOW_DAYS
            )
        split = block.get("split", default.split)
        if split not in TRAINING_SPLITS:
            self.fail(
                "training.split", f"must be one of {', '.join(TRAINING_SPLITS)}, got {split!r}"
            )
            return default
        if split == "time" and window_days == 1:
            self.fail(
                "training.split",
                "'time' trains on earlier days and tests on the latest: it needs "
                "window_days >= 2, got 1",
            )
        if window_days is None:
            return default
        return TrainingSpec(window_days=window_days, split=split)

    # --- cost -------------------------------------------------------------------------------

    def cost(self, raw: Any) -> CostBudget:
        if raw is None:
            return CostBudget()
        block = self.mapping("cost", raw)
        self.unknown_keys("cost", block, _COST_KEYS)
        default = CostBudget()
        values = {}
        for key in sorted(_COST_KEYS):
            value = block.get(key)
            if value is None:
                values[key] = getattr(default, key)
            elif (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                self.fail(f"cost.{key}", f"must be a positive number of US dollars, got {value!r}")
                values[key] = None
            else:
                values[key] = float(value)
        per_job, per_run = values["budget_per_job_usd"], values["budget_per_run_usd"]
        if per_job is None or per_run is None:
            return default
        if per_job > per_run:
            self.fail(
                "cost.budget_per_job_usd",
                f"{per_job:g} exceeds budget_per_run_usd {per_run:g}: a run holds at least one job",
            )
            return default
        return CostBudget(budget_per_run_usd=per_run, budget_per_job_usd=per_job)

    # --- tags -------------------------------------------------------------------------------

    def tags(self, raw: Any) -> tuple[tuple[str, str], ...]:
        if raw is None:
            return ()
        block = self.mapping("tags", raw)
        if len(block) > MAX_SPEC_TAGS:
            self.fail(
                "tags",
                f"has {len(block)} tags; at most {MAX_SPEC_TAGS} (AWS allows {MAX_TAGS} on a "
                f"resource and headrace sets up to {len(RESERVED_TAG_KEYS)} of its own)",
            )
        tags = []
        for key, value in block.items():
            if key in RESERVED_TAG_KEYS:
                self.fail(
                    f"tags.{key}",
                    f"is set by headrace on every job it applies to; reserved keys: "
                    f"{', '.join(sorted(RESERVED_TAG_KEYS))}",
                )
            elif problem := aws_tag_problem(key, value):
                self.fail(f"tags.{key}", problem)
            else:
                tags.append((key, value))
        return tuple(tags)

    # --- capacity ---------------------------------------------------------------------------

    def whole(self, where: str, value: Any, minimum: int, maximum: int | None = None) -> int | None:
        """A whole number in ``minimum..maximum``, or ``None`` after reporting it."""
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(where, f"must be an integer >= {minimum}, got {value!r}")
            return None
        if maximum is not None and value > maximum:
            self.fail(where, f"must be an integer {minimum}..{maximum}, got {value!r}")
            return None
        return value

    def aws_enum(
        self, where: str, value: Any, service: str, shape: str, default: str | None
    ) -> str | None:
        """A value of an enum of botocore's ``service`` model (e.g. Glue ``WorkerType``)."""
        if not isinstance(value, str) or not value:
            self.fail(where, f"must be a string, got {value!r}")
            return None
        if value == default:
            return value  # what runs today: no need to load the service model for it
        allowed = aws_enum_values(service, shape)
        if allowed is not None and value not in allowed:
            close = difflib.get_close_matches(value, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.fail(
                where,
                f"{value!r} is not a {service} {shape}{hint}; botocore's model allows "
                f"{', '.join(allowed) if len(allowed) <= 12 else f'{len(allowed)} values'}",
            )
            return None
        return value

    def capacity(self, raw: Any) -> Capacity:
        if raw is None:
            return Capacity()
        top = self.mapping("capacity", raw)
        self.unknown_keys("capacity", top, _CAPACITY_KEYS)
        default = Capacity()
        return Capacity(
            spark=self.spark_capacity(top.get("spark"), default.spark),
            quality=self.quality_capacity(top.get("quality"), default.quality),
            training=self.instance_capacity(
                "capacity.training", top.get("training"), default.training, "TrainingInstanceType"
            ),
            transform=self.instance_capacity(
                "capacity.transform",
                top.get("transform"),
                default.transform,
                "TransformInstanceType",
            ),
            processing=self.instance_capacity(
                "capacity.processing",
                top.get("processing"),
                default.processing,
                "ProcessingInstanceType",
            ),
        )

    def max_runtime(self, where: str, block: Mapping, default: Any, minimum: int = 1) -> Any:
        if block.get("max_runtime_minutes") is None:
            return default
        value = self.whole(
            f"{where}.max_runtime_minutes",
            block["max_runtime_minutes"],
            minimum,
            MAX_RUNTIME_MINUTES_LIMIT,
        )
        return default if value is None else value

    def spark_capacity(self, raw: Any, default: SparkCapacity) -> SparkCapacity:
        where = "capacity.spark"
        block = self.mapping(where, raw) if raw is not None else {}
        self.unknown_keys(where, block, _SPARK_CAPACITY_KEYS)
        glue = self.mapping(f"{where}.glue", block["glue"]) if block.get("glue") is not None else {}
        self.unknown_keys(f"{where}.glue", glue, _GLUE_CAPACITY_KEYS)
        worker_type = default.glue.worker_type
        if glue.get("worker_type") is not None:
            checked = self.aws_enum(
                f"{where}.glue.worker_type", glue["worker_type"], "glue", "WorkerType", worker_type
            )
            if checked in GLUE_WORKER_TYPES_NOT_FOR_SPARK_ETL:
                self.fail(
                    f"{where}.glue.worker_type",
                    f"{checked!r} is {GLUE_WORKER_TYPES_NOT_FOR_SPARK_ETL[checked]}, not a Glue "
                    "Spark ETL job's worker",
                )
            elif checked is not None:
                worker_type = checked
        workers = default.glue.number_of_workers
        if glue.get("number_of_workers") is not None:
            # Glue's minimum: one worker runs the Spark driver, the others the executors.
            workers = self.whole(f"{where}.glue.number_of_workers", glue["number_of_workers"], 2)
        # EMR Serverless has no per-run capacity limit (the application's maximum capacity is
        # its own); a run's share is bounded by its executors.
        emr_serverless = self.executor_capacity(
            f"{where}.emr_serverless", block.get("emr_serverless"), serverless=True
        )
        emr_step = self.executor_capacity(f"{where}.emr_step", block.get("emr_step"))
        return SparkCapacity(
            # EMR Serverless refuses run timeouts under five minutes.
            max_runtime_minutes=self.max_runtime(where, block, default.max_runtime_minutes, 5),
            glue=GlueCapacity(worker_type, workers or default.glue.number_of_workers),
            emr_serverless=emr_serverless,
            emr_step=emr_step,
        )

    def executor_capacity(self, where: str, raw: Any, serverless: bool = False) -> ExecutorCapacity:
        block = self.mapping(where, raw) if raw is not None else {}
        self.unknown_keys(where, block, _EXECUTOR_CAPACITY_KEYS)
        values: dict[str, int | None] = {}
        for key in sorted(_EXECUTOR_CAPACITY_KEYS):
            values[key] = (
                self.whole(f"{where}.{key}", block[key], 1) if block.get(key) is not None else None
            )
        cores, memory = values["executor_cores"], values["executor_memory_gb"]
        if (block.get("executor_cores") is None) != (block.get("executor_memory_gb") is None):
            # One without the other meets the engine's default for the other, which may not fit.
            self.fail(
                where, "executor_cores and executor_memory_gb go together: set both or neither"
            )
        elif serverless and cores is not None and memory is not None:
            if cores not in EMR_SERVERLESS_WORKER_MEMORY_GB:
                self.fail(
                    f"{where}.executor_cores",
                    f"must be one of {sorted(EMR_SERVERLESS_WORKER_MEMORY_GB)} (EMR Serverless "
                    f"worker vCPUs), got {cores}",
                )
            else:
                low, high = EMR_SERVERLESS_WORKER_MEMORY_GB[cores]
                worker_gb = memory + max(0.384, 0.1 * memory)
                if not low <= worker_gb <= high:
                    self.fail(
                        f"{where}.executor_memory_gb",
                        f"{memory} GB plus Spark's overhead ({worker_gb:.1f} GB) does not fit an "
                        f"EMR Serverless worker of {cores} vCPU ({low}..{high} GB)",
                    )
        return ExecutorCapacity(**values)

    def quality_capacity(self, raw: Any, default: QualityCapacity) -> QualityCapacity:
        where = "capacity.quality"
        block = self.mapping(where, raw) if raw is not None else {}
        self.unknown_keys(where, block, _QUALITY_CAPACITY_KEYS)
        gdq = block.get("glue_data_quality")
        gdq = self.mapping(f"{where}.glue_data_quality", gdq) if gdq is not None else {}
        self.unknown_keys(f"{where}.glue_data_quality", gdq, _GDQ_CAPACITY_KEYS)
        workers = default.glue_data_quality_workers
        if gdq.get("number_of_workers") is not None:
            checked = self.whole(
                f"{where}.glue_data_quality.number_of_workers", gdq["number_of_workers"], 2
            )
            workers = checked or workers
        return QualityCapacity(
            max_runtime_minutes=self.max_runtime(where, block, default.max_runtime_minutes),
            glue_data_quality_workers=workers,
        )

    def instance_capacity(
        self, where: str, raw: Any, default: InstanceCapacity, enum_shape: str
    ) -> InstanceCapacity:
        block = self.mapping(where, raw) if raw is not None else {}
        self.unknown_keys(where, block, _INSTANCE_CAPACITY_KEYS)
        instance_type = default.instance_type
        if block.get("instance_type") is not None:
            instance_type = (
                self.aws_enum(
                    f"{where}.instance_type",
                    block["instance_type"],
                    "sagemaker",
                    enum_shape,
                    default.instance_type,
                )
                or instance_type
            )
        count = default.instance_count
        if block.get("instance_count") is not None:
            count = self.whole(f"{where}.instance_count", block["instance_count"], 1) or count
        return InstanceCapacity(
            instance_type=instance_type,
            instance_count=count,
            max_runtime_minutes=self.max_runtime(where, block, default.max_runtime_minutes),
        )

    def columns(self, raw: Any) -> list[ColumnSpec]:
        if not isinstance(raw, list) or not raw:
            if raw is not None:
                self.fail("columns", "must be a non-empty list of column mappings")
            return []
        columns: list[ColumnSpec] = []
        seen: dict[str, str] = {}
        for i, item in enumerate(raw):
            label = f"columns[{i}]"
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                label = f"columns[{i}] ({item['name']})"
            column = self.column(label, item)
            if column is None:
                if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                    self.broken_columns.add(item["name"])
                continue
            for name in (column.name, *column.aliases):
                if name in seen:
                    self.fail(label, f"name or alias {name!r} is already used by {seen[name]}")
                seen[name] = label
            columns.append(column)
        outputs = [c.curated_name for c in columns if c.curated_name]
        for name in {n for n in outputs if outputs.count(n) > 1}:
            self.fail("columns", f"two columns would both be named {name!r} in curated data")
        return columns

    def column(self, where: str, raw: Any) -> ColumnSpec | None:
        spec = self.mapping(where, raw)
        if not spec:
            return None
        self.unknown_keys(where, spec, _COLUMN_KEYS)
        name = self.name(f"{where}.name", spec.get("name"))
        ctype = spec.get("type")
        if ctype not in TYPES:
            self.fail(f"{where}.type", f"{ctype!r} is not one of {', '.join(TYPES)}")
            return None
        nullable = spec.get("nullable", True)
        if not isinstance(nullable, bool):
            self.fail(f"{where}.nullable", f"must be true or false, got {nullable!r}")
        aliases = self.names(f"{where}.aliases", spec.get("aliases"))
        low = self.bound(f"{where}.min", spec.get("min"), ctype)
        high = self.bound(f"{where}.max", spec.get("max"), ctype)
        if low is not None and high is not None and DS_TOKEN not in (low, high) and low > high:
            self.fail(where, f"min {low!r} is greater than max {high!r}")
        allowed = spec.get("allowed")
        if allowed is not None:
            if (
                ctype not in ("string", "int", "long")
                or not isinstance(allowed, list)
                or not allowed
            ):
                self.fail(
                    f"{where}.allowed", "must be a non-empty list, on a string or integer column"
                )
                allowed = None
            else:
                wanted = str if ctype == "string" else int
                bad = [a for a in allowed if not isinstance(a, wanted) or isinstance(a, bool)]
                if bad:
                    hint = ""
                    if ctype == "string" and any(isinstance(a, bool) for a in bad):
                        # YAML 1.1 reads unquoted yes/no/on/off/true/false as booleans.
                        hint = (
                            ": YAML reads unquoted yes, no, on, off, true and false as "
                            'booleans; quote them ("yes", "no")'
                        )
                    self.fail(f"{where}.allowed", f"values {bad!r} are not {ctype}{hint}")
                allowed = tuple(allowed)
        pattern = spec.get("pattern")
        if pattern is not None:
            if ctype != "string":
                self.fail(f"{where}.pattern", "only string columns take a pattern")
            pattern = self.regex(f"{where}.pattern", pattern)
        max_length = spec.get("max_length")
        if max_length is not None and (
            ctype != "string" or not isinstance(max_length, int) or max_length < 1
        ):
            self.fail(f"{where}.max_length", "must be a positive integer, on a string column")
            max_length = None
        guard_default = ctype == "string" and pattern is None and allowed is None
        formula_guard = spec.get("formula_guard", guard_default)
        if not isinstance(formula_guard, bool) or (formula_guard and ctype != "string"):
            self.fail(
                f"{where}.formula_guard", "must be true or false, and true only on a string column"
            )
            formula_guard = False
        pii = self.pii(f"{where}.pii", spec["pii"], ctype, name) if "pii" in spec else None
        description = spec.get("description", "")
        if name is None or not isinstance(nullable, bool):
            return None
        return ColumnSpec(
            name=name,
            type=ctype,
            nullable=nullable,
            description=description if isinstance(description, str) else "",
            aliases=aliases,
            min=low,
            max=high,
            allowed=allowed,
            pattern=pattern,
            max_length=max_length,
            formula_guard=formula_guard,
            pii=pii,
        )

    def bound(self, where: str, value: Any, ctype: str) -> Any:
        if value is None:
            return None
        if ctype in NUMERIC_TYPES:
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(where, f"must be a number for a {ctype} column, got {value!r}")
                return None
            if ctype != "double" and not isinstance(value, int):
                self.fail(where, f"must be an integer for a {ctype} column, got {value!r}")
                return None
            return value
        if ctype in TEMPORAL_TYPES:
            if value == DS_TOKEN:
                return value
            text = value.isoformat() if isinstance(value, date) else value
            if not isinstance(text, str) or not _DATE.match(text):
                self.fail(where, f"must be a YYYY-MM-DD date or {DS_TOKEN!r}, got {value!r}")
                return None
            try:
                date.fromisoformat(text)
            except ValueError:
                self.fail(where, f"{text!r} is not a calendar date")
                return None
            return text
        self.fail(where, f"a {ctype} column takes no min/max")
        return None

    def pii(self, where: str, raw: Any, ctype: str, name: str | None) -> PiiSpec | None:
        spec = self.mapping(where, raw)
        if not spec:
            return None
        self.unknown_keys(where, spec, _PII_KEYS)
        if ctype != "string":
            self.fail(where, "PII columns must be strings")
        treatment = spec.get("treatment")
        if treatment not in PII_TREATMENTS:
            self.fail(
                f"{where}.treatment", f"{treatment!r} is not one of {', '.join(PII_TREATMENTS)}"
            )
            return None
        detect = self.regex(f"{where}.detect", spec.get("detect"))
        if detect is not None:
            try:
                partial_detect_pattern(detect)
            except ValueError as error:
                self.fail(f"{where}.detect", str(error))
                detect = None
        output = spec.get("output")
        if treatment == "hash":
            output = self.name(
                f"{where}.output", output if output is not None else f"{name}_sha256"
            )
        elif output is not None:
            self.fail(
                f"{where}.output",
                f"only the hash treatment renames a column ({treatment} does not)",
            )
        keep_last = spec.get("keep_last", 0)
        if treatment != "mask" and "keep_last" in spec:
            self.fail(f"{where}.keep_last", "only the mask treatment keeps characters")
        elif (
            not isinstance(keep_last, int) or isinstance(keep_last, bool) or not 0 <= keep_last <= 4
        ):
            self.fail(f"{where}.keep_last", f"must be an integer within 0..4, got {keep_last!r}")
            keep_last = 0
        lowercase = spec.get("lowercase", False)
        if not isinstance(lowercase, bool):
            self.fail(f"{where}.lowercase", "must be true or false")
            lowercase = False
        if detect is None:
            return None
        return PiiSpec(
            treatment=treatment,
            detect=detect,
            output=output,
            keep_last=keep_last,
            lowercase=lowercase,
        )

    def features(
        self,
        raw: Any,
        by_name: Mapping[str, ColumnSpec],
        label: str | None,
        partition_column: str | None = None,
    ) -> FeatureSpec | None:
        spec = self.mapping("features", raw)
        if not spec:
            return None
        self.unknown_keys("features", spec, _FEATURE_KEYS)

        def refs(key: str, types: Iterable[str], extra: str = "") -> tuple[str, ...]:
            names = self.names(f"features.{key}", spec.get(key))
            for i, name in enumerate(names):
                column = by_name.get(name)
                where = f"features.{key}[{i}]"
                if column is None:
                    if name not in self.broken_columns:
                        self.fail(where, f"{name!r} is not a declared column")
                elif column.pii is not None:
                    self.fail(where, f"{name!r} is PII and cannot be a feature")
                elif name == label:
                    self.fail(
                        where, f"{name!r} is the label; a feature built from it leaks the answer"
                    )
                elif column.type not in types:
                    self.fail(
                        where,
                        f"{name!r} has type {column.type}; expected {' or '.join(sorted(types))}",
                    )
                elif extra == "allowed" and column.allowed is None:
                    self.fail(
                        where, f"{name!r} needs an allowed list (it fixes the one-hot columns)"
                    )
            return names

        split_key = self.name("features.split_key", spec.get("split_key"))
        if split_key and split_key not in by_name and split_key not in self.broken_columns:
            self.fail("features.split_key", f"{split_key!r} is not a declared column")
        split_raw = self.mapping("features.split", spec.get("split", {}))
        split = []
        for name in _SPLITS:
            share = split_raw.get(name)
            if not isinstance(share, int) or isinstance(share, bool) or not 0 <= share <= 100:
                self.fail(f"features.split.{name}", f"must be an integer percentage, got {share!r}")
                share = 0
            split.append((name, share))
        self.unknown_keys("features.split", split_raw, set(_SPLITS))
        if sum(share for _, share in split) != 100:
            self.fail(
                "features.split", f"shares must add up to 100, got {sum(s for _, s in split)}"
            )
        seed = spec.get("split_seed")
        if not isinstance(seed, str) or not seed:
            self.fail(
                "features.split_seed",
                "must be a non-empty string (changing it reshuffles every split)",
            )
        lookback = spec.get("lookback_days", 1)
        if not isinstance(lookback, int) or isinstance(lookback, bool) or not 1 <= lookback <= 366:
            self.fail(
                "features.lookback_days", f"must be an integer within 1..366, got {lookback!r}"
            )
        numeric = refs("numeric", NUMERIC_TYPES)
        categorical = refs("categorical", {"string", "int", "long"}, extra="allowed")
        boolean = refs("boolean", {"boolean"})
        days_since = refs("days_since", TEMPORAL_TYPES)
        rolling = refs("rolling_mean", NUMERIC_TYPES)
        ratios = []
        raw_ratios = spec.get("ratios") or []
        if not isinstance(raw_ratios, list):
            self.fail("features.ratios", "must be a list of {name, numerator, denominator}")
            raw_ratios = []
        for i, item in enumerate(raw_ratios):
            where = f"features.ratios[{i}]"
            ratio = self.mapping(where, item)
            self.unknown_keys(where, ratio, {"name", "numerator", "denominator"})
            parts = [
                self.name(f"{where}.{k}", ratio.get(k))
                for k in ("name", "numerator", "denominator")
            ]
            for key, part in zip(("numerator", "denominator"), parts[1:], strict=True):
                column = by_name.get(part) if part else None
                if (
                    part
                    and part not in self.broken_columns
                    and (
                        column is None
                        or column.type not in NUMERIC_TYPES
                        or column.pii
                        or part == label
                    )
                ):
                    self.fail(
                        f"{where}.{key}", f"{part!r} must be a numeric, non-PII, non-label column"
                    )
            if all(parts):
                ratios.append(RatioFeature(*parts))
        if not (numeric or categorical or boolean or days_since or rolling or ratios):
            self.fail("features", "declares no feature at all")
        sensitive_groups = None
        if "sensitive_groups" in spec:
            sensitive_groups = self.names("features.sensitive_groups", spec["sensitive_groups"])
            for i, name in enumerate(sensitive_groups):
                # The trainer finds a group by its one-hot columns <name>__<value>, which only
                # categorical features have.
                if name not in categorical and name not in self.broken_columns:
                    self.fail(
                        f"features.sensitive_groups[{i}]",
                        f"{name!r} must be one of features.categorical {list(categorical)}; "
                        "to audit a column that is not a model input, list it in "
                        "features.audit_attributes",
                    )
        inputs = {
            **dict.fromkeys(numeric, "features.numeric"),
            **dict.fromkeys(categorical, "features.categorical"),
            **dict.fromkeys(boolean, "features.boolean"),
            **dict.fromkeys(days_since, "features.days_since"),
            **dict.fromkeys(rolling, "features.rolling_mean"),
        }
        for ratio in ratios:
            inputs.setdefault(ratio.numerator, f"features.ratios ({ratio.name})")
            inputs.setdefault(ratio.denominator, f"features.ratios ({ratio.name})")
        audit_attributes = self.audit_attributes(
            spec.get("audit_attributes"),
            by_name,
            inputs=inputs,
            ids={split_key, partition_column},
            label=label,
            taken={ratio.name for ratio in ratios} | {"split"},
        )
        fairness = self.fairness(spec.get("fairness"))
        if self.problems:
            return None
        return FeatureSpec(
            split_key=split_key or "",
            split=tuple(split),
            split_seed=seed,
            lookback_days=lookback,
            numeric=numeric,
            categorical=categorical,
            boolean=boolean,
            days_since=days_since,
            rolling_mean=rolling,
            ratios=tuple(ratios),
            sensitive_groups=sensitive_groups,
            audit_attributes=audit_attributes,
            fairness=fairness,
        )

    def audit_attributes(
        self, raw: Any, by_name, *, inputs: dict, ids: set, label: str, taken: set
    ) -> tuple[str, ...]:
        """``features.audit_attributes``: declared, non-PII, non-label columns that are no model
        input, of a type whose values name groups."""
        names = self.names("features.audit_attributes", raw)
        for i, name in enumerate(names):
            where = f"features.audit_attributes[{i}]"
            column = by_name.get(name)
            if column is None:
                if name not in self.broken_columns:
                    self.fail(where, f"{name!r} is not a declared column")
            elif column.pii is not None:
                self.fail(
                    where,
                    f"{name!r} is PII (treatment {column.pii.treatment}); its curated values "
                    "cannot name audit groups",
                )
            elif name == label:
                self.fail(where, f"{name!r} is the label")
            elif name in ids:
                self.fail(where, f"{name!r} is the split key or partition column (an id column)")
            elif name in inputs:
                self.fail(
                    where,
                    f"{name!r} is a model input ({inputs[name]}); audit a categorical input "
                    "with features.sensitive_groups, or remove it from the features to keep it "
                    "out of the model",
                )
            elif name in taken:
                self.fail(where, f"{name!r} is also the name of a feature column or 'split'")
            elif column.type not in AUDIT_TYPES:
                self.fail(
                    where,
                    f"{name!r} has type {column.type}; audit groups need "
                    f"{' or '.join(sorted(AUDIT_TYPES))}",
                )
        return names

    def fairness(self, raw: Any) -> FairnessSpec:
        """``features.fairness``: the decision threshold and the card's limits on gaps."""
        if raw is None:
            return FairnessSpec()
        spec = self.mapping("features.fairness", raw)
        self.unknown_keys("features.fairness", spec, _FAIRNESS_KEYS)
        threshold = spec.get("decision_threshold")
        if threshold is not None and threshold not in THRESHOLD_METHODS:
            is_number = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
            if not is_number or not 0 < threshold < 1:
                self.fail(
                    "features.fairness.decision_threshold",
                    f"must be {' or '.join(THRESHOLD_METHODS)} (chosen on the validation "
                    f"split) or a number in (0, 1), got {threshold!r}",
                )
                threshold = None
            else:
                threshold = float(threshold)
        rows = spec.get("min_group_rows")
        if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 1):
            self.fail("features.fairness.min_group_rows", f"must be an integer >= 1, got {rows!r}")
            rows = None
        limits = {}
        for key in ("max_group_difference", "min_disparate_impact"):
            value = spec.get(key)
            if value is not None and (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not 0 <= value <= 1
            ):
                self.fail(f"features.fairness.{key}", f"must be a number in [0, 1], got {value!r}")
                value = None
            limits[key] = None if value is None else float(value)
        return FairnessSpec(threshold, rows, **limits)


# --- partial PII: a value of a PII column's kind, cut off at the end of a text -------------------

# A cut-off value shorter than this is not scrubbed: it identifies no one, and a shorter bound
# would scrub the last number of every truncated line.
PARTIAL_MIN_CHARS = 4
_CATEGORIES = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
}
_ANCHORS = {
    "AT_BOUNDARY": r"\b",
    "AT_NON_BOUNDARY": r"\B",
    "AT_BEGINNING": "^",
    "AT_BEGINNING_STRING": r"\A",
    "AT_END": "$",
    "AT_END_STRING": r"\z",
}


def partial_detect_pattern(detect: str) -> str:
    """A Java regex matching, at the end of a text and from the start of a token, a prefix of at
    least :data:`PARTIAL_MIN_CHARS` characters of some match of ``detect``.

    A truncated line ends in the middle of a value (``+1-555-37``, ``corpus.us``) that the full
    ``detect`` regex no longer finds. The prefix language of a regex is regular too: for a
    sequence ``e1 … en`` it is ``e1 … e(k-1)`` followed by a prefix of ``ek``, for some ``k``;
    a repeat ``X{m,n}`` contributes ``X{0,n-1}`` then a prefix of ``X``. Built from Python's
    parse of ``detect`` and written back in syntax Java and Python read alike; :class:`ValueError`
    names a construct it cannot take (lookarounds, back references, inline flags).
    """
    import re._parser as sre  # the standard library's regex parser (sre_parse before 3.11)

    try:
        parsed = sre.parse(re.sub(r"\(\?<(?=[A-Za-z])", "(?P<", detect))
    except re.error as error:
        raise ValueError(f"is not a valid regex: {error}") from None
    prefixes = _prefix_of(list(parsed), sre)
    # It starts a token (a cut-off value starts where the value did) and runs to the end.
    return f"(?<![A-Za-z0-9])(?=[^\\n]{{{PARTIAL_MIN_CHARS}}})(?:{prefixes})$"


def search_pattern(detect: str) -> str:
    """``detect`` guarded so that searching a long text with it takes linear time.

    A pattern opening with an unbounded run (``[A-Za-z0-9._%+-]+@…``) searched in a 200,000
    character word re-scans the word from each of its positions: quadratic, minutes per record.
    A match of such a pattern can only start where the previous match ended (``\\G``) or where
    the run starts (the character before is not in it): anywhere else, starting one character
    earlier would match too, and the search takes the leftmost. So the guard changes no match.
    """
    import re._parser as sre

    parsed = list(sre.parse(re.sub(r"\(\?<(?=[A-Za-z])", "(?P<", detect)))
    if parsed and str(parsed[0][0]) in ("MAX_REPEAT", "POSSESSIVE_REPEAT"):
        _, high, sub = parsed[0][1]
        sub = list(sub)
        if high == sre.MAXREPEAT and len(sub) == 1 and str(sub[0][0]) in ("IN", "LITERAL"):
            atom = _emit(sub, sre)
            return f"(?:\\G|(?<!{atom})){detect}"
    return detect


def _regex_char(code: int) -> str:
    char = chr(code)
    if char.isascii() and char.isalnum():
        return char
    if code < 128:
        return "\\" + char  # Java and Python both take a backslash before any non-letter
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    raise ValueError(f"cannot derive a partial-value detector: character U+{code:X} in a class")


def _emit(items: list, sre) -> str:
    return "".join(_emit_item(op, av, sre) for op, av in items)


def _atom(items: list, sre) -> str:
    """``items`` as something a quantifier can follow."""
    text = _emit(items, sre)
    if len(items) == 1 and str(items[0][0]) in ("LITERAL", "NOT_LITERAL", "IN", "ANY"):
        return text
    return f"(?:{text})"


def _emit_item(op, av, sre) -> str:
    name = str(op)
    if name == "LITERAL":
        return _regex_char(av)
    if name == "NOT_LITERAL":
        return f"[^{_regex_char(av)}]"
    if name == "ANY":
        return "."
    if name == "IN":
        parts = []
        for sub_op, sub_av in av:
            sub = str(sub_op)
            if sub == "NEGATE":
                parts.append("^")
            elif sub == "LITERAL":
                parts.append(_regex_char(sub_av))
            elif sub == "RANGE":
                parts.append(f"{_regex_char(sub_av[0])}-{_regex_char(sub_av[1])}")
            elif sub == "CATEGORY" and str(sub_av) in _CATEGORIES:
                parts.append(_CATEGORIES[str(sub_av)])
            else:
                raise ValueError(f"cannot derive a partial-value detector: {sub} in a class")
        return "[" + "".join(parts) + "]"
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        low, high, sub = av
        bound = f"{{{low},}}" if high == sre.MAXREPEAT else f"{{{low},{high}}}"
        return _atom(list(sub), sre) + bound
    if name in ("SUBPATTERN", "ATOMIC_GROUP"):
        sub = av[-1] if name == "SUBPATTERN" else av
        if name == "SUBPATTERN" and (av[1] or av[2]):
            raise ValueError("cannot derive a partial-value detector: inline flags")
        return f"(?:{_emit(list(sub), sre)})"
    if name == "BRANCH":
        return "(?:" + "|".join(_emit(list(seq), sre) for seq in av[1]) + ")"
    if name == "AT" and str(av) in _ANCHORS:
        return _ANCHORS[str(av)]
    raise ValueError(f"cannot derive a partial-value detector: {name} is not supported")


def _prefix_of(items: list, sre) -> str:
    """A regex for every prefix (empty and whole included) of a match of the sequence."""
    alternatives = [
        _emit(items[:k], sre) + _prefix_of_item(op, av, sre) for k, (op, av) in enumerate(items)
    ]
    alternatives = [a for a in dict.fromkeys(alternatives) if a]
    if not alternatives:
        return ""
    return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"


def _prefix_of_item(op, av, sre) -> str:
    name = str(op)
    if name in ("LITERAL", "NOT_LITERAL", "IN", "ANY"):
        return _emit_item(op, av, sre) + "?"
    if name == "AT":
        _emit_item(op, av, sre)  # refuses what it cannot write
        return ""
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        _, high, sub = av
        if high == 0:
            return ""
        atom = _atom(list(sub), sre)
        inner = _prefix_of(list(sub), sre)
        head = f"{atom}*" if high == sre.MAXREPEAT else f"{atom}{{0,{high - 1}}}"
        return f"{head}(?:{inner})" if inner else head
    if name in ("SUBPATTERN", "ATOMIC_GROUP"):
        _emit_item(op, av, sre)  # refuses inline flags
        return _prefix_of(list(av[-1] if name == "SUBPATTERN" else av), sre)
    if name == "BRANCH":
        return "(?:" + "|".join(_prefix_of(list(seq), sre) for seq in av[1]) + ")"
    raise ValueError(f"cannot derive a partial-value detector: {name} is not supported")
