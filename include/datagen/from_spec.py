"""Landing files for any dataset, generated from its spec alone: sample data for a new pipeline.

A dataset added by spec (``make new-pipeline``) has no generator of its own; this one reads the
spec and writes what an upstream producer would drop into landing —
``<out>/<dataset>/ds=YYYY-MM-DD/part-NNNNN.csv[.gz]`` or ``.jsonl[.gz]``, the layout
``spark_jobs/ingest.py`` reads — with values every row rule of the spec accepts:

- ids and other patterned strings are sampled from the column's regex (the split key is unique
  across the run's days); an ``email`` column gets ``first.last@domain`` addresses when those
  match its pattern;
- categorical columns draw their ``allowed`` values with skewed (Zipf-like) shares; booleans
  are true at a per-column rate; numbers are right-skewed within ``min``..``max`` (most real
  amounts and counts are); dates fall within their bounds, mostly recent; the event time lies
  within the day, the partition column is the day;
- nullable columns are empty in a few percent of rows; free text comes from a small
  vocabulary that holds nothing PII-shaped and never starts with a formula character;
- the label depends on the features (a seeded logistic model over about half of them, its
  intercept fitted to ``--label-rate``), so a model can learn it and beat chance;
- ``--drift-columns`` shifts the named features on the last day (numbers up, categories'
  shares reversed, boolean rates flipped), for the monitoring stage to catch.

Everything is seeded: the same arguments write the same bytes. Every day's rows are new
entities (a claim, an order); there is no planted defect (``include/datagen/churn.py`` plants
those for ingestion's own tests).

Usage::

    python -m include.datagen.from_spec --spec include/datasets/benefit_claims.yaml \\
        --out .local/lake/landing --start 2026-01-01 --days 2 --rows-per-day 5000 --seed 7 \\
        [--format csv|jsonl] [--gzip] [--label-rate 0.2] [--drift-columns claimed_amount,channel]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
import random
import re
import string
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from spark_jobs.dataset_spec import DS_TOKEN, DatasetSpec, load_spec

# Share of empty values in a nullable column.
NULL_RATE = 0.05
# Right skew of numbers within their bounds: Beta(a, b) has mean a / (a + b) ≈ 0.2.
NUMBER_SHAPE = (1.5, 6.0)
# Bounds of a column that declares none.
DEFAULT_NUMBER_RANGE = {"int": (0, 100), "long": (0, 100_000), "double": (0.0, 1000.0)}
DEFAULT_DATE_SPAN_DAYS = 3650
# A drifted number is its draw scaled by this (then clipped to the column's max).
DRIFT_NUMBER_FACTOR = 1.8
# Repeats of a regex without an upper bound (``+``, ``*``, ``{2,}``) stop after this many more.
OPEN_REPEAT_EXTRA = 8
ROWS_PER_FILE = 1_000_000
FREE_TEXT = (
    "documents received",
    "called back",
    "awaiting payslips",
    "address confirmed",
    "first claim",
    "renewal",
    "translated form",
    "asked for tenancy agreement",
    "medical certificate attached",
    "visited the office",
)
FIRST_NAMES = ("anna", "ben", "chloe", "david", "eva", "farid", "grace", "hugo", "ines", "jonas")
LAST_NAMES = ("smith", "garcia", "muller", "rossi", "novak", "jensen", "dubois", "silva", "khan")
EMAIL_DOMAINS = ("example.com", "mail.example.org", "post.example.net")


class GeneratorError(ValueError):
    """The spec or an argument cannot be generated from; the message names the column or flag."""


# --- regex sampling ------------------------------------------------------------------------------


def _python_regex(pattern: str) -> str:
    # Specs are written for java.util.regex: named groups (?<name>…) are (?P<name>…) in Python.
    return re.sub(r"\(\?<(?=[A-Za-z])", "(?P<", pattern)


class RegexSampler:
    """Random strings matching a regex (literals, classes, ranges, repeats, groups, ``|``).

    Built on the standard library's own regex parser, so it reads a pattern exactly as ``re``
    does; constructs that cannot be sampled (look-arounds, back-references, negated classes)
    raise :class:`GeneratorError` naming the column.
    """

    def __init__(self, pattern: str, where: str):
        from re import _constants as c
        from re import _parser

        self._c = c
        self.where = where
        self.pattern = pattern
        python_pattern = _python_regex(pattern)
        self.compiled = re.compile(python_pattern)
        self.tree = _parser.parse(python_pattern)

    def sample(self, rng: random.Random) -> str:
        return "".join(self._emit(self.tree, rng))

    def _class_chars(self, items) -> list[str]:
        c = self._c
        chars: list[str] = []
        for op, arg in items:
            if op is c.LITERAL:
                chars.append(chr(arg))
            elif op is c.RANGE:
                chars.extend(chr(code) for code in range(arg[0], arg[1] + 1))
            elif op is c.CATEGORY and arg is c.CATEGORY_DIGIT:
                chars.extend(string.digits)
            elif op is c.CATEGORY and arg is c.CATEGORY_WORD:
                chars.extend(string.ascii_letters + string.digits + "_")
            elif op is c.CATEGORY and arg is c.CATEGORY_SPACE:
                chars.append(" ")
            else:
                raise GeneratorError(
                    f"{self.where}: cannot sample {self.pattern!r} (character class item {op})"
                )
        return chars

    def _emit(self, tree, rng: random.Random) -> list[str]:
        c = self._c
        out: list[str] = []
        for op, arg in tree:
            if op is c.LITERAL:
                out.append(chr(arg))
            elif op is c.IN:
                out.append(rng.choice(self._class_chars(arg)))
            elif op is c.ANY:
                out.append(rng.choice(string.ascii_lowercase + string.digits))
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
                low, high, body = arg
                if high is c.MAXREPEAT:
                    high = low + OPEN_REPEAT_EXTRA
                for _ in range(rng.randint(low, high)):
                    out.extend(self._emit(body, rng))
            elif op is c.SUBPATTERN:
                out.extend(self._emit(arg[-1], rng))
            elif op is c.BRANCH:
                out.extend(self._emit(rng.choice(arg[1]), rng))
            elif op is c.AT:
                continue  # ^, $, \b: positions, not characters
            else:
                raise GeneratorError(f"{self.where}: cannot sample {self.pattern!r} (uses {op})")
        return out


# --- the generator -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorConfig:
    spec_path: Path
    out: Path
    start: date
    days: int
    rows_per_day: int
    seed: int = 0
    fmt: str | None = None
    gzip: bool = False
    label_rate: float = 0.2
    drift_columns: tuple[str, ...] = ()
    rows_per_file: int = ROWS_PER_FILE


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([abs(k) for k in key])


def _stable(text: str) -> int:
    """A seed component from a name (``hash()`` of a str changes per process)."""
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") ^ len(text)


def _date_bound(value: Any, ds: date) -> date | None:
    if value is None:
        return None
    if value == DS_TOKEN:
        return ds
    return value if isinstance(value, date) else date.fromisoformat(str(value))


class _Dataset:
    """The per-column draws of one spec; the same seed gives the same values."""

    def __init__(self, spec: DatasetSpec, config: GeneratorConfig):
        self.spec = spec
        self.config = config
        self.features = spec.features
        if self.features is None:
            raise GeneratorError(f"{spec.source}: the spec has no features: block to learn from")
        unknown = [c for c in config.drift_columns if c not in spec.column_names]
        if unknown:
            raise GeneratorError(
                f"--drift-columns: {unknown} are not columns of {spec.source} "
                f"(it has {list(spec.column_names)})"
            )
        self.samplers = {
            column.name: RegexSampler(column.pattern, f"{spec.source}: column {column.name!r}")
            for column in spec.columns
            if column.type == "string" and column.pattern
        }
        self.used_keys: set[str] = set()
        self.label_column = spec.column(spec.label)
        self.label_values = self._label_values()
        self.model = self._label_model()

    # -- the label

    def _label_values(self) -> tuple[Any, Any]:
        """(negative, positive) in the label column's type."""
        column = self.label_column
        if column.type == "boolean":
            return False, True
        allowed = list(column.allowed or [])
        if len(allowed) == 2:
            return tuple(sorted(allowed, key=str))  # type: ignore[return-value]
        if column.type in {"int", "long", "double"}:
            return 0, 1
        raise GeneratorError(
            f"{self.spec.source}: label {column.name!r} must be boolean, 0/1 or have exactly two "
            "allowed values to generate"
        )

    def _label_model(self) -> dict[str, Any]:
        """Seeded weights: about half of the features move the label, the rest are noise."""
        rng = _rng(self.config.seed, _stable("label-model"))
        model: dict[str, Any] = {}
        names = [*self.features.numeric, *self.features.boolean, *self.features.categorical]
        for name in names:
            if rng.random() < 0.5:
                continue
            if name in self.features.categorical:
                values = self.spec.column(name).allowed or ()
                model[name] = {str(v): float(rng.normal(0, 1.0)) for v in values}
            else:
                model[name] = float(rng.choice([-1, 1]) * rng.uniform(0.6, 1.4))
        if not model and names:
            model[names[0]] = 1.0
        return model

    # -- one day

    def day(self, ds: date, day_index: int, drifted: bool) -> dict[str, list]:
        n = self.config.rows_per_day
        values: dict[str, np.ndarray | list] = {}
        drift = set(self.config.drift_columns) if drifted else set()
        for index, column in enumerate(self.spec.columns):
            if column.name == self.spec.label:
                continue
            rng = _rng(self.config.seed, day_index, index)
            # A column's shape (category shares, true rate) is the same every day; only drift
            # changes it.
            shape = _rng(self.config.seed, _stable("shape"), index)
            values[column.name] = self._column(column, ds, n, rng, shape, column.name in drift)
        values[self.spec.label] = self._labels(values, _rng(self.config.seed, day_index, 10_000))
        return values

    def _column(self, column, ds: date, n: int, rng, shape, drifted: bool):
        name, kind = column.name, column.type
        if name == self.spec.partition_column:
            return [ds] * n
        if kind == "timestamp":
            start = datetime(ds.year, ds.month, ds.day, tzinfo=UTC)
            seconds = np.sort(rng.integers(0, 86_400, n))
            out = [start + timedelta(seconds=int(s)) for s in seconds]
        elif column.allowed is not None:
            allowed = list(column.allowed)
            weights = 1.0 / np.arange(1, len(allowed) + 1) ** 0.8
            weights = shape.permutation(weights)
            if drifted:
                weights = weights.max() + weights.min() - weights
            picks = rng.choice(len(allowed), n, p=weights / weights.sum())
            out = [allowed[i] for i in picks]
        elif kind == "boolean":
            rate = shape.uniform(0.6, 0.9)
            out = list(rng.random(n) < (1 - rate if drifted else rate))
        elif kind in DEFAULT_NUMBER_RANGE:
            out = self._numbers(column, n, rng, drifted)
        elif kind == "date":
            high = _date_bound(column.max, ds) or ds
            low = _date_bound(column.min, ds) or high - timedelta(days=DEFAULT_DATE_SPAN_DAYS)
            span = max((high - low).days, 0)
            back = np.floor(rng.beta(1.2, 4.0, n) * span).astype(int)
            out = [high - timedelta(days=int(b)) for b in back]
        elif name in self.samplers:
            out = self._patterned(column, n, rng)
        else:
            limit = column.max_length or 200
            out = [FREE_TEXT[i][:limit] for i in rng.integers(0, len(FREE_TEXT), n)]
        if column.nullable and name not in self.spec.primary_key:
            empty = rng.random(n) < NULL_RATE
            out = [None if e else v for v, e in zip(out, empty, strict=True)]
        return out

    def _numbers(self, column, n: int, rng, drifted: bool) -> list:
        low_default, high_default = DEFAULT_NUMBER_RANGE[column.type]
        low = column.min if column.min is not None else low_default
        high = column.max if column.max is not None else high_default
        share = rng.beta(*NUMBER_SHAPE, n)
        if drifted:
            share = np.minimum(share * DRIFT_NUMBER_FACTOR, 1.0)
        raw = low + (high - low) * share
        if column.type == "double":
            return [round(float(v), 2) for v in raw]
        return [int(v) for v in np.clip(np.rint(raw), low, high)]

    def _patterned(self, column, n: int, rng) -> list[str]:
        sampler = self.samplers[column.name]
        text_rng = random.Random(int(rng.integers(0, 2**63)))  # noqa: S311 - test data, not secrets
        unique = column.name in self.spec.primary_key or column.name == self.features.split_key
        hint = _email if "email" in column.name else None
        out = []
        for _ in range(n):
            for _attempt in range(1000):
                value = hint(text_rng) if hint else sampler.sample(text_rng)
                if hint and not sampler.compiled.fullmatch(value):
                    hint, value = None, sampler.sample(text_rng)
                if not unique or value not in self.used_keys:
                    break
            else:
                raise GeneratorError(
                    f"{self.spec.source}: column {column.name!r}: pattern {column.pattern!r} "
                    f"has too few distinct values for {n} unique keys"
                )
            if unique:
                self.used_keys.add(value)
            out.append(value)
        return out

    def _labels(self, values: dict[str, list], rng) -> list:
        n = self.config.rows_per_day
        logit = np.zeros(n)
        for name, weight in self.model.items():
            column = values[name]
            if isinstance(weight, dict):
                logit += np.array([weight.get(str(v), 0.0) for v in column])
                continue
            numbers = np.array([np.nan if v is None else float(v) for v in column])
            present = ~np.isnan(numbers)
            if present.sum() > 1 and np.nanstd(numbers) > 0:
                # Standardized on the reference scale of the column's bounds, not of the day,
                # so drifted values move the label too.
                spec_column = self.spec.column(name)
                if spec_column.type == "boolean":
                    z = numbers - 0.5
                else:
                    low_default, high_default = DEFAULT_NUMBER_RANGE[spec_column.type]
                    low = spec_column.min if spec_column.min is not None else low_default
                    high = spec_column.max if spec_column.max is not None else high_default
                    a, b = NUMBER_SHAPE
                    mean = a / (a + b)
                    sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
                    z = ((numbers - low) / max(high - low, 1e-9) - mean) / sd
                logit += weight * np.where(present, z, 0.0)
        # Steeper than the raw weights: the label should be learnable from a few thousand rows.
        logit *= 1.5
        intercept = _fit_intercept(logit, self.config.label_rate)
        positive = rng.random(n) < 1 / (1 + np.exp(-(logit + intercept)))
        negative_value, positive_value = self.label_values
        return [positive_value if p else negative_value for p in positive]


def _email(rng: random.Random) -> str:
    return (
        f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}{rng.randint(1, 999)}"
        f"@{rng.choice(EMAIL_DOMAINS)}"
    )


def _fit_intercept(logit: np.ndarray, rate: float) -> float:
    """The intercept that makes the mean predicted probability ``rate`` (bisection)."""
    low, high = -30.0, 30.0
    for _ in range(60):
        middle = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(logit + middle)))) < rate:
            low = middle
        else:
            high = middle
    return (low + high) / 2


# --- writing -------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _json_value(value: Any, column_type: str) -> Any:
    if value is None:
        return None
    if column_type == "boolean":
        return bool(value)
    if column_type in {"int", "long"}:
        return int(value)
    if column_type == "double":
        return float(value)
    return _text(value)


def _render(spec: DatasetSpec, values: dict[str, list], lo: int, hi: int, fmt: str) -> bytes:
    names = list(spec.landing_column_names)  # day_from: landing_folder: no date column
    buffer = io.StringIO()
    if fmt == "csv":
        writer = csv.writer(
            buffer,
            delimiter=spec.csv_delimiter,
            quotechar=spec.csv_quote,
            lineterminator="\n",
            quoting=csv.QUOTE_MINIMAL,
        )
        if spec.csv_header:
            writer.writerow(names)
        for row in range(lo, hi):
            writer.writerow(
                ["" if values[n][row] is None else _text(values[n][row]) for n in names]
            )
    else:
        types = {c.name: c.type for c in spec.columns}
        for row in range(lo, hi):
            record = {n: _json_value(values[n][row], types[n]) for n in names}
            buffer.write(json.dumps(record, ensure_ascii=False) + "\n")
    return buffer.getvalue().encode(spec.encoding)


def generate(config: GeneratorConfig) -> dict:
    """Write every day's landing files; return a summary of rows, files and label rates."""
    spec = load_spec(config.spec_path)
    fmt = config.fmt or spec.formats[0]
    if fmt not in spec.formats:
        raise GeneratorError(f"--format {fmt}: {spec.source} accepts only {list(spec.formats)}")
    if config.days < 1 or config.rows_per_day < 1 or config.rows_per_file < 1:
        raise GeneratorError("--days, --rows-per-day and the rows per file must be at least 1")
    if not 0 < config.label_rate < 1:
        raise GeneratorError(
            f"--label-rate must lie strictly between 0 and 1, got {config.label_rate}"
        )
    dataset = _Dataset(spec, config)
    suffix = (".csv" if fmt == "csv" else ".jsonl") + (".gz" if config.gzip else "")
    summary_days = []
    for day_index in range(config.days):
        ds = config.start + timedelta(days=day_index)
        drifted = bool(config.drift_columns) and day_index == config.days - 1
        values = dataset.day(ds, day_index, drifted)
        day_dir = Path(config.out) / spec.dataset / f"ds={ds.isoformat()}"
        day_dir.mkdir(parents=True, exist_ok=True)
        # The generator owns its landing day: parts of an earlier run must not be ingested too.
        for stale in day_dir.glob("part-*"):
            stale.unlink()
        files = []
        for part, lo in enumerate(range(0, config.rows_per_day, config.rows_per_file)):
            hi = min(lo + config.rows_per_file, config.rows_per_day)
            data = _render(spec, values, lo, hi, fmt)
            if config.gzip:
                # mtime=0: no clock in the gzip header, so the same arguments write the same bytes.
                data = gzip.compress(data, mtime=0)
            path = day_dir / f"part-{part:05d}{suffix}"
            staging = day_dir / f".{path.name}.tmp"
            staging.write_bytes(data)
            staging.replace(path)
            files.append(path.relative_to(config.out).as_posix())
        positive = dataset.label_values[1]
        labels = values[spec.label]
        summary_days.append(
            {
                "ds": ds.isoformat(),
                "rows": config.rows_per_day,
                "files": files,
                "label_rate": round(sum(v == positive for v in labels) / len(labels), 4),
                "drifted_columns": sorted(config.drift_columns) if drifted else [],
            }
        )
    return {
        "dataset": spec.dataset,
        "landing_root": str(config.out),
        "format": fmt,
        "days": summary_days,
        "rows": config.rows_per_day * config.days,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m include.datagen.from_spec",
        description="Generate landing files for a dataset from its spec.",
    )
    add = parser.add_argument
    add("--spec", required=True, type=Path, help="the dataset spec (include/datasets/<name>.yaml)")
    add(
        "--out", required=True, type=Path, help="landing root; files go under <out>/<dataset>/ds=…/"
    )
    add("--start", required=True, type=date.fromisoformat, help="first day, YYYY-MM-DD")
    add("--days", type=int, default=1, help="consecutive days to generate")
    add("--rows-per-day", type=int, default=10_000, help="rows per day")
    add("--seed", type=int, default=0, help="seed: the same arguments write the same bytes")
    add("--format", dest="fmt", choices=("csv", "jsonl"), help="default: the spec's first format")
    add("--gzip", action="store_true", help="gzip every file")
    add("--label-rate", type=float, default=0.2, help="share of positive labels (about)")
    add(
        "--drift-columns",
        type=lambda text: tuple(p.strip() for p in text.split(",") if p.strip()),
        default=(),
        help="comma list of columns shifted on the last day",
    )
    add("--rows-per-file", type=int, default=ROWS_PER_FILE, help="rows per landing file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = GeneratorConfig(
        spec_path=args.spec,
        out=args.out,
        start=args.start,
        days=args.days,
        rows_per_day=args.rows_per_day,
        seed=args.seed,
        fmt=args.fmt,
        gzip=args.gzip,
        label_rate=args.label_rate,
        drift_columns=args.drift_columns,
        rows_per_file=args.rows_per_file,
    )
    try:
        summary = generate(config)
    except (GeneratorError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
