"""include/job_tags.py: the cost allocation tags of every job, and the spec's ``tags:`` block."""

from __future__ import annotations

import pytest
import yaml

from include.config import DATASETS_DIR
from include.job_tags import TagError, check_tags, identity_tag_value, job_tags
from spark_jobs.dataset_spec import MAX_SPEC_TAGS, SpecError, load_spec

RUN_ID = "scheduled__2026-01-07T00:00:00+00:00"


def spec_with_tags(tmp_path, tags) -> None:
    """churn's spec in ``tmp_path`` with a ``tags:`` block."""
    raw = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump({**raw, "tags": tags}, sort_keys=False))


def test_a_job_is_tagged_with_project_dataset_dag_and_run():
    tags = job_tags("churn", dag_id="churn_training", run_id=RUN_ID)
    assert tags == {
        "project": "headrace",
        "dataset": "churn",
        "dag": "churn_training",
        "run": RUN_ID,  # ':' and '+' are allowed in tag values: kept as they are
    }


def test_the_specs_tags_and_the_jobs_own_follow_in_that_order(tmp_path):
    spec_with_tags(tmp_path, {"cost-center": "CC-1042", "team": "risk analytics"})
    tags = job_tags(
        "churn",
        dag_id="churn_scoring",
        run_id="manual__2026-01-08T09:30:00.123456+00:00",
        extra={"model-version": "3"},
        datasets_dir=tmp_path,
    )
    assert list(tags.items()) == [
        ("project", "headrace"),
        ("dataset", "churn"),
        ("dag", "churn_scoring"),
        ("run", "manual__2026-01-08T09:30:00.123456+00:00"),
        ("cost-center", "CC-1042"),
        ("team", "risk analytics"),
        ("model-version", "3"),
    ]


def test_a_job_of_no_dataset_has_no_dataset_tag():
    assert job_tags(None, dag_id="lake_maintenance", run_id=RUN_ID) == {
        "project": "headrace",
        "dag": "lake_maintenance",
        "run": RUN_ID,
    }


def test_a_run_id_with_characters_aws_refuses_is_sanitized_not_refused():
    # '~' is in Airflow's default allowed_run_id_pattern for runs named through the API.
    tags = job_tags("churn", dag_id="churn_training", run_id="backfill~2026-01-07#2")
    assert tags["run"] == "backfill_2026-01-07_2"
    assert identity_tag_value("x" * 300) == "x" * 256


def test_a_job_kind_tag_must_be_a_reserved_key():
    with pytest.raises(TagError, match=r"job tag 'owner' must be one of the reserved keys"):
        job_tags("churn", dag_id="d", run_id=RUN_ID, extra={"owner": "me"})
    with pytest.raises(TagError, match=r"job tag 'dataset' must be one of the reserved keys"):
        job_tags("churn", dag_id="d", run_id=RUN_ID, extra={"dataset": "other"})


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"": "x"}, "tag ''='x': the key must be 1 to 128 characters, got 0"),
        ({"k" * 129: "x"}, "the key must be 1 to 128 characters, got 129"),
        ({"team": "v" * 257}, "tag 'team'=.*the value must be at most 256 characters, got 257"),
        ({"AWS:team": "x"}, "tag 'AWS:team'='x': the key must not start with 'aws:'"),
        ({"team": "a;b"}, "tag 'team'='a;b': the value may hold only ASCII letters.*found ';'"),
        ({"équipe": "x"}, "the key may hold only ASCII letters.*found 'é'"),
        ({"team": 7}, "the value must be a string \\(quote it in YAML\\), got int 7"),
        ({f"k{i}": "v" for i in range(51)}, "51 tags .*AWS allows at most 50"),
    ],
)
def test_a_tag_aws_would_refuse_is_named(tags, message):
    with pytest.raises(TagError, match=message):
        check_tags(tags)


def test_tags_within_the_rules_pass_unchanged():
    tags = {"a/b.c:d=e+f-g@h_i": "", "Team Name": "risk analytics 2026"}
    assert check_tags(tags) == tags


def test_the_specs_tags_are_read_in_order(tmp_path):
    spec_with_tags(tmp_path, {"team": "risk", "cost-center": "CC-1042"})
    spec = load_spec(tmp_path / "churn.yaml")
    assert spec.tags == (("team", "risk"), ("cost-center", "CC-1042"))
    # Tags label the bill, not the data: they leave the spec's fingerprint alone.
    assert spec.fingerprint == load_spec(DATASETS_DIR / "churn.yaml").fingerprint
    assert load_spec(DATASETS_DIR / "churn.yaml").tags == ()


def test_bad_spec_tags_name_the_file_and_every_key(tmp_path):
    spec_with_tags(
        tmp_path,
        {"run": "mine", "aws:owner": "me", "team": 42, "cost center": "CC#1", "ok": "fine"},
    )
    with pytest.raises(SpecError) as raised:
        load_spec(tmp_path / "churn.yaml")
    assert raised.value.problems == [
        "tags.run: is set by headrace on every job it applies to; reserved keys: dag, dataset, "
        "ds, features-ds, model-version, project, run, severity, spark_job",
        "tags.aws:owner: the key must not start with 'aws:' (reserved for AWS's own tags)",
        "tags.team: the value must be a string (quote it in YAML), got int 42",
        "tags.cost center: the value may hold only ASCII letters, digits, spaces and "
        "_ . : / = + - @, found '#'",
    ]
    assert str(tmp_path / "churn.yaml") in str(raised.value)


def test_a_spec_with_too_many_tags_is_refused(tmp_path):
    spec_with_tags(tmp_path, {f"tag{i}": "x" for i in range(MAX_SPEC_TAGS + 1)})
    with pytest.raises(SpecError, match=rf"tags: has {MAX_SPEC_TAGS + 1} tags; at most 41"):
        load_spec(tmp_path / "churn.yaml")


def test_a_job_of_a_spec_with_bad_tags_fails_naming_the_spec(tmp_path):
    spec_with_tags(tmp_path, "team=risk")
    with pytest.raises(SpecError, match=r"tags: must be a mapping, got str"):
        job_tags("churn", dag_id="d", run_id=RUN_ID, datasets_dir=tmp_path)
