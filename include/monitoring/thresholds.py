"""Drift thresholds per feature, read from a dataset's ``<dataset>.monitoring.yaml``.

Defaults per kind of column (numeric, categorical) and per-feature overrides; a metric above its
threshold is a violation and a null threshold switches the metric off. KS also needs its p-value
below ``ks_alpha``: a few hundred rows from one distribution are often 0.05 apart by chance. Every
problem in the file is reported at once, each naming the file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from include.monitoring.columns import CATEGORICAL, NUMERIC, MonitoredColumn

# The metrics each kind of column is judged by, in the order a verdict names them.
METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    NUMERIC: ("psi", "ks", "missing_rate_change"),
    CATEGORICAL: ("psi", "js", "linf", "unseen_rate", "missing_rate_change"),
}
# Metrics that are distances or shares, so a threshold above 1 could never be crossed.
_UNIT_METRICS = frozenset({"ks", "js", "linf", "missing_rate_change", "unseen_rate"})
_MONITORING_KEYS = {
    "score_column",
    "reference_sample_rows",
    "reference_sample_seed",
    "psi_bins",
    "ks_alpha",
    "domain_max_values",
    "thresholds",
    "features",
    "model_monitor",
}
_MODEL_MONITOR_DEFAULTS = {
    "datatype_check_threshold": 1.0,
    "domain_content_threshold": 1.0,
    "comparison_method": "Robust",
    "categorical_drift_method": "LInfinity",
}
_MODEL_MONITOR_CHOICES = {
    "comparison_method": ("Robust", "Simple"),
    "categorical_drift_method": ("LInfinity", "ChiSquared"),
}


# KS is drift only when a batch this far from the reference would come from the reference's own
# distribution less often than this (the same as churn.monitoring.yaml's).
DEFAULT_KS_ALPHA = 0.01
# The thresholds when no monitoring config is given (the same as churn.monitoring.yaml's).
DEFAULT_THRESHOLDS: dict[str, dict[str, float | None]] = {
    NUMERIC: {"psi": 0.2, "ks": 0.1, "missing_rate_change": 0.05},
    CATEGORICAL: {
        "psi": 0.2,
        "js": 0.1,
        "linf": 0.1,
        "unseen_rate": 0.0,
        "missing_rate_change": 0.05,
    },
}


class MonitoringConfigError(ValueError):
    """A monitoring config is invalid; the message lists every problem with its file and key."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        name = Path(source).name
        super().__init__(
            f"invalid monitoring config {source}:\n  - "
            + "\n  - ".join(f"{name}: {p}" for p in problems)
        )


@dataclass(frozen=True)
class FeatureThresholds:
    """One feature's thresholds (``None``: that metric is not judged)."""

    psi: float | None = None
    ks: float | None = None
    js: float | None = None
    linf: float | None = None
    unseen_rate: float | None = None
    missing_rate_change: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


@dataclass(frozen=True)
class MonitoringConfig:
    source: str = "<defaults>"
    dataset: str = ""
    defaults: Mapping[str, Mapping[str, float | None]] = field(
        default_factory=lambda: {kind: dict(v) for kind, v in DEFAULT_THRESHOLDS.items()}
    )
    overrides: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    score_column: str | None = "score"
    reference_sample_rows: int = 200_000
    reference_sample_seed: int = 0
    psi_bins: int = 10
    ks_alpha: float | None = DEFAULT_KS_ALPHA
    domain_max_values: int = 50
    model_monitor: Mapping[str, Any] = field(default_factory=lambda: dict(_MODEL_MONITOR_DEFAULTS))

    def thresholds_for(self, column: MonitoredColumn) -> FeatureThresholds:
        """The defaults of the column's kind with its overrides applied."""
        allowed = METRICS_BY_KIND[column.kind]
        merged = dict(self.defaults.get(column.kind, {}))
        override = self.overrides.get(column.name, {})
        wrong = sorted(set(override) - set(allowed))
        if wrong:
            raise MonitoringConfigError(
                self.source,
                [
                    f"monitoring.features.{column.name}.{key}: not a metric of a {column.kind} "
                    f"column (its metrics: {', '.join(allowed)})"
                    for key in wrong
                ],
            )
        merged.update(override)
        return FeatureThresholds(**{k: v for k, v in merged.items() if k in allowed})

    def check_features(self, names: Iterable[str]) -> None:
        """Fail when an override names a feature the baseline does not monitor (a typo would
        otherwise leave the feature on the defaults without anyone noticing)."""
        known = set(names)
        # The score is monitored only where a frame holds it, so its override may go unused.
        unknown = [n for n in self.overrides if n not in known and n != self.score_column]
        if unknown:
            raise MonitoringConfigError(
                self.source,
                [
                    f"monitoring.features.{name}: not a monitored column "
                    f"(monitored: {', '.join(sorted(known))})"
                    for name in unknown
                ],
            )

    def monitoring_config(self) -> dict:
        """Model Monitor's ``monitoring_config`` block of ``constraints.json``."""
        numeric = self.defaults.get(NUMERIC, {})
        categorical = self.defaults.get(CATEGORICAL, {})
        return {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": self.model_monitor["datatype_check_threshold"],
            "domain_content_threshold": self.model_monitor["domain_content_threshold"],
            "distribution_constraints": {
                "perform_comparison": "Enabled",
                "comparison_threshold": numeric.get("ks") if numeric.get("ks") is not None else 0.1,
                "comparison_method": self.model_monitor["comparison_method"],
                "categorical_comparison_threshold": (
                    categorical.get("linf") if categorical.get("linf") is not None else 0.1
                ),
                "categorical_drift_method": self.model_monitor["categorical_drift_method"],
            },
        }


def load_monitoring_config(path: str | Path) -> MonitoringConfig:
    """Read and validate a ``<dataset>.monitoring.yaml``; errors name the file and every key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise MonitoringConfigError(
            str(path), [f"cannot read the file: {error.strerror or error}"]
        ) from None
    return parse_monitoring_config(text, source=str(path))


def parse_monitoring_config(text: str, source: str = "<monitoring config>") -> MonitoringConfig:
    import yaml  # PyYAML, imported on use like the dataset spec loader

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise MonitoringConfigError(source, [f"not valid YAML: {error}"]) from None
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise MonitoringConfigError(source, ["must be a mapping with dataset: and monitoring:"])
    unknown_top = sorted(set(raw) - {"dataset", "monitoring"})
    problems += [f"{key}: unknown key (expected dataset, monitoring)" for key in unknown_top]
    dataset = raw.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        problems.append("dataset: must be the dataset's name")
    section = raw.get("monitoring")
    if not isinstance(section, dict):
        problems.append("monitoring: must be a mapping")
        raise MonitoringConfigError(source, problems)
    problems += [
        f"monitoring.{key}: unknown key (expected {', '.join(sorted(_MONITORING_KEYS))})"
        for key in sorted(set(section) - _MONITORING_KEYS)
    ]

    def positive_int(key: str, default: int, minimum: int = 1) -> int:
        value = section.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            problems.append(f"monitoring.{key}: must be an integer >= {minimum}, got {value!r}")
            return default
        return value

    def thresholds(where: str, raw_block: Any, allowed: tuple[str, ...]) -> dict:
        if raw_block is None:
            return {}
        if not isinstance(raw_block, dict):
            problems.append(f"{where}: must be a mapping of metric: threshold")
            return {}
        out = {}
        for key, value in raw_block.items():
            if key not in allowed:
                problems.append(f"{where}.{key}: unknown metric (expected {', '.join(allowed)})")
                continue
            if value is None:
                out[key] = None
                continue
            upper = 1.0 if key in _UNIT_METRICS else math.inf
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not 0.0 <= value <= upper
            ):
                bound = "within [0, 1]" if upper == 1.0 else "a finite number >= 0"
                problems.append(f"{where}.{key}: must be {bound} or null, got {value!r}")
                continue
            out[key] = float(value)
        return out

    ks_alpha = section.get("ks_alpha", DEFAULT_KS_ALPHA)
    if ks_alpha is not None and (
        isinstance(ks_alpha, bool) or not isinstance(ks_alpha, int | float) or not 0 < ks_alpha < 1
    ):
        problems.append(
            f"monitoring.ks_alpha: must be a number in (0, 1) or null, got {ks_alpha!r}"
        )
        ks_alpha = None

    score_column = section.get("score_column", "score")
    if score_column is not None and (not isinstance(score_column, str) or not score_column):
        problems.append(
            f"monitoring.score_column: must be a column name or null, got {score_column!r}"
        )
        score_column = None

    raw_defaults = section.get("thresholds")
    defaults: dict[str, dict] = {}
    if not isinstance(raw_defaults, dict):
        problems.append("monitoring.thresholds: must map numeric: and categorical: to thresholds")
    else:
        problems += [
            f"monitoring.thresholds.{kind}: unknown kind (expected numeric, categorical)"
            for kind in raw_defaults
            if kind not in METRICS_BY_KIND
        ]
        for kind, allowed in METRICS_BY_KIND.items():
            defaults[kind] = thresholds(
                f"monitoring.thresholds.{kind}", raw_defaults.get(kind), allowed
            )

    overrides: dict[str, dict] = {}
    raw_features = section.get("features") or {}
    if not isinstance(raw_features, dict):
        problems.append("monitoring.features: must map feature names to thresholds")
        raw_features = {}
    every_metric = tuple(dict.fromkeys(m for ms in METRICS_BY_KIND.values() for m in ms))
    for name, block in raw_features.items():
        overrides[str(name)] = thresholds(f"monitoring.features.{name}", block, every_metric)

    model_monitor = dict(_MODEL_MONITOR_DEFAULTS)
    raw_mm = section.get("model_monitor") or {}
    if not isinstance(raw_mm, dict):
        problems.append("monitoring.model_monitor: must be a mapping")
        raw_mm = {}
    for key, value in raw_mm.items():
        where = f"monitoring.model_monitor.{key}"
        if key not in _MODEL_MONITOR_DEFAULTS:
            problems.append(f"{where}: unknown key (expected {', '.join(_MODEL_MONITOR_DEFAULTS)})")
        elif key in _MODEL_MONITOR_CHOICES:
            if value not in _MODEL_MONITOR_CHOICES[key]:
                problems.append(
                    f"{where}: must be one of {', '.join(_MODEL_MONITOR_CHOICES[key])}, got {value!r}"
                )
            else:
                model_monitor[key] = value
        elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            problems.append(f"{where}: must be a number within [0, 1], got {value!r}")
        else:
            model_monitor[key] = float(value)

    config_kwargs = {
        "reference_sample_rows": positive_int("reference_sample_rows", 200_000),
        "reference_sample_seed": positive_int("reference_sample_seed", 0, minimum=0),
        "psi_bins": positive_int("psi_bins", 10, minimum=2),
        "domain_max_values": positive_int("domain_max_values", 50),
    }
    if problems:
        raise MonitoringConfigError(source, problems)
    return MonitoringConfig(
        source=source,
        dataset=dataset,
        defaults=defaults,
        overrides=overrides,
        score_column=score_column,
        ks_alpha=None if ks_alpha is None else float(ks_alpha),
        model_monitor=model_monitor,
        **config_kwargs,
    )
