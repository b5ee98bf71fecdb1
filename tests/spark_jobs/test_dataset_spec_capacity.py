"""The spec's ``capacity:`` block: optional (a silent spec runs at today's sizes), every value
checked with an error naming the file and the field, enums from botocore's service models."""

from __future__ import annotations

import copy

import pytest
import yaml
from lake_helpers import REPO_ROOT, SPEC_PATH

from spark_jobs.dataset_spec import (
    Capacity,
    ExecutorCapacity,
    GlueCapacity,
    InstanceCapacity,
    SpecError,
    aws_enum_values,
    load_spec,
    spec_from_mapping,
)

SOURCE = "include/datasets/churn.yaml"


@pytest.fixture(scope="module")
def churn_yaml() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def with_capacity(churn_yaml: dict, capacity) -> dict:
    raw = copy.deepcopy(churn_yaml)
    raw["capacity"] = capacity
    return raw


def problems_of(churn_yaml: dict, capacity) -> list[str]:
    with pytest.raises(SpecError) as raised:
        spec_from_mapping(with_capacity(churn_yaml, capacity), source=SOURCE)
    return raised.value.problems


def test_a_silent_spec_runs_at_todays_sizes(churn_yaml):
    raw = copy.deepcopy(churn_yaml)
    raw.pop("capacity", None)
    capacity = spec_from_mapping(raw, source=SOURCE).capacity
    assert capacity == Capacity()
    assert capacity.spark.glue == GlueCapacity("G.1X", 2)
    assert capacity.spark.max_runtime_minutes == 120
    assert capacity.spark.emr_serverless == ExecutorCapacity() == capacity.spark.emr_step
    assert capacity.quality.glue_data_quality_workers == 2
    assert capacity.quality.max_runtime_minutes == 60
    assert (capacity.transform.instance_type, capacity.transform.instance_count) == (
        "ml.m5.xlarge",
        1,
    )
    assert capacity.processing == InstanceCapacity("ml.m5.xlarge", 1, 60)
    # Training follows the deployment's HEADRACE_TRAINING_* settings unless the spec says.
    assert capacity.training.instance_type is None
    assert capacity.training.instance_count is None


@pytest.mark.parametrize("name", ["churn", "benefit_claims"])
def test_the_repo_specs_state_todays_sizes(name):
    spec = load_spec(REPO_ROOT / "include" / "datasets" / f"{name}.yaml")
    assert spec.capacity == Capacity()


def test_every_value_is_kept(churn_yaml):
    capacity = spec_from_mapping(
        with_capacity(
            churn_yaml,
            {
                "spark": {
                    "max_runtime_minutes": 300,
                    "glue": {"worker_type": "G.4X", "number_of_workers": 40},
                    "emr_serverless": {
                        "max_executors": 100,
                        "executor_cores": 16,
                        "executor_memory_gb": 100,
                    },
                    "emr_step": {"max_executors": 20},
                },
                "quality": {
                    "max_runtime_minutes": 90,
                    "glue_data_quality": {"number_of_workers": 10},
                },
                "training": {"instance_type": "ml.p3.2xlarge", "instance_count": 2},
                "transform": {"instance_count": 4, "max_runtime_minutes": 180},
                "processing": {"instance_type": "ml.r5.2xlarge"},
            },
        ),
        source=SOURCE,
    ).capacity
    assert capacity.spark.glue == GlueCapacity("G.4X", 40)
    assert capacity.spark.max_runtime_minutes == 300
    assert capacity.spark.emr_serverless.spark_conf() == {
        "spark.dynamicAllocation.maxExecutors": "100",
        "spark.executor.cores": "16",
        "spark.executor.memory": "100g",
    }
    assert capacity.spark.emr_step.spark_conf() == {"spark.dynamicAllocation.maxExecutors": "20"}
    assert (capacity.quality.glue_data_quality_workers, capacity.quality.max_runtime_minutes) == (
        10,
        90,
    )
    assert (capacity.training.instance_type, capacity.training.instance_count) == (
        "ml.p3.2xlarge",
        2,
    )
    # What the transform block leaves out keeps today's value.
    assert capacity.transform.instance_type == "ml.m5.xlarge"
    assert (capacity.transform.instance_count, capacity.transform.max_runtime_minutes) == (4, 180)
    assert capacity.processing == InstanceCapacity("ml.r5.2xlarge", 1, 60)


def test_capacity_is_not_part_of_the_specs_fingerprint(churn_yaml):
    # Resizing a job does not change what curated data looks like.
    plain = spec_from_mapping(with_capacity(churn_yaml, None), source=SOURCE)
    sized = spec_from_mapping(
        with_capacity(churn_yaml, {"spark": {"glue": {"number_of_workers": 10}}}), source=SOURCE
    )
    assert sized.fingerprint == plain.fingerprint
    assert sized.capacity != plain.capacity


@pytest.mark.parametrize(
    ("capacity", "expected"),
    [
        (
            {"spark": {"glue": {"number_of_workers": 1}}},
            "capacity.spark.glue.number_of_workers: must be an integer >= 2, got 1",
        ),
        (
            {"spark": {"glue": {"number_of_workers": True}}},
            "capacity.spark.glue.number_of_workers: must be an integer >= 2, got True",
        ),
        (
            {"spark": {"glue": {"worker_type": "G.1x"}}},
            "capacity.spark.glue.worker_type: 'G.1x' is not a glue WorkerType (did you mean "
            "'G.1X'?); botocore's model allows ",
        ),
        (
            {"spark": {"glue": {"worker_type": "G.025X"}}},
            "capacity.spark.glue.worker_type: 'G.025X' is for streaming jobs only, not a Glue "
            "Spark ETL job's worker",
        ),
        (
            # Glue: a run's timeout must be under 7 days (10080 minutes).
            {"spark": {"max_runtime_minutes": 10080}},
            "capacity.spark.max_runtime_minutes: must be an integer 5..10079, got 10080",
        ),
        (
            {"spark": {"emr_serverless": {"executor_cores": 2, "executor_memory_gb": 20}}},
            "capacity.spark.emr_serverless.executor_memory_gb: 20 GB plus Spark's overhead "
            "(22.0 GB) does not fit an EMR Serverless worker of 2 vCPU (4..16 GB)",
        ),
        (
            {"quality": {"glue_data_quality": {"number_of_workers": "5"}}},
            "capacity.quality.glue_data_quality.number_of_workers: must be an integer >= 2, "
            "got '5'",
        ),
        (
            {"quality": {"max_runtime_minutes": 0}},
            "capacity.quality.max_runtime_minutes: must be an integer >= 1, got 0",
        ),
        (
            {"training": {"instance_type": "ml.t9.tiny"}},
            "capacity.training.instance_type: 'ml.t9.tiny' is not a sagemaker TrainingInstanceType",
        ),
        (
            {"transform": {"instance_type": "ml.p4d.24xlarge"}},
            "capacity.transform.instance_type: 'ml.p4d.24xlarge' is not a sagemaker "
            "TransformInstanceType",
        ),
        (
            {"transform": {"instance_count": 0}},
            "capacity.transform.instance_count: must be an integer >= 1, got 0",
        ),
        (
            {"processing": {"instance_type": "ml.t9.tiny"}},
            "capacity.processing.instance_type: 'ml.t9.tiny' is not a sagemaker "
            "ProcessingInstanceType",
        ),
        ({"procesing": {}}, "capacity.procesing: unknown key"),
        ({"spark": {"glue": {"wrkers": 3}}}, "capacity.spark.glue.wrkers: unknown key"),
        ("big", "capacity: must be a mapping, got str"),
    ],
)
def test_a_bad_value_fails_naming_the_file_and_field(churn_yaml, capacity, expected):
    (problem,) = problems_of(churn_yaml, capacity)
    assert problem.startswith(expected)


def test_every_problem_is_reported_at_once(churn_yaml):
    problems = problems_of(
        churn_yaml,
        {
            "spark": {"glue": {"number_of_workers": 0}},
            "training": {"instance_count": -1},
        },
    )
    assert problems == [
        "capacity.spark.glue.number_of_workers: must be an integer >= 2, got 0",
        "capacity.training.instance_count: must be an integer >= 1, got -1",
    ]
    with pytest.raises(SpecError, match=f"{SOURCE}: capacity.spark.glue.number_of_workers"):
        spec_from_mapping(
            with_capacity(churn_yaml, {"spark": {"glue": {"number_of_workers": 0}}}), SOURCE
        )


def test_the_allowed_values_are_botocores():
    import botocore.session

    model = botocore.session.get_session().get_service_model("glue")
    assert aws_enum_values("glue", "WorkerType") == tuple(model.shape_for("WorkerType").enum)
    assert "ml.m5.xlarge" in aws_enum_values("sagemaker", "TransformInstanceType")
