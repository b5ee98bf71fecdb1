"""The CloudFormation template and its policy documents, resolved once per test session."""

from __future__ import annotations

import json

import pytest

from infra import policy_documents as cfn

# Two example deployments that between them take every branch of the template's conditions.
DEPLOYMENTS = {
    "created-key": cfn.EXAMPLE_PARAMETERS,
    "bring-your-own": cfn.EXAMPLE_PARAMETERS_BRING_YOUR_OWN,
}


@pytest.fixture(scope="session")
def template() -> dict:
    return cfn.load_template()


@pytest.fixture(scope="session", params=sorted(DEPLOYMENTS))
def deployment(request, template):
    """``(parameters, resolver, documents)`` of one example deployment."""
    parameters = DEPLOYMENTS[request.param]
    resolver = cfn.Resolver(template, parameters)
    return parameters, resolver, cfn.policy_documents(template, parameters)


@pytest.fixture(scope="session")
def example(template):
    """The default example deployment (the one infra/policies/ is rendered from)."""
    parameters = cfn.EXAMPLE_PARAMETERS
    return (
        parameters,
        cfn.Resolver(template, parameters),
        cfn.policy_documents(template, parameters),
    )


def load_config_options() -> dict[str, str]:
    """infra/config_options.json as ``{"headrace.<name>": "<ENV_VAR>"}``."""
    entries = json.loads((cfn.INFRA_DIR / "config_options.json").read_text())["options"]
    return {entry["option"]: entry["variable"] for entry in entries}


@pytest.fixture(scope="session")
def config_option_map() -> dict[str, str]:
    return load_config_options()


@pytest.fixture
def mwaa_options(deployment) -> dict[str, str]:
    """The deployment's MWAA AirflowConfigurationOptions, resolved."""
    _, resolver, _ = deployment
    return resolver.resolve(
        resolver.resources["AirflowEnvironment"]["Properties"]["AirflowConfigurationOptions"]
    )


@pytest.fixture
def headrace_env(mwaa_options, config_option_map) -> dict[str, str]:
    """What MWAA's startup script exports for include/config.py: each ``headrace.*`` option as
    its variable (the ``openlineage.*`` options are Airflow's own)."""
    return {
        config_option_map[option]: value
        for option, value in mwaa_options.items()
        if option.startswith("headrace.")
    }
