"""Test-wide setup: an isolated AIRFLOW_HOME and lake, set before anything imports airflow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Airflow reads its home and config when first imported, so this runs at conftest import time,
# before any test module imports airflow. The developer's own .local/ state is never touched.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="headrace-tests-"))
os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO_ROOT / "plugins")
os.environ["HEADRACE_LAKE_ROOT"] = (_SESSION_DIR / "lake").as_uri()
os.environ["PIPELINE_TARGET"] = "local"
# Local jobs' run state and warm drivers (without it: the repository's .local/local_runs).
os.environ["HEADRACE_LOCAL_RUNS_DIR"] = str(_SESSION_DIR / "local_runs")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# A test's warm drivers (include/warm_drivers.py) serve only its own jobs: after 30 s idle they go,
# not after five minutes, so a lane's finished tests do not keep a JVM each. A test's own Airflow
# stack keeps the five minutes (tests/e2e/conftest.py, stack_environment): its `down` stops them.
os.environ.setdefault("HEADRACE_WARM_DRIVER_IDLE_S", "30")


def pytest_sessionfinish(session, exitstatus):
    """A passing session removes its folder (the lake, Airflow's home, local runs: up to 9 MB);
    a failing one keeps it to look into."""
    if exitstatus == 0:
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session", autouse=True)
def _no_warm_driver_left(tmp_path_factory):
    """Local jobs leave warm drivers (include/warm_drivers.py) that wait out an idle time for
    the next job; the session's end stops those of its own folders."""
    yield
    from include.warm_drivers import stop_drivers

    for root in (tmp_path_factory.getbasetemp(), _SESSION_DIR):
        for pool in root.rglob("warm-drivers"):
            stop_drivers(pool)


@pytest.fixture(scope="session")
def start_moto_server():
    """Starts a moto server on loopback and returns its endpoint URL; all are stopped at the end
    of the session. Each test area keeps a server of its own, so no state crosses areas."""
    from tests.aws_fakes import start_moto

    servers = []

    def start() -> str:
        server, endpoint = start_moto()
        servers.append(server)
        return endpoint

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def moto_api():
    """``moto_api(endpoint, path, payload)``: a call to a moto server's control API (``reset``,
    ``state-manager/set-transition`` …), for tests that steer moto's job states."""
    from tests.aws_fakes import call_moto_api

    return call_moto_api


@pytest.fixture
def fake_aws_account(moto_api, monkeypatch, fresh_settings):
    """``fake_aws_account(endpoint, bucket, **options)``: the moto server at ``endpoint`` reset,
    this test's environment pointed at it, and the fake account of ``tests/aws_fakes.py`` built
    there (``options`` as :func:`~tests.aws_fakes.build_fake_account` takes them) and selected
    as the aws target's settings."""
    from include.config import get_settings
    from tests.aws_fakes import AWS_UNSET, build_fake_account, moto_environment

    def build(endpoint: str, bucket: str, **options):
        moto_api(endpoint, "reset")
        for name, value in moto_environment(endpoint).items():
            monkeypatch.setenv(name, value)
        for name in AWS_UNSET:
            monkeypatch.delenv(name, raising=False)
        account = build_fake_account(bucket, **options)
        for name, value in account.settings.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return account

    return build


@pytest.fixture
def aws_calls(monkeypatch):
    """Every request of every botocore session created in the test (sync and async), and the
    stubs that answer what moto lacks: a :class:`~tests.aws_fakes.RequestCapture`."""
    from tests.aws_fakes import RequestCapture

    return RequestCapture(actor="test").install(monkeypatch.setattr)


@pytest.fixture
def fresh_settings():
    """Clears the cached settings before and after a test that changes the environment."""
    from include.config import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def _migrated_airflow_db(tmp_path_factory) -> Path:
    """A SQLite metadata database freshly migrated once for the session: each module's home
    starts from a copy (a migration is about 4 s of CPU, a copy milliseconds)."""
    home = tmp_path_factory.mktemp("airflow_home_migrated")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return home / "airflow.db"


@pytest.fixture(scope="module")
def migrated_airflow_home(tmp_path_factory, _migrated_airflow_db):
    """An Airflow home with a migrated SQLite database of the module's own, for tests that run
    DAGs through Airflow's task runner (``dag.test()``) in a subprocess."""
    home = tmp_path_factory.mktemp("airflow_home")
    shutil.copyfile(_migrated_airflow_db, home / "airflow.db")
    return home
