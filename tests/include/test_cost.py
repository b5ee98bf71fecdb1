"""Worst-case cost estimates from the requests the repository's own builders make, checked against
a hand computation per job kind; the budgets of the dataset spec's ``cost:`` block and the check
that refuses a job or run over them."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from datetime import timedelta

import pytest
import yaml
from aws_test_env import AWS_ENV as BASE_AWS_ENV

from include import cost
from include.config import DATASETS_DIR, ConfigError, load_settings, with_training_capacity
from include.dq.glue_data_quality import build_start_evaluation_run_request
from include.sagemaker_requests import (
    build_processing_job_request,
    build_training_job_request,
    build_transform_job_request,
    build_tuning_job_request,
)
from include.spark_job_requests import (
    build_emr_serverless_start_job_run_request,
    build_glue_start_job_run_request,
)
from spark_jobs.dataset_spec import (
    DEFAULT_BUDGET_PER_JOB_USD,
    DEFAULT_BUDGET_PER_RUN_USD,
    CostBudget,
    GlueCapacity,
    SpecError,
    load_spec,
    spec_from_mapping,
)

AWS_ENV = {**BASE_AWS_ENV, "HEADRACE_EMR_SERVERLESS_APPLICATION_ID": "00f0abcdefgh1234"}
SETTINGS = load_settings(AWS_ENV)
LAKE = "s3://headrace-test-lake/lake"
SOURCE = f"s3://{AWS_ENV['HEADRACE_BUCKET']}/artifacts/training/abc/sourcedir.tar.gz"
# Round prices of the tests' own, so a refresh of include/aws_prices.json changes no expectation.
TEST_PRICES = {
    "as_of": "2026-01-01",
    "region": "eu-west-1",
    "currency": "USD",
    "source": "the tests",
    "sagemaker_instance_hour": {
        "training": {"ml.g5.xlarge": 1.5, "ml.m5.xlarge": 0.25},
        "processing": {"ml.m5.xlarge": 0.25, "ml.m5.4xlarge": 1.0},
        "transform": {"ml.m5.xlarge": 0.25, "ml.m5.2xlarge": 0.5},
    },
    "glue_dpu_hour": 0.5,
    "glue_data_quality_dpu_hour": 0.4,
    "emr_serverless_vcpu_hour": 0.05,
    "emr_serverless_gb_hour": 0.005,
    "sagemaker_spot_discount": 0.6,
}
PRICES = cost.price_table_from_mapping(TEST_PRICES, "test prices")


def training_settings(**changes):
    return dataclasses.replace(SETTINGS, training=dataclasses.replace(SETTINGS.training, **changes))


def training_request(settings=SETTINGS, name="headrace-churn-train-1"):
    return build_training_job_request(
        settings,
        job_name=name,
        hyperparameters={"epochs": 20},
        channels={"train": f"{LAKE}/features/churn/ds=2026-01-07/split=train"},
        output_uri=f"{LAKE}/models/churn/jobs",
        checkpoint_uri=f"{LAKE}/models/churn/checkpoints/{name}",
        source_uri=SOURCE,
    )


# --- one request of each kind against a hand computation ------------------------------------


def test_a_spot_training_job_costs_its_spot_wait_at_the_spot_discount():
    request = training_request()  # the defaults: ml.g5.xlarge, spot, 2 h runtime, 4 h wait
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 7200,
        "MaxWaitTimeInSeconds": 14400,
    }
    estimate = cost.estimate_training(request, PRICES)
    # $1.5/h x 1 instance x 4 h x (1 - 0.6)
    assert estimate.usd == pytest.approx(2.4)
    assert estimate.kind == "training"
    assert estimate.job_name == "headrace-churn-train-1"
    assert estimate.arithmetic == "ml.g5.xlarge $1.5/h x 1 x 4.0 h x 0.4 (spot) = $2.40"


def test_an_on_demand_training_job_costs_its_runtime_on_every_instance():
    settings = training_settings(
        use_spot=False, instance_type="ml.m5.xlarge", instance_count=3, max_runtime_s=5400
    )
    estimate = cost.estimate_training(training_request(settings), PRICES)
    assert estimate.usd == pytest.approx(0.25 * 3 * 1.5)
    assert estimate.arithmetic == "ml.m5.xlarge $0.25/h x 3 x 1.5 h = $1.12"


def test_a_tuning_job_costs_its_training_definition_times_its_trials_whatever_the_parallelism():
    settings = with_training_capacity(
        SETTINGS, load_spec(DATASETS_DIR / "churn.yaml").capacity.training
    )
    training = training_request(settings, name="headrace-churn-tune-1")
    requests = [
        build_tuning_job_request(
            settings,
            tuning_job_name="headrace-churn-tune-1",
            training_request=training,
            max_jobs=20,
            max_parallel_jobs=parallel,
        )
        for parallel in (1, 2, 20)
    ]
    estimates = [cost.estimate_tuning(request, PRICES) for request in requests]
    # $1.5/h x 1 x 4 h (spot wait) x 0.4 x 20 trials
    assert [e.usd for e in estimates] == pytest.approx([48.0] * 3)
    assert estimates[0].kind == "tuning"
    assert estimates[0].arithmetic == (
        "ml.g5.xlarge $1.5/h x 1 x 4.0 h x 0.4 (spot) x 20 jobs = $48.00"
    )


def test_a_transform_job_costs_its_instances_until_the_operator_stops_it():
    request = build_transform_job_request(
        SETTINGS,
        job_name="headrace-churn-scoring-transform-1",
        model_name="headrace-churn-v3",
        input_uri=f"{LAKE}/scoring/churn/ds=2026-01-07",
        output_uri=f"{LAKE}/predictions/churn/ds=2026-01-07",
        id_columns=["customer_id"],
        instance_type="ml.m5.2xlarge",
        instance_count=3,
    )
    # capacity.transform.max_runtime_minutes 90: the operator stops it after 90 min + 25%.
    max_runtime_s = cost.transform_max_runtime_s(SETTINGS, 90)
    assert max_runtime_s == 90 * 60 * 1.25
    estimate = cost.estimate_transform(request, PRICES, max_runtime_s=max_runtime_s)
    assert estimate.usd == pytest.approx(0.5 * 3 * 1.875)
    assert estimate.arithmetic == "ml.m5.2xlarge $0.5/h x 3 x 1.875 h = $2.81"
    # Without a runtime of its own it waits as long as a spot training job may.
    assert cost.transform_max_runtime_s(SETTINGS, None) == SETTINGS.training.max_wait_s * 1.25


def test_the_transform_bound_is_when_the_operator_stops_the_job():
    from headrace_operators.sagemaker_jobs import WAIT_ALLOWANCE

    assert cost.TRANSFORM_STOP_ALLOWANCE == WAIT_ALLOWANCE


def test_a_processing_job_costs_its_instances_for_its_max_runtime():
    request = build_processing_job_request(
        SETTINGS,
        job_name="headrace-churn-monitoring-drift-1",
        entry_point="process.py",
        source_uri=SOURCE,
        inputs={"plan": f"{LAKE}/monitoring/churn/plan"},
        outputs={"report": f"{LAKE}/monitoring/churn/report"},
        instance_type="ml.m5.4xlarge",
        instance_count=2,
        max_runtime_s=5400,
    )
    estimate = cost.estimate_processing(request, PRICES)
    assert estimate.usd == pytest.approx(1.0 * 2 * 1.5)
    assert estimate.arithmetic == "ml.m5.4xlarge $1/h x 2 x 1.5 h = $3.00"


def test_a_glue_run_costs_its_dpu_hours():
    request = build_glue_start_job_run_request(
        SETTINGS,
        "ingest",
        ["--ds", "2026-01-07"],
        "churn-ingestion-ingest-abc",
        timeout=timedelta(minutes=240),
        capacity=GlueCapacity("G.2X", 20),
    )
    estimate = cost.estimate_glue_job_run(request, PRICES)
    # 2 DPU x 20 workers x 4 h x $0.5
    assert estimate.usd == pytest.approx(80.0)
    assert estimate.job_name == "headrace-ingest (churn-ingestion-ingest-abc)"
    assert estimate.arithmetic == "G.2X 2 DPU x 20 workers x 4.0 h x $0.5/DPU-h = $80.00"


def test_a_glue_data_quality_run_costs_its_workers_dpu_hours():
    request = build_start_evaluation_run_request(
        SETTINGS,
        "churn",
        "2026-01-07",
        ["headrace-churn-ds-2026-01-07-error"],
        client_token="churn-validation-quality-gate-abc",
        results_prefix=f"{LAKE}/reports/churn/quality/ds=2026-01-07/glue-row-level/",
        timeout=timedelta(minutes=30),
        number_of_workers=12,
    )
    estimate = cost.estimate_glue_data_quality(request, PRICES)
    assert estimate.usd == pytest.approx(12 * 0.5 * 0.4)
    assert estimate.job_name == "headrace-churn-ds-2026-01-07-error"
    assert estimate.arithmetic == "G.1X 1 DPU x 12 workers x 0.5 h x $0.4/DPU-h = $2.40"


def test_an_emr_serverless_run_costs_the_applications_maximum_capacity():
    request = build_emr_serverless_start_job_run_request(
        SETTINGS,
        "ingest",
        ["--ds", "2026-01-07"],
        name="headrace-churn-ingestion-ingest-abc",
        client_token="token-0",
        timeout=timedelta(minutes=120),
    )
    capacity = {"cpu": "16 vCPU", "memory": "64 GB", "disk": "200 GB"}
    estimate = cost.estimate_emr_serverless(request, PRICES, maximum_capacity=capacity)
    # (16 vCPU x $0.05 + 64 GB x $0.005) x 2 h
    assert estimate.usd == pytest.approx((16 * 0.05 + 64 * 0.005) * 2)
    assert estimate.arithmetic == ("(16 vCPU x $0.05/vCPU-h + 64 GB x $0.005/GB-h) x 2.0 h = $2.24")
    # AWS also accepts the bare numbers.
    bare = cost.estimate_emr_serverless(
        request, PRICES, maximum_capacity={"cpu": "16", "memory": "64"}
    )
    assert bare.usd == estimate.usd


def test_estimate_request_dispatches_on_the_operation():
    request = training_request()
    assert cost.estimate_request("sagemaker", "CreateTrainingJob", request, PRICES) == (
        cost.estimate_training(request, PRICES)
    )
    with pytest.raises(cost.CostError, match="no cost estimate for sagemaker CreateEndpoint"):
        cost.estimate_request("sagemaker", "CreateEndpoint", {}, PRICES)


# --- what cannot be priced is an error naming it ------------------------------------------


def test_an_unknown_instance_type_names_it_and_how_to_add_it():
    settings = training_settings(instance_type="ml.p5.48xlarge")
    with pytest.raises(cost.CostError) as raised:
        cost.estimate_training(training_request(settings), PRICES)
    message = str(raised.value)
    assert "no training price for SageMaker instance type 'ml.p5.48xlarge'" in message
    assert "test prices (eu-west-1, as of 2026-01-01)" in message
    assert "--instance-type training=ml.p5.48xlarge" in message


@pytest.mark.parametrize(
    ("operation", "drop", "named"),
    [
        ("training", ("StoppingCondition", "MaxWaitTimeInSeconds"),
         "CreateTrainingJob.StoppingCondition.MaxWaitTimeInSeconds is missing"),
        ("training", ("ResourceConfig", "InstanceCount"),
         "CreateTrainingJob.ResourceConfig.InstanceCount is missing"),
        ("glue", ("WorkerType",), "glue StartJobRun.WorkerType is missing"),
        ("emr", ("executionTimeoutMinutes",),
         "emr-serverless StartJobRun.executionTimeoutMinutes is missing"),
    ],
)  # fmt: skip
def test_a_missing_field_is_an_error_naming_it(operation, drop, named):
    if operation == "training":
        request = training_request()
        estimate = cost.estimate_training
    elif operation == "glue":
        request = build_glue_start_job_run_request(SETTINGS, "ingest", [], "run-key")
        estimate = cost.estimate_glue_job_run
    else:
        request = build_emr_serverless_start_job_run_request(
            SETTINGS, "ingest", [], name="n", client_token="t"
        )

        def estimate(request, prices):
            return cost.estimate_emr_serverless(
                request, prices, maximum_capacity={"cpu": "4 vCPU", "memory": "16 GB"}
            )

    request = copy.deepcopy(request)
    *parents, last = drop
    target = request
    for key in parents:
        target = target[key]
    del target[last]
    with pytest.raises(cost.CostError, match=named.replace(".", r"\.")):
        estimate(request, PRICES)


def test_an_emr_serverless_application_without_a_maximum_is_unbounded_and_refused():
    request = build_emr_serverless_start_job_run_request(
        SETTINGS, "ingest", [], name="n", client_token="t"
    )
    with pytest.raises(cost.CostError, match="application 00f0abcdefgh1234 has no maximumCapacity"):
        cost.estimate_emr_serverless(request, PRICES, maximum_capacity=None)
    with pytest.raises(cost.CostError, match=r"maximumCapacity\.cpu 'lots'"):
        cost.estimate_emr_serverless(
            request, PRICES, maximum_capacity={"cpu": "lots", "memory": "16 GB"}
        )


def test_a_glue_worker_type_without_a_dpu_count_is_named():
    request = build_glue_start_job_run_request(
        SETTINGS, "ingest", [], "k", capacity=GlueCapacity("Z.2X", 2)
    )
    with pytest.raises(cost.CostError, match=r"WorkerType 'Z\.2X' has no DPU count here"):
        cost.estimate_glue_job_run(request, PRICES)


def test_a_transform_estimate_needs_its_stop_time():
    request = build_transform_job_request(
        SETTINGS,
        job_name="t",
        model_name="m",
        input_uri=f"{LAKE}/in",
        output_uri=f"{LAKE}/out",
        id_columns=["id"],
    )
    with pytest.raises(cost.CostError, match="max_runtime_s"):
        cost.estimate_transform(request, PRICES, max_runtime_s=0)


# --- the price table --------------------------------------------------------------------------


def test_the_repositorys_table_prices_every_instance_type_the_defaults_use():
    from spark_jobs.dataset_spec import Capacity

    prices = cost.load_prices()
    assert (prices.region, prices.currency) == ("us-east-1", "USD")
    assert prices.as_of and prices.source
    assert 0 <= prices.sagemaker_spot_discount < 1
    defaults = Capacity()
    assert prices.instance_hour("training", load_settings({}).training.instance_type) > 0
    assert prices.instance_hour("transform", defaults.transform.instance_type) > 0
    assert prices.instance_hour("processing", defaults.processing.instance_type) > 0
    assert prices.glue_dpu_hour > 0 and prices.glue_data_quality_dpu_hour > 0
    assert prices.emr_serverless_vcpu_hour > 0 and prices.emr_serverless_gb_hour > 0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda t: t.pop("as_of"), "as_of is missing"),
        (lambda t: t.update(currency="EUR"), "currency must be USD"),
        (lambda t: t.update(glue_dpu_hour="0.44"), "glue_dpu_hour must be a number, got '0.44'"),
        (lambda t: t.update(sagemaker_spot_discount=1.0), "sagemaker_spot_discount must be below 1"),
        (lambda t: t["sagemaker_instance_hour"]["training"].update({"ml.m5.xlarge": -1}),
         "sagemaker_instance_hour.training.ml.m5.xlarge must not be negative"),
        (lambda t: t["sagemaker_instance_hour"].pop("transform"),
         "sagemaker_instance_hour must hold exactly training, processing, transform"),
    ],
)  # fmt: skip
def test_a_bad_price_table_names_the_file_and_field(change, named):
    table = copy.deepcopy(TEST_PRICES)
    change(table)
    with pytest.raises(cost.CostError) as raised:
        cost.price_table_from_mapping(table, "include/aws_prices.json")
    assert str(raised.value).startswith("include/aws_prices.json: ")
    assert named in str(raised.value)


def test_an_unreadable_table_names_its_path(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text("{not json")
    with pytest.raises(cost.CostError, match=f"cannot read the price table {path}"):
        cost.load_prices(path)


# --- budgets ------------------------------------------------------------------------------


def estimate(kind: str, name: str, usd: float) -> cost.CostEstimate:
    return cost.CostEstimate(kind, name, usd, f"arithmetic of {name} = ${usd:.2f}")


def test_check_budget_returns_the_total_of_estimates_within_both_budgets():
    estimates = [estimate("processing", "a", 0.25), estimate("tuning", "b", 11.5)]
    assert cost.check_budget(estimates, 25, 50) == pytest.approx(11.75)


def test_a_job_over_the_per_job_budget_is_refused_naming_job_estimate_and_budget():
    estimates = [estimate("processing", "small", 1.0), estimate("tuning", "big", 56.32)]
    with pytest.raises(cost.BudgetExceeded) as raised:
        cost.check_budget(estimates, 25, 100, source="churn.yaml cost:")
    message = str(raised.value)
    assert message.startswith("refused before starting: tuning job big: worst case $56.32 ")
    assert "(arithmetic of big = $56.32) exceeds the per-job budget $25.00 (churn.yaml cost:)" in (
        message
    )
    assert "small" not in message  # within budget, and the run's total is too


def test_a_run_over_the_per_run_budget_is_refused_with_every_job_named():
    estimates = [estimate("glue", f"ingest-{day}", 20.0) for day in range(3)]
    with pytest.raises(cost.BudgetExceeded) as raised:
        cost.check_budget(estimates, 25, 50)
    message = str(raised.value)
    assert "the run's worst case $60.00 (glue ingest-0 $20.00, glue ingest-1 $20.00, " in message
    assert "exceeds the per-run budget $50.00" in message
    assert "per-job" not in message


@pytest.mark.parametrize("budget", [0, -5, True, "25", float("nan")])
def test_a_budget_must_be_a_positive_number(budget):
    with pytest.raises(ValueError, match="per_job must be a positive number of US dollars"):
        cost.check_budget([], budget, 50)


def test_enforce_job_budget_logs_the_estimate_and_warns_of_another_regions_prices(caplog):
    log = logging.getLogger("test_cost")
    budget = cost.Budget(25.0, 50.0, "churn.yaml cost:")
    with caplog.at_level(logging.INFO, logger="test_cost"):
        estimate = cost.enforce_job_budget(
            "sagemaker",
            "CreateTrainingJob",
            training_request(),
            budget=budget,
            region="eu-central-1",
            log=log,
            prices=PRICES,
        )
    assert estimate.usd == pytest.approx(2.4)
    info, warning = caplog.records
    assert info.getMessage() == (
        "Worst-case cost: training headrace-churn-train-1: ml.g5.xlarge $1.5/h x 1 x 4.0 h "
        "x 0.4 (spot) = $2.40 (USD, eu-west-1 prices as of 2026-01-01)"
    )
    assert warning.levelno == logging.WARNING
    assert "this job runs in eu-central-1" in warning.getMessage()
    assert "scripts/refresh_prices.py --region eu-central-1" in warning.getMessage()

    tight = cost.Budget(2.0, 50.0, "churn.yaml cost:")
    with pytest.raises(cost.BudgetExceeded, match=r"exceeds the per-job budget \$2\.00"):
        cost.enforce_job_budget(
            "sagemaker", "CreateTrainingJob", training_request(), budget=tight,
            region="eu-west-1", log=log, prices=PRICES,
        )  # fmt: skip


# --- the spec's cost: block -----------------------------------------------------------------


@pytest.fixture(scope="module")
def churn_yaml() -> dict:
    return yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())


def with_cost(churn_yaml: dict, block) -> dict:
    raw = copy.deepcopy(churn_yaml)
    raw["cost"] = block
    return raw


def test_a_spec_without_a_cost_block_gets_the_default_budgets(churn_yaml):
    raw = copy.deepcopy(churn_yaml)
    raw.pop("cost", None)
    budget = spec_from_mapping(raw, source="churn.yaml").cost
    assert budget == CostBudget(DEFAULT_BUDGET_PER_RUN_USD, DEFAULT_BUDGET_PER_JOB_USD)
    assert (budget.budget_per_job_usd, budget.budget_per_run_usd) == (25.0, 50.0)


def test_a_spec_sets_its_budgets_without_changing_its_fingerprint(churn_yaml):
    spec = spec_from_mapping(
        with_cost(churn_yaml, {"budget_per_run_usd": 400, "budget_per_job_usd": 120.5}),
        source="churn.yaml",
    )
    assert spec.cost == CostBudget(budget_per_run_usd=400.0, budget_per_job_usd=120.5)
    # Budgets cap the bill, not the data: not a new spec version.
    assert spec.fingerprint == spec_from_mapping(churn_yaml, source="churn.yaml").fingerprint


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ({"budget_per_job_usd": -1}, "cost.budget_per_job_usd: must be a positive number of US "
                                     "dollars, got -1"),
        ({"budget_per_run_usd": "fifty"}, "cost.budget_per_run_usd: must be a positive number of "
                                          "US dollars, got 'fifty'"),
        ({"budget_per_run_usd": True}, "cost.budget_per_run_usd: must be a positive number of "
                                       "US dollars, got True"),
        ({"budget_per_run_usd": float("inf")}, "cost.budget_per_run_usd: must be a positive "
                                               "number of US dollars, got inf"),
        ({"budget_per_job_usd": 80, "budget_per_run_usd": 60},
         "cost.budget_per_job_usd: 80 exceeds budget_per_run_usd 60: a run holds at least one job"),
        ({"budget_per_job": 10}, "cost.budget_per_job: unknown key (did you mean "
                                 "'budget_per_job_usd'?)"),
        ([25, 50], "cost: must be a mapping, got list"),
    ],
)  # fmt: skip
def test_a_bad_cost_block_is_refused_naming_the_file_and_field(churn_yaml, block, problem):
    with pytest.raises(SpecError) as raised:
        spec_from_mapping(with_cost(churn_yaml, block), source="churn.yaml")
    assert problem in raised.value.problems
    assert "churn.yaml" in str(raised.value)


def test_dataset_budget_reads_the_spec_and_names_it(tmp_path, churn_yaml):
    (tmp_path / "churn.yaml").write_text(
        yaml.safe_dump(with_cost(churn_yaml, {"budget_per_job_usd": 5, "budget_per_run_usd": 9}))
    )
    budget = cost.dataset_budget("churn", tmp_path)
    assert budget == cost.Budget(5.0, 9.0, f"{tmp_path / 'churn.yaml'} cost:")
    assert cost.dataset_budget(None) == cost.Budget(25.0, 50.0, "the default budget")


def test_the_scaffold_documents_the_cost_block_at_its_defaults(tmp_path):
    from scripts.new_pipeline import scaffold_files

    text = scaffold_files("meter_readings")["meter_readings.yaml"]
    assert "\ncost:" in text and "budget_per_job_usd" in text
    (tmp_path / "meter_readings.yaml").write_text(text)
    assert load_spec(tmp_path / "meter_readings.yaml").cost == CostBudget()


def test_the_datasets_specs_keep_the_default_budgets():
    for name in ("churn", "benefit_claims"):
        assert load_spec(DATASETS_DIR / f"{name}.yaml").cost == CostBudget()


# --- a whole stage DAG run --------------------------------------------------------------------


def test_a_stage_run_at_default_settings_costs_what_the_hand_computation_says():
    runs = {
        stage: cost.estimate_stage_run(SETTINGS, "churn", stage, prices=PRICES, tuning_max_jobs=4)
        for stage in cost.STAGES
    }
    kinds = {stage: [(e.kind, round(e.usd, 4)) for e in runs[stage]] for stage in runs}
    assert kinds == {
        # 2 x G.1X x 2 h x $0.5
        "ingestion": [("glue", 2.0)],
        # 2 workers x 1 h x $0.4; features as ingest
        "validation": [("glue_data_quality", 0.8), ("glue", 2.0)],
        # 4 trials x $1.5 x 4 h x 0.4; baseline ml.m5.xlarge 1 h
        "training": [("tuning", 9.6), ("processing", 0.25)],
        # transform ml.m5.xlarge until the operator stops it: 4 h wait + 25% = 5 h
        "scoring": [("processing", 0.25), ("transform", 1.25), ("processing", 0.25)],
        "monitoring": [("processing", 0.25)],
    }
    assert runs["training"][0].job_name.startswith("headrace-churn-")
    assert runs["scoring"][1].job_name.startswith("headrace-churn-scoring-transform-")


def test_the_default_run_passes_the_default_budgets_at_the_tables_prices():
    budget = cost.dataset_budget("churn")
    for stage in cost.STAGES:
        estimates = cost.estimate_stage_run(SETTINGS, "churn", stage, tuning_max_jobs=4)
        cost.check_budget(estimates, budget.per_job_usd, budget.per_run_usd)


def test_the_deployments_default_20_trials_are_over_the_default_job_budget():
    estimates = cost.estimate_stage_run(SETTINGS, "churn", "training")
    assert SETTINGS.training.tuning_max_jobs == 20
    budget = cost.dataset_budget("churn")
    with pytest.raises(cost.BudgetExceeded, match=r"tuning job headrace-churn-.*\$56\.32"):
        cost.check_budget(estimates, budget.per_job_usd, budget.per_run_usd)


def test_an_ingestion_run_costs_one_job_a_day():
    estimates = cost.estimate_stage_run(SETTINGS, "churn", "ingestion", prices=PRICES, days=3)
    assert [e.usd for e in estimates] == pytest.approx([2.0] * 3)
    assert len({e.job_name for e in estimates}) == 3


def test_a_stage_run_on_emr_serverless_needs_the_applications_capacity():
    settings = load_settings({**AWS_ENV, "HEADRACE_SPARK_ENGINE": "emr_serverless"})
    with pytest.raises(cost.CostError, match="has no maximumCapacity"):
        cost.estimate_stage_run(settings, "churn", "validation", prices=PRICES)
    estimates = cost.estimate_stage_run(
        settings,
        "churn",
        "validation",
        prices=PRICES,
        emr_serverless_maximum_capacity={"cpu": "8 vCPU", "memory": "32 GB"},
    )
    # The Deequ gate (1 h) and features (2 h), each at the application's whole capacity.
    assert [e.kind for e in estimates] == ["emr_serverless", "emr_serverless"]
    hourly = 8 * 0.05 + 32 * 0.005
    assert [e.usd for e in estimates] == pytest.approx([hourly, 2 * hourly])


def test_a_stage_estimate_is_for_the_aws_target_and_a_stage_with_jobs():
    with pytest.raises(ConfigError, match="prices the aws target's requests"):
        cost.estimate_stage_run(load_settings({}), "churn", "training")
    with pytest.raises(ValueError, match="stage 'model_approval' starts no AWS jobs"):
        cost.estimate_stage_run(SETTINGS, "churn", "model_approval")


def test_the_price_table_file_is_valid_json_with_its_date_region_and_source():
    raw = json.loads(cost.PRICES_PATH.read_text())
    assert {"as_of", "region", "currency", "source", "note"} <= set(raw)


def test_check_stage_run_logs_each_job_and_refuses_a_run_over_the_datasets_budget(
    tmp_path, churn_yaml, caplog
):
    log = logging.getLogger("test_cost.run")
    with caplog.at_level(logging.INFO, logger="test_cost.run"):
        estimates = cost.check_stage_run(
            SETTINGS, "churn", "scoring", datasets_dir=DATASETS_DIR, log=log, prices=PRICES
        )
    assert [e.kind for e in estimates] == ["processing", "transform", "processing"]
    lines = [record.getMessage() for record in caplog.records]
    assert lines[1].startswith("Worst-case cost: transform headrace-churn-scoring-transform-")
    assert lines[-1] == (
        f"Worst-case cost of this scoring run: $1.75 of the $50.00 budget "
        f"({DATASETS_DIR / 'churn.yaml'} cost:)"
    )
    # The same estimate as the run's note shows it.
    assert cost.run_estimate_line("churn", estimates, DATASETS_DIR) == (
        "$1.75 of the $50.00 run budget for 3 jobs: processing $0.25, transform $1.25, "
        "processing $0.25"
    )

    # Each job within $1, all three together over $1.50.
    (tmp_path / "churn.yaml").write_text(
        yaml.safe_dump(
            with_cost(churn_yaml, {"budget_per_job_usd": 1.3, "budget_per_run_usd": 1.5})
        )
    )
    with pytest.raises(cost.BudgetExceeded) as raised:
        cost.check_stage_run(SETTINGS, "churn", "scoring", datasets_dir=tmp_path, prices=PRICES)
    message = str(raised.value)
    assert "the run's worst case $1.75 (processing headrace-churn-scoring-scoring-input-" in message
    assert "exceeds the per-run budget $1.50" in message
    assert "per-job" not in message
