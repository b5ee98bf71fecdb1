"""docker-compose.yaml checked statically: no Docker engine runs on the project's machines."""

from __future__ import annotations

import re

import pytest
import yaml

AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
REPO_MOUNTS = {"./dags", "./plugins", "./include", "./spark_jobs", "./training"}


@pytest.fixture(scope="module")
def compose(repo_root):
    return yaml.safe_load((repo_root / "docker-compose.yaml").read_text())


def test_services_are_the_airflow_3_stack(compose):
    assert set(compose["services"]) == {"postgres", "airflow-init", *AIRFLOW_SERVICES}


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_airflow_service_runs_its_component_with_a_healthcheck(compose, service):
    spec = compose["services"][service]
    assert spec["command"][:2] == ["airflow", AIRFLOW_SERVICES[service]]
    assert re.fullmatch(
        r"\$\{AIRFLOW_IMAGE_NAME:-apache/airflow:3\.3\.1-python3\.12\}", spec["image"]
    )
    assert spec["healthcheck"]["test"], f"{service} has no health check"
    assert spec["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert spec["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    mounted = {volume.split(":")[0] for volume in spec["volumes"]}
    assert mounted >= REPO_MOUNTS


def test_image_airflow_version_matches_the_lock_and_the_mwaa_constraint(compose, repo_root):
    image = compose["services"]["airflow-scheduler"]["image"]
    version = re.search(r"apache/airflow:([\d.]+)-", image).group(1)
    assert f"apache-airflow=={version}\n" in (repo_root / "envs" / "worker.txt").read_text()
    assert f"constraints-{version}/" in (repo_root / "requirements.txt").read_text()


def test_same_environment_variables_as_the_local_stack(compose):
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["PYTHONPATH"] == "/opt/airflow"
    for name in ("PIPELINE_TARGET", "HEADRACE_LAKE_ROOT", "AIRFLOW__API_AUTH__JWT_SECRET"):
        assert name in env
    # Settings not listed explicitly reach the containers through the optional .env file.
    assert compose["services"]["airflow-scheduler"]["env_file"] == [
        {"path": ".env", "required": False}
    ]


def test_postgres_is_healthchecked_and_secrets_come_from_the_environment(compose, repo_root):
    postgres = compose["services"]["postgres"]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    text = (repo_root / "docker-compose.yaml").read_text()
    # Passwords and the JWT secret are required variables, never literals in the file.
    assert "${POSTGRES_PASSWORD:?" in postgres["environment"]["POSTGRES_PASSWORD"]
    assert re.search(r"AIRFLOW__API_AUTH__JWT_SECRET: \$\{AIRFLOW_JWT_SECRET:\?", text)
    documented = (repo_root / ".env.example").read_text()
    for variable in set(re.findall(r"(?<!\$)\$\{([A-Z_]+)[:}?-]", text)):
        assert variable in documented, (
            f"{variable} used in docker-compose.yaml is not in .env.example"
        )


def test_ui_is_published_on_loopback_only(compose):
    assert compose["services"]["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]
    for name, spec in compose["services"].items():
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"
