"""The factory DAGs' Params refuse bad run confs naming the field, and accept good ones.

What the trigger form and the REST API do before a run is created: the conf is merged into the
DAG's Params (each value validated against its JSON schema), then every Param is resolved. The
DAGs come from one DagBag of the whole dags/ folder, by id; every dataset's DAGs are checked.
"""

from __future__ import annotations

import copy

import pytest

from include.pipelines.datasets import pipeline_datasets

DATASETS = pipeline_datasets()


@pytest.fixture(scope="module")
def bag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag()
    assert bag.import_errors == {}, bag.import_errors
    return bag


def validated(dag, conf: dict) -> dict:
    params = copy.deepcopy(dag.params)
    params.update(conf)
    return params.validate()


def refused(dag, conf: dict) -> str:
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError) as raised:
        validated(dag, conf)
    return str(raised.value)


TRAINING_BAD = [
    ({"ds": "2026-02-30"}, "ds", "is not a 'date'"),
    ({"ds": "07/01/2026"}, "ds", "is not a 'date'"),
    ({"ds": 20260107}, "ds", "is not of type"),
    ({"max_trials": 0}, "max_trials", "less than the minimum of 1"),
    ({"max_trials": 51}, "max_trials", "greater than the maximum of 50"),
    ({"max_trials": "four"}, "max_trials", "is not of type 'integer'"),
    ({"max_trials": 2.5}, "max_trials", "is not of type 'integer'"),
    ({"parallel_trials": 11}, "parallel_trials", "greater than the maximum of 10"),
    ({"epochs": -1}, "epochs", "less than the minimum of 1"),
    ({"approval_margin": 0.5}, "approval_margin", "greater than the maximum of 0.2"),
    ({"approval_margin": "high"}, "approval_margin", "is not of type 'number'"),
    ({"retrain": "yes"}, "retrain", "is not of type 'boolean'"),
]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize(("conf", "field", "reason"), TRAINING_BAD, ids=lambda v: str(v)[:30])
def test_training_refuses_bad_values_naming_the_field(bag, dataset, conf, field, reason):
    message = refused(bag.dags[f"{dataset}_training"], conf)
    assert f"Invalid input for param {field}" in message and reason in message, message


@pytest.mark.parametrize("dataset", DATASETS)
def test_training_accepts_good_values_and_defaults(bag, dataset):
    dag = bag.dags[f"{dataset}_training"]
    assert validated(dag, {}) == {
        "ds": None, "max_trials": 4, "parallel_trials": 2, "epochs": 20, "approval_margin": 0.005,
        "retrain": False,
    }  # fmt: skip
    good = {"ds": "2026-01-07", "max_trials": 1, "parallel_trials": 1, "epochs": 3}
    assert validated(dag, good)["ds"] == "2026-01-07"


APPROVAL_BAD = [
    ({"version": 0}, "version", "less than the minimum of 1"),
    ({"version": "3"}, "version", "'3' is not of type 'null', 'integer'"),
    (
        {"response_timeout_minutes": 0.2},
        "response_timeout_minutes",
        "less than the minimum of 0.25",
    ),
    (
        {"response_timeout_minutes": 43201},
        "response_timeout_minutes",
        "greater than the maximum of 43200",
    ),
    ({"response_timeout_minutes": None}, "response_timeout_minutes", "is not of type 'number'"),
    ({"response_timeout_minutes": "a week"}, "response_timeout_minutes", "is not of type 'number'"),
]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize(("change", "field", "reason"), APPROVAL_BAD, ids=lambda v: str(v)[:30])
def test_model_approval_refuses_bad_values_naming_the_field(bag, dataset, change, field, reason):
    message = refused(bag.dags[f"{dataset}_model_approval"], change)
    assert f"Invalid input for param {field}" in message and reason in message, message


@pytest.mark.parametrize("dataset", DATASETS)
def test_model_approval_asks_about_the_event_version_unless_one_is_given(bag, dataset):
    """The decision itself is the human-in-the-loop answer, not a Param: a run started by the
    pending-version event names no version; one started by hand may."""
    dag = bag.dags[f"{dataset}_model_approval"]
    assert validated(dag, {}) == {"version": None, "response_timeout_minutes": 10080}
    assert validated(dag, {"version": 3})["version"] == 3
    assert validated(dag, {"response_timeout_minutes": 0.5})["response_timeout_minutes"] == 0.5


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("stage", ["ingestion", "validation", "scoring", "monitoring"])
def test_partition_stages_take_a_calendar_date_or_nothing(bag, dataset, stage):
    dag = bag.dags[f"{dataset}_{stage}"]
    assert validated(dag, {})["ds"] is None
    assert validated(dag, {"ds": "2026-01-07"})["ds"] == "2026-01-07"
    assert "Invalid input for param ds" in refused(dag, {"ds": "2026-13-01"})


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize(
    "path",
    ["landing/redelivered\n", "landing/../curated", "/etc/passwd", "landing/x\nlanding/y"],
    ids=["final-newline", "dot-dot", "absolute", "two-lines"],
)
def test_ingestion_path_is_a_landing_folder_and_nothing_more(bag, dataset, path):
    """Airflow checks ``pattern`` with Python's ``re``, where ``$`` matched before a final
    newline: the pattern must refuse that too, not only the api guard."""
    dag = bag.dags[f"{dataset}_ingestion"]
    good = {"ds": "2026-01-07", "path": "landing/redelivered"}
    assert validated(dag, good)["path"] == "landing/redelivered"
    message = refused(dag, {**good, "path": path})
    assert "Invalid input for param path" in message and "does not match" in message, message


@pytest.mark.parametrize(
    ("value", "accepted"), [("abc", True), ("abc\n", False), ("ab$", False), ("\n", False)]
)
def test_text_param_patterns_end_at_the_end_of_the_text(value, accepted):
    from airflow.sdk.definitions.param import ParamsDict, ParamValidationError

    from include.dag_defaults import text_param

    param = text_param(title="t", description="d", min_length=1, max_length=9, pattern="^[a-z]+$")
    assert param.schema["pattern"] == "^[a-z]+$(?!\\n)"
    params = ParamsDict({"name": param})
    if accepted:
        params.update({"name": value})
        assert params.validate() == {"name": value}
    else:
        with pytest.raises(ParamValidationError, match="Invalid input for param name"):
            params.update({"name": value})
            params.validate()
