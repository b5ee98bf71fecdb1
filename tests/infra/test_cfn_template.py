"""infra/headrace.yaml: cfn-lint finds nothing, and the resources are what the pipelines need.

The structural checks read the template as CloudFormation sees it (intrinsics resolved for an
example deployment by infra/policy_documents.py), so each would fail if the template were wrong:
an unversioned bucket, a missing public-access block, the MWAA environment pointing at other
object keys, a notification on another prefix, a config option config.py does not read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cfnlint.api import lint
from cfnlint.config import ManualArgs

from include.config import load_settings
from include.lineage import openlineage_transport
from infra import policy_documents as cfn

INFRA = Path(cfn.__file__).resolve().parent
# Regions MWAA, SageMaker, Glue and EMR Serverless all run in; the schemas differ per region.
LINT_REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]
# Findings cfn-lint may report without failing, each with the reason it is acceptable: none.
CFN_LINT_IGNORED: dict[str, str] = {}

# Settings config.py reads that are not for MWAA, and why.
NOT_FROM_MWAA = {
    "AWS_REGION": "MWAA sets the region of the environment itself",
    "AWS_DEFAULT_REGION": "MWAA sets the region of the environment itself",
    "HEADRACE_LOCAL_RUNS_DIR": "local target only (run state of local Spark jobs)",
    "HEADRACE_LANDING_INBOX": "local target only (a file:// inbox; on aws the SQS queue)",
    "HEADRACE_LANDING_POLL_S": "local target only (how often the local inbox is polled)",
}


def lint_findings(text: str) -> list[str]:
    matches = lint(text, config=ManualArgs(regions=LINT_REGIONS, include_checks=["I"]))
    return [
        f"{match.rule.id} {match.message} (line {match.linenumber})"
        for match in matches
        if match.rule.id not in CFN_LINT_IGNORED
    ]


def test_cfn_lint_reports_no_findings():
    assert sorted(INFRA.glob("*.yaml")) == [INFRA / "headrace.yaml"]
    assert lint_findings((INFRA / "headrace.yaml").read_text()) == []


def test_cfn_lint_catches_a_wrong_template():
    text = (INFRA / "headrace.yaml").read_text()
    broken = text.replace(
        "      WebserverAccessMode: PRIVATE_ONLY", "      WebserverAccess: PRIVATE"
    )
    assert broken != text
    findings = lint_findings(broken)
    assert any(
        finding.startswith("E3002") and "WebserverAccess" in f"{finding}" for finding in findings
    ), findings


# --- the bucket -----------------------------------------------------------------------------


def test_bucket_is_versioned_encrypted_with_the_key_and_private(example):
    _, resolver, _ = example
    bucket = resolver.resolve(resolver.resources["LakeBucket"]["Properties"])
    assert bucket["BucketName"] == cfn.EXAMPLE_PARAMETERS["BucketName"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": resolver.resolve({"Fn::GetAtt": ["LakeKey", "Arn"]}),
    }
    assert rule["BucketKeyEnabled"] is True
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    assert "LoggingConfiguration" not in bucket  # no access-log bucket given


def test_lineage_events_are_kept_unless_a_retention_period_is_set(template):
    """LineageRetentionDays 0 (the default) keeps lake/lineage/events/; a period expires the
    event files after it, and nothing else of the lake."""

    def rules(**parameters):
        resolver = cfn.Resolver(template, {**cfn.EXAMPLE_PARAMETERS, **parameters})
        bucket = resolver.resolve(resolver.resources["LakeBucket"]["Properties"])
        return {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}

    assert sorted(rules()) == ["expire-old-versions"]
    assert sorted(rules(LineageRetentionDays="0")) == ["expire-old-versions"]
    lineage = rules(LineageRetentionDays="2557")["expire-lineage-events"]
    assert lineage == {
        "Id": "expire-lineage-events",
        "Status": "Enabled",
        "Prefix": "lake/lineage/events/",
        "ExpirationInDays": "2557",
    }


def test_a_passed_key_and_access_logging_are_used(template):
    parameters = cfn.EXAMPLE_PARAMETERS_BRING_YOUR_OWN
    resolver = cfn.Resolver(template, parameters)
    assert not resolver.active("LakeKey")
    bucket = resolver.resolve(resolver.resources["LakeBucket"]["Properties"])
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == parameters["KmsKeyArn"]
    assert bucket["LoggingConfiguration"] == {
        "DestinationBucketName": "example-access-logs",
        "LogFilePrefix": "s3-access/example-headrace-lake/",
    }
    for logical_id in ("LandingQueue", "LandingDeadLetterQueue", "AlertsTopic"):
        properties = resolver.resolve(resolver.resources[logical_id]["Properties"])
        assert properties["KmsMasterKeyId"] == parameters["KmsKeyArn"], logical_id


def test_bucket_policy_denies_every_request_without_tls(example):
    _, _, documents = example
    (statement,) = documents["LakeBucketPolicy"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Resource"] == [
        "arn:aws:s3:::example-headrace-lake",
        "arn:aws:s3:::example-headrace-lake/*",
    ]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# --- landing notifications ------------------------------------------------------------------------


def test_landing_files_notify_the_queue_and_only_the_bucket_may_send(example):
    _, resolver, documents = example
    bucket = resolver.resolve(resolver.resources["LakeBucket"]["Properties"])
    queue_arn = resolver.resolve({"Fn::GetAtt": ["LandingQueue", "Arn"]})
    assert bucket["NotificationConfiguration"] == {
        "QueueConfigurations": [
            {
                "Event": "s3:ObjectCreated:*",
                "Queue": queue_arn,
                "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": "lake/landing/"}]}},
            }
        ]
    }
    allow, deny = documents["LandingQueuePolicy"]["Statement"]
    assert allow == {
        "Sid": "AllowLakeBucketNotifications",
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {
            "ArnEquals": {"aws:SourceArn": "arn:aws:s3:::example-headrace-lake"},
            "StringEquals": {"aws:SourceAccount": cfn.ACCOUNT_ID},
        },
    }
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def _references(node) -> set[str]:
    """Logical ids a template node refers to (Ref, GetAtt, ${…} in Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref":
                found.add(str(value))
            elif key == "Fn::GetAtt":
                found.add(str(value[0] if isinstance(value, list) else value.split(".")[0]))
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found.update(name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text))
            found |= _references(value)
    elif isinstance(node, list):
        for item in node:
            found |= _references(item)
    return found


def test_queue_policy_comes_before_the_notification_without_a_cycle(template):
    """S3 validates the destination when the notification is set: the bucket waits for the queue
    policy, and the policy names the bucket by its parameter, never by Ref or GetAtt."""
    resources = template["Resources"]
    assert resources["LakeBucket"]["DependsOn"] == "LandingQueuePolicy"
    assert "LakeBucket" not in _references(resources["LandingQueuePolicy"])
    assert "LakeBucket" not in _references(resources["LandingQueue"])
    assert "BucketName" in _references(resources["LandingQueuePolicy"])


def test_topic_queues_and_secret_are_encrypted_and_the_salt_is_generated(example):
    _, resolver, _ = example
    key_arn = resolver.resolve({"Fn::GetAtt": ["LakeKey", "Arn"]})
    for logical_id in ("LandingQueue", "LandingDeadLetterQueue", "AlertsTopic"):
        properties = resolver.resolve(resolver.resources[logical_id]["Properties"])
        assert properties["KmsMasterKeyId"] == key_arn, logical_id
    secret = resolver.resolve(resolver.resources["PiiSaltSecret"]["Properties"])
    assert secret["KmsKeyId"] == key_arn
    assert "SecretString" not in secret
    # spark_jobs/ingest.py wants at least 16 characters.
    assert secret["GenerateSecretString"]["PasswordLength"] >= 16
    assert resolver.resources["PiiSaltSecret"]["DeletionPolicy"] == "Retain"
    assert resolver.resolve(resolver.resources["LakeKey"]["Properties"])["EnableKeyRotation"]


# --- tags -------------------------------------------------------------------------------------


def test_every_taggable_resource_carries_the_project_and_environment_tags(template):
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    resolver = cfn.Resolver(template, {**cfn.EXAMPLE_PARAMETERS, "EnvironmentName": "staging"})
    tagged = []
    for logical_id, resource in resolver.resources.items():
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource["Type"]).schema
        if not schema.get("tagging", {}).get("taggable") or "Tags" not in schema["properties"]:
            continue
        tags = resolver.resolve(resource["Properties"]).get("Tags")
        # Most types take a list of Key/Value pairs; MWAA takes a map.
        if isinstance(tags, list):
            tags = {tag["Key"]: tag["Value"] for tag in tags}
        assert tags == {"project": "headrace", "environment": "staging"}, logical_id
        tagged.append(logical_id)
    # The lake's bucket and key, the roles, queues, topic, secret and Airflow itself.
    assert sorted(tagged) == [
        "AirflowEnvironment",
        "AlertsTopic",
        "EmrServerlessJobRole",
        "GlueJobRole",
        "LakeBucket",
        "LakeKey",
        "LandingDeadLetterQueue",
        "LandingQueue",
        "MwaaExecutionRole",
        "PiiSaltSecret",
        "SageMakerExecutionRole",
    ]


# --- the MWAA environment ---------------------------------------------------------------------


def test_mwaa_runs_airflow_3_0_6_from_the_packaged_layout(example):
    parameters, resolver, _ = example
    env = resolver.resolve(resolver.resources["AirflowEnvironment"]["Properties"])
    assert env["AirflowVersion"] == "3.3.1"
    assert env["SourceBucketArn"] == "arn:aws:s3:::example-headrace-lake"
    assert env["DagS3Path"] == "dags"
    assert env["PluginsS3Path"] == "plugins.zip"
    assert env["RequirementsS3Path"] == "requirements.txt"
    assert env["StartupScriptS3Path"] == "startup.sh"
    assert "PluginsS3ObjectVersion" not in env  # none given: the latest version
    assert env["WebserverAccessMode"] == "PRIVATE_ONLY"
    assert env["NetworkConfiguration"] == {
        "SubnetIds": parameters["PrivateSubnetIds"],
        "SecurityGroupIds": parameters["SecurityGroupIds"],
    }
    assert env["KmsKey"] == resolver.resolve({"Fn::GetAtt": ["LakeKey", "Arn"]})
    assert env["ExecutionRoleArn"] == resolver.resolve({"Fn::GetAtt": ["MwaaExecutionRole", "Arn"]})
    assert all(log["Enabled"] for log in env["LoggingConfiguration"].values())


def test_mwaa_execution_role_reads_exactly_the_deployed_keys(example):
    _, _, documents = example
    (statement,) = [
        s for s in documents["MwaaEnvironmentPolicy"]["Statement"] if s["Sid"] == "ReadDeployedCode"
    ]
    assert statement["Resource"] == [
        "arn:aws:s3:::example-headrace-lake/dags/*",
        "arn:aws:s3:::example-headrace-lake/plugins.zip",
        "arn:aws:s3:::example-headrace-lake/requirements.txt",
        "arn:aws:s3:::example-headrace-lake/startup.sh",
    ]


# --- configuration reaching the DAGs -------------------------------------------------------------


def settings_read_by_config_py() -> set[str]:
    source = (Path(cfn.__file__).resolve().parents[1] / "include" / "config.py").read_text()
    return set(re.findall(r'"(PIPELINE_TARGET|HEADRACE_[A-Z0-9_]+|AWS_[A-Z_]+)"', source))


def test_config_option_map_covers_every_setting_config_py_reads(config_option_map):
    options = config_option_map
    read = settings_read_by_config_py()
    assert "HEADRACE_KMS_KEY_ARN" in read  # the scan finds config.py's settings
    unmapped = read - set(options.values()) - set(NOT_FROM_MWAA)
    assert not unmapped, f"add these to infra/config_options.json or NOT_FROM_MWAA: {unmapped}"
    assert not set(options.values()) - read, "infra/config_options.json maps unknown variables"
    # One rule names every option, so the startup script and a person can both derive it.
    for option, variable in options.items():
        assert option == "headrace." + variable.removeprefix("HEADRACE_").lower()


def test_mwaa_config_options_are_mapped_and_repeated_as_outputs(
    deployment, config_option_map, mwaa_options
):
    _, resolver, _ = deployment
    all_options = mwaa_options
    # Airflow's own options (the OpenLineage provider's) reach Airflow, not include/config.py.
    options = {k: v for k, v in all_options.items() if k.startswith("headrace.")}
    assert set(all_options) - set(options) == {"openlineage.namespace", "openlineage.transport"}
    mapping = config_option_map
    assert set(options) <= set(mapping)
    outputs = resolver.template["Outputs"]
    for option, value in options.items():
        # MWAA's limits on configuration options.
        assert re.fullmatch(r"[a-z]+([a-z._]*[a-z]+)?", option) and len(option) <= 64
        assert len(value) <= 256, option
        output_name = "".join(part.title() for part in option.split(".", 1)[1].split("_"))
        output = outputs[output_name]
        assert output["Description"] == mapping[option]
        assert resolver.resolve(output["Value"]) == value, option


@pytest.mark.usefixtures("fresh_settings")
def test_the_mwaa_options_are_a_valid_aws_configuration(deployment, mwaa_options, headrace_env):
    """What the startup script exports, read by include/config.py itself."""
    parameters, resolver, _ = deployment
    options = mwaa_options
    env = {**headrace_env, "AWS_DEFAULT_REGION": cfn.REGION}
    settings = load_settings(env)
    assert settings.target == "aws"
    # Without a transport of its own, lineage goes where include/lineage.py puts it: the lake.
    assert json.loads(options["openlineage.transport"]) == openlineage_transport(settings)
    assert options["openlineage.namespace"] == resolver.resolve({"Ref": "EnvironmentName"})
    assert settings.lake_root == "s3://example-headrace-lake/lake"
    aws = settings.aws
    assert aws.bucket == "example-headrace-lake"
    assert aws.subnet_ids == tuple(parameters["PrivateSubnetIds"])
    assert aws.security_group_ids == tuple(parameters["SecurityGroupIds"])
    assert aws.spark_engine == parameters.get("SparkEngine", "glue")
    assert aws.kms_key_arn == resolver.resolve(
        resolver.resources["AirflowEnvironment"]["Properties"]["KmsKey"]
    )
    assert aws.sagemaker_role_arn.endswith("role/headrace-SageMakerExecutionRole-EXAMPLE")
    assert aws.alerts_topic_arn.endswith(":headrace-drift-alerts")
    assert aws.landing_queue_url.endswith("/headrace-landing")
    assert aws.emr_serverless_application_id == parameters.get("EmrServerlessApplicationId", "")
