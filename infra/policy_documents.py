"""The policy documents of infra/headrace.yaml, resolved for one example deployment.

IAM linters (parliament, IAM Access Analyzer's validate-policy) read plain JSON, not
CloudFormation, so this module evaluates the template's conditions and intrinsic functions
(``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::If``, ``Fn::Join``, ``AWS::NoValue``) with example
parameter values and fake physical ids shaped like the real ones. The template stays the one
source: ``python infra/policy_documents.py`` rewrites ``infra/policies/*.json`` from it, and a
test fails when those files are stale.

Run it with the repository's virtualenv (it reads the template with cfn-lint's YAML loader).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

INFRA_DIR = Path(__file__).resolve().parent
TEMPLATE_PATH = INFRA_DIR / "headrace.yaml"
POLICIES_DIR = INFRA_DIR / "policies"

ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"
PARTITION = "aws"
EXAMPLE_KEY_ID = "0example-0000-4000-8000-000000000000"

# The parameters an example deployment gives; the rest keep the template's defaults.
EXAMPLE_PARAMETERS: dict[str, Any] = {
    "BucketName": "example-headrace-lake",
    "VpcId": "vpc-0123456789abcdef0",
    "PrivateSubnetIds": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
    "SecurityGroupIds": ["sg-0123456789abcdef0"],
    "CreateAirflowEnvironment": "true",
}
# A second deployment that takes every other branch of the template's conditions: its own KMS
# key, access logging, EMR Serverless with a named application and an EMR on EC2 cluster.
EXAMPLE_PARAMETERS_BRING_YOUR_OWN = {
    **EXAMPLE_PARAMETERS,
    "KmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/1example-0000-4000-8000-000000000000",
    "AccessLogBucketName": "example-access-logs",
    "SparkEngine": "emr_serverless",
    "EmrServerlessApplicationId": "00f0example00001",
    "EmrClusterId": "j-EXAMPLE12345",
    "CreateAirflowEnvironment": "false",
}

# Resource types whose properties hold one policy document, and where.
POLICY_RESOURCES = {
    "AWS::IAM::ManagedPolicy": "PolicyDocument",
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::SQS::QueuePolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
    "AWS::KMS::Key": "KeyPolicy",
}
# Resource-based policies: they name a Principal, and "*" in their Resource means "this resource".
RESOURCE_POLICY_TYPES = frozenset(POLICY_RESOURCES) - {"AWS::IAM::ManagedPolicy"}

NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class TemplateError(ValueError):
    """The template uses something this resolver cannot evaluate; the message says what."""


def load_template(path: Path = TEMPLATE_PATH) -> dict:
    """The template as plain data, short-form tags (``!Sub``) expanded to ``Fn::Sub``."""
    from cfnlint.decode import cfn_yaml

    return cfn_yaml.load(str(path))


class Resolver:
    """Evaluates one template's conditions and intrinsic functions for given parameter values."""

    def __init__(self, template: Mapping, parameters: Mapping[str, Any]):
        self.template = template
        self.resources: Mapping[str, Mapping] = template["Resources"]
        declared = template.get("Parameters", {})
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            raise TemplateError(f"parameters {unknown} are not declared by the template")
        self.parameters: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in parameters:
                self.parameters[name] = parameters[name]
            elif "Default" in spec:
                self.parameters[name] = spec["Default"]
            elif not str(spec["Type"]).startswith("AWS::"):
                raise TemplateError(f"parameter {name} has no default and no example value")
            else:
                raise TemplateError(f"parameter {name} ({spec['Type']}) needs an example value")
        self.pseudo = {
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Region": REGION,
            "AWS::Partition": PARTITION,
            "AWS::StackName": "headrace",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self._conditions: dict[str, bool] = {}

    # --- conditions ------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            try:
                definition = self.template["Conditions"][name]
            except KeyError:
                raise TemplateError(f"condition {name!r} is not defined") from None
            self._conditions[name] = self._evaluate(definition)
        return self._conditions[name]

    def _evaluate(self, node: Any) -> bool:
        (function, args), *rest = node.items()
        if rest:
            raise TemplateError(f"a condition holds one function, got {sorted(node)}")
        if function == "Fn::Equals":
            # CloudFormation compares strings: a Number parameter's 0 equals "0".
            left, right = (self.resolve(arg) for arg in args)
            return str(left) == str(right)
        if function == "Fn::Not":
            return not self._evaluate(args[0])
        if function == "Fn::And":
            return all(self._evaluate(arg) for arg in args)
        if function == "Fn::Or":
            return any(self._evaluate(arg) for arg in args)
        if function == "Condition":
            return self.condition(args)
        raise TemplateError(f"condition function {function} is not supported")

    def active(self, logical_id: str) -> bool:
        """Whether the resource is created in this deployment."""
        condition = self.resources[logical_id].get("Condition")
        return condition is None or self.condition(condition)

    # --- values ----------------------------------------------------------------------------

    def resolve(self, node: Any) -> Any:
        """``node`` with every intrinsic evaluated; :data:`NO_VALUE` where it resolves to none."""
        if isinstance(node, Mapping):
            if len(node) == 1:
                ((key, value),) = node.items()
                if key == "Ref":
                    return self._ref(value)
                if key == "Fn::GetAtt":
                    return self._get_att(value)
                if key == "Fn::Sub":
                    return self._sub(value)
                if key == "Fn::If":
                    name, when_true, when_false = value
                    return self.resolve(when_true if self.condition(name) else when_false)
                if key == "Fn::Join":
                    delimiter, items = value
                    return delimiter.join(str(item) for item in self._list(items))
                if key.startswith("Fn::"):
                    raise TemplateError(f"intrinsic {key} is not supported")
            resolved = {key: self.resolve(value) for key, value in node.items()}
            return {key: value for key, value in resolved.items() if value is not NO_VALUE}
        if isinstance(node, list):
            return self._list(node)
        if isinstance(node, str):
            return str(node)
        return node

    def _list(self, node: Any) -> list:
        resolved = self.resolve(node) if not isinstance(node, list) else node
        if not isinstance(resolved, list):
            raise TemplateError(f"expected a list, got {resolved!r}")
        items = [self.resolve(item) for item in resolved]
        return [item for item in items if item is not NO_VALUE]

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self._physical(name, "Ref")
        raise TemplateError(f"Ref to unknown name {name!r}")

    def _get_att(self, value: Any) -> Any:
        logical_id, attribute = value.split(".", 1) if isinstance(value, str) else value
        if logical_id not in self.resources:
            raise TemplateError(f"GetAtt of unknown resource {logical_id!r}")
        return self._physical(logical_id, attribute)

    def _sub(self, value: Any) -> str:
        text, variables = (value, {}) if isinstance(value, str) else value
        variables = {name: self.resolve(node) for name, node in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return str(self._get_att(name))
            resolved = self._ref(name)
            if not isinstance(resolved, str):
                raise TemplateError(f"${{{name}}} in Fn::Sub is not a string: {resolved!r}")
            return resolved

        return _SUB_VARIABLE.sub(substitute, text).replace("${!", "${")

    def _physical(self, logical_id: str, attribute: str) -> str:
        """A fake physical id or attribute, shaped like the real one."""
        resource = self.resources[logical_id]
        if not self.active(logical_id):
            raise TemplateError(f"{logical_id} is referenced but not created in this deployment")
        kind = resource["Type"]
        properties = resource.get("Properties", {})
        arn = f"arn:{PARTITION}"
        if kind == "AWS::IAM::Role":
            name = f"headrace-{logical_id}-EXAMPLE"
            return {"Ref": name, "Arn": f"{arn}:iam::{ACCOUNT_ID}:role/{name}"}[attribute]
        if kind == "AWS::IAM::ManagedPolicy" and attribute == "Ref":
            return f"{arn}:iam::{ACCOUNT_ID}:policy/headrace-{logical_id}-EXAMPLE"
        if kind == "AWS::KMS::Key":
            key_arn = f"{arn}:kms:{REGION}:{ACCOUNT_ID}:key/{EXAMPLE_KEY_ID}"
            return {"Ref": EXAMPLE_KEY_ID, "Arn": key_arn, "KeyId": EXAMPLE_KEY_ID}[attribute]
        if kind == "AWS::S3::Bucket":
            name = self.resolve(properties["BucketName"])
            return {"Ref": name, "Arn": f"{arn}:s3:::{name}"}[attribute]
        if kind == "AWS::SQS::Queue":
            name = self.resolve(properties["QueueName"])
            return {
                "Ref": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{name}",
                "Arn": f"{arn}:sqs:{REGION}:{ACCOUNT_ID}:{name}",
                "QueueName": name,
            }[attribute]
        if kind == "AWS::SNS::Topic" and attribute in ("Ref", "TopicArn"):
            name = self.resolve(properties["TopicName"])
            return f"{arn}:sns:{REGION}:{ACCOUNT_ID}:{name}"
        if kind == "AWS::SecretsManager::Secret" and attribute in ("Ref", "Id"):
            name = self.resolve(properties["Name"])
            return f"{arn}:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:{name}-AbCdEf"
        if kind == "AWS::MWAA::Environment" and attribute == "WebserverUrl":
            return f"example.{REGION}.airflow.amazonaws.com"
        raise TemplateError(f"no example value for {logical_id} ({kind}).{attribute}")


def policy_documents(template: Mapping, parameters: Mapping[str, Any]) -> dict[str, dict]:
    """Every policy document of the deployment, by name: ``<LogicalId>`` for policy resources
    and key policies, ``<LogicalId>.trust`` for role trust policies."""
    resolver = Resolver(template, parameters)
    documents: dict[str, dict] = {}
    for logical_id, resource in template["Resources"].items():
        if not resolver.active(logical_id):
            continue
        properties = resource.get("Properties", {})
        field = POLICY_RESOURCES.get(resource["Type"])
        if field:
            documents[logical_id] = resolver.resolve(properties[field])
        if resource["Type"] == "AWS::IAM::Role":
            documents[f"{logical_id}.trust"] = resolver.resolve(
                properties["AssumeRolePolicyDocument"]
            )
            if properties.get("Policies"):
                raise TemplateError(
                    f"{logical_id} has inline Policies; headrace keeps every permission in an "
                    "AWS::IAM::ManagedPolicy, so each is linted and size-checked on its own"
                )
    return documents


def write_policy_files(directory: Path = POLICIES_DIR) -> list[Path]:
    """Rewrite ``directory`` with the example deployment's documents, one JSON file each."""
    documents = policy_documents(load_template(), EXAMPLE_PARAMETERS)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.json"):
        stale.unlink()
    written = []
    for name, document in sorted(documents.items()):
        path = directory / f"{name}.json"
        path.write_text(render(document))
        written.append(path)
    return written


def render(document: Mapping) -> str:
    return json.dumps(document, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=POLICIES_DIR, help="folder for the JSON files (rewritten)"
    )
    args = parser.parse_args(argv)
    for path in write_policy_files(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
