"""The spec-driven landing generator: every value obeys the spec's row rules, keys are unique,
the label is learnable, drift moves what it names, and the same arguments write the same bytes.

The values are checked here in Python against the spec itself; that the ingest job accepts every
generated row is proven end to end in tests/e2e/test_second_dataset.py.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.datagen.from_spec import (
    GeneratorConfig,
    GeneratorError,
    RegexSampler,
    generate,
    main,
)
from spark_jobs.dataset_spec import load_spec

DATASETS = Path(__file__).resolve().parents[2] / "include" / "datasets"
CLAIMS = DATASETS / "benefit_claims.yaml"
START = date(2026, 3, 1)


def config(out: Path, **overrides) -> GeneratorConfig:
    arguments = {
        "spec_path": CLAIMS, "out": out, "start": START, "days": 2, "rows_per_day": 1500, "seed": 3,
    }  # fmt: skip
    return GeneratorConfig(**{**arguments, **overrides})


@pytest.fixture(scope="module")
def claims(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("landing")
    return generate(config(out, drift_columns=("claimed_amount", "channel"))), out


def read_day(out: Path, ds: str, dataset: str = "benefit_claims") -> pd.DataFrame:
    files = sorted((out / dataset / f"ds={ds}").glob("part-*"))
    assert files, f"no landing file for {ds}"
    return pd.concat(
        [pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[""]) for f in files]
    )


def test_files_land_in_the_layout_ingest_reads(claims):
    summary, out = claims
    assert summary["rows"] == 3000 and summary["format"] == "csv"
    assert [day["files"] for day in summary["days"]] == [
        ["benefit_claims/ds=2026-03-01/part-00000.csv"],
        ["benefit_claims/ds=2026-03-02/part-00000.csv"],
    ]
    frame = read_day(out, "2026-03-01")
    spec = load_spec(CLAIMS)
    assert list(frame.columns) == list(spec.column_names)
    assert len(frame) == 1500


@pytest.mark.parametrize("ds", ["2026-03-01", "2026-03-02"])
def test_every_value_obeys_the_spec(claims, ds):
    _, out = claims
    frame = read_day(out, ds)
    spec = load_spec(CLAIMS)
    for column in spec.columns:
        values = frame[column.name]
        present = values.dropna()
        if not column.nullable:
            assert values.notna().all(), f"{column.name} has empty values"
        else:
            assert 0.0 < values.isna().mean() < 0.15, f"{column.name}: null share off"
        if column.pattern:
            bad = [v for v in present if not re.fullmatch(column.pattern, v)]
            assert not bad, f"{column.name}: {bad[:3]} do not match {column.pattern}"
        if column.allowed is not None:
            assert set(present) <= {str(v) for v in column.allowed}, column.name
        if column.type in {"int", "long", "double"}:
            numbers = pd.to_numeric(present)
            if column.min is not None:
                assert numbers.min() >= column.min, column.name
            if column.max is not None:
                assert numbers.max() <= column.max, column.name
        if column.type == "boolean":
            assert set(present) == {"true", "false"}, column.name
        if column.type == "date" and column.name != spec.partition_column:
            assert present.max() <= ds and present.min() >= str(column.min), column.name
        if column.max_length:
            assert present.str.len().max() <= column.max_length, column.name
            assert not present.str[0].isin(list("=+-@")).any(), f"{column.name}: formula prefix"
    assert (frame[spec.partition_column] == ds).all()
    assert frame[spec.event_time].str.startswith(ds).all()


def test_keys_are_unique_across_the_days(claims):
    _, out = claims
    keys = pd.concat([read_day(out, d)["claim_id"] for d in ("2026-03-01", "2026-03-02")])
    assert keys.is_unique


def test_the_label_depends_on_the_features(claims):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    _, out = claims
    frame = read_day(out, "2026-03-01")
    spec = load_spec(CLAIMS)
    features = spec.features
    numeric = frame[list(features.numeric)].apply(pd.to_numeric).fillna(0.0)
    flags = frame[list(features.boolean)].eq("true").astype(float)
    one_hot = pd.get_dummies(frame[list(features.categorical)]).astype(float)
    x = pd.concat([numeric, flags, one_hot], axis=1)
    x = (x - x.mean()) / x.std().replace(0, 1)
    y = frame["flagged_for_review"].astype(int)
    model = LogisticRegression(max_iter=1000).fit(x[:1000], y[:1000])
    auc = roc_auc_score(y[1000:], model.predict_proba(x[1000:])[:, 1])
    assert auc > 0.75, auc
    # About the requested share of positives (0.2 by default).
    assert 0.12 < y.mean() < 0.28


def test_drift_moves_the_named_columns_on_the_last_day_only(claims):
    summary, out = claims
    assert [day["drifted_columns"] for day in summary["days"]] == [
        [],
        ["channel", "claimed_amount"],
    ]
    calm, drifted = read_day(out, "2026-03-01"), read_day(out, "2026-03-02")
    amount = [pd.to_numeric(day["claimed_amount"]).mean() for day in (calm, drifted)]
    assert amount[1] > 1.5 * amount[0]
    shares = [day["channel"].value_counts(normalize=True) for day in (calm, drifted)]
    assert shares[0].idxmax() != shares[1].idxmax()
    # An undrifted column keeps its distribution.
    size = [pd.to_numeric(day["household_size"]).mean() for day in (calm, drifted)]
    assert abs(size[1] - size[0]) < 0.3


def test_the_same_arguments_write_the_same_bytes(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    generate(config(first, days=1, rows_per_day=300, gzip=True, fmt="jsonl"))
    generate(config(second, days=1, rows_per_day=300, gzip=True, fmt="jsonl"))
    name = "benefit_claims/ds=2026-03-01/part-00000.jsonl.gz"
    assert (first / name).read_bytes() == (second / name).read_bytes()
    generate(config(second, days=1, rows_per_day=300, gzip=True, fmt="jsonl", seed=4))
    assert (first / name).read_bytes() != (second / name).read_bytes()
    record = json.loads(gzip.decompress((first / name).read_bytes()).splitlines()[0])
    # JSON lines carry typed values: numbers, booleans and nulls, not strings.
    assert isinstance(record["household_size"], int)
    assert isinstance(record["documents_complete"], bool)
    assert isinstance(record["claimed_amount"], float)


def test_rows_per_file_splits_a_day_and_a_rerun_replaces_its_files(tmp_path):
    generate(config(tmp_path, days=1, rows_per_day=250, rows_per_file=100))
    day = tmp_path / "benefit_claims" / "ds=2026-03-01"
    assert sorted(p.name for p in day.iterdir()) == [
        "part-00000.csv", "part-00001.csv", "part-00002.csv",
    ]  # fmt: skip
    generate(config(tmp_path, days=1, rows_per_day=250))
    assert sorted(p.name for p in day.iterdir()) == ["part-00000.csv"]


def test_the_churn_spec_generates_too(tmp_path):
    """Any valid spec: churn's patterns (ids, e-mail, phone, national id) are sampled as well."""
    generate(config(tmp_path, spec_path=DATASETS / "churn.yaml", days=1, rows_per_day=200))
    frame = read_day(tmp_path, "2026-03-01", dataset="churn")
    spec = load_spec(DATASETS / "churn.yaml")
    for column in spec.columns:
        if column.pattern:
            present = frame[column.name].dropna()
            assert present.map(lambda v, p=column.pattern: bool(re.fullmatch(p, v))).all()
    assert frame["email"].dropna().str.contains(r"^[a-z]+\.[a-z]+\d+@").all()
    assert set(frame["churned"]) == {"0", "1"}


def test_the_regex_sampler_covers_groups_alternation_and_classes():
    sampler = RegexSampler(r"^(AB|CD)-[0-9a-f]{4}(\.[A-Z]{2,3})?\s\d+$", "test")
    rng = random.Random(0)  # noqa: S311 - a seeded sampler, not a secret
    values = [sampler.sample(rng) for _ in range(200)]
    assert all(re.fullmatch(sampler.pattern, v) for v in values)
    assert {v[:2] for v in values} == {"AB", "CD"}


def test_an_unsampleable_pattern_is_named():
    with pytest.raises(GeneratorError, match=r"column 'x'.*cannot sample '\^\(\?!0\)\[0-9\]\+\$'"):
        RegexSampler(r"^(?!0)[0-9]+$", "column 'x'").sample(random.Random(0))  # noqa: S311


def test_bad_arguments_are_named(tmp_path, capsys):
    with pytest.raises(GeneratorError, match=r"--drift-columns: \['nope'\] are not columns"):
        generate(config(tmp_path, drift_columns=("nope",)))
    with pytest.raises(GeneratorError, match="--label-rate must lie strictly between 0 and 1"):
        generate(config(tmp_path, label_rate=1.0))
    code = main(["--spec", str(CLAIMS), "--out", str(tmp_path), "--start", "2026-03-01",
                 "--drift-columns", "nope"])  # fmt: skip
    assert code == 2
    assert "--drift-columns: ['nope']" in capsys.readouterr().err


def test_the_command_line_prints_the_summary(tmp_path, capsys):
    code = main(["--spec", str(CLAIMS), "--out", str(tmp_path), "--start", "2026-03-01",
                 "--days", "1", "--rows-per-day", "50", "--seed", "1"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["dataset"], summary["rows"]) == ("benefit_claims", 50)
    assert np.isclose(sum(1 for _ in (tmp_path / summary["days"][0]["files"][0]).open()), 51)


def test_a_spec_that_takes_its_day_from_the_landing_folder_gets_files_without_it(tmp_path):
    """day_from: landing_folder: the files carry no date column (ingest adds it from ds=)."""
    import yaml

    document = yaml.safe_load(CLAIMS.read_text())
    partition = document["partition_column"]
    document["day_from"] = "landing_folder"
    document["columns"] = [c for c in document["columns"] if c["name"] != partition]
    spec_path = tmp_path / "benefit_claims.yaml"
    spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
    spec = load_spec(spec_path)
    generate(config(tmp_path / "landing", spec_path=spec_path, days=1, rows_per_day=100))
    frame = read_day(tmp_path / "landing", "2026-03-01")
    assert partition not in frame.columns
    assert list(frame.columns) == list(spec.landing_column_names)
    assert len(frame) == 100
