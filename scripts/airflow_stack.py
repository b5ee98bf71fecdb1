"""Start and stop the local Airflow 3 stack: api-server, scheduler, dag-processor, triggerer.

Usage: ``python scripts/airflow_stack.py up|down|status`` (``make up`` / ``make down``).

Every component binds 127.0.0.1 (never the all-in-one ``standalone`` command: its log servers listen on all
interfaces). Each component is started in its own process group and its PID is written under
the local home, so ``down`` stops exactly what ``up`` started, children included, and nothing
else. State lives in a git-ignored folder: ``.local/airflow`` unless ``HEADRACE_AIRFLOW_HOME``
says otherwise (tests use their own home and port).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}
ADMIN_USER = "admin"
STACK_SETTINGS = REPO_ROOT / "scripts" / "stack_settings"


DOTENV = REPO_ROOT / ".env"


def local_runs_dir() -> Path:
    """Where the stack's local jobs live (and the warm drivers they run in, ``warm-drivers/``)."""
    return airflow_home() / "local_runs"


def stack_setting(name: str, default: str) -> str:
    """A setting of the stack: the environment's, else ``.env``'s, else ``default`` (the same
    order every component's environment gets, :func:`airflow_env`)."""
    if name in os.environ:
        return os.environ[name]
    return _read_dotenv(DOTENV).get(name, default)


def paused_at_creation() -> bool:
    """Whether new DAGs start paused: ``HEADRACE_DAGS_PAUSED_AT_CREATION`` (default false)."""
    value = stack_setting("HEADRACE_DAGS_PAUSED_AT_CREATION", "false").strip().lower()
    if value not in ("true", "false"):
        raise SystemExit(f"HEADRACE_DAGS_PAUSED_AT_CREATION={value!r}: use true or false")
    return value == "true"


def airflow_home() -> Path:
    return Path(
        stack_setting("HEADRACE_AIRFLOW_HOME", str(REPO_ROOT / ".local" / "airflow"))
    ).resolve()


def api_port() -> int:
    value = stack_setting("HEADRACE_API_PORT", "8080")
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise SystemExit(f"HEADRACE_API_PORT={value!r} is not a TCP port (1-65535)")
    return int(value)


def refuse_taken_port(port: int) -> None:
    """Fail before starting anything when another process holds the API port: the api-server
    would die on ``address already in use`` while that process answered the health checks."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the api-server's uvicorn binds: with SO_REUSEADDR, a listener still refuses the
        # bind but the TIME_WAIT connections a stack leaves for a minute after it stopped do
        # not (without it, `make demo` right after another was refused a port nobody held).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise SystemExit(
                f"headrace: port {port} on 127.0.0.1 is taken ({error.strerror}): stop what "
                "holds it, or set HEADRACE_API_PORT to a free port in .env"
            ) from None


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now, for a server of a test or bench of its own
    (an Airflow stack, a moto server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def own_stack_env(home: Path, lake: Path, port: int, **settings: str) -> dict[str, str]:
    """The environment a stack of its own Airflow home, lake and port starts with (the tests'
    and the benches' stacks, beside a developer's own), on the local target, plus ``settings``:
    this process's environment less its Airflow settings (they must not leak into the stack's
    components) and less any landing inbox (the stack's own is in its lake)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AIRFLOW") and k != "HEADRACE_LANDING_INBOX"
    }
    env.update(
        HEADRACE_AIRFLOW_HOME=str(home),
        HEADRACE_API_PORT=str(port),
        HEADRACE_LAKE_ROOT=lake.as_uri(),
        PIPELINE_TARGET="local",
        **settings,
    )
    return env


def api_url() -> str:
    return f"http://127.0.0.1:{api_port()}"


def _read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of ``.env`` (comments and blanks skipped); the real environment wins."""
    if not path.exists():
        return {}
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _stack_secrets(home: Path) -> dict[str, str]:
    """Secrets made once per home and kept there: the JWT secret and API secret key all
    components share, and the local PII salt (used when HEADRACE_PII_SALT is not set)."""
    path = home / "stack-secrets.json"
    values = json.loads(path.read_text()) if path.exists() else {}
    makers = {
        "jwt_secret": lambda: secrets.token_urlsafe(32),
        "secret_key": lambda: secrets.token_urlsafe(32),
        "pii_salt": lambda: secrets.token_hex(32),
    }
    missing = {name: make() for name, make in makers.items() if name not in values}
    if missing:
        path.write_text(json.dumps({**values, **missing}))
        path.chmod(0o600)
    return json.loads(path.read_text())


def admin_password(home: Path | None = None) -> str:
    """The admin password, generated once into the simple auth manager's passwords file."""
    path = (home or airflow_home()) / "passwords.json"
    if not path.exists():
        path.write_text(json.dumps({ADMIN_USER: secrets.token_urlsafe(12)}) + "\n")
        path.chmod(0o600)
    return json.loads(path.read_text())[ADMIN_USER]


def _sqlite_url(home: Path, lock_wait_s: int) -> str:
    """The metadata database's URL; ``lock_wait_s``: how long a connection waits for SQLite's
    write lock before its statement fails with "database is locked"."""
    return f"sqlite:///{home / 'airflow.db'}?timeout={lock_wait_s}"


# How long a component's connections wait for SQLite's write lock, in seconds, not Python's
# default 5 s: on busy cores the scheduler's transactions can hold it longer.
COMPONENT_LOCK_WAIT_S = 30
# How long the API server's connections wait for it: less than the others.
# Airflow 3.3.1 commits the audit log of every API write on the API server's event loop, with a
# blocking call (log_action in airflow/api_fastapi/logging/decorators.py). When a task's state
# update in the same server holds the write lock, its own commit comes after its endpoint, from
# that loop too: the loop waits out its whole lock wait for a lock only it can release, and the
# server answers nothing meanwhile. At 30 s, CI runs saw the server answer nothing for 30 s and
# for 60 s, and stacks fail to start. The write that waited is answered HTTP 500 "Database error"
# with nothing written; AirflowApi sends it again (DATABASE_ERROR_ATTEMPTS), and the task SDK
# retries its own calls on a 500 (execution_api_retries).
API_SERVER_LOCK_WAIT_S = 5


def component_env(name: str, env: dict[str, str]) -> dict[str, str]:
    """The environment the component ``name`` starts with: ``env``, but for the API server's
    shorter lock wait."""
    if name != "api-server":
        return env
    url = _sqlite_url(airflow_home(), API_SERVER_LOCK_WAIT_S)
    return {**env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}


def airflow_env() -> dict[str, str]:
    """The environment every component (and every task it runs) gets."""
    home = airflow_home()
    home.mkdir(parents=True, exist_ok=True)
    stack_secrets = _stack_secrets(home)
    admin_password(home)
    env = {
        "HEADRACE_PII_SALT": stack_secrets["pii_salt"],
        **_read_dotenv(DOTENV),
        **os.environ,
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            # One sys.path story: the repo root (include/, spark_jobs/, training/) is importable
            # here as the dags folder root is on MWAA; Airflow adds plugins/ itself.
            # scripts/stack_settings holds the stack's airflow_local_settings.py: every component
            # (and every task, a fork of one) imports only what an MWAA worker has.
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), str(STACK_SETTINGS), env.get("PYTHONPATH")])
            ),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Locally the DAGs start unpaused, so a file dropped in the inbox runs the pipeline
            # with no other step (MWAA keeps Airflow's paused-on-creation; so do the test
            # suite's stacks, which pause and unpause what each test needs).
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(paused_at_creation()),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # Sized for 2 cores: two task processes at a time, one parsing process.
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            # A new file in dags/ is found within 10 s, and an edited one is parsed again at once
            # (measured on a running stack: 7.2 s, and 0.8-1.1 s). A new dataset spec is no DAG
            # file: its DAGs appear when the factories' files are parsed again, every
            # [dag_processor] min_file_process_interval (Airflow's default 30 s, which the MWAA
            # image does not change): 20-31 s after `make new-pipeline`.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            # The scheduler's idle loop: Airflow's 1 s default is most of each hand-off. Measured
            # on 2 cores: a task went from ready to queued in 0.87-1.0 s, in 0.06-0.15 s at
            # 0.25 s; a 2-task DAG run took 2.1 s, 0.6-0.7 s. The price: an idle stack's
            # scheduler took 1.1 CPU-s a minute, 3.5 at 0.25 s (the whole stack 3.8, 6.0).
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
            # A task's supervisor waits on its process's sockets at most this long at a time
            # (and heartbeats this often). On a busy machine the sockets often close before
            # the exited process can be reaped; Airflow 3.3.1's supervisor then sleeps out the
            # whole wait, holding one of the two executor slots, so the next task waits in the
            # queue. Two demo runs: the tasks queued 15.8 s in all with Airflow's 5 s, 2.1 s
            # with 1 s (docs/benchmarks.md, "Supervisors that outlive their task").
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": stack_setting(
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "1"
            ),
            "AIRFLOW__API__WORKERS": "1",
            # What the MWAA 3.3.1 image forces; docs/operating-on-mwaa.md lists what still differs, and why.
            "AIRFLOW__API__SERVER_TYPE": "gunicorn",
            "AIRFLOW__TRIGGERER__QUEUES_ENABLED": "False",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "1800",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port()),
            "AIRFLOW__API__BASE_URL": api_url(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url()}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": stack_secrets["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": stack_secrets["secret_key"],
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            # The API server waits less for SQLite's lock (API_SERVER_LOCK_WAIT_S, component_env).
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _sqlite_url(home, COMPONENT_LOCK_WAIT_S),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(
                home / "logs" / "dag_processor"
            ),
            "NO_PROXY": "127.0.0.1,localhost",
            # Local job run state belongs to this deployment: its run ids are unique only here.
            "HEADRACE_LOCAL_RUNS_DIR": str(local_runs_dir()),
            # Local Spark binds loopback only (DESIGN.md).
            "SPARK_LOCAL_IP": "127.0.0.1",
        }
    )
    env.update(openlineage_env(env))
    return env


def openlineage_env(env: dict[str, str]) -> dict[str, str]:
    """The OpenLineage provider's settings: events of every task and DAG run go to the lake's
    ``lineage/events/`` (include/lineage.py), unless ``env`` names another transport."""
    sys.path.insert(0, str(REPO_ROOT))
    from include.config import load_settings
    from include.lineage import openlineage_transport

    out = {
        "AIRFLOW__OPENLINEAGE__NAMESPACE": env.get(
            "AIRFLOW__OPENLINEAGE__NAMESPACE", "headrace-local"
        )
    }
    if "AIRFLOW__OPENLINEAGE__TRANSPORT" not in env:
        out["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
            openlineage_transport(load_settings(env))
        )
    return out


def _pid_file(name: str) -> Path:
    return airflow_home() / "pids" / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies our own process did not reap count)."""
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(pgid: int) -> None:
    """Collect exited children of this process in the group (when `make demo` started the
    stack in-process, the components are its children and would linger as zombies)."""
    while True:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def running_components() -> dict[str, int]:
    pids = {}
    for name in COMPONENTS:
        path = _pid_file(name)
        if path.exists():
            pid = int(path.read_text().strip())
            if _alive(pid):
                pids[name] = pid
    return pids


def health() -> dict | None:
    """GET /api/v2/monitor/health, or None while the api-server is not answering."""
    try:
        with urllib.request.urlopen(f"{api_url()}/api/v2/monitor/health", timeout=5) as response:  # noqa: S310
            return json.load(response)
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None


def _is_healthy(report: dict | None) -> bool:
    if not report:
        return False
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all(report.get(part, {}).get("status") == "healthy" for part in parts)


def _log_tail(name: str, lines: int = 30) -> str:
    path = airflow_home() / "logs" / f"{name}.out"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def up(timeout: float = 240.0) -> None:
    env = airflow_env()
    home = airflow_home()
    airflow = str(Path(sys.executable).with_name("airflow"))
    running = running_components()
    if len(running) == len(COMPONENTS) and _is_healthy(health()):
        print(f"headrace: the Airflow stack is already running at {api_url()}")
        _print_login()
        return
    if running:
        print(f"headrace: stopping a partial stack first ({', '.join(running)})")
        down()
    refuse_taken_port(api_port())

    (home / "logs").mkdir(parents=True, exist_ok=True)
    (home / "pids").mkdir(parents=True, exist_ok=True)
    _make_lineage_folder(env)
    print(f"headrace: migrating the metadata database in {home}")
    with open(home / "logs" / "db-migrate.out", "w") as log:
        result = subprocess.run(
            [airflow, "db", "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    if result.returncode != 0:
        raise SystemExit(f"airflow db migrate failed; see {home / 'logs' / 'db-migrate.out'}")

    for name, args in COMPONENTS.items():
        log = open(home / "logs" / f"{name}.out", "ab")  # noqa: SIM115 - the child keeps it open
        process = subprocess.Popen(
            [airflow, *args],
            env=component_env(name, env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: down() stops it with all its children
        )
        log.close()
        _pid_file(name).write_text(f"{process.pid}\n")
        print(f"headrace: started {name} (pid {process.pid})")

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [name for name in COMPONENTS if name not in running_components()]
        if dead:
            tails = "\n".join(f"--- {name} ---\n{_log_tail(name)}" for name in dead)
            down()
            raise SystemExit(f"headrace: {', '.join(dead)} exited during start-up:\n{tails}")
        if _is_healthy(health()):
            print(f"headrace: the Airflow stack is healthy at {api_url()}")
            if not paused_at_creation():
                set_up_lake(env)
            _print_login()
            return
        time.sleep(2)
    report = health()
    down()
    raise SystemExit(
        f"headrace: the stack was not healthy after {timeout:.0f}s (last health: {report})"
    )


def _make_lineage_folder(env: dict[str, str]) -> None:
    """The file transport writes into an existing folder only: make a local one (object stores
    have no folders)."""
    transport = json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    if transport.get("type") == "file":
        path = transport["log_file_path"]
        if path.startswith("file://"):
            path = urllib.request.url2pathname(urllib.parse.urlsplit(path).path)
        if "://" not in path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def set_up_lake(env: dict[str, str], timeout: float = 300.0) -> None:
    """First run: the ``lake_setup`` run that checks every setting and writes the lake's
    ``_lake.json``, unless the lake has it. Its DAG starts unpaused here, so it runs at once."""
    sys.path.insert(0, str(REPO_ROOT))
    from include.config import load_settings
    from include.storage import storage_for
    from scripts.airflow_api import AirflowApi

    descriptor = f"{load_settings(env).lake_root}/_lake.json"
    if storage_for(descriptor).exists(descriptor):
        return
    api = AirflowApi(api_url(), ADMIN_USER, admin_password())
    api.wait_for_dags({"lake_setup"}, timeout=timeout)
    run_id = api.trigger("lake_setup", {})
    state = api.wait_for_run("lake_setup", run_id, timeout=timeout)["state"]
    if state != "success":
        raise SystemExit(
            f"headrace: lake_setup run {run_id} ended {state}: see its task logs in the UI"
        )
    print(f"headrace: set up the lake ({descriptor})")


def _print_login() -> None:
    print(f"  UI and REST API: {api_url()}")
    print(f"  log in as '{ADMIN_USER}' with the password in {airflow_home() / 'passwords.json'}")
    print(f"  component logs: {airflow_home() / 'logs'}")


# The API server stops after the scheduler, because a task the scheduler stops reports its end
# state through it. Stopped first, a task's report is refused and retried until its supervisor
# gives up (28 s seen), and the task is left to be retried on the next start. The triggerer and
# the dag-processor reach the database without it, so it does not wait for them: the triggerer
# takes 2-13 s to stop (Airflow's supervisor sleeps out its 10 s escalation delay when it misses
# that its trigger runner has exited), and `down` took that plus the API server's stop.
STOP_FIRST = ("scheduler", "triggerer", "dag-processor")
API_SERVER_OUTLIVES = ("scheduler",)


def _signal_component(name: str) -> int | None:
    """SIGTERM the component's process group; its pgid, or None when it was not running."""
    path = _pid_file(name)
    if not path.exists():
        return None
    pgid = int(path.read_text().strip())
    if not _group_alive(pgid):
        path.unlink()
        return None
    os.killpg(pgid, signal.SIGTERM)
    return pgid


def _wait_for_component(name: str, pgid: int, deadline: float) -> None:
    """Wait for the group to end; SIGKILL what is left of it at ``deadline``."""
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(pgid):
        print(f"headrace: {name} did not stop in time; killing process group {pgid}")
        os.killpg(pgid, signal.SIGKILL)
        while _group_alive(pgid):
            time.sleep(0.1)
    _pid_file(name).unlink(missing_ok=True)
    print(f"headrace: stopped {name} (process group {pgid})")


def down(timeout: float = 30.0) -> None:
    """SIGTERM every component's process group, the API server once the scheduler has stopped;
    SIGKILL what is left of a group ``timeout`` seconds after its SIGTERM."""
    stopping: dict[str, tuple[int, float]] = {}  # name: (pgid, deadline)
    for name in STOP_FIRST:
        if (pgid := _signal_component(name)) is not None:
            stopping[name] = (pgid, time.monotonic() + timeout)
    stopped_any = bool(stopping)
    for name in API_SERVER_OUTLIVES:
        if name in stopping:
            _wait_for_component(name, *stopping.pop(name))
    if (pgid := _signal_component("api-server")) is not None:
        stopping["api-server"] = (pgid, time.monotonic() + timeout)
        stopped_any = True
    for name, (pgid, deadline) in stopping.items():
        _wait_for_component(name, pgid, deadline)
    if not stopped_any:
        print("headrace: no Airflow stack process was running")
    # The warm drivers the stack's local jobs ran in would otherwise wait out their idle time.
    sys.path.insert(0, str(REPO_ROOT))
    from include.warm_drivers import pool_of, stop_drivers

    drivers = stop_drivers(pool_of(local_runs_dir()))
    if drivers:
        print(f"headrace: stopped {drivers} warm job driver(s)")


def status() -> int:
    running = running_components()
    for name in COMPONENTS:
        state = f"running (pid {running[name]})" if name in running else "stopped"
        print(f"{name:14} {state}")
    report = health()
    print(f"health: {json.dumps(report) if report else 'api-server not answering'}")
    return 0 if len(running) == len(COMPONENTS) and _is_healthy(report) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    args = parser.parse_args(argv)
    if args.command == "up":
        up()
    elif args.command == "down":
        down()
    elif args.command == "env":
        # For running airflow CLI commands against this stack: eval "$(… env)".
        for key, value in sorted(airflow_env().items()):
            if key.startswith("AIRFLOW") or key in {"PYTHONPATH", "SPARK_LOCAL_IP"}:
                print(f"export {key}={json.dumps(value)}")
    else:
        return status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
