"""The IAM policies of infra/headrace.yaml: parliament finds nothing beyond the documented
exceptions, every grant is scoped to the lake bucket and the headrace resources, and the requests
the pipeline code really builds are allowed while insecure variants of them are not.

Every exception below carries its reason; a finding or wildcard that is not listed fails the
test, and so does a listed exception that no longer matches anything (a stale entry).
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path

import pytest
from infra_policy_checks import (
    allows,
    is_identity_policy,
    iter_statements,
    minified_size,
    pass_role_problems,
    s3_object_arn,
    s3_resource_problems,
    wildcard_problems,
    with_statement,
)

from include.config import load_settings
from include.job_names import TaskRunIdentity
from infra import policy_documents as cfn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # parliament imports pkg_resources
    from parliament import analyze_policy_string

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from training_helpers import commit_s3_features

BUCKET = cfn.EXAMPLE_PARAMETERS["BucketName"]
ROLES = ("MwaaExecutionRole", "SageMakerExecutionRole", "GlueJobRole", "EmrServerlessJobRole")
ROLE_POLICIES = {
    "MwaaExecutionRole": (
        "MwaaEnvironmentPolicy",
        "MwaaLakePolicy",
        "MwaaSageMakerPolicy",
        "MwaaSparkJobsPolicy",
    ),
    "SageMakerExecutionRole": ("SageMakerJobPolicy",),
    "GlueJobRole": ("SparkLakePolicy", "GlueJobPolicy"),
    "EmrServerlessJobRole": ("SparkLakePolicy", "EmrServerlessJobPolicy"),
}
# IAM's quota for one managed policy (characters, whitespace not counted).
MANAGED_POLICY_MAX_CHARS = 6144

# Allow statements with Resource "*" (or a wildcard account), and why each must be so.
WILDCARD_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("MwaaEnvironmentPolicy", "CheckAccountPublicAccessBlock"): (
        "s3:GetAccountPublicAccessBlock has no resource type; MWAA checks the account's block "
        "(AWS's MWAA execution-role policy)"
    ),
    ("MwaaEnvironmentPolicy", "DescribeLogGroups"): (
        "logs:DescribeLogGroups has no resource type (AWS's MWAA execution-role policy)"
    ),
    ("MwaaEnvironmentPolicy", "PublishAirflowMetrics"): (
        "cloudwatch:PutMetricData has no resource type; MWAA publishes environment metrics "
        "(AWS's MWAA execution-role policy)"
    ),
    ("MwaaEnvironmentPolicy", "UseCeleryQueues"): (
        "MWAA's Celery queues live in an account of the MWAA service, so the account is a "
        "wildcard; the name is not (arn:aws:sqs:<region>:*:airflow-celery-*, as AWS documents)"
    ),
    ("MwaaSageMakerPolicy", "ListModelVersions"): (
        "sagemaker:ListModelPackages is authorized without a resource; the registry lists the "
        "versions of its headrace-<dataset> group"
    ),
    ("MwaaSageMakerPolicy", "ReadServiceQuotas"): (
        "servicequotas:ListServiceQuotas and ListAWSDefaultServiceQuotas have no resource type; "
        "include/quotas.py reads the SageMaker quotas before a run starts its jobs (read-only)"
    ),
    ("MwaaSparkJobsPolicy", "CreateGlueSecurityConfiguration"): (
        "glue:CreateSecurityConfiguration has no resource type"
    ),
    ("MwaaSparkJobsPolicy", "FindSubnetZone"): (
        "ec2:DescribeSubnets has no resource type; the Glue network connection needs the "
        "subnet's availability zone"
    ),
    ("MwaaSparkJobsPolicy", "CreateQualityRulesets"): (
        "glue:CreateDataQualityRuleset has no resource type; limited to requests tagged "
        "project=headrace, as include/dq/glue_data_quality.py tags every ruleset"
    ),
    ("SageMakerJobPolicy", "PublishJobMetrics"): (
        "cloudwatch:PutMetricData has no resource type; limited to /aws/sagemaker/* namespaces"
    ),
    ("SageMakerJobPolicy", "GetRegistryToken"): (
        "ecr:GetAuthorizationToken has no resource type; pulling the PyTorch images needs it"
    ),
    ("SageMakerJobPolicy", "DescribeJobNetwork"): (
        "EC2 Describe* actions have no resource type; SageMaker describes the VPC it attaches to"
    ),
    ("GlueJobPolicy", "PublishGlueMetrics"): (
        "cloudwatch:PutMetricData has no resource type; limited to the Glue namespace"
    ),
    ("GlueJobPolicy", "DescribeJobNetwork"): (
        "EC2 Describe* actions have no resource type; Glue describes the VPC of its connection"
    ),
}

# Parliament findings (policy, statement Sid, issue) that are expected, and why.
_SPLIT_ENI = (
    "the AWS-documented way to keep job interfaces in one VPC: ec2:CreateNetworkInterface on "
    "subnets and security groups under an ec2:Vpc condition in one statement, on the new "
    "interface (which has no ec2:Vpc key) in the other; parliament checks each statement alone"
)
_PASS_ROLE = "iam:PassRole is the point: one role, one service (iam:PassedToService)"
_GRANT = (
    "kms:CreateGrant lets SageMaker encrypt job volumes with the lake key; only for AWS "
    "resources (kms:GrantIsForAWSResource)"
)
_KEY_POLICY = "in a key policy Resource '*' means this key"
PARLIAMENT_EXCEPTIONS: dict[tuple[str, str, str], str] = {
    ("GlueJobPolicy", "AttachToJobSubnets", "RESOURCE_MISMATCH"): _SPLIT_ENI,
    ("GlueJobPolicy", "CreateJobInterfaces", "RESOURCE_MISMATCH"): _SPLIT_ENI,
    ("SageMakerJobPolicy", "AttachToJobSubnets", "RESOURCE_MISMATCH"): _SPLIT_ENI,
    ("SageMakerJobPolicy", "CreateJobInterfaces", "RESOURCE_MISMATCH"): _SPLIT_ENI,
    ("MwaaSageMakerPolicy", "PassSageMakerRole", "PERMISSIONS_MANAGEMENT_ACTIONS"): _PASS_ROLE,
    ("MwaaSparkJobsPolicy", "PassGlueRole", "PERMISSIONS_MANAGEMENT_ACTIONS"): _PASS_ROLE,
    ("MwaaSparkJobsPolicy", "PassEmrServerlessRole", "PERMISSIONS_MANAGEMENT_ACTIONS"): _PASS_ROLE,
    ("MwaaSageMakerPolicy", "GrantJobVolumeEncryption", "PERMISSIONS_MANAGEMENT_ACTIONS"): _GRANT,
    ("SageMakerJobPolicy", "EncryptJobVolumes", "PERMISSIONS_MANAGEMENT_ACTIONS"): _GRANT,
    ("SageMakerJobPolicy", "ManageJobInterfaces", "PERMISSIONS_MANAGEMENT_ACTIONS"): (
        "ec2:CreateNetworkInterfacePermission lets SageMaker use the interfaces it creates in "
        "the job VPC (ec2:Vpc condition)"
    ),
    ("SageMakerJobPolicy", "GetRegistryToken", "CREDENTIALS_EXPOSURE"): (
        "an ECR token is how SageMaker pulls the PyTorch training and inference images"
    ),
    ("LakeKey", "EnableAccountIamPolicies", "RESOURCE_STAR"): (
        f"AWS's default key policy statement (IAM policies decide who uses the key); {_KEY_POLICY}"
    ),
    ("LakeKey", "EnableAccountIamPolicies", "PERMISSIONS_MANAGEMENT_ACTIONS"): (
        "AWS's default key policy statement: the account administers its own key"
    ),
    ("LakeKey", "AllowAirflowAndGlueLogGroups", "RESOURCE_STAR"): (
        f"{_KEY_POLICY}; limited to the airflow-<env>-* and /aws-glue/* log groups"
    ),
    ("LakeKey", "AllowLakeBucketNotifications", "RESOURCE_STAR"): (
        f"{_KEY_POLICY}; limited to the lake bucket of this account"
    ),
}


def parliament_findings(documents) -> set[tuple[str, str, str]]:
    """``(policy, sid, issue)`` of every finding, each statement analyzed on its own so a finding
    names its statement; community auditors included. Trust policies are left to
    :func:`test_roles_trust_only_their_service_in_this_account` (parliament reads a trust
    policy's missing Resource as malformed)."""
    found = set()
    for name, document in sorted(documents.items()):
        if name.endswith(".trust"):
            continue
        for statement in document["Statement"]:
            single = json.dumps({"Version": document["Version"], "Statement": [statement]})
            policy = analyze_policy_string(single, include_community_auditors=True)
            found |= {(name, statement.get("Sid", "?"), f.issue) for f in policy.findings}
        # What only shows on the whole document (e.g. duplicate Sids) must be explained too.
        whole = analyze_policy_string(json.dumps(document), include_community_auditors=True)
        explained = {issue for policy, _, issue in found if policy == name}
        found |= {(name, "<document>", f.issue) for f in whole.findings} - {
            (name, "<document>", issue) for issue in explained
        }
    return found


def role_documents(documents, role: str) -> list[dict]:
    return [documents[name] for name in ROLE_POLICIES[role]]


def role_arns(resolver) -> dict[str, str]:
    return {role: resolver.resolve({"Fn::GetAtt": [role, "Arn"]}) for role in ROLES}


# --- the files reviewers read -------------------------------------------------------------------


def test_policy_files_match_the_template(template):
    rendered = cfn.policy_documents(template, cfn.EXAMPLE_PARAMETERS)
    on_disk = {path.stem: path.read_text() for path in cfn.POLICIES_DIR.glob("*.json")}
    stale = "stale: run .venv/bin/python infra/policy_documents.py"
    assert sorted(on_disk) == sorted(rendered), stale
    for name, document in rendered.items():
        assert on_disk[name] == cfn.render(document), f"{name}.json is {stale}"


def test_roles_attach_exactly_their_managed_policies(template):
    for role, policies in ROLE_POLICIES.items():
        attached = template["Resources"][role]["Properties"]["ManagedPolicyArns"]
        assert sorted(ref["Ref"] for ref in attached) == sorted(policies), role
        assert "Policies" not in template["Resources"][role]["Properties"], role


# --- linters and structure -------------------------------------------------------------------------


def test_parliament_reports_only_the_documented_exceptions(deployment):
    _, _, documents = deployment
    found = parliament_findings(documents)
    assert found - set(PARLIAMENT_EXCEPTIONS) == set()
    # Stale exceptions: every listed one of a policy this deployment has still occurs.
    expected = {key for key in PARLIAMENT_EXCEPTIONS if key[0] in documents}
    assert expected - found == set()


def test_no_wildcards_beyond_the_documented_exceptions(deployment):
    _, _, documents = deployment
    problems = wildcard_problems(documents, WILDCARD_EXCEPTIONS)
    assert problems == []
    used = {(policy, sid) for policy, sid, _ in wildcard_problems(documents, ())}
    assert set(WILDCARD_EXCEPTIONS) - used == set(), "stale wildcard exceptions"


def test_pass_role_is_limited_to_one_role_and_its_service(deployment):
    _, resolver, documents = deployment
    assert pass_role_problems(documents, role_arns(resolver)) == []
    granted = [
        statement["Resource"]
        for _, statement in iter_statements(documents)
        if statement.get("Action") == "iam:PassRole"
    ]
    assert len(granted) == 3  # SageMaker, Glue and EMR Serverless roles, each once


def test_every_s3_resource_lies_in_the_lake_bucket(deployment):
    _, _, documents = deployment
    assert s3_resource_problems(documents, BUCKET) == []


def test_managed_policies_fit_the_iam_size_quota(deployment):
    _, resolver, documents = deployment
    for name, document in documents.items():
        if resolver.resources.get(name, {}).get("Type") == "AWS::IAM::ManagedPolicy":
            assert is_identity_policy(name, document)
            assert minified_size(document) <= MANAGED_POLICY_MAX_CHARS, name


def test_roles_trust_only_their_service_in_this_account(example):
    _, _, documents = example
    services = {
        "MwaaExecutionRole": ["airflow.amazonaws.com", "airflow-env.amazonaws.com"],
        "SageMakerExecutionRole": "sagemaker.amazonaws.com",
        "GlueJobRole": "glue.amazonaws.com",
        "EmrServerlessJobRole": "emr-serverless.amazonaws.com",
    }
    for role, service in services.items():
        (statement,) = documents[f"{role}.trust"]["Statement"]
        assert statement["Principal"] == {"Service": service}, role
        assert statement["Action"] == "sts:AssumeRole"
        # Confused-deputy protection: only this account's resources may make the service assume it.
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": cfn.ACCOUNT_ID}}


# --- mutations: the checks catch wrong policies --------------------------------------------------


def test_checks_catch_a_pass_role_without_its_service_condition(example):
    _, resolver, documents = example
    arns = role_arns(resolver)
    wrong = with_statement(
        documents, "MwaaSparkJobsPolicy", "PassGlueRole", lambda s: s.pop("Condition")
    )
    assert pass_role_problems(wrong, arns) == [
        "MwaaSparkJobsPolicy/PassGlueRole: iam:PassRole without an iam:PassedToService condition"
    ]
    # And what that would mean: the Glue role could be handed to any service.
    to_ec2 = {"iam:PassedToService": "ec2.amazonaws.com"}
    glue_role = arns["GlueJobRole"]
    assert not allows(
        role_documents(documents, "MwaaExecutionRole"), "iam:PassRole", glue_role, to_ec2
    )
    assert allows(role_documents(wrong, "MwaaExecutionRole"), "iam:PassRole", glue_role, to_ec2)


def test_checks_catch_pass_role_on_any_role_or_to_the_wrong_service(example):
    _, resolver, documents = example
    arns = role_arns(resolver)
    any_role = with_statement(
        documents, "MwaaSageMakerPolicy", "PassSageMakerRole", lambda s: s.update(Resource="*")
    )
    assert pass_role_problems(any_role, arns) == [
        "MwaaSageMakerPolicy/PassSageMakerRole: iam:PassRole on '*', not one headrace job role"
    ]
    wrong_service = with_statement(
        documents,
        "MwaaSageMakerPolicy",
        "PassSageMakerRole",
        lambda s: s["Condition"]["StringEquals"].update(
            {"iam:PassedToService": "glue.amazonaws.com"}
        ),
    )
    (problem,) = pass_role_problems(wrong_service, arns)
    assert "not only sagemaker.amazonaws.com" in problem


def test_checks_catch_a_widened_resource_and_action(example):
    _, _, documents = example
    widened = with_statement(
        documents, "MwaaLakePolicy", "ReadWriteLake", lambda s: s.update(Resource="*")
    )
    assert wildcard_problems(widened, WILDCARD_EXCEPTIONS) == [
        ("MwaaLakePolicy", "ReadWriteLake", "Resource *")
    ]
    all_s3 = with_statement(
        documents, "SparkLakePolicy", "WriteCuratedZones", lambda s: s.update(Action="s3:*")
    )
    assert wildcard_problems(all_s3, WILDCARD_EXCEPTIONS) == [
        ("SparkLakePolicy", "WriteCuratedZones", "Action s3:*")
    ]
    any_account = with_statement(
        documents,
        "MwaaLakePolicy",
        "PublishDriftAlerts",
        lambda s: s.update(Resource="arn:aws:sns:eu-west-1:*:headrace-drift-alerts"),
    )
    assert wildcard_problems(any_account, WILDCARD_EXCEPTIONS) == [
        (
            "MwaaLakePolicy",
            "PublishDriftAlerts",
            "wildcard account/region in arn:aws:sns:eu-west-1:*:headrace-drift-alerts",
        )
    ]


def test_checks_catch_a_resource_outside_the_bucket(example):
    _, _, documents = example
    elsewhere = with_statement(
        documents,
        "SageMakerJobPolicy",
        "WriteJobOutputs",
        lambda s: s["Resource"].append("arn:aws:s3:::example-headrace-lake-copy/lake/models/*"),
    )
    assert s3_resource_problems(elsewhere, BUCKET) == [
        "SageMakerJobPolicy/WriteJobOutputs: arn:aws:s3:::example-headrace-lake-copy/lake/models/*"
    ]


def test_parliament_catches_a_new_finding(example):
    _, _, documents = example
    typo = with_statement(
        documents,
        "MwaaSageMakerPolicy",
        "TrackAndStopJobs",
        lambda s: s["Action"].append("sagemaker:DescribeTrainingJobs"),
    )
    new = parliament_findings(typo) - set(PARLIAMENT_EXCEPTIONS)
    assert ("MwaaSageMakerPolicy", "TrackAndStopJobs", "UNKNOWN_ACTION") in new


# --- the requests the pipeline code builds are allowed, insecure variants are not ----------------


@pytest.fixture
def aws_settings(deployment, headrace_env, fresh_settings):
    """Settings as MWAA's startup script gives them to include/config.py."""
    _, resolver, documents = deployment
    env = {**headrace_env, "AWS_DEFAULT_REGION": cfn.REGION}
    return load_settings(env), resolver, documents


def _sagemaker_arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{cfn.REGION}:{cfn.ACCOUNT_ID}:{kind}/{name}"


@pytest.fixture
def aws_lake(aws_settings, headrace_env, monkeypatch):
    """The deployment's lake bucket in moto (in this process), with a committed features
    partition of churn; the worker's settings (``get_settings``) are the deployment's too, as
    include/storage.py reads them. Yields ``aws_settings``' triple plus the partition's manifest
    bytes and split → listed file names."""
    import boto3
    from moto import mock_aws

    from include.config import get_settings

    settings, resolver, documents = aws_settings
    for variable, value in headrace_env.items():
        monkeypatch.setenv(variable, value)
    # The suite's local-only run-state folder (tests/conftest.py): MWAA never exports it.
    monkeypatch.delenv("HEADRACE_LOCAL_RUNS_DIR", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", cfn.REGION)
    get_settings.cache_clear()
    assert get_settings() == settings
    with mock_aws():
        s3 = boto3.client("s3", region_name=cfn.REGION)
        bucket = settings.aws.bucket
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": cfn.REGION}
        )
        manifest, files = commit_s3_features(s3, bucket)
        yield settings, resolver, documents, manifest, files


def test_training_job_requests_are_allowed_only_with_their_security_settings(aws_lake):
    from include.sagemaker_requests import training_source_artifact
    from include.storage import storage_for
    from include.training_jobs import training_job_request

    settings, _, documents, features_manifest, features_files = aws_lake
    identity = TaskRunIdentity("churn_training", "manual__2026-01-08T00:00:00+00:00", "train")
    job_name = identity.name_for("sagemaker")
    source_uri, _ = training_source_artifact(settings)
    request = training_job_request(
        settings, dataset="churn", ds="2026-01-07", job_name=job_name, source_uri=source_uri
    )
    mwaa = role_documents(documents, "MwaaExecutionRole")
    context = {
        "sagemaker:NetworkIsolation": request["EnableNetworkIsolation"],
        "sagemaker:InterContainerTrafficEncryption": request[
            "EnableInterContainerTrafficEncryption"
        ],
        "sagemaker:VolumeKmsKey": request["ResourceConfig"]["VolumeKmsKeyId"],
        "sagemaker:OutputKmsKey": request["OutputDataConfig"]["KmsKeyId"],
        "sagemaker:VpcSubnets": request["VpcConfig"]["Subnets"],
        "sagemaker:VpcSecurityGroupIds": request["VpcConfig"]["SecurityGroupIds"],
    }
    job_arn = _sagemaker_arn("training-job", job_name)
    assert allows(mwaa, "sagemaker:CreateTrainingJob", job_arn, context)
    assert allows(mwaa, "sagemaker:AddTags", job_arn)
    assert allows(mwaa, "sagemaker:StopTrainingJob", job_arn)
    assert allows(
        mwaa, "iam:PassRole", request["RoleArn"], {"iam:PassedToService": "sagemaker.amazonaws.com"}
    )
    # The same job without network isolation, outside the VPC or with another key: refused.
    for insecure in (
        {"sagemaker:NetworkIsolation": False},
        {"sagemaker:VpcSubnets": ["subnet-0aaaaaaaaaaaaaaaa"]},
        {"sagemaker:OutputKmsKey": f"arn:aws:kms:{cfn.REGION}:{cfn.ACCOUNT_ID}:key/other"},
    ):
        assert not allows(mwaa, "sagemaker:CreateTrainingJob", job_arn, {**context, **insecure})
    without_vpc = {k: v for k, v in context.items() if not k.startswith("sagemaker:Vpc")}
    assert not allows(mwaa, "sagemaker:CreateTrainingJob", job_arn, without_vpc)
    # A job not named by include/job_names.py is refused too.
    assert not allows(
        mwaa, "sagemaker:CreateTrainingJob", _sagemaker_arn("training-job", "x"), context
    )

    # The job's own role reads the code, every channel's manifest file and each file it lists
    # (SageMaker reads both with the job's role), writes the model and checkpoints.
    sagemaker = role_documents(documents, "SageMakerExecutionRole")
    sources = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in request["InputDataConfig"]
    }
    assert sources["code"]["S3Uri"] == source_uri
    assert allows(sagemaker, "s3:GetObject", s3_object_arn(source_uri))
    lake = f"s3://{settings.aws.bucket}/lake"
    digest = hashlib.sha256(features_manifest).hexdigest()[:16]
    features = f"{lake}/features/churn/ds=2026-01-07"
    for split, names in features_files.items():
        manifest_uri = f"{lake}/models/churn/input/ds=2026-01-07/{digest}/{split}.manifest.json"
        assert sources[split] == {
            "S3DataType": "ManifestFile",
            "S3Uri": manifest_uri,
            "S3DataDistributionType": "FullyReplicated",
        }
        assert allows(sagemaker, "s3:GetObject", s3_object_arn(manifest_uri)), manifest_uri
        prefix, *keys = json.loads(storage_for(manifest_uri).read_bytes(manifest_uri))
        assert prefix == {"prefix": f"{features}/split={split}/"} and keys == names
        for key in keys:
            data_file = s3_object_arn(prefix["prefix"] + key)
            assert allows(sagemaker, "s3:GetObject", data_file), data_file
        # MWAA wrote the channel manifest while building the request.
        assert allows(mwaa, "s3:PutObject", s3_object_arn(manifest_uri)), manifest_uri
    # …having checked and read the features manifest to learn the files.
    assert allows(mwaa, "s3:ListBucket", f"arn:aws:s3:::{settings.aws.bucket}")
    assert allows(mwaa, "s3:GetObject", s3_object_arn(f"{features}/_manifest.json"))
    output = request["OutputDataConfig"]["S3OutputPath"] + f"/{job_name}/output/model.tar.gz"
    assert allows(sagemaker, "s3:PutObject", s3_object_arn(output))
    checkpoint = s3_object_arn(request["CheckpointConfig"]["S3Uri"] + "/checkpoint-200.pt")
    for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
        assert allows(sagemaker, action, checkpoint), action
    # …and nothing it has no business with: raw landing files, or deleting the features.
    assert not allows(
        sagemaker, "s3:GetObject", s3_object_arn(f"s3://{BUCKET}/lake/landing/churn/x.csv")
    )
    assert not allows(
        sagemaker,
        "s3:DeleteObject",
        s3_object_arn(f"{features}/split=train/{features_files['train'][0]}"),
    )
    assert not allows(sagemaker, "s3:DeleteObject", s3_object_arn(sources["train"]["S3Uri"]))
    # MWAA uploads the code tarball the job reads.
    assert allows(mwaa, "s3:PutObject", s3_object_arn(source_uri))


def test_the_drift_job_request_is_allowed_only_with_its_security_settings(aws_settings):
    """The monitoring DAG's processing job: MWAA starts it only isolated, encrypted and in the
    VPC; its role reads the day's curated and predictions files, the baseline and the plan, and
    writes the day's monitoring folder, nothing else of the lake."""
    from include.sagemaker_requests import build_processing_job_request

    settings, _, documents = aws_settings
    identity = TaskRunIdentity("churn_monitoring", "manual__2026-01-08T00:00:00+00:00", "drift_job")
    job_name = identity.name_for("sagemaker")
    lake = f"s3://{settings.aws.bucket}/lake"
    monitoring = f"{lake}/monitoring/churn/model_version=2/ds=2026-01-07"
    job_root = f"{monitoring}/job/0123456789abcdef"
    source_uri = f"s3://{settings.aws.bucket}/artifacts/training/0123456789abcdef/sourcedir.tar.gz"
    request = build_processing_job_request(
        settings, job_name=job_name, entry_point="process.py", source_uri=source_uri,
        inputs={"plan": f"{job_root}/plan",
                "baseline": f"{lake}/monitoring/churn/baselines/ds=2026-01-06/job-1"},
        manifest_inputs={"curated": f"{job_root}/curated.manifest.json",
                         "predictions": f"{job_root}/predictions.manifest.json"},
        outputs={"monitoring": monitoring}, arguments=["drift"],
    )  # fmt: skip
    network = request["NetworkConfig"]
    context = {
        "sagemaker:NetworkIsolation": network["EnableNetworkIsolation"],
        "sagemaker:InterContainerTrafficEncryption": network[
            "EnableInterContainerTrafficEncryption"
        ],
        "sagemaker:VolumeKmsKey": request["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"],
        "sagemaker:OutputKmsKey": request["ProcessingOutputConfig"]["KmsKeyId"],
        "sagemaker:VpcSubnets": network["VpcConfig"]["Subnets"],
        "sagemaker:VpcSecurityGroupIds": network["VpcConfig"]["SecurityGroupIds"],
    }
    mwaa = role_documents(documents, "MwaaExecutionRole")
    job_arn = _sagemaker_arn("processing-job", job_name)
    assert allows(mwaa, "sagemaker:CreateProcessingJob", job_arn, context)
    for action in ("sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob",
                   "sagemaker:AddTags"):  # fmt: skip
        assert allows(mwaa, action, job_arn), action
    for insecure in (
        {"sagemaker:NetworkIsolation": False},
        {"sagemaker:VpcSubnets": ["subnet-0aaaaaaaaaaaaaaaa"]},
        {"sagemaker:VolumeKmsKey": f"arn:aws:kms:{cfn.REGION}:{cfn.ACCOUNT_ID}:key/other"},
    ):
        assert not allows(mwaa, "sagemaker:CreateProcessingJob", job_arn, {**context, **insecure})
    # MWAA writes the plan and the channel manifests.
    for uri in (f"{job_root}/plan/plan.json", f"{job_root}/curated.manifest.json"):
        assert allows(mwaa, "s3:PutObject", s3_object_arn(uri)), uri

    sagemaker = role_documents(documents, "SageMakerExecutionRole")
    reads = [
        source_uri,
        f"{job_root}/plan/plan.json",
        f"{job_root}/predictions.manifest.json",
        f"{lake}/monitoring/churn/baselines/ds=2026-01-06/job-1/reference_profile.json",
        f"{lake}/curated/churn/ds=2026-01-07/abc/part-00000.parquet",
        f"{lake}/predictions/churn/ds=2026-01-07/abc/part-00000.parquet",
    ]
    for uri in reads:
        assert allows(sagemaker, "s3:GetObject", s3_object_arn(uri)), uri
    assert allows(sagemaker, "s3:PutObject", s3_object_arn(f"{monitoring}/drift_report.json"))
    assert not allows(
        sagemaker, "s3:GetObject", s3_object_arn(f"{lake}/landing/churn/ds=2026-01-07/x.csv")
    )
    assert not allows(
        sagemaker, "s3:PutObject", s3_object_arn(f"{lake}/curated/churn/ds=2026-01-07/x.parquet")
    )


def test_spark_job_requests_are_allowed_for_the_configured_engine(aws_settings):
    from include import spark_job_requests as spark

    settings, _, documents = aws_settings
    mwaa = role_documents(documents, "MwaaExecutionRole")
    for uri in spark.spark_job_artifacts(settings, "ingest"):
        assert allows(mwaa, "s3:PutObject", s3_object_arn(uri)), uri

    if settings.aws.spark_engine == "glue":
        job = spark.build_glue_job_request(settings, "ingest")
        job_arn = f"arn:aws:glue:{cfn.REGION}:{cfn.ACCOUNT_ID}:job/{job['Name']}"
        for action in (
            "glue:CreateJob",
            "glue:StartJobRun",
            "glue:BatchStopJobRun",
            "glue:TagResource",
        ):
            assert allows(mwaa, action, job_arn), action
        assert allows(
            mwaa, "iam:PassRole", job["Role"], {"iam:PassedToService": "glue.amazonaws.com"}
        )
        assert not allows(
            mwaa, "iam:PassRole", job["Role"], {"iam:PassedToService": "sagemaker.amazonaws.com"}
        )
        glue = role_documents(documents, "GlueJobRole")
        assert allows(glue, "s3:GetObject", s3_object_arn(job["Command"]["ScriptLocation"]))
        assert allows(
            glue, "s3:GetObject", s3_object_arn(job["DefaultArguments"]["--extra-py-files"])
        )
        assert allows(
            glue, "s3:PutObject", s3_object_arn(job["DefaultArguments"]["--TempDir"] + "part")
        )
        job_role = glue
    else:
        run = spark.build_emr_serverless_start_job_run_request(
            settings, "ingest", ["--ds", "2026-01-07"], name="headrace-ingest-x", client_token="t"
        )
        application = f"arn:aws:emr-serverless:{cfn.REGION}:{cfn.ACCOUNT_ID}:/applications/{run['applicationId']}"
        assert allows(mwaa, "emr-serverless:StartJobRun", application)
        assert allows(mwaa, "emr-serverless:CancelJobRun", application + "/jobruns/00f1run")
        assert not allows(
            mwaa,
            "emr-serverless:StartJobRun",
            application.replace(run["applicationId"], "00f0other0000002"),
        )
        assert allows(
            mwaa,
            "iam:PassRole",
            run["executionRoleArn"],
            {"iam:PassedToService": "emr-serverless.amazonaws.com"},
        )
        emr = role_documents(documents, "EmrServerlessJobRole")
        submit = run["jobDriver"]["sparkSubmit"]
        assert allows(emr, "s3:GetObject", s3_object_arn(submit["entryPoint"]))
        log_uri = run["configurationOverrides"]["monitoringConfiguration"][
            "s3MonitoringConfiguration"
        ]["logUri"]
        assert allows(emr, "s3:PutObject", s3_object_arn(log_uri + "applications/x/stdout.gz"))
        job_role = emr

    # Ingest: reads landing and the salt, writes curated and quarantine, never the raw files.
    landing = s3_object_arn(f"{settings.zone_uri('landing')}/churn/2026-01-07/part-0.csv")
    curated = s3_object_arn(f"{settings.zone_uri('curated')}/churn/ds=2026-01-07/_manifest.json")
    assert allows(job_role, "s3:GetObject", landing)
    assert not allows(job_role, "s3:PutObject", landing)
    assert not allows(job_role, "s3:DeleteObject", landing)
    assert allows(job_role, "s3:PutObject", curated)
    assert allows(job_role, "secretsmanager:GetSecretValue", settings.aws.pii_salt_secret_arn)
    assert not allows(job_role, "s3:PutObject", s3_object_arn(f"s3://{BUCKET}/dags/evil.py"))


def test_the_quota_pre_check_may_read_quotas_and_change_none(example):
    """Every Service Quotas call include/quotas.py makes is allowed to the MWAA role alone; a
    quota increase is not."""
    from include.quotas import LIST_OPERATIONS

    _, _, documents = example
    actions = [f"servicequotas:{operation}" for operation in LIST_OPERATIONS]
    assert actions == [
        "servicequotas:ListServiceQuotas",
        "servicequotas:ListAWSDefaultServiceQuotas",
    ]
    mwaa = role_documents(documents, "MwaaExecutionRole")
    for action in actions:
        assert allows(mwaa, action, "*"), action
        for role in ("SageMakerExecutionRole", "GlueJobRole", "EmrServerlessJobRole"):
            assert not allows(role_documents(documents, role), action, "*"), (role, action)
    assert not allows(mwaa, "servicequotas:RequestServiceQuotaIncrease", "*")


def test_run_notes_reach_the_airflow_api_as_user_of_this_environment_only(example):
    """include/run_note.py calls InvokeRestApi on its own environment as the User role (which
    may edit DAG runs); never as Op or Admin, never another environment, never a job role."""
    _, resolver, documents = example
    roles = f"arn:aws:airflow:{cfn.REGION}:{cfn.ACCOUNT_ID}:role"
    environment = resolver.resolve({"Ref": "EnvironmentName"})
    mwaa = role_documents(documents, "MwaaExecutionRole")
    assert allows(mwaa, "airflow:InvokeRestApi", f"{roles}/{environment}/User")
    for denied in ("Op", "Admin"):
        assert not allows(mwaa, "airflow:InvokeRestApi", f"{roles}/{environment}/{denied}")
    assert not allows(mwaa, "airflow:InvokeRestApi", f"{roles}/another-environment/User")
    assert not allows(mwaa, "airflow:CreateWebLoginToken", f"{roles}/{environment}/User")
    for role in ("SageMakerExecutionRole", "GlueJobRole", "EmrServerlessJobRole"):
        documents_of = role_documents(documents, role)
        assert not allows(documents_of, "airflow:InvokeRestApi", f"{roles}/{environment}/User")


def test_alerts_and_landing_events_reach_only_the_mwaa_role(aws_settings):
    settings, resolver, documents = aws_settings
    mwaa = role_documents(documents, "MwaaExecutionRole")
    queue_arn = resolver.resolve({"Fn::GetAtt": ["LandingQueue", "Arn"]})
    assert allows(mwaa, "sns:Publish", settings.aws.alerts_topic_arn)
    assert allows(mwaa, "sqs:ReceiveMessage", queue_arn)
    assert allows(mwaa, "sqs:DeleteMessage", queue_arn)
    assert not allows(mwaa, "sqs:SendMessage", queue_arn)  # only S3 sends
    for role in ("SageMakerExecutionRole", "GlueJobRole", "EmrServerlessJobRole"):
        assert not allows(
            role_documents(documents, role), "sns:Publish", settings.aws.alerts_topic_arn
        )
    # The DAG tasks may not rewrite the code MWAA runs.
    assert not allows(mwaa, "s3:PutObject", s3_object_arn(f"s3://{BUCKET}/dags/churn_dags.py"))
    assert allows(mwaa, "s3:GetObject", s3_object_arn(f"s3://{BUCKET}/plugins.zip"))
