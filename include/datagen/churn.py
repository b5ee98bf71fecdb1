"""Raw landing files for the ``churn`` reference dataset: a subscription service's daily snapshots.

One landing record per customer per day: who the customer is (plan, contract, region, payment
method, tenure, monthly charge, PII: email, phone, national id), what they did that day (minutes,
sessions, data), billing health (support tickets, failed payments) and the label ``churned``
(the customer leaves within the next 30 days). Files land as an upstream producer would drop them:
``<out>/churn/ds=YYYY-MM-DD/part-NNNNN.csv[.gz]`` or ``.jsonl[.gz]``.

Everything is seeded and deterministic (the same config writes the same bytes), generated with
numpy and pyarrow one chunk at a time so memory stays flat at any size (millions of rows per day),
and every defect is planted on purpose and counted in the returned summary, so ingestion tests
can assert exact numbers:

- row defects (``--corrupt-rate``, split evenly over ``--corrupt-kinds``): ``malformed`` lines,
  ``wrong_type`` values, ``null_required`` (a required field left empty), ``out_of_range`` values,
  ``bad_encoding`` (cp1252 bytes in a UTF-8 file), ``duplicate`` (a record sent twice, sometimes
  as a later update, often in the next part file);
- schema drift per day (``--schema-drift DAY:KIND``): an ``extra`` column, a ``missing`` nullable
  column, or a ``renamed`` column (the legacy name ``tenure`` for ``tenure_months``);
- distribution drift (``--drift-day``, ``--drift-features``, ``--drift-strength``): chosen features
  shifted on chosen days, for the monitoring stage to catch.

Usage::

    python -m include.datagen.churn --out .local/lake/landing --start 2026-01-01 --days 3 \\
        --rows-per-day 100000 --seed 7 --format csv --gzip --corrupt-rate 0.01 \\
        --drift-day 2026-01-03
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DATASET = "churn"

# Landing column order: what a producer writes (the dataset spec names the same columns).
LANDING_COLUMNS = (
    "customer_id",
    "snapshot_date",
    "event_ts",
    "signup_date",
    "plan",
    "contract",
    "region",
    "payment_method",
    "autopay",
    "tenure_months",
    "monthly_charge",
    "total_charges",
    "minutes_used",
    "sessions",
    "data_gb",
    "support_tickets_30d",
    "payment_failures_90d",
    "device_model",
    "email",
    "phone",
    "national_id",
    "churned",
)
PII_COLUMNS = ("email", "phone", "national_id")
# Written as bare JSON numbers / booleans (everything else is a JSON string).
JSON_BARE_COLUMNS = frozenset(
    {
        "autopay",
        "tenure_months",
        "monthly_charge",
        "total_charges",
        "minutes_used",
        "sessions",
        "data_gb",
        "support_tickets_30d",
        "payment_failures_90d",
        "churned",
    }
)

PLANS = ("basic", "standard", "premium", "family")
PLAN_WEIGHTS = (0.35, 0.35, 0.2, 0.1)
PLAN_PRICE = np.array([19.99, 39.99, 69.99, 89.99])
CONTRACTS = ("month-to-month", "one-year", "two-year")
CONTRACT_WEIGHTS = (0.55, 0.25, 0.2)
CONTRACT_DISCOUNT = np.array([0.0, 3.0, 6.0])
REGIONS = ("na-east", "na-west", "eu-west", "eu-central", "apac", "latam")
REGION_WEIGHTS = (0.25, 0.2, 0.2, 0.15, 0.12, 0.08)
PAYMENT_METHODS = ("card", "bank_transfer", "paypal", "invoice")
PAYMENT_WEIGHTS = (0.5, 0.2, 0.2, 0.1)
DEVICE_MODELS = (
    "Pixel 8",
    "Pixel 7a",
    "iPhone 15",
    "iPhone 13 mini",
    "Galaxy S23",
    "Galaxy A54",
    "Fire TV Stick 4K",
    "Roku Ultra",
    "Chromecast",
    "LG webOS TV",
    "Web browser",
    "Xbox Series S",
)
FIRST_NAMES = (
    "maria", "james", "wei", "fatima", "olga", "liam", "aisha", "noah", "yuki", "carlos",
    "emma", "arjun", "sofia", "mateo", "chloe", "omar", "hana", "lucas", "zara", "ivan",
)  # fmt: skip
LAST_NAMES = (
    "garcia", "smith", "chen", "khan", "ivanova", "murphy", "okafor", "silva", "tanaka",
    "rossi", "novak", "patel", "dubois", "schmidt", "kowalski", "haddad", "lee", "jones",
)  # fmt: skip
# RFC 2606 reserved domains and the 555-01xx fictional phone range: synthetic PII that cannot
# belong to anyone, but has the shape of the real thing.
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com")

ROW_DEFECTS = (
    "malformed",
    "wrong_type",
    "null_required",
    "out_of_range",
    "bad_encoding",
    "duplicate",
)
SCHEMA_DRIFTS = ("extra", "missing", "renamed")
EXTRA_COLUMN = "promo_code"
# Schema drift only touches a nullable column or one with a known alias, so drifted files stay
# loadable: the ingest job must report the drift, not reject the rows.
MISSING_COLUMN = "data_gb"
RENAMED_COLUMN = ("tenure_months", "tenure")

# Wrong-type values per column: not castable to the column's type, and none of them is a null
# token, so each one is quarantined as a type mismatch of exactly that column.
WRONG_TYPE_VALUES: dict[str, tuple[str, ...]] = {
    "tenure_months": ("twelve", "12.5", "1e3"),
    "monthly_charge": ("49,99", "abc", "$49.99"),
    "sessions": ("many", "3.7"),
    "signup_date": ("03/15/2021", "2021-02-30", "20210315"),
    "event_ts": ("yesterday", "2026-13-01T00:00:00Z"),
    "autopay": ("maybe", "2"),
    "churned": ("yes",),
}
NULL_REQUIRED_COLUMNS = ("customer_id", "plan", "monthly_charge", "event_ts", "churned")
# Out-of-range values per column; "{future}" is a date after the snapshot day.
OUT_OF_RANGE_VALUES: dict[str, tuple[str, ...]] = {
    "tenure_months": ("9999", "-1"),
    "monthly_charge": ("-10.5", "12000"),
    "minutes_used": ("2000.5", "-3"),
    "sessions": ("-2", "100000"),
    "signup_date": ("1899-12-31", "{future}"),
    "support_tickets_30d": ("-1", "500"),
    "plan": ("platinum",),
    "region": ("mars-1",),
    "churned": ("2",),
}
# cp1252 "é" inside a UTF-8 file: what a producer on an old Windows box really sends.
BAD_ENCODING_TEXT = "Caf\u00e9 TV"
BAD_ENCODING_BYTES = (BAD_ENCODING_TEXT.encode("utf-8"), BAD_ENCODING_TEXT.encode("cp1252"))

DRIFTABLE_FEATURES = (
    "monthly_charge",
    "minutes_used",
    "sessions",
    "data_gb",
    "support_tickets_30d",
    "plan",
    "region",
    "payment_method",
)
# Numeric features whose per-day mean the summary reports (what drift monitoring compares).
MEAN_FEATURES = ("monthly_charge", "minutes_used", "sessions", "data_gb", "support_tickets_30d")

_SECONDS_PER_DAY = 86_400
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class DriftPlan:
    """Which features to shift on which days, and how hard (1.0: about one standard deviation)."""

    days: tuple[date, ...] = ()
    features: tuple[str, ...] = ("monthly_charge", "minutes_used")
    strength: float = 1.0


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that determines the generated bytes. ``chunk_rows`` is part of it: changing it
    changes which random draws each customer gets."""

    out: Path
    start: date
    days: int = 1
    rows_per_day: int = 10_000
    rows_per_file: int = 250_000
    chunk_rows: int = 50_000
    seed: int = 7
    fmt: str = "csv"  # csv | jsonl | mixed (alternate per part file)
    gzip: bool = False
    gzip_level: int = 6
    corrupt_rate: float = 0.0
    corrupt_kinds: tuple[str, ...] = ROW_DEFECTS
    missing_rate: float = 0.02
    drift: DriftPlan = field(default_factory=DriftPlan)
    schema_drift: tuple[tuple[date, str], ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if self.days < 1:
            problems.append(f"days must be >= 1, got {self.days}")
        if self.rows_per_day < 1:
            problems.append(f"rows_per_day must be >= 1, got {self.rows_per_day}")
        if self.rows_per_file < 1 or self.chunk_rows < 1:
            problems.append("rows_per_file and chunk_rows must be >= 1")
        if self.fmt not in ("csv", "jsonl", "mixed"):
            problems.append(f"format must be csv, jsonl or mixed, got {self.fmt!r}")
        if not 0.0 <= self.corrupt_rate <= 0.5:
            problems.append(f"corrupt_rate must be within [0, 0.5], got {self.corrupt_rate}")
        if not 0.0 <= self.missing_rate <= 0.5:
            problems.append(f"missing_rate must be within [0, 0.5], got {self.missing_rate}")
        if not 1 <= self.gzip_level <= 9:
            problems.append(f"gzip_level must be within 1..9, got {self.gzip_level}")
        unknown = sorted(set(self.corrupt_kinds) - set(ROW_DEFECTS))
        if unknown:
            problems.append(f"unknown corrupt kinds {unknown}; kinds are {', '.join(ROW_DEFECTS)}")
        unknown = sorted(set(self.drift.features) - set(DRIFTABLE_FEATURES))
        if unknown:
            problems.append(
                f"unknown drift features {unknown}; driftable: {', '.join(DRIFTABLE_FEATURES)}"
            )
        for day, kind in self.schema_drift:
            if kind not in SCHEMA_DRIFTS:
                problems.append(f"schema drift {kind!r} on {day} is not one of {SCHEMA_DRIFTS}")
        if problems:
            raise ValueError("invalid churn generator config: " + "; ".join(problems))

    def day_dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]


@dataclass
class _DayTally:
    """What one day's files hold; becomes the day's entry in the summary."""

    rows: int = 0
    records: int = 0
    files: list[dict] = field(default_factory=list)
    planted: Counter = field(default_factory=Counter)
    planted_by_column: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    sums: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)
    churned: int = 0

    def as_dict(self, ds: date, config: GeneratorConfig) -> dict:
        schema_drift = dict(config.schema_drift).get(ds)
        return {
            "rows": self.rows,
            "records": self.records,
            "files": self.files,
            "planted": {kind: self.planted.get(kind, 0) for kind in ROW_DEFECTS},
            "planted_by_column": {
                kind: dict(sorted(cols.items()))
                for kind, cols in sorted(self.planted_by_column.items())
            },
            "schema_drift": _schema_drift_detail(schema_drift),
            "drifted_features": list(config.drift.features) if ds in config.drift.days else [],
            "feature_means": {
                name: round(self.sums[name] / max(self.counts[name], 1), 6)
                for name in MEAN_FEATURES
            },
            "churn_rate": round(self.churned / self.rows, 6),
        }


def _schema_drift_detail(kind: str | None) -> dict | None:
    if kind is None:
        return None
    detail = {"kind": kind}
    if kind == "extra":
        detail["column"] = EXTRA_COLUMN
    elif kind == "missing":
        detail["column"] = MISSING_COLUMN
    else:
        detail["column"], detail["renamed_to"] = RENAMED_COLUMN
    return detail


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _strings(values: np.ndarray | pa.Array) -> pa.Array:
    return pc.cast(pa.array(values) if isinstance(values, np.ndarray) else values, pa.string())


def _lpad(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(_strings(values), width, "0")


def _join(*parts, sep: str = "") -> pa.Array:
    return pc.binary_join_element_wise(*parts, sep)


def _customers(seed: int, start: date, lo: int, hi: int) -> dict[str, np.ndarray | pa.Array]:
    """Attributes that do not change from day to day, for customers ``lo``..``hi - 1``."""
    n = hi - lo
    rng = _rng(seed, 0, lo, hi)
    index = np.arange(lo, hi, dtype=np.int64)
    tenure_days = np.minimum(rng.exponential(900.0, n), 365 * 14).astype(np.int64)
    # A few brand-new customers: zero months of tenure and no total charges yet.
    newcomers = rng.random(n) < 0.03
    tenure_days[newcomers] = rng.integers(0, 30, int(newcomers.sum()))
    plan = rng.choice(len(PLANS), n, p=PLAN_WEIGHTS)
    contract = rng.choice(len(CONTRACTS), n, p=CONTRACT_WEIGHTS)
    payment = rng.choice(len(PAYMENT_METHODS), n, p=PAYMENT_WEIGHTS)
    addons = rng.choice(np.array([0.0, 5.0, 10.0, 15.0]), n, p=(0.5, 0.25, 0.15, 0.1))
    first = pa.array(FIRST_NAMES).take(pa.array(rng.integers(0, len(FIRST_NAMES), n)))
    last = pa.array(LAST_NAMES).take(pa.array(rng.integers(0, len(LAST_NAMES), n)))
    domain = pa.array(EMAIL_DOMAINS).take(pa.array(rng.integers(0, len(EMAIL_DOMAINS), n)))
    phone_digits = rng.integers(0, 10_000_000, n)
    id_area = rng.integers(900, 1000, n)
    id_group = rng.integers(1, 100, n)
    id_serial = rng.integers(1, 10_000, n)
    return {
        "index": index,
        "customer_id": _join("C", _lpad(index, 9)),
        "signup_date": np.datetime64(start, "D") - tenure_days.astype("timedelta64[D]"),
        "tenure_days": tenure_days,
        "plan": plan,
        "contract": contract,
        "region": rng.choice(len(REGIONS), n, p=REGION_WEIGHTS),
        "payment": payment,
        "autopay": rng.random(n) < np.where(payment == 1, 0.85, 0.55),
        "base_charge": np.round(PLAN_PRICE[plan] + addons - CONTRACT_DISCOUNT[contract], 2),
        "propensity": rng.lognormal(0.0, 0.5, n),
        "latent": rng.normal(0.0, 1.0, n),
        "device": rng.integers(0, len(DEVICE_MODELS), n),
        "email": _join(_join(first, last, sep="."), _strings(index), "@", domain),
        "phone": _join(
            "+1-555-", _lpad(phone_digits // 10_000, 3), "-", _lpad(phone_digits % 10_000, 4)
        ),
        "national_id": _join(_strings(id_area), "-", _lpad(id_group, 2), "-", _lpad(id_serial, 4)),
    }


def _day_values(
    config: GeneratorConfig, customers: dict, ds: date, day_index: int, lo: int, hi: int
) -> dict[str, np.ndarray]:
    """One day's typed values (before defects), drift applied, label drawn."""
    n = hi - lo
    rng = _rng(config.seed, 1, day_index, lo, hi)
    tenure_months = (customers["tenure_days"] + day_index) // 30
    minutes = np.clip(customers["propensity"] * rng.gamma(2.0, 45.0, n), 0, 1440)
    charge = customers["base_charge"].copy()
    plan = customers["plan"].copy()
    region = customers["region"].copy()
    payment = customers["payment"].copy()
    autopay = customers["autopay"]
    tickets = rng.poisson(0.25 + 0.6 * (customers["latent"] > 1.0))
    data_scale = rng.lognormal(0.0, 0.4, n)
    session_noise = rng.random(n)
    failures = rng.poisson(np.where(autopay, 0.05, 0.4))
    charges_noise = rng.uniform(0.97, 1.03, n)
    event_seconds = rng.integers(0, _SECONDS_PER_DAY, n)
    drift_draw = rng.random(n)
    label_draw = rng.random(n)
    missing_device = rng.random(n) < 2 * config.missing_rate
    missing_data = rng.random(n) < config.missing_rate

    if ds in config.drift.days:
        strength = config.drift.strength
        features = set(config.drift.features)
        # Shifts of about `strength` standard deviations of each feature's clean distribution.
        if "monthly_charge" in features:
            charge = np.round(charge + 22.0 * strength, 2)
        if "minutes_used" in features:
            minutes = np.clip(minutes * (1.0 + 0.8 * strength), 0, 1440)
        if "support_tickets_30d" in features:
            tickets = tickets + rng.poisson(max(strength, 0.0), n)
        if "plan" in features:
            plan = np.where(drift_draw < 0.3 * strength, PLANS.index("premium"), plan)
        if "region" in features:
            region = np.where(drift_draw < 0.3 * strength, REGIONS.index("apac"), region)
        if "payment_method" in features:
            payment = np.where(
                drift_draw < 0.3 * strength, PAYMENT_METHODS.index("invoice"), payment
            )
    sessions = np.minimum(np.floor(minutes / 12.0 + 1.0 + 3.0 * session_noise), 500).astype(
        np.int64
    )
    data_gb = np.round(minutes * 0.015 * data_scale, 3)
    if ds in config.drift.days:
        if "sessions" in config.drift.features:
            sessions = sessions + np.int64(round(8 * config.drift.strength))
        if "data_gb" in config.drift.features:
            data_gb = np.round(data_gb * (1.0 + config.drift.strength), 3)
    minutes = np.round(minutes, 1)

    logit = (
        -1.6
        + 0.8 * customers["latent"]
        - 0.035 * np.minimum(tenure_months, 48)
        + 0.025 * (charge - 45.0)
        + 0.45 * tickets
        + 0.55 * failures
        + 0.9 * (customers["contract"] == 0)
        - 0.5 * autopay
        - 0.006 * (minutes - 100.0)
    )
    churned = (label_draw < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    total = np.round(charge * tenure_months * charges_noise, 2)
    day_start = (ds - _EPOCH).days * _SECONDS_PER_DAY
    return {
        "tenure_months": tenure_months,
        "monthly_charge": charge,
        "total_charges": np.where(tenure_months == 0, np.nan, total),
        "minutes_used": minutes,
        "sessions": sessions,
        "data_gb": np.where(missing_data, np.nan, data_gb),
        "support_tickets_30d": tickets,
        "payment_failures_90d": failures,
        "plan": plan,
        "region": region,
        "payment": payment,
        "event_epoch": day_start + event_seconds,
        "missing_device": missing_device,
        "churned": churned,
    }


def _timestamps(epochs: np.ndarray) -> pa.Array:
    return pc.strftime(pa.array(epochs.astype("datetime64[s]")), format="%Y-%m-%dT%H:%M:%SZ")


def _nullable_numbers(values: np.ndarray) -> pa.Array:
    return _strings(pa.array(values, from_pandas=True))


def _string_values(customers: dict, day: dict, ds: date) -> dict[str, pa.Array]:
    """Every landing column as text, exactly as it will be written (None is an empty field)."""
    n = len(customers["index"])
    device = pa.array(DEVICE_MODELS).take(pa.array(customers["device"]))
    return {
        "customer_id": customers["customer_id"],
        "snapshot_date": pa.array([ds.isoformat()] * n, pa.string()),
        "event_ts": _timestamps(day["event_epoch"]),
        "signup_date": _strings(customers["signup_date"]),
        "plan": pa.array(PLANS).take(pa.array(day["plan"])),
        "contract": pa.array(CONTRACTS).take(pa.array(customers["contract"])),
        "region": pa.array(REGIONS).take(pa.array(day["region"])),
        "payment_method": pa.array(PAYMENT_METHODS).take(pa.array(day["payment"])),
        "autopay": _strings(customers["autopay"]),
        "tenure_months": _strings(day["tenure_months"]),
        "monthly_charge": _strings(day["monthly_charge"]),
        "total_charges": _nullable_numbers(day["total_charges"]),
        "minutes_used": _strings(day["minutes_used"]),
        "sessions": _strings(day["sessions"]),
        "data_gb": _nullable_numbers(day["data_gb"]),
        "support_tickets_30d": _strings(day["support_tickets_30d"]),
        "payment_failures_90d": _strings(day["payment_failures_90d"]),
        "device_model": pc.if_else(
            pa.array(day["missing_device"]), pa.scalar(None, pa.string()), device
        ),
        "email": customers["email"],
        "phone": customers["phone"],
        "national_id": customers["national_id"],
        "churned": _strings(day["churned"]),
    }


def _replace_rows(column: pa.Array, rows: np.ndarray, values: Sequence[str | None]) -> pa.Array:
    mask = np.zeros(len(column), dtype=bool)
    mask[rows] = True
    order = np.argsort(rows)
    return pc.replace_with_mask(
        column, pa.array(mask), pa.array([values[i] for i in order], pa.string())
    )


@dataclass
class _Layout:
    """The columns one day's files carry, and the names they go by (schema drift)."""

    columns: tuple[str, ...]
    names: tuple[str, ...]

    @classmethod
    def for_day(cls, drift: str | None) -> _Layout:
        columns = list(LANDING_COLUMNS)
        if drift == "extra":
            columns.append(EXTRA_COLUMN)
        elif drift == "missing":
            columns.remove(MISSING_COLUMN)
        names = [
            RENAMED_COLUMN[1] if drift == "renamed" and c == RENAMED_COLUMN[0] else c
            for c in columns
        ]
        return cls(tuple(columns), tuple(names))


def _csv_field(values: pa.Array) -> pa.Array:
    # RFC 4180: quote a field holding the delimiter, a quote or a line break; double its quotes.
    needs_quotes = pc.match_substring_regex(values, '[",\r\n]')
    quoted = _join('"', pc.replace_substring(values, '"', '""'), '"')
    return pc.if_else(needs_quotes, quoted, values)


def _json_string(values: pa.Array) -> pa.Array:
    escaped = values
    for raw, escape in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        escaped = pc.replace_substring(escaped, raw, escape)
    return _join('"', escaped, '"')


def _lines(
    values: dict[str, pa.Array], layout: _Layout, fmt: str, quote_rows: dict[str, np.ndarray]
) -> pa.Array:
    """One text line per row (no line terminator)."""
    if fmt == "csv":
        fields = [_csv_field(values[c]) for c in layout.columns]
        return pc.binary_join_element_wise(
            *fields, ",", null_handling="replace", null_replacement=""
        )
    members = []
    for column, name in zip(layout.columns, layout.names, strict=True):
        text = values[column]
        if column in JSON_BARE_COLUMNS:
            forced = quote_rows.get(column)
            if forced is not None and forced.any():
                # A wrong-type value is a JSON string where a number belongs.
                text = pc.if_else(pa.array(forced), _json_string(text), text)
        else:
            text = _json_string(text)
        members.append(_join(json.dumps(name) + ":", pc.fill_null(text, "null")))
    return _join("{", pc.binary_join_element_wise(*members, ","), "}")


class _ChunkWriter:
    """Writes a chunk's lines, swapping in the rewritten lines of defect rows and splicing in
    carried-over duplicate records, without joining the whole chunk into one Python bytes."""

    def __init__(self, sink: BinaryIO):
        self.sink = sink

    def write(
        self, lines: pa.Array, replaced: dict[int, bytes], inserted: list[tuple[int, bytes]]
    ) -> int:
        terminated = pc.binary_join_element_wise(lines, "", "\n")
        offsets = np.frombuffer(terminated.buffers()[1], dtype=np.int32)[
            terminated.offset : terminated.offset + len(terminated) + 1
        ]
        data = memoryview(terminated.buffers()[2])
        # (row, 0, bytes) inserts before a row; (row, 1, bytes) replaces it.
        events = sorted(
            [(row, 0, line) for row, line in inserted]
            + [(row, 1, line) for row, line in replaced.items()],
            key=lambda event: (event[0], event[1]),
        )
        cursor = 0
        for row, kind, line in events:
            self.sink.write(data[offsets[cursor] : offsets[row]])
            self.sink.write(line + b"\n")
            cursor = row + 1 if kind == 1 else row
        self.sink.write(data[offsets[cursor] : offsets[len(lines)]])
        return len(lines) + len(inserted)


def _malformed_line(line: str, fmt: str, rng: np.random.Generator) -> str:
    variant = int(rng.integers(0, 3))
    if fmt == "csv":
        fields = line.split(",")
        if variant == 0:
            # Cut before the last delimiter: the record ends fields short.
            return line[: int(rng.integers(1, line.rfind(",")))]
        if variant == 1:
            return line + ",overflow"
        # An opening quote that never closes swallows the rest of the line into one field.
        position = int(rng.integers(0, len(fields) - 1))
        fields[position] = '"' + fields[position]
        return ",".join(fields)
    if variant in (0, 1):
        return line[: int(rng.integers(1, len(line) - 1))]
    return line.replace('"plan":"', '"plan":', 1)


def _plant_defects(
    values: dict[str, pa.Array],
    day: dict,
    config: GeneratorConfig,
    ds: date,
    rng: np.random.Generator,
    tally: _DayTally,
) -> tuple[dict[int, str], np.ndarray, dict[str, np.ndarray], dict[int, str]]:
    """Rewrite the values of defect rows in place; return what is left for the line stage:
    (row → malformed variant), duplicate rows, rows whose JSON must quote a number, bad-encoding rows."""
    n = len(values["customer_id"])
    kinds = [kind for kind in ROW_DEFECTS if kind in config.corrupt_kinds]
    draw = rng.random(n)
    malformed: dict[int, str] = {}
    bad_encoding: dict[int, str] = {}
    quote_rows: dict[str, np.ndarray] = {}
    duplicates = np.empty(0, dtype=np.int64)
    if not kinds or config.corrupt_rate <= 0:
        return malformed, duplicates, quote_rows, bad_encoding
    hit = np.flatnonzero(draw < config.corrupt_rate)
    kind_of = np.minimum(
        (draw[hit] / (config.corrupt_rate / len(kinds))).astype(np.int64), len(kinds) - 1
    )
    for kind_index, kind in enumerate(kinds):
        rows = hit[kind_of == kind_index]
        if len(rows) == 0:
            continue
        tally.planted[kind] += len(rows)
        if kind == "duplicate":
            duplicates = rows
            tally.planted_by_column[kind]["customer_id"] += len(rows)
        elif kind == "malformed":
            for row in rows:
                malformed[int(row)] = kind
            tally.planted_by_column[kind]["*"] += len(rows)
        elif kind == "bad_encoding":
            values["device_model"] = _replace_rows(
                values["device_model"], rows, [BAD_ENCODING_TEXT] * len(rows)
            )
            for row in rows:
                bad_encoding[int(row)] = kind
            tally.planted_by_column[kind]["device_model"] += len(rows)
        else:
            table = {
                "wrong_type": WRONG_TYPE_VALUES,
                "null_required": dict.fromkeys(NULL_REQUIRED_COLUMNS, (None,)),
                "out_of_range": OUT_OF_RANGE_VALUES,
            }[kind]
            columns = sorted(table)
            chosen = rng.integers(0, len(columns), len(rows))
            for column_index, column in enumerate(columns):
                column_rows = rows[chosen == column_index]
                if len(column_rows) == 0:
                    continue
                options = table[column]
                picks = rng.integers(0, len(options), len(column_rows))
                future = (ds + timedelta(days=400)).isoformat()
                new_values = [
                    None if options[p] is None else options[p].replace("{future}", future)
                    for p in picks
                ]
                values[column] = _replace_rows(values[column], column_rows, new_values)
                if kind == "wrong_type":
                    mask = quote_rows.setdefault(column, np.zeros(n, dtype=bool))
                    mask[column_rows] = True
                tally.planted_by_column[kind][column] += len(column_rows)
    return malformed, duplicates, quote_rows, bad_encoding


def _duplicate_values(
    values: dict[str, pa.Array], day: dict, rows: np.ndarray, rng: np.random.Generator
) -> dict:
    """The records sent twice: half exact resends, half later updates of the same key."""
    taken = {column: array.take(pa.array(rows)) for column, array in values.items()}
    update = rng.random(len(rows)) < 0.5
    epochs = day["event_epoch"][rows]
    day_end = (epochs // _SECONDS_PER_DAY + 1) * _SECONDS_PER_DAY - 1
    later = np.where(update, np.minimum(epochs + rng.integers(1, 3600, len(rows)), day_end), epochs)
    minutes = np.where(
        update,
        np.round(np.minimum(day["minutes_used"][rows] * 1.1 + 1.0, 1440), 1),
        day["minutes_used"][rows],
    )
    taken["event_ts"] = _timestamps(later)
    taken["minutes_used"] = _strings(minutes)
    return taken


def _part_format(config: GeneratorConfig, part: int) -> str:
    if config.fmt == "mixed":
        return "csv" if part % 2 == 0 else "jsonl"
    return config.fmt


def _open_part(path: Path, config: GeneratorConfig) -> BinaryIO:
    if config.gzip:
        # mtime=0: the gzip header carries no clock, so the same config writes the same bytes.
        return gzip.GzipFile(
            filename="",
            mode="wb",
            fileobj=open(path, "wb"),
            compresslevel=config.gzip_level,
            mtime=0,
        )
    return open(path, "wb")


def _close_part(handle: BinaryIO) -> None:
    inner = getattr(handle, "fileobj", None)
    handle.close()
    if inner is not None:
        inner.close()


def _chunks(lo: int, hi: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(lo, hi, size):
        yield start, min(start + size, hi)


def _generate_day(config: GeneratorConfig, ds: date, day_index: int) -> _DayTally:
    tally = _DayTally()
    day_dir = Path(config.out) / DATASET / f"ds={ds.isoformat()}"
    day_dir.mkdir(parents=True, exist_ok=True)
    # The generator owns its landing day: parts of an earlier run with another layout must go.
    for stale in day_dir.glob("part-*"):
        stale.unlink()
    layout = _Layout.for_day(dict(config.schema_drift).get(ds))
    parts = math.ceil(config.rows_per_day / config.rows_per_file)
    # Duplicates wait as values, not lines: the next chunk may sit in a file of another format.
    carried: list[dict[str, pa.Array]] = []
    for part in range(parts):
        fmt = _part_format(config, part)
        suffix = (".csv" if fmt == "csv" else ".jsonl") + (".gz" if config.gzip else "")
        final = day_dir / f"part-{part:05d}{suffix}"
        staging = day_dir / f".{final.name}.tmp"
        handle = _open_part(staging, config)
        writer = _ChunkWriter(handle)
        records = 0
        try:
            if fmt == "csv":
                handle.write((",".join(layout.names) + "\n").encode())
            part_lo = part * config.rows_per_file
            part_hi = min(part_lo + config.rows_per_file, config.rows_per_day)
            for lo, hi in _chunks(part_lo, part_hi, config.chunk_rows):
                records += _write_chunk(
                    config, ds, day_index, lo, hi, layout, fmt, writer, carried, tally
                )
                if part_hi == config.rows_per_day and hi == part_hi and carried:
                    # The day's last duplicates have no next chunk: they close this file.
                    closing = _carried_lines(carried, layout, fmt)
                    for line in closing:
                        handle.write(line + b"\n")
                    records += len(closing)
                    carried.clear()
        finally:
            _close_part(handle)
        staging.replace(final)
        tally.files.append(
            {"path": final.relative_to(config.out).as_posix(), "format": fmt, "records": records}
        )
        tally.records += records
    return tally


def _write_chunk(
    config: GeneratorConfig,
    ds: date,
    day_index: int,
    lo: int,
    hi: int,
    layout: _Layout,
    fmt: str,
    writer: _ChunkWriter,
    carried: list[dict[str, pa.Array]],
    tally: _DayTally,
) -> int:
    customers = _customers(config.seed, config.start, lo, hi)
    day = _day_values(config, customers, ds, day_index, lo, hi)
    values = _string_values(customers, day, ds)
    if EXTRA_COLUMN in layout.columns:
        promo_rng = _rng(config.seed, 3, day_index, lo, hi)
        promo = np.array(["", "SPRING25", "WELCOME10", "LOYAL5"], dtype=object)
        values[EXTRA_COLUMN] = pa.array(promo[promo_rng.choice(4, hi - lo, p=(0.7, 0.1, 0.1, 0.1))])
    tally.rows += hi - lo
    tally.churned += int(day["churned"].sum())
    for name in MEAN_FEATURES:
        tally.sums[name] += float(np.nansum(day[name]))
        tally.counts[name] += int(np.count_nonzero(~np.isnan(day[name].astype(float))))

    defect_rng = _rng(config.seed, 2, day_index, lo, hi)
    malformed, duplicate_rows, quote_rows, bad_encoding = _plant_defects(
        values, day, config, ds, defect_rng, tally
    )
    lines = _lines(values, layout, fmt, quote_rows)

    replaced: dict[int, bytes] = {}
    for row in sorted(malformed):
        replaced[row] = _malformed_line(lines[row].as_py(), fmt, defect_rng).encode()
    for row in sorted(bad_encoding):
        replaced[row] = lines[row].as_py().encode().replace(*BAD_ENCODING_BYTES)

    # Carried duplicates from the previous chunk land at random places in this one.
    incoming = _carried_lines(carried, layout, fmt)
    positions = np.sort(defect_rng.integers(0, hi - lo + 1, len(incoming)))
    inserted = list(zip(positions.tolist(), incoming, strict=True))
    carried.clear()
    if len(duplicate_rows):
        carried.append(_duplicate_values(values, day, duplicate_rows, defect_rng))
    return writer.write(lines, replaced, inserted)


def _carried_lines(carried: list[dict[str, pa.Array]], layout: _Layout, fmt: str) -> list[bytes]:
    return [
        line.encode() for values in carried for line in _lines(values, layout, fmt, {}).to_pylist()
    ]


def generate(config: GeneratorConfig) -> dict:
    """Write every day's landing files; return the summary of rows, files and planted defects."""
    days = {}
    for day_index, ds in enumerate(config.day_dates()):
        days[ds.isoformat()] = _generate_day(config, ds, day_index).as_dict(ds, config)
    totals = Counter()
    for day in days.values():
        totals.update(day["planted"])
    return {
        "dataset": DATASET,
        "landing_root": str(config.out),
        "seed": config.seed,
        "format": config.fmt,
        "gzip": config.gzip,
        "corrupt_rate": config.corrupt_rate,
        "days": days,
        "totals": {
            "rows": sum(day["rows"] for day in days.values()),
            "records": sum(day["records"] for day in days.values()),
            "files": sum(len(day["files"]) for day in days.values()),
            "planted": {kind: totals.get(kind, 0) for kind in ROW_DEFECTS},
        },
    }


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _parse_schema_drift(text: str) -> tuple[date, str]:
    day, _, kind = text.partition(":")
    if kind not in SCHEMA_DRIFTS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected DAY:KIND with KIND one of {SCHEMA_DRIFTS}"
        )
    return _parse_date(day), kind


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m include.datagen.churn", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="landing root; files go under <out>/churn/ds=…/"
    )
    parser.add_argument("--start", required=True, type=_parse_date, help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument(
        "--rows-per-day", type=int, default=10_000, help="customers per daily snapshot"
    )
    parser.add_argument("--rows-per-file", type=int, default=250_000)
    parser.add_argument(
        "--chunk-rows", type=int, default=50_000, help="rows generated at a time (memory bound)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--format", dest="fmt", choices=("csv", "jsonl", "mixed"), default="csv")
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--gzip-level", type=int, default=6)
    parser.add_argument(
        "--corrupt-rate", type=float, default=0.0, help="share of rows with a planted defect"
    )
    parser.add_argument(
        "--corrupt-kinds",
        type=_csv_list,
        default=ROW_DEFECTS,
        help=f"comma-separated subset of {','.join(ROW_DEFECTS)}",
    )
    parser.add_argument(
        "--missing-rate", type=float, default=0.02, help="nulls in nullable columns (not defects)"
    )
    parser.add_argument(
        "--drift-day", type=_parse_date, action="append", default=[], help="repeatable"
    )
    parser.add_argument("--drift-features", type=_csv_list, default=DriftPlan().features)
    parser.add_argument("--drift-strength", type=float, default=1.0)
    parser.add_argument(
        "--schema-drift",
        type=_parse_schema_drift,
        action="append",
        default=[],
        help="DAY:extra|missing|renamed, repeatable",
    )
    parser.add_argument("--summary-json", type=Path, help="also write the summary here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = GeneratorConfig(
            out=args.out,
            start=args.start,
            days=args.days,
            rows_per_day=args.rows_per_day,
            rows_per_file=args.rows_per_file,
            chunk_rows=args.chunk_rows,
            seed=args.seed,
            fmt=args.fmt,
            gzip=args.gzip,
            gzip_level=args.gzip_level,
            corrupt_rate=args.corrupt_rate,
            corrupt_kinds=tuple(args.corrupt_kinds),
            missing_rate=args.missing_rate,
            drift=DriftPlan(tuple(args.drift_day), tuple(args.drift_features), args.drift_strength),
            schema_drift=tuple(args.schema_drift),
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    summary = generate(config)
    text = json.dumps(summary, indent=2, sort_keys=True)
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(text + "\n")
    print(text)
    elapsed = (datetime.now(UTC) - started).total_seconds()
    print(f"generated {summary['totals']['records']} records in {elapsed:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
