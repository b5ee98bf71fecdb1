from __future__ import annotations

import pytest

from include.config import DEFAULT_LOCAL_LAKE, ConfigError, load_settings

VALID_AWS = {
    "PIPELINE_TARGET": "aws",
    "AWS_REGION": "eu-west-1",
    "HEADRACE_BUCKET": "headrace-lake-test",
    "HEADRACE_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-sagemaker",
    "HEADRACE_GLUE_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-glue",
    "HEADRACE_EMR_SERVERLESS_ROLE_ARN": "arn:aws:iam::123456789012:role/headrace-emr",
    "HEADRACE_KMS_KEY_ARN": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "HEADRACE_SUBNET_IDS": "subnet-0123456789abcdef0, subnet-0fedcba9876543210",
    "HEADRACE_SECURITY_GROUP_IDS": "sg-0123456789abcdef0",
    "HEADRACE_PII_SALT_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:headrace/pii-AbCdEf",  # pragma: allowlist secret (an ARN, not a secret)
}


def test_local_is_the_default_with_a_lake_under_the_repo():
    settings = load_settings({})
    assert settings.target == "local"
    assert settings.aws is None
    assert settings.lake_root == DEFAULT_LOCAL_LAKE.as_uri()
    assert settings.zone_uri("curated") == f"{DEFAULT_LOCAL_LAKE.as_uri()}/curated"


def test_local_lake_root_must_be_an_absolute_file_uri():
    with pytest.raises(
        ConfigError, match="HEADRACE_LAKE_ROOT='s3://b/lake' must be an absolute file://"
    ):
        load_settings({"HEADRACE_LAKE_ROOT": "s3://b/lake"})


def test_unknown_target_is_named():
    with pytest.raises(ConfigError, match="PIPELINE_TARGET='gcp' is not one of local, aws"):
        load_settings({"PIPELINE_TARGET": "gcp"})


def test_valid_aws_settings_are_parsed():
    settings = load_settings(VALID_AWS)
    assert settings.target == "aws"
    assert settings.lake_root == "s3://headrace-lake-test/lake"
    assert settings.aws.subnet_ids == ("subnet-0123456789abcdef0", "subnet-0fedcba9876543210")
    assert settings.aws.security_group_ids == ("sg-0123456789abcdef0",)
    assert settings.aws.spark_engine == "glue"
    assert settings.zone_uri("models") == "s3://headrace-lake-test/lake/models"


def test_missing_aws_settings_are_all_reported_at_once():
    with pytest.raises(ConfigError) as raised:
        load_settings({"PIPELINE_TARGET": "aws"})
    message = str(raised.value)
    for name in (
        "AWS_REGION",
        "HEADRACE_BUCKET",
        "HEADRACE_SAGEMAKER_ROLE_ARN",
        "HEADRACE_GLUE_ROLE_ARN",
        "HEADRACE_EMR_SERVERLESS_ROLE_ARN",
        "HEADRACE_KMS_KEY_ARN",
        "HEADRACE_SUBNET_IDS",
        "HEADRACE_SECURITY_GROUP_IDS",
        "HEADRACE_PII_SALT_SECRET_ARN",
    ):
        assert f"{name} is required when PIPELINE_TARGET=aws" in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AWS_REGION", "europe", "AWS_REGION='europe' is not a valid AWS region name"),
        (
            "HEADRACE_BUCKET",
            "Bad_Bucket",
            "HEADRACE_BUCKET='Bad_Bucket' is not a valid S3 bucket name",
        ),
        (
            "HEADRACE_GLUE_ROLE_ARN",
            "glue-role",
            "HEADRACE_GLUE_ROLE_ARN='glue-role' is not a valid IAM role ARN",
        ),
        (
            "HEADRACE_KMS_KEY_ARN",
            "arn:aws:kms:eu-west-1:123:key/x",
            "is not a valid KMS key or alias ARN",
        ),
        (
            "HEADRACE_SUBNET_IDS",
            "subnet-0123456789abcdef0,vpc-1",
            "HEADRACE_SUBNET_IDS: 'vpc-1' is not a valid subnet id",
        ),
        (
            "HEADRACE_SECURITY_GROUP_IDS",
            "sg-xyz",
            "HEADRACE_SECURITY_GROUP_IDS: 'sg-xyz' is not a valid security group id",
        ),
        (
            "HEADRACE_SPARK_ENGINE",
            "databricks",
            "HEADRACE_SPARK_ENGINE='databricks' is not one of glue",
        ),
        (
            "HEADRACE_LAKE_ROOT",
            "s3://other-bucket/lake",
            "is not inside HEADRACE_BUCKET='headrace-lake-test'",
        ),
        ("HEADRACE_LAKE_ROOT", "file:///tmp/lake", "must be an s3:// URI when PIPELINE_TARGET=aws"),
    ],
)
def test_malformed_aws_values_are_named(name, value, expected):
    with pytest.raises(ConfigError) as raised:
        load_settings({**VALID_AWS, name: value})
    assert expected in str(raised.value)


def test_engine_specific_ids_are_required_only_for_their_engine():
    with pytest.raises(ConfigError, match="HEADRACE_EMR_SERVERLESS_APPLICATION_ID is required"):
        load_settings({**VALID_AWS, "HEADRACE_SPARK_ENGINE": "emr_serverless"})
    with pytest.raises(ConfigError, match="HEADRACE_EMR_CLUSTER_ID is required"):
        load_settings({**VALID_AWS, "HEADRACE_SPARK_ENGINE": "emr_ec2"})
    settings = load_settings(
        {
            **VALID_AWS,
            "HEADRACE_SPARK_ENGINE": "emr_ec2",
            "HEADRACE_EMR_CLUSTER_ID": "j-ABCDEFGH1234",
        }
    )
    assert settings.aws.emr_cluster_id == "j-ABCDEFGH1234"


def test_unknown_zone_is_refused():
    with pytest.raises(ConfigError, match="unknown lake zone 'bronze'"):
        load_settings({}).zone_uri("bronze")


def test_env_example_documents_every_variable_the_settings_read(repo_root):
    """A variable read by include/config.py but missing from .env.example is a doc bug."""
    import re

    source = (repo_root / "include" / "config.py").read_text()
    read = set(re.findall(r'"((?:HEADRACE|PIPELINE|AWS)_[A-Z_]+)"', source)) - {
        "AWS_DEFAULT_REGION"
    }
    documented = (repo_root / ".env.example").read_text()
    missing = sorted(name for name in read if name not in documented)
    assert read and missing == []


# --- training and tuning settings ---------------------------------------------------------


def test_training_defaults_are_a_gpu_spot_job_with_the_regions_pytorch_image():
    training = load_settings(VALID_AWS).training
    assert training.instance_type == "ml.g5.xlarge"
    assert (training.instance_count, training.volume_size_gb) == (1, 50)
    assert training.use_spot is True
    assert (training.max_runtime_s, training.max_wait_s) == (7200, 14400)
    assert training.image_uri == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/"
        "pytorch-training:2.5.1-gpu-py311-cu124-ubuntu22.04-sagemaker"
    )
    assert (training.tuning_max_jobs, training.tuning_max_parallel_jobs) == (20, 2)


def test_training_image_account_and_domain_follow_the_region():
    from include.config import default_training_image_uri

    assert default_training_image_uri("af-south-1").startswith(
        "626614931356.dkr.ecr.af-south-1.amazonaws.com/pytorch-training:"
    )
    assert default_training_image_uri("cn-north-1").startswith(
        "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/"
    )


def test_local_training_settings_have_no_image_but_the_same_limits():
    training = load_settings(
        {"HEADRACE_TRAINING_MAX_RUNTIME_S": "600", "HEADRACE_TUNING_MAX_JOBS": "4"}
    ).training
    assert training.image_uri == ""
    # Unset, the spot wait is twice the runtime it must cover.
    assert (training.max_runtime_s, training.max_wait_s) == (600, 1200)
    assert training.tuning_max_jobs == 4


def test_training_overrides_are_parsed():
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/headrace-train:1.2.3"
    training = load_settings(
        {
            **VALID_AWS,
            "HEADRACE_TRAINING_INSTANCE_TYPE": "ml.p4d.24xlarge",
            "HEADRACE_TRAINING_INSTANCE_COUNT": "2",
            "HEADRACE_TRAINING_VOLUME_GB": "200",
            "HEADRACE_TRAINING_USE_SPOT": "false",
            "HEADRACE_TRAINING_MAX_RUNTIME_S": "3600",
            "HEADRACE_TRAINING_MAX_WAIT_S": "60",
            "HEADRACE_TRAINING_IMAGE_URI": image,
            "HEADRACE_TUNING_MAX_JOBS": "8",
            "HEADRACE_TUNING_MAX_PARALLEL_JOBS": "4",
        }
    ).training
    assert training.instance_type == "ml.p4d.24xlarge"
    assert (training.instance_count, training.volume_size_gb) == (2, 200)
    # Without spot the wait is not a limit, so a short one is no error.
    assert (training.use_spot, training.max_runtime_s, training.max_wait_s) == (False, 3600, 60)
    assert training.image_uri == image
    assert (training.tuning_max_jobs, training.tuning_max_parallel_jobs) == (8, 4)


def test_spot_wait_shorter_than_the_runtime_names_both_variables():
    with pytest.raises(ConfigError) as raised:
        load_settings(
            {
                "HEADRACE_TRAINING_USE_SPOT": "true",
                "HEADRACE_TRAINING_MAX_RUNTIME_S": "3600",
                "HEADRACE_TRAINING_MAX_WAIT_S": "1800",
            }
        )
    assert (
        "HEADRACE_TRAINING_MAX_WAIT_S=1800 must be at least HEADRACE_TRAINING_MAX_RUNTIME_S=3600"
        in str(raised.value)
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "HEADRACE_TRAINING_INSTANCE_TYPE",
            "g5.xlarge",
            "HEADRACE_TRAINING_INSTANCE_TYPE='g5.xlarge' is not a SageMaker instance type",
        ),
        (
            "HEADRACE_TRAINING_INSTANCE_COUNT",
            "0",
            "HEADRACE_TRAINING_INSTANCE_COUNT=0 must be at least 1",
        ),
        (
            "HEADRACE_TRAINING_VOLUME_GB",
            "big",
            "HEADRACE_TRAINING_VOLUME_GB='big' is not a whole number",
        ),
        (
            "HEADRACE_TRAINING_MAX_RUNTIME_S",
            "1.5",
            "HEADRACE_TRAINING_MAX_RUNTIME_S='1.5' is not a whole number",
        ),
        (
            "HEADRACE_TRAINING_USE_SPOT",
            "maybe",
            "HEADRACE_TRAINING_USE_SPOT='maybe' is not true or false",
        ),
        (
            "HEADRACE_TRAINING_IMAGE_URI",
            "pytorch:latest",
            "HEADRACE_TRAINING_IMAGE_URI='pytorch:latest' is not an ECR image URI",
        ),
        (
            "HEADRACE_TUNING_MAX_PARALLEL_JOBS",
            "30",
            "HEADRACE_TUNING_MAX_PARALLEL_JOBS=30 is more than HEADRACE_TUNING_MAX_JOBS=20",
        ),
        ("HEADRACE_TUNING_MAX_JOBS", "-1", "HEADRACE_TUNING_MAX_JOBS=-1 must be at least 1"),
    ],
)
def test_malformed_training_values_are_named(name, value, expected):
    with pytest.raises(ConfigError) as raised:
        load_settings({**VALID_AWS, name: value})
    assert expected in str(raised.value)


def test_the_landing_inbox_defaults_under_the_landing_zone_and_is_validated():
    settings = load_settings({"HEADRACE_LAKE_ROOT": "file:///data/lake"})
    assert settings.landing_inbox_uri == "file:///data/lake/landing/_inbox"
    assert settings.landing_poll_s == 2.0
    custom = load_settings(
        {"HEADRACE_LANDING_INBOX": "file:///srv/drop/", "HEADRACE_LANDING_POLL_S": "0.5"}
    )
    assert (custom.landing_inbox_uri, custom.landing_poll_s) == ("file:///srv/drop", 0.5)
    with pytest.raises(ConfigError) as raised:
        load_settings({"HEADRACE_LANDING_INBOX": "drop", "HEADRACE_LANDING_POLL_S": "soon"})
    assert "HEADRACE_LANDING_INBOX='drop' must be an absolute file:// URI" in str(raised.value)
    assert "HEADRACE_LANDING_POLL_S='soon' is not a number of seconds" in str(raised.value)
    with pytest.raises(ConfigError, match=r"HEADRACE_LANDING_POLL_S=0\.0 must be between"):
        load_settings({"HEADRACE_LANDING_POLL_S": "0"})


def test_the_landing_queue_is_optional_on_aws_and_must_be_an_sqs_url():
    assert load_settings(VALID_AWS).aws.landing_queue_url == ""
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/headrace-landing"
    settings = load_settings({**VALID_AWS, "HEADRACE_LANDING_QUEUE_URL": url})
    assert settings.aws.landing_queue_url == url
    with pytest.raises(ConfigError, match="HEADRACE_LANDING_QUEUE_URL='headrace-landing' is not"):
        load_settings({**VALID_AWS, "HEADRACE_LANDING_QUEUE_URL": "headrace-landing"})


# --- a dataset's training capacity over the deployment's settings ---------------------------


def test_the_datasets_training_capacity_wins_over_the_settings_where_it_is_set():
    from include.config import with_training_capacity
    from spark_jobs.dataset_spec import InstanceCapacity

    settings = load_settings(
        {
            **VALID_AWS,
            "HEADRACE_TRAINING_INSTANCE_TYPE": "ml.g5.2xlarge",
            "HEADRACE_TRAINING_INSTANCE_COUNT": "3",
            "HEADRACE_TRAINING_MAX_RUNTIME_S": "3600",
            "HEADRACE_TRAINING_MAX_WAIT_S": "7200",
        }
    )
    # A spec that says nothing: the settings as they are.
    assert with_training_capacity(settings, InstanceCapacity()) is settings

    sized = with_training_capacity(
        settings, InstanceCapacity(instance_type="ml.m5.4xlarge", max_runtime_minutes=90)
    ).training
    assert (sized.instance_type, sized.instance_count) == ("ml.m5.4xlarge", 3)
    # 90 minutes still fit the deployment's two-hour spot wait.
    assert (sized.max_runtime_s, sized.max_wait_s) == (5400, 7200)
    # The rest of the settings are untouched.
    assert sized.volume_size_gb == settings.training.volume_size_gb

    longer = with_training_capacity(
        settings, InstanceCapacity(instance_count=2, max_runtime_minutes=180)
    ).training
    assert (longer.instance_type, longer.instance_count) == ("ml.g5.2xlarge", 2)
    # Three hours outlast the wait: it becomes twice the runtime, as with no wait setting.
    assert (longer.max_runtime_s, longer.max_wait_s) == (10800, 21600)


def test_dataset_capacity_reads_the_spec_and_names_a_missing_one(tmp_path):
    from include.config import dataset_capacity
    from spark_jobs.dataset_spec import Capacity, SpecError

    assert dataset_capacity("churn") == Capacity()
    with pytest.raises(SpecError, match=r"nope\.yaml: cannot read the file"):
        dataset_capacity("nope", tmp_path)
