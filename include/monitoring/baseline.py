"""A model version's monitoring baseline: computed once from its training data, stored, reloaded.

A baseline folder (``<monitoring zone>/<dataset>/model_version=<v>/baseline/`` by convention)
holds:

- ``statistics.json`` and ``constraints.json`` in the SageMaker Model Monitor format (so a Model
  Monitor schedule on AWS can take the same files as its baseline);
- ``reference_profile.json``: what the drift check compares against: per numeric column the PSI
  bin edges (quantiles of the training values, ties merged) with the training share of each bin,
  per categorical column the category shares, and every column's missing rate;
- ``reference_sample.parquet``: the numeric columns of a deterministic sample of at most
  ``reference_sample_rows`` training rows. The Kolmogorov-Smirnov statistic is exact against this
  sample (against the whole partition when it is smaller); PSI bins and shares are computed on
  the whole partition.

The prediction score is the exception: its distribution (statistics, PSI bins, KS sample) comes
only from rows the model did not train on (``score_rows``), since a model scores its own training
rows more confidently than new data; its missing rate still counts every row.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from include.monitoring.columns import (
    CATEGORICAL,
    NUMERIC,
    MonitoredColumn,
    NumericValues,
    numeric_values,
)
from include.monitoring.score_join import AlignedScores, ScoreJoin
from include.monitoring.statistics import (
    ask_numeric_statistics,
    constraints_document,
    feature_constraints,
    numeric_feature_statistics,
    statistics_document,
    string_feature_statistics,
)
from include.monitoring.streaming import (
    DEFAULT_BATCH_ROWS,
    KEEP_VALUES,
    CategoryCounter,
    ChunkSource,
    NumericStream,
    frame_source,
    parquet_source,
    quantile_ranks,
    quantiles,
    resolve,
    run_pass,
)
from include.monitoring.thresholds import MonitoringConfig
from include.storage import storage_for

PROFILE_VERSION = 1
STATISTICS_FILE = "statistics.json"
CONSTRAINTS_FILE = "constraints.json"
PROFILE_FILE = "reference_profile.json"
SAMPLE_FILE = "reference_sample.parquet"
# A PSI bin's reference share from fewer rows than this is noise (the usual "5 per cell" rule of
# chi-square-like statistics): a score reference built from a subset of rows needs this many
# rows per bin (:func:`min_score_reference_rows`).
MIN_REFERENCE_ROWS_PER_PSI_BIN = 5
# The chunks' boolean column marking the score's reference rows (not a curated column name: the
# spec's are identifiers).
SCORE_ROWS_COLUMN = "__score_rows"


@dataclass(frozen=True)
class NumericReference:
    """What a numeric column is compared against.

    ``ks_values`` are the distinct values of the reference sample and ``ks_cdf`` the sample's
    empirical CDF at each (``count(x <= v) / n``): the exact two-sample KS statistic needs
    nothing else. ``psi_edges`` are the inner cut points of the PSI bins ``(-inf, e0), [e0, e1),
    ..., [ek, inf)`` and ``psi_shares`` the training share of each bin.
    """

    column: MonitoredColumn
    missing_rate: float
    psi_edges: np.ndarray
    psi_shares: np.ndarray
    sample_sorted: np.ndarray
    ks_values: np.ndarray = field(init=False, repr=False)
    ks_cdf: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        values, counts = np.unique(self.sample_sorted, return_counts=True)
        object.__setattr__(self, "ks_values", values)
        object.__setattr__(self, "ks_cdf", np.cumsum(counts) / max(int(self.sample_sorted.size), 1))


@dataclass(frozen=True)
class CategoricalReference:
    """The training shares of a categorical column's categories (over its present values)."""

    column: MonitoredColumn
    missing_rate: float
    categories: tuple[str, ...]
    shares: np.ndarray


@dataclass(frozen=True)
class Baseline:
    """A loaded (or just computed) baseline: the Model Monitor files and the reference profile."""

    item_count: int
    references: Mapping[str, NumericReference | CategoricalReference]
    statistics: dict
    constraints: dict
    profile: dict

    @property
    def columns(self) -> tuple[MonitoredColumn, ...]:
        return tuple(ref.column for ref in self.references.values())


def build_baseline(
    frame: pd.DataFrame,
    columns: Sequence[MonitoredColumn],
    config: MonitoringConfig | None = None,
    *,
    metadata: Mapping | None = None,
    score_rows: np.ndarray | pd.Series | None = None,
) -> tuple[Baseline, pd.DataFrame]:
    """The baseline of ``frame`` (the training partition) and its reference sample.

    :param frame: the curated training partition, one row per record.
    :param columns: the monitored columns (:func:`include.monitoring.columns.monitored_columns`).
    :param config: sample size, PSI bins, domains and Model Monitor's ``monitoring_config``.
    :param metadata: stored in the profile as is (model version, data version, ...).
    :param score_rows: a boolean mask over ``frame``'s rows: those whose ``config.score_column``
        makes the score's reference distribution (the held-out rows the model did not train on).
        The score's missing rate still counts every row of ``frame``, as a batch's left join
        does. None: every row.

    The frame is one chunk of :func:`build_baseline_from_source` (everything kept in memory).
    """
    config = config or MonitoringConfig()
    config.check_features(c.name for c in columns)
    if len(frame) == 0:
        raise ValueError("cannot compute a monitoring baseline from an empty frame")
    absent = [c.name for c in columns if c.name not in frame.columns]
    if absent:
        raise ValueError(f"the baseline frame lacks monitored columns: {', '.join(absent)}")
    score_mask = _score_mask(frame, columns, config, score_rows)
    if score_mask is not None:
        frame = frame.assign(**{SCORE_ROWS_COLUMN: score_mask})
    return build_baseline_from_source(
        frame_source(frame),
        columns,
        config,
        metadata=metadata,
        score_rows=score_mask is not None,
        keep_values=None,
    )


def build_baseline_from_parquet(
    paths: Sequence[str],
    columns: Sequence[MonitoredColumn],
    config: MonitoringConfig | None = None,
    *,
    metadata: Mapping | None = None,
    scores: AlignedScores | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    keep_values: int = KEEP_VALUES,
) -> tuple[Baseline, pd.DataFrame]:
    """The baseline of the curated files ``paths`` streamed a record batch at a time: the same
    baseline as :func:`build_baseline` of their rows, in memory bounded by the batch.

    :param scores: the model's scores of those rows, aligned with them
        (:func:`~include.monitoring.score_join.align_scores`), with columns
        ``config.score_column`` and :data:`SCORE_ROWS_COLUMN` (the held-out mask); a row without a
        score has a missing score and is not a score-reference row. None: the score, if
        monitored, is a column of the files.
    :param keep_values: a numeric column with at most this many present values is kept whole
        (one pass); a larger one takes the passes of exact order statistics.
    """
    config = config or MonitoringConfig()
    if scores is None:
        source = parquet_source(paths, [c.name for c in columns], batch_rows=batch_rows)
    else:
        score = config.score_column
        source = parquet_source(
            paths,
            [c.name for c in columns if c.name != score],
            batch_rows=batch_rows,
            transform=ScoreJoin(scores, fill={SCORE_ROWS_COLUMN: False}),
            transform_makes=[score, SCORE_ROWS_COLUMN],
        )
    return build_baseline_from_source(
        source,
        columns,
        config,
        metadata=metadata,
        score_rows=scores is not None,
        keep_values=keep_values,
    )


def build_baseline_from_source(
    source: ChunkSource,
    columns: Sequence[MonitoredColumn],
    config: MonitoringConfig,
    *,
    metadata: Mapping | None = None,
    score_rows: bool = False,
    keep_values: int | None = KEEP_VALUES,
) -> tuple[Baseline, pd.DataFrame]:
    """The baseline of the rows of ``source`` (see :func:`build_baseline`): one pass for the
    counts, category counts, sums and the reference sample, then the passes the exact order
    statistics and quantile bins need (:func:`include.monitoring.streaming.resolve`).

    :param score_rows: the chunks have a boolean :data:`SCORE_ROWS_COLUMN`: the rows of the
        score's reference distribution.
    """
    config.check_features(c.name for c in columns)
    item_count = source.rows
    if item_count == 0:
        raise ValueError("cannot compute a monitoring baseline from an empty frame")
    score = config.score_column if score_rows else None
    streams: dict[str, NumericStream] = {}
    distributions: dict[str, NumericStream] = {}
    counters: dict[str, CategoryCounter] = {}
    for column in columns:
        if column.kind == NUMERIC:
            streams[column.name] = NumericStream(column.name, item_count, keep_values=keep_values)
            distributions[column.name] = streams[column.name]
            if column.name == score:
                # Its missing rate over every row, its distribution over the score rows.
                streams[column.name] = NumericStream(column.name, item_count, counts_only=True)
                distributions[column.name] = NumericStream(
                    column.name,
                    item_count,
                    keep_values=keep_values,
                    select=lambda chunk, name=column.name: chunk[name][chunk[SCORE_ROWS_COLUMN]],
                    columns=(column.name, SCORE_ROWS_COLUMN),
                )
        else:
            counters[column.name] = CategoryCounter(column.name)
    sample = ReferenceSample(
        item_count, [c.name for c in columns if c.kind == NUMERIC], config, score
    )
    visitors = [*streams.values(), *counters.values(), sample]
    if score:
        visitors.append(distributions[score])
    run_pass(source, visitors)

    for column in columns:
        stream = streams.get(column.name)
        if stream is not None and stream.invalid:
            row, value = stream.first_invalid
            raise ValueError(
                f"column {column.name!r} ({column.inferred_type}) has {stream.invalid} "
                f"value(s) that are not finite numbers, the first at row {row} "
                f"(counting from 0): {value!r}"
            )
    if score and score in distributions and not distributions[score].n:
        raise ValueError(
            f"score_rows selects {sample.score_rows} rows, none with a {score!r} value: no "
            "score reference to build"
        )
    probabilities = np.arange(1, config.psi_bins) / config.psi_bins
    for stream in distributions.values():
        ask_numeric_statistics(stream)
        if stream.n:
            stream.ask(ranks=quantile_ranks(stream.n, probabilities))
    resolve(source, list(distributions.values()))
    edges_of = {
        name: np.unique(quantiles(stream, probabilities)) if stream.n else np.array([])
        for name, stream in distributions.items()
    }
    for name, stream in distributions.items():
        stream.ask(values=edges_of[name])
    resolve(source, list(distributions.values()))
    sample_frame = sample.frame()

    statistics_features, constraint_features, profile_features = [], [], []
    references: dict[str, NumericReference | CategoricalReference] = {}
    for column in columns:
        if column.kind == NUMERIC:
            distribution = distributions[column.name]
            reference_rows = sample.score_rows if column.name == score else item_count
            stats = numeric_feature_statistics(column, distribution)
            edges = edges_of[column.name]
            shares = _shares([distribution.count_below(e) for e in edges], distribution.n)
            reference = NumericReference(
                column=column,
                missing_rate=streams[column.name].missing / item_count,
                psi_edges=edges,
                psi_shares=shares,
                sample_sorted=numeric_values(sample_frame[column.name]).sorted_values,
            )
            profile_features.append(
                {
                    **column.as_dict(),
                    "reference_rows": reference_rows,
                    "missing_rate": reference.missing_rate,
                    "psi_edges": edges.tolist(),
                    "psi_shares": shares.tolist(),
                }
            )
        else:
            reference_rows = item_count
            counts, missing = counters[column.name].result()
            stats = string_feature_statistics(column, counts, missing)
            present = sum(counts.values())
            shares = np.array([counts[c] / present for c in counts]) if present else np.array([])
            reference = CategoricalReference(
                column=column,
                missing_rate=missing / item_count,
                categories=tuple(counts),
                shares=shares,
            )
            profile_features.append(
                {
                    **column.as_dict(),
                    "reference_rows": reference_rows,
                    "missing_rate": reference.missing_rate,
                    "categories": list(counts),
                    "shares": shares.tolist(),
                }
            )
        references[column.name] = reference
        statistics_features.append(stats)
        # Over the rows the statistics describe, so completeness agrees with statistics.json.
        constraint_features.append(
            feature_constraints(
                column, stats, reference_rows, domain_max_values=config.domain_max_values
            )
        )

    profile = {
        "version": PROFILE_VERSION,
        "dataset": config.dataset,
        "item_count": item_count,
        "metadata": dict(metadata or {}),
        "psi_bins": config.psi_bins,
        "reference_sample": {
            "file": SAMPLE_FILE,
            "rows": len(sample_frame),
            "seed": config.reference_sample_seed,
        },
        "features": profile_features,
    }
    baseline = Baseline(
        item_count=item_count,
        references=references,
        statistics=statistics_document(item_count, statistics_features),
        constraints=constraints_document(constraint_features, config.monitoring_config()),
        profile=profile,
    )
    return baseline, sample_frame


def write_baseline(
    frame: pd.DataFrame,
    columns: Sequence[MonitoredColumn],
    out_uri: str,
    config: MonitoringConfig | None = None,
    *,
    metadata: Mapping | None = None,
    score_rows: np.ndarray | pd.Series | None = None,
) -> dict[str, str]:
    """Compute the baseline of ``frame`` (see :func:`build_baseline`) and store its four files
    under ``out_uri``.

    Deterministic (no timestamps, a seeded sample), so re-running it for a model version writes
    the same bytes. Returns ``{"statistics": uri, "constraints": uri, "reference_profile": uri,
    "reference_sample": uri}``.
    """
    baseline, sample = build_baseline(
        frame, columns, config, metadata=metadata, score_rows=score_rows
    )
    return store_baseline(baseline, sample, out_uri)


def store_baseline(baseline: Baseline, sample: pd.DataFrame, out_uri: str) -> dict[str, str]:
    """Store a computed baseline's four files under ``out_uri`` (the profile last)."""
    root = out_uri.rstrip("/")
    storage = storage_for(root)
    buffer = io.BytesIO()
    sample.to_parquet(buffer, index=False, engine="pyarrow")
    payloads = {
        "statistics": (STATISTICS_FILE, json_bytes(baseline.statistics)),
        "constraints": (CONSTRAINTS_FILE, json_bytes(baseline.constraints)),
        "reference_sample": (SAMPLE_FILE, buffer.getvalue()),
        # Written last: a profile present means the files it refers to are too.
        "reference_profile": (PROFILE_FILE, json_bytes(baseline.profile)),
    }
    uris = {}
    for key, (name, data) in payloads.items():
        uris[key] = f"{root}/{name}"
        storage.write_bytes(uris[key], data)
    return uris


def load_baseline(uri: str) -> Baseline:
    """Read a baseline folder written by :func:`write_baseline`."""
    root = uri.rstrip("/")
    storage = storage_for(root)
    profile_uri = f"{root}/{PROFILE_FILE}"
    if not storage.exists(profile_uri):
        raise FileNotFoundError(f"no monitoring baseline at {root}: {PROFILE_FILE} is missing")
    profile = json.loads(storage.read_bytes(profile_uri))
    if profile.get("version") != PROFILE_VERSION:
        raise ValueError(
            f"{profile_uri}: profile version {profile.get('version')!r}, "
            f"this code reads version {PROFILE_VERSION}"
        )
    statistics = json.loads(storage.read_bytes(f"{root}/{STATISTICS_FILE}"))
    constraints = json.loads(storage.read_bytes(f"{root}/{CONSTRAINTS_FILE}"))
    sample = pd.read_parquet(io.BytesIO(storage.read_bytes(f"{root}/{SAMPLE_FILE}")))
    references: dict[str, NumericReference | CategoricalReference] = {}
    for entry in profile["features"]:
        column = MonitoredColumn(entry["name"], entry["kind"], entry["inferred_type"])
        if column.kind == NUMERIC:
            references[column.name] = NumericReference(
                column=column,
                missing_rate=entry["missing_rate"],
                psi_edges=np.asarray(entry["psi_edges"], dtype=np.float64),
                psi_shares=np.asarray(entry["psi_shares"], dtype=np.float64),
                sample_sorted=numeric_values(sample[column.name]).sorted_values,
            )
        elif column.kind == CATEGORICAL:
            references[column.name] = CategoricalReference(
                column=column,
                missing_rate=entry["missing_rate"],
                categories=tuple(entry["categories"]),
                shares=np.asarray(entry["shares"], dtype=np.float64),
            )
    return Baseline(
        item_count=profile["item_count"],
        references=references,
        statistics=statistics,
        constraints=constraints,
        profile=profile,
    )


def psi_bins(sorted_values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``(inner edges, shares)``: the reference's ``bins``-quantiles as cut points (numpy's
    default linear interpolation; equal quantiles of tied values merged into one edge) and the
    share of values in each bin ``(-inf, e0), [e0, e1), ..., [ek, inf)``."""
    if sorted_values.size == 0:
        return np.array([]), np.array([])
    stream = NumericStream("values", sorted_values.size, keep_values=None)
    stream.add(NumericValues(sorted_values=np.asarray(sorted_values, np.float64), missing=0))
    edges = np.unique(quantiles(stream, np.arange(1, bins) / bins))
    return edges, bin_shares(sorted_values, edges)


def bin_shares(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``sorted_values`` in each bin ``(-inf, e0), [e0, e1), ..., [ek, inf)``."""
    return _shares(np.searchsorted(sorted_values, edges, side="left"), int(sorted_values.size))


def _shares(below: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """Each bin's share from the counts below its inner edges."""
    counts = np.diff(np.concatenate(([0], np.asarray(below, dtype=np.int64), [n])))
    return counts / n if n else counts.astype(np.float64)


def min_score_reference_rows(config: MonitoringConfig) -> int:
    """The fewest held-out rows a score reference is built from: 5 per PSI bin (50 at 10 bins)."""
    return MIN_REFERENCE_ROWS_PER_PSI_BIN * config.psi_bins


def _score_mask(
    frame: pd.DataFrame,
    columns: Sequence[MonitoredColumn],
    config: MonitoringConfig,
    score_rows: np.ndarray | pd.Series | None,
) -> np.ndarray | None:
    """``score_rows`` as a numpy boolean array, checked against ``frame`` and the columns."""
    if score_rows is None:
        return None
    monitored = {c.name: c for c in columns}
    score = config.score_column
    if not score or score not in monitored or monitored[score].kind != NUMERIC:
        raise ValueError(
            f"score_rows given, but the baseline monitors no numeric score column "
            f"(score_column: {score!r})"
        )
    mask = np.asarray(score_rows)
    if mask.dtype != np.bool_ or mask.shape != (len(frame),):
        raise ValueError(
            f"score_rows must be a boolean mask of the frame's {len(frame)} rows, got "
            f"dtype {mask.dtype} and shape {mask.shape}"
        )
    return mask


class ReferenceSample:
    """The reference sample, picked while streaming: the numeric columns of at most
    ``reference_sample_rows`` rows chosen by a seeded draw over the row count, kept in their
    original order (so the same partition always gives the same sample)."""

    def __init__(
        self, rows: int, numeric: Sequence[str], config: MonitoringConfig, score: str | None
    ):
        if rows <= config.reference_sample_rows:
            self.rows = np.arange(rows)
        else:
            rng = np.random.default_rng(config.reference_sample_seed)
            self.rows = np.sort(rng.choice(rows, config.reference_sample_rows, replace=False))
        self.numeric = list(numeric)
        self.score = score
        self.score_rows = 0
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in self.numeric}

    def __call__(self, offset: int, chunk: pd.DataFrame) -> None:
        lo, hi = np.searchsorted(self.rows, [offset, offset + len(chunk)])
        local = self.rows[lo:hi] - offset
        mask = chunk[SCORE_ROWS_COLUMN].to_numpy(dtype=bool) if self.score else None
        if mask is not None:
            self.score_rows += int(mask.sum())
        for name in self.numeric:
            # Stored as float64 with NaN for missing: the parquet file then reads back exactly as
            # the KS reference was computed.
            values = _as_float64(chunk[name].iloc[local])
            if name == self.score:
                # The score's KS reference is its sampled rows inside the mask; NaN elsewhere is
                # skipped like a missing value, so the file keeps one row per sampled record.
                values = np.where(mask[local], values, np.nan)
            self.parts[name].append(values)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                name: np.concatenate(parts) if parts else np.array([])
                for name, parts in self.parts.items()
            },
            index=range(len(self.rows)),
        )


def _as_float64(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def json_bytes(payload: dict) -> bytes:
    """Stable JSON: sorted keys would reorder Model Monitor's documented layout, so keys keep the
    order they were built in; no NaN (not JSON)."""
    return (json.dumps(payload, indent=2, allow_nan=False) + "\n").encode()
