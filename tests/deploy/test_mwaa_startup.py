"""startup.sh: MWAA's options ``headrace.<name>`` become the variables include/config.py reads.

The script runs in bash, sourced as MWAA sources it, with an environment holding only what MWAA
would set: the options as ``AIRFLOW__HEADRACE__<NAME>`` variables.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from mwaa_deploy_helpers import REPO_ROOT

from include.config import load_settings

STARTUP = REPO_ROOT / "scripts" / "mwaa_startup.sh"
# Settings that only mean something on the local target; the startup script never maps them.
LOCAL_ONLY = {"HEADRACE_LOCAL_RUNS_DIR", "HEADRACE_LANDING_INBOX", "HEADRACE_LANDING_POLL_S"}
KMS_KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
MWAA_OPTIONS = {
    "headrace.aws_region": "eu-west-1",
    "headrace.bucket": "headrace-prod-lake",
    "headrace.lake_root": "s3://headrace-prod-lake/lake",
    "headrace.sagemaker_role_arn": "arn:aws:iam::123456789012:role/headrace-sagemaker",
    "headrace.glue_role_arn": "arn:aws:iam::123456789012:role/headrace-glue",
    "headrace.emr_serverless_role_arn": "arn:aws:iam::123456789012:role/headrace-emr",
    "headrace.kms_key_arn": KMS_KEY_ARN,
    "headrace.subnet_ids": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
    "headrace.security_group_ids": "sg-0123456789abcdef0",
    "headrace.pii_salt_secret_arn": (
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:headrace/pii-salt-AbCdEf"
    ),
    "headrace.spark_engine": "emr_serverless",
    "headrace.emr_serverless_application_id": "00f0abcdefgh1234",
    "headrace.training_instance_type": "ml.m5.2xlarge",
    "headrace.training_use_spot": "false",
    "headrace.tuning_max_jobs": "8",
}


def as_airflow_variables(options: dict[str, str]) -> dict[str, str]:
    """Options as MWAA exposes them: ``headrace.bucket`` → ``AIRFLOW__HEADRACE__BUCKET``."""
    variables = {}
    for option, value in options.items():
        section, key = option.split(".", 1)
        variables[f"AIRFLOW__{section.upper()}__{key.upper()}"] = value
    return variables


def source_startup(environment: dict[str, str]) -> tuple[dict[str, str], str]:
    """Source the script in bash with exactly ``environment``; ``(resulting env, stderr)``."""
    result = subprocess.run(
        ["bash", "-c", 'source "$0" && env -0', str(STARTUP)],
        env={"PATH": "/usr/bin:/bin", **environment},
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr.decode()
    exported = dict(
        item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item
    )
    return exported, result.stderr.decode()


def test_every_option_becomes_the_variable_config_reads():
    exported, stderr = source_startup(as_airflow_variables(MWAA_OPTIONS))
    assert stderr == ""
    assert exported["PIPELINE_TARGET"] == "aws"
    assert exported["AWS_REGION"] == "eu-west-1"
    assert exported["HEADRACE_BUCKET"] == "headrace-prod-lake"
    assert exported["HEADRACE_SUBNET_IDS"] == "subnet-0123456789abcdef0,subnet-0fedcba9876543210"
    assert exported["HEADRACE_EMR_SERVERLESS_APPLICATION_ID"] == "00f0abcdefgh1234"

    # The real reader of settings accepts what the script exported, value for value.
    settings = load_settings(exported)
    assert settings.target == "aws"
    assert settings.lake_root == "s3://headrace-prod-lake/lake"
    assert settings.aws.region == "eu-west-1"
    assert settings.aws.kms_key_arn == KMS_KEY_ARN
    assert settings.aws.subnet_ids == ("subnet-0123456789abcdef0", "subnet-0fedcba9876543210")
    assert settings.aws.spark_engine == "emr_serverless"
    assert settings.training.instance_type == "ml.m5.2xlarge"
    assert settings.training.use_spot is False
    assert settings.training.tuning_max_jobs == 8


def test_the_script_maps_every_setting_config_reads_on_aws():
    """A new aws setting in include/config.py needs its line in the startup script."""
    read_by_config = set(
        re.findall(r'"(HEADRACE_[A-Z0-9_]+)"', (REPO_ROOT / "include/config.py").read_text())
    )
    block = re.search(r"HEADRACE_MWAA_SETTINGS=\(\n(.*?)\n\)", STARTUP.read_text(), re.DOTALL)
    mapped = {f"HEADRACE_{name.strip().upper()}" for name in block.group(1).split()}
    assert mapped == read_by_config - LOCAL_ONLY, (
        "add the new setting to HEADRACE_MWAA_SETTINGS in scripts/mwaa_startup.sh "
        "(or to LOCAL_ONLY here if it has no meaning on MWAA)"
    )


def test_unknown_and_local_only_options_are_reported_and_not_exported():
    options = {
        **MWAA_OPTIONS,
        "headrace.bukcet": "typo-bucket",
        "headrace.pii_salt": "never-from-options-0123",
        "headrace.local_runs_dir": "/tmp/runs",
    }
    exported, stderr = source_startup(as_airflow_variables(options))
    assert "HEADRACE_BUKCET" not in exported
    assert "HEADRACE_PII_SALT" not in exported
    assert "HEADRACE_LOCAL_RUNS_DIR" not in exported
    assert stderr.splitlines() == [
        "headrace startup: ignoring unknown option headrace.bukcet",
        "headrace startup: ignoring unknown option headrace.local_runs_dir",
        "headrace startup: ignoring unknown option headrace.pii_salt",
    ]
    assert "never-from-options" not in stderr


def test_the_environments_own_region_wins_and_the_target_can_be_set():
    environment = {
        **as_airflow_variables({**MWAA_OPTIONS, "headrace.pipeline_target": "local"}),
        "AWS_REGION": "us-east-1",
    }
    exported, stderr = source_startup(environment)
    assert exported["AWS_REGION"] == "us-east-1"
    assert "differs from the environment's AWS_REGION=us-east-1" in stderr
    assert exported["PIPELINE_TARGET"] == "local"


def test_unset_options_export_nothing_but_the_target():
    exported, stderr = source_startup({})
    assert stderr == ""
    assert exported["PIPELINE_TARGET"] == "aws"
    assert not any(name.startswith("HEADRACE_") or name == "AWS_REGION" for name in exported)


@pytest.mark.parametrize("probe", ["type headrace_export_settings", "[[ $- == *e* ]]"])
def test_sourcing_leaves_no_function_or_shell_option_behind(probe):
    result = subprocess.run(
        ["bash", "-c", f'source "$0"; {probe}', str(STARTUP)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=30,
    )
    assert result.returncode != 0
