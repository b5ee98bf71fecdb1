"""SageMaker request builders: every body validates against botocore and carries the settings."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import re
import tarfile

import pytest
from aws_test_env import AWS_ENV, KMS_KEY_ARN

from include import sagemaker_requests as requests
from include import training_jobs
from include.aws_validation import RequestValidationError, validate_request
from include.config import ConfigError, load_settings
from include.job_tags import job_tags

SETTINGS = load_settings(AWS_ENV)
LAKE = "s3://headrace-test-lake/lake"
DS = "2026-01-07"
FEATURES = f"{LAKE}/features/churn/ds={DS}"
SOURCE = "s3://headrace-test-lake/artifacts/training/0123456789abcdef/sourcedir.tar.gz"
# The training contract's metric regex, spelled out rather than derived.
CONTRACT_AUC_REGEX = r"validation:auc=([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def channel_manifest_uris(lake=LAKE):
    """Channel manifests as training_jobs writes them (one per split of a features commit)."""
    inputs = f"{lake}/models/churn/input/ds={DS}/0123456789abcdef"
    return {split: f"{inputs}/{split}.manifest.json" for split in requests.TRAINING_CHANNELS}


def training_request(settings=SETTINGS, lake=LAKE, source=SOURCE, **overrides):
    arguments = {
        "job_name": "headrace-churn-training-train-0123456789abcdef",
        "hyperparameters": {"epochs": 20, "learning-rate": 0.001, "amp": "auto"},
        "channels": channel_manifest_uris(lake),
        "channel_data_type": "ManifestFile",
        "output_uri": f"{lake}/models/churn/training",
        "checkpoint_uri": f"{lake}/models/churn/checkpoints/headrace-churn-training-train",
        "source_uri": source,
        **overrides,
    }
    return requests.build_training_job_request(settings, **arguments)


def with_training(settings, **changes):
    return dataclasses.replace(settings, training=dataclasses.replace(settings.training, **changes))


def test_gpu_spot_training_job_with_the_security_settings():
    body = training_request()
    validate_request("sagemaker", "CreateTrainingJob", body)

    assert body["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/"
        "pytorch-training:2.5.1-gpu-py311-cu124-ubuntu22.04-sagemaker"
    )
    assert body["ResourceConfig"] == {
        "InstanceType": "ml.g5.xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 50,
        "VolumeKmsKeyId": KMS_KEY_ARN,
    }
    assert body["EnableManagedSpotTraining"] is True
    assert body["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert body["CheckpointConfig"] == {
        "S3Uri": f"{LAKE}/models/churn/checkpoints/headrace-churn-training-train",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert body["OutputDataConfig"] == {
        "S3OutputPath": f"{LAKE}/models/churn/training",
        "KmsKeyId": KMS_KEY_ARN,
    }
    assert body["VpcConfig"] == {
        "SecurityGroupIds": ["sg-0123456789abcdef0"],
        "Subnets": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
    }
    assert body["EnableNetworkIsolation"] is True
    assert body["EnableInterContainerTrafficEncryption"] is True
    assert body["RoleArn"] == AWS_ENV["HEADRACE_SAGEMAKER_ROLE_ARN"]
    assert {"Key": "project", "Value": "headrace"} in body["Tags"]


def test_script_mode_hyperparameters_are_strings_and_the_code_is_a_channel():
    body = training_request()
    assert body["HyperParameters"] == {
        "epochs": "20",
        "learning-rate": "0.001",
        "amp": "auto",
        "sagemaker_program": "train.py",
        # Network isolation: the container cannot fetch the tarball, so it arrives as a channel.
        "sagemaker_submit_directory": "/opt/ml/input/data/code/sourcedir.tar.gz",
        "sagemaker_container_log_level": "20",
        "sagemaker_job_name": "headrace-churn-training-train-0123456789abcdef",
        "sagemaker_region": "eu-west-1",
    }
    channels = {channel["ChannelName"]: channel for channel in body["InputDataConfig"]}
    assert list(channels) == ["train", "validation", "test", "code"]
    assert channels["code"]["DataSource"]["S3DataSource"]["S3Uri"] == SOURCE
    train = channels["train"]
    assert train["DataSource"]["S3DataSource"] == {
        # Exactly the files the manifest file lists, not every object under a folder.
        "S3DataType": "ManifestFile",
        "S3Uri": f"{LAKE}/models/churn/input/ds={DS}/0123456789abcdef/train.manifest.json",
        "S3DataDistributionType": "FullyReplicated",
    }
    assert train["ContentType"] == "application/x-parquet"


def test_folder_channels_are_prefixes_that_end_in_a_slash():
    folders = {split: f"{FEATURES}/split={split}" for split in requests.TRAINING_CHANNELS}
    body = training_request(channels=folders, channel_data_type="S3Prefix")
    validate_request("sagemaker", "CreateTrainingJob", body)
    assert body["InputDataConfig"][0]["DataSource"]["S3DataSource"] == {
        "S3DataType": "S3Prefix",
        # The trailing slash keeps split=train from also matching split=train_old.
        "S3Uri": f"{FEATURES}/split=train/",
        "S3DataDistributionType": "FullyReplicated",
    }
    with pytest.raises(ValueError, match="a ManifestFile channel names a file, got"):
        training_request(channels={"train": f"{FEATURES}/split=train/"})
    with pytest.raises(ValueError, match="channel_data_type 'AugmentedManifestFile' is not"):
        training_request(channel_data_type="AugmentedManifestFile")


def test_a_channel_manifest_is_the_format_sagemaker_documents():
    prefix = f"{FEATURES}/split=train/"
    data = requests.channel_manifest(prefix, ["part-00000-a.parquet", "part-00001-b.parquet"])
    # [{"prefix": …}, "key", …]: the same arguments always give the same bytes.
    assert data == (
        b'[\n  {\n    "prefix": "' + prefix.encode() + b'"\n  },\n'
        b'  "part-00000-a.parquet",\n  "part-00001-b.parquet"\n]\n'
    )
    with pytest.raises(ValueError, match="must end with '/'"):
        requests.channel_manifest(f"{FEATURES}/split=train", ["part-00000-a.parquet"])
    with pytest.raises(ValueError, match="needs at least one key"):
        requests.channel_manifest(f"{FEATURES}/split=train/", [])
    with pytest.raises(ValueError, match=r"\['\.\./split=test/x\.parquet'\] are not relative"):
        requests.channel_manifest(f"{FEATURES}/split=train/", ["../split=test/x.parquet"])


def test_metric_definitions_follow_the_training_contract():
    definitions = training_request()["AlgorithmSpecification"]["MetricDefinitions"]
    by_name = {definition["Name"]: definition["Regex"] for definition in definitions}
    assert set(by_name) == {
        "train:loss",
        "validation:loss",
        "validation:auc",
        "validation:logloss",
        "test:auc",
        "test:logloss",
        "test:f1",
    }
    assert by_name["validation:auc"] == CONTRACT_AUC_REGEX
    epoch_line = (
        "epoch=3 train:loss=0.412345 validation:loss=0.398765 validation:auc=0.812345 "
        "validation:logloss=0.398765"
    )
    assert re.search(by_name["validation:auc"], epoch_line).group(1) == "0.812345"
    assert re.search(by_name["train:loss"], epoch_line).group(1) == "0.412345"
    # validation:loss must not pick up validation:logloss, nor train:loss validation:loss.
    assert re.findall(by_name["validation:loss"], epoch_line) == ["0.398765"]
    assert re.search(by_name["test:f1"], "final test:f1=5.5e-01").group(1) == "5.5e-01"


def test_overrides_without_spot_validate_and_drop_the_wait():
    settings = with_training(
        SETTINGS,
        instance_type="ml.p3.2xlarge",
        instance_count=2,
        volume_size_gb=200,
        use_spot=False,
        max_runtime_s=3600,
        image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/headrace-train:1.0",
    )
    body = training_request(settings)
    validate_request("sagemaker", "CreateTrainingJob", body)
    assert body["ResourceConfig"]["InstanceType"] == "ml.p3.2xlarge"
    assert (body["ResourceConfig"]["InstanceCount"], body["ResourceConfig"]["VolumeSizeInGB"]) == (
        2,
        200,
    )
    assert body["EnableManagedSpotTraining"] is False
    assert body["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert body["AlgorithmSpecification"]["TrainingImage"].endswith("/headrace-train:1.0")


def test_spot_wait_shorter_than_runtime_is_refused_naming_both_variables():
    settings = with_training(SETTINGS, use_spot=True, max_runtime_s=3600, max_wait_s=600)
    with pytest.raises(ConfigError) as raised:
        training_request(settings)
    assert (
        "HEADRACE_TRAINING_MAX_WAIT_S=600 must be at least HEADRACE_TRAINING_MAX_RUNTIME_S=3600"
        in str(raised.value)
    )


def test_an_instance_type_sagemaker_does_not_offer_fails_botocore_validation():
    settings = with_training(SETTINGS, instance_type="ml.g99.tiny")
    with pytest.raises(RequestValidationError, match=r"ResourceConfig\.InstanceType"):
        training_request(settings)


def test_every_uri_lies_in_the_lake_bucket():
    body = training_request()
    uris = requests.uris_in_request(body)
    assert len(uris) == 6  # three data channels, the code channel, output, checkpoints
    assert all(uri.startswith("s3://headrace-test-lake/") for uri in uris)

    with pytest.raises(
        ValueError, match=r"channel 'train' 's3://other-bucket/x' is not in the lake"
    ):
        training_request(channels={"train": "s3://other-bucket/x"})
    with pytest.raises(ValueError, match="checkpoint_uri 's3://other-bucket/ck'"):
        training_request(checkpoint_uri="s3://other-bucket/ck")
    with pytest.raises(
        ValueError,
        match=r"source_uri 's3://elsewhere/sourcedir\.tar\.gz' is not in the lake bucket",
    ):
        training_request(source="s3://elsewhere/sourcedir.tar.gz")
    with pytest.raises(ValueError, match=r"source_uri .* is required on the aws target"):
        training_request(source=None)


def test_reserved_names_are_refused():
    with pytest.raises(ValueError, match=r"\['sagemaker_program'\] are script mode's own"):
        training_request(hyperparameters={"sagemaker_program": "evil.py"})
    with pytest.raises(ValueError, match="'code' is reserved"):
        training_request(channels={"code": f"{FEATURES}/split=train"})
    with pytest.raises(TypeError, match="hyperparameter 'epochs' is a list"):
        training_request(hyperparameters={"epochs": [1, 2]})


def test_a_job_name_sagemaker_refuses_fails_validation():
    with pytest.raises(RequestValidationError, match="TrainingJobName"):
        training_request(job_name="bad_name_with_underscores")


def test_local_target_body_has_file_uris_and_no_aws_resources(tmp_path):
    local = load_settings({"HEADRACE_LAKE_ROOT": (tmp_path / "lake").as_uri()})
    lake = local.lake_root
    body = training_request(local, lake=lake, source=None)
    assert "VpcConfig" not in body
    assert "KmsKeyId" not in body["OutputDataConfig"]
    assert "TrainingImage" not in body["AlgorithmSpecification"]
    assert body["RoleArn"] == requests.LOCAL_ROLE_ARN
    assert body["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].startswith("file:///")
    assert "sagemaker_submit_directory" not in body["HyperParameters"]
    assert all(uri.startswith(lake) for uri in requests.uris_in_request(body))
    with pytest.raises(ValueError, match="must be an absolute file:// URI on the local target"):
        training_request(local, lake=lake, source=None, output_uri="s3://b/models")


def test_tuning_job_searches_the_contract_ranges_for_validation_auc():
    body = requests.build_tuning_job_request(
        SETTINGS,
        tuning_job_name="headrace-tune-0123456789abcdef",
        training_request=training_request(),
    )
    validate_request("sagemaker", "CreateHyperParameterTuningJob", body)
    config = body["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian"
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": "validation:auc",
    }
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 20, "MaxParallelTrainingJobs": 2}
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    ranges = config["ParameterRanges"]
    continuous = {spec["Name"]: spec for spec in ranges["ContinuousParameterRanges"]}
    assert continuous["learning-rate"] == {
        "Name": "learning-rate",
        "MinValue": "0.0001",
        "MaxValue": "0.01",
        "ScalingType": "Logarithmic",
    }
    assert continuous["weight-decay"]["ScalingType"] == "Logarithmic"
    assert (continuous["dropout"]["MinValue"], continuous["dropout"]["MaxValue"]) == ("0.0", "0.5")
    integers = {
        spec["Name"]: (spec["MinValue"], spec["MaxValue"])
        for spec in ranges["IntegerParameterRanges"]
    }
    assert integers == {"hidden-width": ("64", "512"), "num-layers": ("1", "4")}
    assert ranges["CategoricalParameterRanges"] == [
        {"Name": "batch-size", "Values": ["1024", "2048", "4096"]}
    ]

    definition = body["TrainingJobDefinition"]
    # A tuned hyperparameter is not also static; per-job fields are gone.
    assert "learning-rate" not in definition["StaticHyperParameters"]
    assert definition["StaticHyperParameters"]["epochs"] == "20"
    assert "sagemaker_job_name" not in definition["StaticHyperParameters"]
    assert "TrainingJobName" not in definition and "HyperParameters" not in definition
    assert "EnableSageMakerMetricsTimeSeries" not in definition["AlgorithmSpecification"]
    # The security settings travel with every training job of the tuning job.
    assert definition["VpcConfig"]["Subnets"] == [
        "subnet-0123456789abcdef0",
        "subnet-0fedcba9876543210",
    ]
    assert definition["EnableNetworkIsolation"] is True
    assert definition["OutputDataConfig"]["KmsKeyId"] == KMS_KEY_ARN
    assert (
        definition["StoppingCondition"]["MaxWaitTimeInSeconds"]
        >= definition["StoppingCondition"]["MaxRuntimeInSeconds"]
    )
    assert all(uri.startswith("s3://headrace-test-lake/") for uri in requests.uris_in_request(body))


RUN_ID = "scheduled__2026-01-07T00:00:00+00:00"
JOB_TAGS = [
    {"Key": "project", "Value": "headrace"},
    {"Key": "dataset", "Value": "churn"},
    {"Key": "dag", "Value": "churn_training"},
    {"Key": "run", "Value": RUN_ID},
]


def test_training_and_tuning_jobs_carry_the_jobs_cost_allocation_tags():
    tags = job_tags("churn", dag_id="churn_training", run_id=RUN_ID)
    training = training_request(tags=tags)
    validate_request("sagemaker", "CreateTrainingJob", training)
    assert training["Tags"] == JOB_TAGS
    tuning = requests.build_tuning_job_request(
        SETTINGS, tuning_job_name="headrace-tune-0", training_request=training, tags=tags
    )
    validate_request("sagemaker", "CreateHyperParameterTuningJob", tuning)
    # SageMaker passes a tuning job's tags on to the training jobs it starts; the training job
    # definition has no Tags member of its own.
    assert tuning["Tags"] == JOB_TAGS
    assert "Tags" not in tuning["TrainingJobDefinition"]


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"team": "risk;ops"}, r"tag 'team'='risk;ops': the value may hold only .* found ';'"),
        ({"aws:team": "x"}, r"tag 'aws:team'='x': the key must not start with 'aws:'"),
        ({f"k{i}": "v" for i in range(50)}, r"51 tags \(project, k0, .*AWS allows at most 50"),
    ],
)
def test_a_tag_sagemaker_would_refuse_fails_naming_it(tags, message):
    # botocore cannot check SageMaker's \p{L} tag pattern (Python's re lacks it): the builder does.
    with pytest.raises(ValueError, match=message):
        training_request(tags=tags)


def test_tuning_limits_and_strategy_can_be_overridden():
    settings = with_training(SETTINGS, tuning_max_jobs=8, tuning_max_parallel_jobs=4)
    body = requests.build_tuning_job_request(
        settings,
        tuning_job_name="headrace-tune-x",
        training_request=training_request(settings),
        strategy="Random",
        early_stopping=False,
        random_seed=7,
    )
    config = body["HyperParameterTuningJobConfig"]
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 4}
    assert (config["Strategy"], config["TrainingJobEarlyStoppingType"], config["RandomSeed"]) == (
        "Random",
        "Off",
        7,
    )


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        (
            {
                "ContinuousParameterRanges": [
                    {
                        "Name": "dropout",
                        "MinValue": "0",
                        "MaxValue": "0.5",
                        "ScalingType": "Logarithmic",
                    }
                ]
            },
            "range 'dropout': Logarithmic scaling needs MinValue > 0",
        ),
        (
            {"IntegerParameterRanges": [{"Name": "num-layers", "MinValue": "4", "MaxValue": "1"}]},
            "range 'num-layers': MinValue 4 must be below MaxValue 1",
        ),
        (
            {
                "IntegerParameterRanges": [
                    {"Name": "num-layers", "MinValue": "1.5", "MaxValue": "4"}
                ]
            },
            "range 'num-layers' needs MinValue and MaxValue as int strings",
        ),
        (
            {"CategoricalParameterRanges": [{"Name": "batch-size", "Values": [1024]}]},
            "categorical range 'batch-size' needs a list of string Values",
        ),
        ({"DiscreteParameterRanges": []}, "unknown parameter range kinds"),
    ],
)
def test_bad_parameter_ranges_are_named(ranges, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        requests.build_tuning_job_request(
            SETTINGS,
            tuning_job_name="headrace-tune-x",
            training_request=training_request(),
            parameter_ranges=ranges,
        )


def test_tuning_objective_must_be_a_tracked_metric_and_the_name_short():
    with pytest.raises(ValueError, match="objective metric 'validation:accuracy' is not among"):
        requests.build_tuning_job_request(
            SETTINGS,
            tuning_job_name="headrace-tune-x",
            training_request=training_request(),
            objective_metric="validation:accuracy",
        )
    with pytest.raises(RequestValidationError, match="HyperParameterTuningJobName"):
        requests.build_tuning_job_request(
            SETTINGS,
            tuning_job_name="headrace-tune-" + "x" * 30,
            training_request=training_request(),
        )


def test_source_tarball_is_deterministic_and_rooted_at_the_package(tmp_path):
    package = tmp_path / "training"
    (package / "__pycache__").mkdir(parents=True)
    (package / "train.py").write_text("print('train')\n")
    (package / "model.py").write_text("WIDTH = 64\n")
    (package / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\x00")

    first = requests.build_source_tarball(repo_root=tmp_path, shared_modules=())
    (package / "train.py").touch()  # a newer mtime must not change the bytes
    assert requests.build_source_tarball(repo_root=tmp_path, shared_modules=()) == first
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(first))) as archive:
        assert sorted(archive.getnames()) == ["model.py", "train.py"]
        assert archive.extractfile("model.py").read() == b"WIDTH = 64\n"

    uri, data = requests.training_source_artifact(SETTINGS, repo_root=tmp_path, shared_modules=())
    assert data == first
    assert re.fullmatch(
        r"s3://headrace-test-lake/artifacts/training/[0-9a-f]{16}/sourcedir\.tar\.gz", uri
    )
    (package / "model.py").write_text("WIDTH = 128\n")
    assert (
        requests.training_source_artifact(SETTINGS, repo_root=tmp_path, shared_modules=())[0] != uri
    )


# --- the training DAG's requests: channels from the features manifest ------------------------

BUCKET = "headrace-test-lake"
TRAIN_FILES = [
    "part-00000-0a0a0a0a0a0a0a0a.snappy.parquet",
    "part-00001-1b1b1b1b1b1b1b1b.snappy.parquet",
]
HELD_OUT_FILE = "part-00000-2c2c2c2c2c2c2c2c.snappy.parquet"


@pytest.fixture
def aws_lake(monkeypatch, fresh_settings):
    """The aws target's settings, with the lake bucket in moto (in this process)."""
    import boto3
    from moto import mock_aws

    from include.config import get_settings

    monkeypatch.delenv("HEADRACE_LAKE_ROOT", raising=False)
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        get_settings.cache_clear()
        yield get_settings(), s3


def commit_features(s3, *, stale: bool = True) -> bytes:
    """A features partition as spark_jobs/features.py commits it; returns its manifest's bytes.

    With ``stale``, split=train also holds a file the manifest does not list (left by an earlier
    commit), which a folder channel would pick up.
    """
    prefix = f"lake/features/churn/ds={DS}"
    listed = [f"split=train/{name}" for name in TRAIN_FILES] + [
        f"split={split}/{HELD_OUT_FILE}" for split in ("validation", "test")
    ]
    for path in listed:
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{path}", Body=b"PAR1")
    if stale:
        s3.put_object(
            Bucket=BUCKET, Key=f"{prefix}/split=train/part-00007-stale.parquet", Body=b"x"
        )
    manifest = {
        "dataset": "churn",
        "ds": DS,
        "outputs": {
            "uri": f"s3://{BUCKET}/{prefix}",
            "files": [{"path": path, "size_bytes": 4, "sha256": "0" * 64} for path in listed],
        },
    }
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/_manifest.json", Body=data)
    return data


def read_object(s3, uri: str):
    key = uri.removeprefix(f"s3://{BUCKET}/")
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_training_channels_are_manifest_files_of_exactly_the_committed_files(aws_lake):
    settings, s3 = aws_lake
    manifest_bytes = commit_features(s3)
    body = training_jobs.training_job_request(
        settings, dataset="churn", ds=DS, job_name="headrace-churn-train-1", source_uri=SOURCE
    )
    # The body as it goes to SageMaker (s3:// URIs, no local spelling) fits botocore's model.
    validate_request("sagemaker", "CreateTrainingJob", body)

    digest = hashlib.sha256(manifest_bytes).hexdigest()[:16]
    inputs = f"s3://{BUCKET}/lake/models/churn/input/ds={DS}/{digest}"
    sources = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in body["InputDataConfig"]}
    for split in requests.TRAINING_CHANNELS:
        assert sources[split] == {
            "S3DataType": "ManifestFile",
            "S3Uri": f"{inputs}/{split}.manifest.json",
            "S3DataDistributionType": "FullyReplicated",
        }
    assert sources["code"]["S3DataType"] == "S3Prefix"
    # What SageMaker reads: the split's folder as prefix, then the files the manifest lists;
    # the stale file beside them is not among them.
    assert read_object(s3, sources["train"]["S3Uri"]) == [
        {"prefix": f"{FEATURES}/split=train/"},
        *TRAIN_FILES,
    ]
    assert read_object(s3, sources["test"]["S3Uri"]) == [
        {"prefix": f"{FEATURES}/split=test/"},
        HELD_OUT_FILE,
    ]

    # A retried task writes the same objects with the same bytes.
    key = sources["train"]["S3Uri"].removeprefix(f"s3://{BUCKET}/")
    before = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    again = training_jobs.training_job_request(
        settings, dataset="churn", ds=DS, job_name="headrace-churn-train-1", source_uri=SOURCE
    )
    assert again == body
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == before
    # Written like every lake object on aws: encrypted with the lake's key.
    assert s3.head_object(Bucket=BUCKET, Key=key)["SSEKMSKeyId"] == KMS_KEY_ARN

    # The tuning job's training jobs read the same channels.
    tuning = training_jobs.tuning_job_request(
        settings, dataset="churn", ds=DS, tuning_job_name="headrace-churn-tune-1",
        source_uri=SOURCE,
    )  # fmt: skip
    validate_request("sagemaker", "CreateHyperParameterTuningJob", tuning)
    assert tuning["TrainingJobDefinition"]["InputDataConfig"] == body["InputDataConfig"]
    # Tagged with the features day it trains on, and the job's tags when the operator gives them.
    assert body["Tags"] == [
        {"Key": "project", "Value": "headrace"},
        {"Key": "dataset", "Value": "churn"},
        {"Key": "features-ds", "Value": DS},
    ]
    tagged = training_jobs.tuning_job_request(
        settings, dataset="churn", ds=DS, tuning_job_name="headrace-churn-tune-1",
        source_uri=SOURCE, tags=job_tags("churn", dag_id="churn_training", run_id=RUN_ID),
    )  # fmt: skip
    assert tagged["Tags"] == [*JOB_TAGS, {"Key": "features-ds", "Value": DS}]


def test_a_new_commit_of_the_partition_gets_new_channel_manifests(aws_lake):
    settings, s3 = aws_lake
    commit_features(s3)
    first = training_jobs.write_training_channels(settings, "churn", DS)
    commit_features(s3, stale=False)  # the same files; the manifest's bytes are the same too
    assert training_jobs.write_training_channels(settings, "churn", DS) == first

    manifest_key = f"lake/features/churn/ds={DS}/_manifest.json"
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
    manifest["outputs"]["files"] = manifest["outputs"]["files"][1:]  # a re-commit: one file less
    s3.put_object(Bucket=BUCKET, Key=manifest_key, Body=json.dumps(manifest).encode())
    second = training_jobs.write_training_channels(settings, "churn", DS)
    assert second["train"] != first["train"]
    assert read_object(s3, second["train"])[1:] == TRAIN_FILES[1:]
    # The old commit's manifest is left as it was, for a job that still reads it.
    assert read_object(s3, first["train"])[1:] == TRAIN_FILES


def test_training_on_an_uncommitted_or_incomplete_partition_is_refused(aws_lake):
    settings, s3 = aws_lake
    with pytest.raises(
        FileNotFoundError, match=rf"features/churn/ds={DS}/_manifest\.json does not"
    ):
        training_jobs.training_job_request(
            settings, dataset="churn", ds=DS, job_name="headrace-churn-train-1", source_uri=SOURCE
        )
    manifest = {"outputs": {"files": [{"path": f"split=train/{TRAIN_FILES[0]}"}]}}
    s3.put_object(
        Bucket=BUCKET,
        Key=f"lake/features/churn/ds={DS}/_manifest.json",
        Body=json.dumps(manifest).encode(),
    )
    with pytest.raises(ValueError, match="lists no files under split=validation/"):
        training_jobs.write_training_channels(settings, "churn", DS)


def test_training_job_carries_the_datasets_capacity_over_the_settings(tmp_path):
    import yaml

    from include.config import DATASETS_DIR, dataset_capacity, with_training_capacity

    raw = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    raw["capacity"] = {
        "training": {
            "instance_type": "ml.g5.12xlarge",
            "instance_count": 2,
            "max_runtime_minutes": 60,
        }
    }
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(raw))
    capacity = dataset_capacity("churn", tmp_path).training

    body = training_request(with_training_capacity(SETTINGS, capacity))
    validate_request("sagemaker", "CreateTrainingJob", body)
    assert (body["ResourceConfig"]["InstanceType"], body["ResourceConfig"]["InstanceCount"]) == (
        "ml.g5.12xlarge",
        2,
    )
    assert body["StoppingCondition"]["MaxRuntimeInSeconds"] == 3600
    # A spec that says nothing keeps HEADRACE_TRAINING_*.
    silent = training_request(with_training_capacity(SETTINGS, dataset_capacity("churn").training))
    assert silent["ResourceConfig"]["InstanceType"] == SETTINGS.training.instance_type
    assert silent["StoppingCondition"] == training_request()["StoppingCondition"]
