"""One local Airflow stack shared by the end-to-end tests that only talk to it through its API
and UI (the REST trigger client, Params refused through the REST API, the browser test).

Tests ask for ``local_stack`` (or ``airflow_api``). The stack starts with the first of them, in
its own Airflow home, lake and port on 127.0.0.1, and stops, by the PIDs it recorded, after the
last test that uses it: the tests that use it are run one after another (see
``pytest_collection_modifyitems``), so it is up for those tests only, not for the rest of the
session. Tests that start stacks of their own (``test_local_stack.py``, ``test_demo.py``) are
left as they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from include.warm_drivers import IDLE_ENV
from scripts.airflow_api import AirflowApi
from scripts.airflow_stack import free_port, own_stack_env

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_FIXTURE = "local_stack"
# The DAGs the stack must have parsed before a test starts (DAG ids do not change when the DAG
# files are refactored; more DAGs may come, e.g. a second dataset's).
CORE_DAG_IDS = {
    "lake_setup",
    "churn_ingestion",
    "churn_validation",
    "churn_training",
    "churn_model_approval",
    "churn_scoring",
    "churn_monitoring",
}
# The shared stack of this session, once a test asked for it (for pytest_runtest_teardown).
_shared: _SharedStack | None = None


@dataclass
class LocalStack:
    home: Path
    lake: Path
    port: int
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def password(self) -> str:
        return json.loads((self.home / "passwords.json").read_text())["admin"]

    def api(self) -> AirflowApi:
        return AirflowApi(self.url, "admin", self.password)


def stack_environment(home: Path, lake: Path, port: int, **settings: str) -> dict[str, str]:
    """The environment a test's own local stack starts with (``own_stack_env``), less the suite's
    30 s warm-driver idle time (tests/conftest.py). A stack's drivers serve its jobs until
    ``down`` stops them, as under ``make up``: with 30 s, a day after a training or a drift check
    started cold drivers (docs/benchmarks.md, "Warm drivers in the tests' own stacks", has the
    measurements)."""
    env = own_stack_env(home, lake, port, **settings)
    env.pop(IDLE_ENV, None)
    return env


class _SharedStack:
    """Starts the stack on first use; ``stop`` is safe to call at any time, any number of times."""

    def __init__(self, base: Path):
        self._base = base
        self._stack: LocalStack | None = None
        self._failure: str | None = None

    def _script(self, command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "scripts/airflow_stack.py", command],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    def get(self) -> LocalStack:
        if self._failure:
            pytest.fail(f"the shared Airflow stack did not start:\n{self._failure}")
        if self._stack is None:
            self._stack = self._start()
        return self._stack

    def _start(self) -> LocalStack:
        port = free_port()
        home, lake = self._base / "airflow", self._base / "lake"
        # Shared by many tests: each unpauses what it needs (MWAA's default).
        env = stack_environment(home, lake, port, HEADRACE_DAGS_PAUSED_AT_CREATION="true")
        started = self._script("up", env)
        stack = LocalStack(home=home, lake=lake, port=port, env=env)
        if started.returncode != 0:
            self._script("down", env)
            self._failure = started.stdout[-3000:] + started.stderr[-3000:]
            pytest.fail(f"the shared Airflow stack did not start:\n{self._failure}")
        try:
            stack.api().wait_for_dags(CORE_DAG_IDS, timeout=240)
            _wait_until_every_dag_file_is_parsed(stack.api(), timeout=240)
        except Exception as error:
            self._script("down", env)
            self._failure = str(error)
            raise
        return stack

    def stop(self) -> None:
        if self._stack is not None:
            self._script("down", self._stack.env)
            self._stack = None


def _wait_until_every_dag_file_is_parsed(api: AirflowApi, timeout: float) -> None:
    """Until each file in dags/ has given DAGs or an import error, so a test sees what the
    dag-processor makes of the whole folder, not of the part it has reached."""
    files = {path.name for path in (REPO_ROOT / "dags").glob("*.py")}
    deadline = time.monotonic() + timeout
    while True:
        dags = api.get("/api/v2/dags", limit=1000)["dags"]
        parsed = {Path(dag["fileloc"]).name for dag in dags}
        parsed |= {Path(error["filename"]).name for error in api.import_errors()}
        if files <= parsed:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"dags/ files not parsed after {timeout:.0f}s: {sorted(files - parsed)}"
            )
        time.sleep(2)


@pytest.fixture(scope="session")
def _shared_stack(tmp_path_factory):
    global _shared
    _shared = _SharedStack(tmp_path_factory.mktemp("shared-stack"))
    yield _shared
    _shared.stop()


@pytest.fixture
def local_stack(_shared_stack) -> LocalStack:
    """The shared stack, started if it is not running (function scope: it may have been
    stopped between two modules that use it)."""
    return _shared_stack.get()


@pytest.fixture
def airflow_api(local_stack) -> AirflowApi:
    return local_stack.api()


def pytest_collection_modifyitems(session, config, items):
    """Run the tests that use the shared stack one after another, where the first of them is,
    so that the stack is started once and stopped as soon as they are done."""
    users = [item for item in items if STACK_FIXTURE in getattr(item, "fixturenames", ())]
    if not users:
        return
    first = items.index(users[0])
    others = [item for item in items if STACK_FIXTURE not in getattr(item, "fixturenames", ())]
    items[:] = others[:first] + users + others[first:]


def pytest_runtest_teardown(item, nextitem):
    if _shared is None or STACK_FIXTURE not in getattr(item, "fixturenames", ()):
        return
    if nextitem is None or STACK_FIXTURE not in getattr(nextitem, "fixturenames", ()):
        _shared.stop()
