"""The local stack's settings come from the environment, then ``.env``, and every Airflow option
it sets is one Airflow reads; a taken API port is refused before anything starts (the api-server
would die on it while another process answered the health checks); ``down`` stops the API server
after the scheduler."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(tmp_path, monkeypatch):
    """scripts/airflow_stack.py with its .env in a temporary folder."""
    spec = importlib.util.spec_from_file_location(
        "airflow_stack_under_test", REPO_ROOT / "scripts" / "airflow_stack.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "DOTENV", tmp_path / ".env")
    monkeypatch.delenv("HEADRACE_API_PORT", raising=False)
    monkeypatch.delenv("HEADRACE_AIRFLOW_HOME", raising=False)
    yield module
    sys.modules.pop(spec.name, None)


def test_the_port_and_home_in_dotenv_are_honoured(stack, tmp_path, monkeypatch):
    assert stack.api_port() == 8080  # neither set
    stack.DOTENV.write_text(
        f"# local\nHEADRACE_API_PORT=8093\nHEADRACE_AIRFLOW_HOME={tmp_path}/h\n"
    )
    assert stack.api_port() == 8093
    assert stack.api_url() == "http://127.0.0.1:8093"
    assert stack.airflow_home() == (tmp_path / "h").resolve()
    # The environment wins over .env, as it does for every component.
    monkeypatch.setenv("HEADRACE_API_PORT", "8094")
    assert stack.api_port() == 8094
    assert stack.airflow_env()["AIRFLOW__API__PORT"] == "8094"


def test_a_port_that_is_not_a_port_is_named(stack):
    stack.DOTENV.write_text("HEADRACE_API_PORT=80a\n")
    with pytest.raises(SystemExit, match=r"HEADRACE_API_PORT='80a' is not a TCP port"):
        stack.api_port()


def test_a_taken_port_is_refused_and_a_free_one_accepted(stack):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(SystemExit) as refused:
            stack.refuse_taken_port(port)
        assert f"port {port} on 127.0.0.1 is taken" in str(refused.value)
        assert "set HEADRACE_API_PORT to a free port in .env" in str(refused.value)
    stack.refuse_taken_port(port)  # released: accepted


def test_a_port_left_in_time_wait_by_a_stopped_server_is_accepted(stack):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            connection, _ = server.accept()
            connection.close()  # the server closes first: its end waits in TIME_WAIT
    # Nothing listens on the port, but a connection of the stopped server still names it.
    assert f":{port:04X} " in Path("/proc/net/tcp").read_text()
    stack.refuse_taken_port(port)  # accepted, as the api-server's own bind would be


def test_every_airflow_option_the_stack_sets_is_one_airflow_reads(stack, tmp_path, monkeypatch):
    """Airflow ignores an ``AIRFLOW__SECTION__OPTION`` it does not know, without a word. The stack
    set ``AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL``, which Airflow 3 reads from
    ``[dag_processor]`` only, so it did nothing. Every option set here must be one of Airflow's
    own configuration or of an installed provider's."""
    from airflow.configuration import conf
    from airflow.providers_manager import ProvidersManager

    ProvidersManager().initialize_providers_configuration()
    monkeypatch.setenv("HEADRACE_AIRFLOW_HOME", str(tmp_path / "home"))
    # Only what the stack sets: none of this process's own Airflow settings.
    for name in [name for name in os.environ if name.startswith("AIRFLOW__")]:
        monkeypatch.delenv(name)
    # (The API server's environment differs only in the value of the database URL.)
    names = {name for name in stack.airflow_env() if name.startswith("AIRFLOW__")}
    assert "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL" in names and len(names) > 20

    def known(name: str) -> bool:
        section, option = name.removeprefix("AIRFLOW__").lower().split("__", 1)
        return option in conf.configuration_description.get(section, {}).get("options", {})

    assert sorted(name for name in names if not known(name)) == []
    # The check itself knows a moved option from its new place.
    assert not known("AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL")
    assert known("AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL")


def test_the_supervisors_wait_is_one_second_unless_set(stack, tmp_path, monkeypatch):
    """``[workers] min_heartbeat_interval`` bounds how long a task's supervisor outlives its task
    (bench/task_handoff.py): 1 s on the stack, Airflow's 5 s when a bench's baseline sets it."""
    name = "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"
    monkeypatch.setenv("HEADRACE_AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(name, raising=False)
    assert stack.airflow_env()[name] == "1"
    stack.DOTENV.write_text(f"{name}=3\n")
    assert stack.airflow_env()[name] == "3"
    monkeypatch.setenv(name, "5")
    assert stack.airflow_env()[name] == "5"


def test_up_refuses_a_taken_port_before_starting_anything(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_AIRFLOW_HOME", str(tmp_path / "home"))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        monkeypatch.setenv("HEADRACE_API_PORT", str(holder.getsockname()[1]))
        with pytest.raises(SystemExit, match="is taken"):
            stack.up(timeout=5)
    # Nothing was started: no pid file, no migration log.
    assert not list((tmp_path / "home").glob("pids/*.pid"))
    assert not (tmp_path / "home" / "logs" / "db-migrate.out").exists()


def test_down_stops_the_api_server_after_the_scheduler_and_not_after_the_others(
    stack, tmp_path, monkeypatch
):
    """Real process groups in the components' pid files. The api-server's, on SIGTERM, leaves a
    mark and exits; each other one, on SIGTERM, takes a while (the scheduler half a second: a
    stopping task reporting its end state through the API server; the triggerer and the
    dag-processor three seconds, which the API server need not wait for), then records whether
    that mark was there."""
    import os
    import signal
    import subprocess
    import time

    home = tmp_path / "home"
    (home / "pids").mkdir(parents=True)
    monkeypatch.setenv("HEADRACE_AIRFLOW_HOME", str(home))
    seen = tmp_path / "seen"
    seen.mkdir()
    component = (
        "import os, signal, sys, time\n"
        "name, out = sys.argv[1], sys.argv[2]\n"
        "def stop(*_):\n"
        "    if name != 'api-server':\n"
        "        time.sleep(0.5 if name == 'scheduler' else 3.0)\n"
        "        stopped = os.path.exists(os.path.join(out, 'api-server'))\n"
        "    open(os.path.join(out, name), 'w').write('gone' if name == 'api-server' or stopped\n"
        "                                             else 'alive')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "open(os.path.join(out, name + '.ready'), 'w').close()\n"
        "while True: time.sleep(0.1)\n"
    )
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-c", component, name, str(seen)], start_new_session=True
        )
        for name in stack.COMPONENTS
    }
    try:
        for name, process in processes.items():
            (home / "pids" / f"{name}.pid").write_text(str(process.pid))
        deadline = time.monotonic() + 30
        while len(list(seen.glob("*.ready"))) < len(processes) and time.monotonic() < deadline:
            time.sleep(0.05)
        stack.down(timeout=10)
        assert {name: (seen / name).read_text() for name in processes} == {
            "scheduler": "alive", "triggerer": "gone", "dag-processor": "gone",
            "api-server": "gone",
        }  # fmt: skip
        assert list((home / "pids").glob("*.pid")) == []
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
