"""Spark job request builders: every body validates against botocore and carries the settings."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from datetime import timedelta

import pytest
from aws_test_env import AWS_ENV as BASE_AWS_ENV
from aws_test_env import KMS_KEY_ARN

from include import spark_job_requests as requests
from include.aws_validation import validate_request
from include.config import ConfigError, load_settings
from include.job_tags import job_tags

AWS_ENV = {
    **BASE_AWS_ENV,
    "HEADRACE_EMR_SERVERLESS_APPLICATION_ID": "00f0abcdefgh1234",
    "HEADRACE_EMR_CLUSTER_ID": "j-ABCDEFGHIJKL",
}
SETTINGS = load_settings(AWS_ENV)
ARTIFACTS = "s3://headrace-test-lake/artifacts/spark_jobs"
JOB_ARGS = ["--ds", "2026-01-02", "--source", "s3://headrace-test-lake/lake/landing/orders"]


def test_glue_job_definition():
    body = requests.build_glue_job_request(SETTINGS, "ingest", timeout=timedelta(minutes=90))
    validate_request("glue", "CreateJob", body)
    assert body["Name"] == "headrace-ingest"
    assert body["GlueVersion"] == "5.1"
    assert body["Command"] == {
        "Name": "glueetl",
        "ScriptLocation": f"{ARTIFACTS}/ingest.py",
        "PythonVersion": "3",
    }
    assert body["Role"] == AWS_ENV["HEADRACE_GLUE_ROLE_ARN"]
    assert body["DefaultArguments"]["--extra-py-files"] == f"{ARTIFACTS}/spark_jobs.zip"
    assert body["Timeout"] == 90
    assert body["MaxRetries"] == 0
    assert (body["WorkerType"], body["NumberOfWorkers"]) == ("G.1X", 2)
    assert body["SecurityConfiguration"] == requests.glue_security_configuration_name(SETTINGS)
    first_subnet = AWS_ENV["HEADRACE_SUBNET_IDS"].split(",")[0]
    assert body["Connections"] == {"Connections": [f"headrace-network-{first_subnet}"]}


def test_glue_definition_digest_changes_with_the_definition():
    base = requests.build_glue_job_request(SETTINGS, "ingest")
    assert requests.build_glue_job_request(SETTINGS, "ingest") == base
    longer = requests.build_glue_job_request(SETTINGS, "ingest", timeout=timedelta(hours=3))
    assert longer["Description"] != base["Description"]

    update = requests.build_glue_update_job_request(longer)
    validate_request("glue", "UpdateJob", update)
    assert update["JobName"] == "headrace-ingest"
    assert update["JobUpdate"]["Timeout"] == 180
    assert "Name" not in update["JobUpdate"] and "Tags" not in update["JobUpdate"]


def test_glue_security_configuration_and_network_connection():
    security = requests.build_glue_security_configuration_request(SETTINGS)
    validate_request("glue", "CreateSecurityConfiguration", security)
    encryption = security["EncryptionConfiguration"]
    assert encryption["S3Encryption"] == [{"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": KMS_KEY_ARN}]
    assert encryption["CloudWatchEncryption"]["KmsKeyArn"] == KMS_KEY_ARN
    assert encryption["JobBookmarksEncryption"]["JobBookmarksEncryptionMode"] == "CSE-KMS"
    other_key = load_settings({**AWS_ENV, "HEADRACE_KMS_KEY_ARN": KMS_KEY_ARN[:-1] + "6"})
    assert requests.glue_security_configuration_name(other_key) != security["Name"]

    connection = requests.build_glue_network_connection_request(SETTINGS, "eu-west-1a")
    validate_request("glue", "CreateConnection", connection)
    assert connection["ConnectionInput"]["ConnectionType"] == "NETWORK"
    assert connection["ConnectionInput"]["PhysicalConnectionRequirements"] == {
        "SubnetId": "subnet-0123456789abcdef0",
        "SecurityGroupIdList": ["sg-0123456789abcdef0"],
        "AvailabilityZone": "eu-west-1a",
    }


def test_glue_start_job_run_carries_the_argv_and_the_run_key():
    body = requests.build_glue_start_job_run_request(
        SETTINGS, "ingest", JOB_ARGS, "ingest-daily-ingest-0123456789abcdef"
    )
    validate_request("glue", "StartJobRun", body)
    assert body == {
        "JobName": "headrace-ingest",
        "Arguments": {
            "--ds": "2026-01-02",
            "--source": "s3://headrace-test-lake/lake/landing/orders",
            "--headrace-run-key": "ingest-daily-ingest-0123456789abcdef",
        },
        "Timeout": 120,
        # Today's size, the job definition's too, unless the dataset's capacity says otherwise.
        "WorkerType": "G.1X",
        "NumberOfWorkers": 2,
        "SecurityConfiguration": requests.glue_security_configuration_name(SETTINGS),
    }


@pytest.mark.parametrize(
    ("job_args", "message"),
    [
        (["--ds", "2026-01-02", "--dry-run"], "'--dry-run' has no value"),
        (["orders", "--ds"], "'orders' must be a --key followed by its value"),
        (["--headrace-run-key", "x"], "'--headrace-run-key' is set by headrace"),
        (["--ds", "a", "--ds", "b"], "'--ds' is given twice"),
    ],
)
def test_glue_refuses_argv_it_cannot_pass(job_args, message):
    with pytest.raises(ValueError, match=message):
        requests.glue_arguments(job_args)


def test_emr_serverless_start_job_run():
    body = requests.build_emr_serverless_start_job_run_request(
        SETTINGS,
        "ingest",
        JOB_ARGS,
        name="headrace-ingest-daily-ingest-0123456789abcdef",
        client_token="headrace-ingest-daily-ingest-0123456789abcdef-0",
        timeout=timedelta(minutes=45),
        spark_submit_parameters="--conf spark.executor.cores=4",
    )
    validate_request("emr-serverless", "StartJobRun", body)
    assert body["applicationId"] == "00f0abcdefgh1234"
    assert body["executionRoleArn"] == AWS_ENV["HEADRACE_EMR_SERVERLESS_ROLE_ARN"]
    assert body["clientToken"] == "headrace-ingest-daily-ingest-0123456789abcdef-0"
    assert body["jobDriver"] == {
        "sparkSubmit": {
            "entryPoint": f"{ARTIFACTS}/ingest.py",
            "entryPointArguments": JOB_ARGS,
            "sparkSubmitParameters": (
                f"--py-files {ARTIFACTS}/spark_jobs.zip --conf spark.executor.cores=4"
            ),
        }
    }
    s3_monitoring = body["configurationOverrides"]["monitoringConfiguration"][
        "s3MonitoringConfiguration"
    ]
    assert s3_monitoring == {
        "logUri": "s3://headrace-test-lake/artifacts/emr-serverless-logs/",
        "encryptionKeyArn": KMS_KEY_ARN,
    }
    assert body["executionTimeoutMinutes"] == 45
    # No job tags given: the project and the entry point still label the run.
    assert body["tags"] == {"project": "headrace", "spark_job": "ingest"}


def test_emr_serverless_run_carries_the_jobs_cost_allocation_tags():
    tags = job_tags(
        "churn", dag_id="churn_ingestion", run_id="scheduled__2026-01-02T00:00:00+00:00"
    )
    body = requests.build_emr_serverless_start_job_run_request(
        SETTINGS, "ingest", JOB_ARGS, name="n", client_token="t", tags=tags
    )
    validate_request("emr-serverless", "StartJobRun", body)
    assert body["tags"] == {
        "project": "headrace",
        "dataset": "churn",
        "dag": "churn_ingestion",
        "run": "scheduled__2026-01-02T00:00:00+00:00",
        "spark_job": "ingest",
    }
    # What EMR Serverless's tag pattern refuses is refused here, naming the tag.
    with pytest.raises(ValueError, match=r"tag 'team'='risk&ops': the value may hold only"):
        requests.build_emr_serverless_start_job_run_request(
            SETTINGS, "ingest", [], name="n", client_token="t", tags={"team": "risk&ops"}
        )


def test_emr_serverless_refuses_what_the_service_would():
    with pytest.raises(ValueError, match="at least 5 on EMR Serverless, got 2"):
        requests.build_emr_serverless_start_job_run_request(
            SETTINGS, "ingest", [], name="n", client_token="t", timeout=timedelta(minutes=2)
        )
    # A KMS alias is a valid setting, but EMR Serverless log encryption takes a key ARN only:
    # the builder says so, naming the parameter, before AWS is asked.
    alias = load_settings(
        {**AWS_ENV, "HEADRACE_KMS_KEY_ARN": "arn:aws:kms:eu-west-1:123456789012:alias/headrace"}
    )
    with pytest.raises(ValueError, match=r"s3MonitoringConfiguration\.encryptionKeyArn"):
        requests.build_emr_serverless_start_job_run_request(
            alias, "ingest", [], name="n", client_token="t"
        )
    with pytest.raises(ValueError, match="parameter clientToken"):
        requests.build_emr_serverless_start_job_run_request(
            SETTINGS, "ingest", [], name="n", client_token="t" * 65
        )


def test_emr_add_steps():
    body = requests.build_emr_add_steps_request(
        SETTINGS, "ingest", JOB_ARGS, step_name="headrace-ingest-daily-ingest-0123456789abcdef"
    )
    validate_request("emr", "AddJobFlowSteps", body)
    assert body == {
        "JobFlowId": "j-ABCDEFGHIJKL",
        "Steps": [
            {
                "Name": "headrace-ingest-daily-ingest-0123456789abcdef",
                "ActionOnFailure": "CONTINUE",
                "HadoopJarStep": {
                    "Jar": "command-runner.jar",
                    "Args": [
                        "spark-submit",
                        "--deploy-mode",
                        "cluster",
                        "--py-files",
                        f"{ARTIFACTS}/spark_jobs.zip",
                        f"{ARTIFACTS}/ingest.py",
                        *JOB_ARGS,
                    ],
                },
            }
        ],
    }


# --- capacity: the dataset spec's capacity.spark sizes every engine's run -------------------


def churn_capacity(folder, capacity: dict):
    """The churn spec's capacity with ``capacity`` as its block (a copy in ``folder``)."""
    import yaml

    from include.config import DATASETS_DIR, dataset_capacity

    raw = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    (folder / "churn.yaml").write_text(yaml.safe_dump({**raw, "capacity": capacity}))
    return dataset_capacity("churn", folder)


BIG_SPARK = {
    "spark": {
        "max_runtime_minutes": 240,
        "glue": {"worker_type": "G.2X", "number_of_workers": 20},
        "emr_serverless": {"max_executors": 50, "executor_cores": 8, "executor_memory_gb": 50},
        "emr_step": {"max_executors": 30, "executor_cores": 4, "executor_memory_gb": 20},
    }
}


def test_the_repo_specs_keep_todays_sizes():
    from include.config import dataset_capacity

    for dataset in ("churn", "benefit_claims"):
        spark = dataset_capacity(dataset).spark
        assert (spark.glue.worker_type, spark.glue.number_of_workers) == ("G.1X", 2)
        assert timedelta(minutes=spark.max_runtime_minutes) == requests.DEFAULT_TIMEOUT
        assert spark.emr_serverless.spark_conf() == {} and spark.emr_step.spark_conf() == {}


def test_glue_run_carries_the_datasets_workers_and_runtime(tmp_path):
    spark = churn_capacity(tmp_path, BIG_SPARK).spark
    body = requests.build_glue_start_job_run_request(
        SETTINGS,
        "ingest",
        JOB_ARGS,
        "ingest-daily-ingest-0123456789abcdef",
        timeout=timedelta(minutes=spark.max_runtime_minutes),
        capacity=spark.glue,
    )
    validate_request("glue", "StartJobRun", body)
    assert (body["WorkerType"], body["NumberOfWorkers"], body["Timeout"]) == ("G.2X", 20, 240)
    # The shared job definition keeps today's size: the run overrides it.
    definition = requests.build_glue_job_request(SETTINGS, "ingest")
    assert (definition["WorkerType"], definition["NumberOfWorkers"]) == ("G.1X", 2)


def test_emr_runs_carry_the_datasets_executors(tmp_path):
    spark = churn_capacity(tmp_path, BIG_SPARK).spark
    serverless = requests.build_emr_serverless_start_job_run_request(
        SETTINGS,
        "ingest",
        JOB_ARGS,
        name="n",
        client_token="t",
        timeout=timedelta(minutes=spark.max_runtime_minutes),
        executors=spark.emr_serverless,
    )
    assert serverless["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"] == (
        f"--py-files {ARTIFACTS}/spark_jobs.zip"
        " --conf spark.dynamicAllocation.maxExecutors=50"
        " --conf spark.executor.cores=8 --conf spark.executor.memory=50g"
    )
    assert serverless["executionTimeoutMinutes"] == 240
    step = requests.build_emr_add_steps_request(
        SETTINGS, "ingest", JOB_ARGS, step_name="s", executors=spark.emr_step
    )
    args = step["Steps"][0]["HadoopJarStep"]["Args"]
    # spark-submit reads its options before the script; after it they would be the job's argv.
    assert args[5 : args.index(f"{ARTIFACTS}/ingest.py")] == [
        "--conf",
        "spark.dynamicAllocation.maxExecutors=30",
        "--conf",
        "spark.executor.cores=4",
        "--conf",
        "spark.executor.memory=20g",
    ]


@pytest.mark.parametrize(
    ("capacity", "problem"),
    [
        (
            {"spark": {"glue": {"number_of_workers": 1}}},
            "capacity.spark.glue.number_of_workers: must be an integer >= 2, got 1",
        ),
        (
            {"spark": {"glue": {"worker_type": "G.3X"}}},
            "capacity.spark.glue.worker_type: 'G.3X' is not a glue WorkerType",
        ),
        (
            {"spark": {"glue": {"worker_type": "Z.2X"}}},
            "capacity.spark.glue.worker_type: 'Z.2X' is for Ray jobs only",
        ),
        (
            {"spark": {"max_runtime_minutes": 4}},
            "capacity.spark.max_runtime_minutes: must be an integer >= 5, got 4",
        ),
        (
            {"spark": {"emr_serverless": {"executor_cores": 3, "executor_memory_gb": 8}}},
            "capacity.spark.emr_serverless.executor_cores: must be one of [1, 2, 4, 8, 16]",
        ),
        (
            {"spark": {"emr_serverless": {"executor_cores": 4, "executor_memory_gb": 30}}},
            "capacity.spark.emr_serverless.executor_memory_gb: 30 GB plus Spark's overhead",
        ),
        (
            {"spark": {"emr_step": {"executor_cores": 4}}},
            "capacity.spark.emr_step: executor_cores and executor_memory_gb go together",
        ),
        (
            {"spark": {"emr_serverless": {"max_executors": 0}}},
            "capacity.spark.emr_serverless.max_executors: must be an integer >= 1, got 0",
        ),
        ({"spark": {"glue": {"workers": 4}}}, "capacity.spark.glue.workers: unknown key"),
    ],
)
def test_bad_spark_capacity_fails_naming_the_spec_and_field(tmp_path, capacity, problem):
    from spark_jobs.dataset_spec import SpecError

    with pytest.raises(SpecError) as raised:
        churn_capacity(tmp_path, capacity)
    (found,) = raised.value.problems
    assert found.startswith(problem)
    assert f"{tmp_path / 'churn.yaml'}: {problem}" in str(raised.value)


def test_builders_need_the_aws_target_and_a_module_name():
    local = load_settings({"PIPELINE_TARGET": "local"})
    with pytest.raises(ConfigError, match="need PIPELINE_TARGET=aws"):
        requests.build_glue_job_request(local, "ingest")
    with pytest.raises(ValueError, match=re.escape("'../ingest' is not a module name")):
        requests.script_uri(SETTINGS, "../ingest")
    no_cluster = load_settings({**AWS_ENV, "HEADRACE_EMR_CLUSTER_ID": ""})
    with pytest.raises(ConfigError, match="HEADRACE_EMR_CLUSTER_ID"):
        requests.build_emr_add_steps_request(no_cluster, "ingest", [], step_name="s")


def test_package_zip_is_deterministic_and_importable(repo_root, tmp_path):
    package = "tests.plugins.fixtures"
    first = requests.build_package_zip(package, repo_root)
    assert requests.build_package_zip(package, repo_root) == first

    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert "tests/plugins/fixtures/sleepy_job.py" in names
    # zipimport finds no namespace packages: every level has an __init__.py.
    assert {"tests/__init__.py", "tests/plugins/__init__.py"} <= set(names)
    archive = tmp_path / "jobs.zip"
    archive.write_bytes(first)
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "import tests.plugins.fixtures.sleepy_job as job; print(job.__file__)",
            str(archive),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip().startswith(str(archive))

    artifacts = requests.spark_job_artifacts(
        SETTINGS, "sleepy_job", package=package, repo_root=repo_root
    )
    assert artifacts == {
        f"{ARTIFACTS}/sleepy_job.py": (
            repo_root / "tests/plugins/fixtures/sleepy_job.py"
        ).read_bytes(),
        f"{ARTIFACTS}/tests.plugins.fixtures.zip": first,
    }
    with pytest.raises(FileNotFoundError, match="Spark job 'missing' has no entry point"):
        requests.spark_job_artifacts(SETTINGS, "missing", package=package, repo_root=repo_root)
