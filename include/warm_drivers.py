"""Warm drivers for local jobs: a local Spark job or quality check runs in a driver process that
outlives it, so the next job of the same environment skips the start-up: the interpreter and its
libraries' imports, and for Spark the JVM, whose JIT has already compiled the hot code.

The local counterpart of EMR Serverless's pre-initialized capacity: the cold start is paid once
per driver, not once per job. Measured on 2 cores (a local ingest job of one day, five in a row):
2,000 rows 14.5-15.4 s and 25.8-26.8 CPU-s cold, 3.8-3.9 s and 6.8-7.0 CPU-s warm; 250,000 rows
25-26 s cold, 8.4-10.6 s warm.

How a job runs. The job's process (the command step of :mod:`include.local_jobs`) is a thin
client: ``python -m include.warm_drivers run <pool> <module> <argv…>``. It claims a free slot of
the pool (a lock held for the whole job), connects to the slot's driver over a Unix socket
(starting one if there is none) and hands it the module, argv, working folder, environment and
its own stdout and stderr; the driver runs the module as ``__main__`` with that environment and
output (its JVM's log included), and the client exits with the job's exit code.

What a job can tell from a fresh process: nothing but speed.

- A driver serves only jobs of one launch environment: the interpreter, the working folder and
  every environment variable except those Airflow sets per task process (``AIRFLOW_CTX_*``,
  ``_AIRFLOW_*``, ``__AIRFLOW_*``) name the pool. The job's own environment is set exactly for
  its run.
- Each job imports its own code afresh (only the interpreter's libraries stay) and, where Spark
  runs, gets a new Spark session (its own SQL options and temporary views; the cache cleared).
- One job at a time per driver; jobs at the same time get drivers of their own.
- Stopping: when the client gets SIGTERM (a stop, a maximum runtime) it ends the driver's whole
  process group, JVM included, before it exits; when the client dies otherwise (SIGKILL) the
  driver sees its connection close and ends its group itself. A stopped job never keeps running,
  and the next job of that slot starts a fresh driver.
- A driver with no job for ``HEADRACE_WARM_DRIVER_IDLE_S`` seconds (default 300) exits;
  ``make down`` stops the stack's drivers at once (:func:`stop_drivers`). An idle Spark driver
  holds about 1.3 GB (its JVM), a quality check's about 0.6 GB (measured after a demo day).

Files, per slot (``<pool>/<key>/slot-<n>/``, readable by the user only): ``lock``, ``driver.json``
(pid and create time), ``driver.sock`` and ``driver.log`` (what the driver says between jobs).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from include.local_state import process_matches, read_json, start_detached, write_json

IDLE_ENV = "HEADRACE_WARM_DRIVER_IDLE_S"
# Five minutes: a day's Spark jobs are seconds apart, but a training run between two days takes
# minutes (`make demo`: with a minute, every day after a training started a cold driver).
DEFAULT_IDLE_S = 300.0
# Variables Airflow sets per task process: the context (dag, task, run, try) and its supervisor's
# private ones (e.g. __AIRFLOW_SUPERVISOR_FD, whose number varies). They differ between jobs that
# may share a driver, and no JVM or library reads them. Seen in `make demo`: with only
# AIRFLOW_CTX_ left out, a day's ingest and features jobs started drivers of their own.
PER_TASK_PREFIXES = ("AIRFLOW_CTX_", "_AIRFLOW_", "__AIRFLOW_")
# How long a new driver may take to listen (it imports nothing heavy before it does).
START_TIMEOUT_S = 60.0
# After SIGTERM, how long a stopping client waits for the driver's group before SIGKILL.
STOP_GRACE_S = 8.0

_SOCKET = "driver.sock"
_PROCESS = "driver.json"
_LOCK = "lock"
_LOG = "driver.log"
_HEADER = struct.Struct("!Q")


class DriverGone(RuntimeError):
    """The driver ended before it took the job (a stale slot): the job may go to a fresh one."""


def pool_of(work_root: Path | str) -> Path:
    """The pool of drivers of the local jobs under ``work_root`` (a local runs root)."""
    return Path(work_root) / "warm-drivers"


def job_command(python: str, pool: Path | str, module: str, argv: Sequence[str]) -> list[str]:
    """The command that runs ``module`` with ``argv`` in a warm driver of ``pool``."""
    return [python, "-m", "include.warm_drivers", "run", str(pool), module, *argv]


def pool_key(python: str, cwd: str, env: Mapping[str, str]) -> str:
    """The name of the pool of drivers that may run a job of this launch environment."""
    kept = sorted((k, v) for k, v in env.items() if not k.startswith(PER_TASK_PREFIXES))
    launch = json.dumps([python, cwd, kept]).encode()
    return hashlib.sha256(launch).hexdigest()[:16]


# --- the client: the job's own process -------------------------------------------------------


def run(pool: Path, module: str, argv: Sequence[str]) -> int:
    """Run ``module`` in a warm driver of ``pool``; its exit code."""
    env = dict(os.environ)
    cwd = os.getcwd()
    slots = pool / pool_key(sys.executable, cwd, env)
    request = json.dumps({"module": module, "argv": list(argv), "cwd": cwd, "env": env}).encode()
    slot, lock = _claim_slot(slots)
    try:
        for attempt in (1, 2):
            driver = _driver_of(slot, env, cwd)
            try:
                return _run_in(driver, slot, request)
            except DriverGone:
                if attempt == 2:
                    raise
                _end_driver(driver)
        raise AssertionError("unreachable")
    finally:
        lock.close()


def _claim_slot(slots: Path):
    """The first slot no other job holds, and its lock (held until the job ends)."""
    for n in itertools.count():
        slot = slots / f"slot-{n}"
        slot.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = open(slot / _LOCK, "w")  # noqa: SIM115 - held for the job, closed by run()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return slot, lock
    raise AssertionError("unreachable")


def _driver_of(slot: Path, env: Mapping[str, str], cwd: str) -> dict:
    """The slot's live driver, or a new one started detached (it outlives this job)."""
    process = read_json(slot / _PROCESS)
    if process and process_matches(process["pid"], process.get("create_time")):
        return process
    if process:
        _end_driver(process)
    (slot / _SOCKET).unlink(missing_ok=True)
    child, create_time = start_detached(
        [sys.executable, "-m", "include.warm_drivers", "serve", str(slot)],
        log_path=slot / _LOG,
        cwd=Path(cwd),
        env=env,
    )
    process = {"pid": child.pid, "create_time": create_time}
    write_json(slot / _PROCESS, process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (slot / _SOCKET).exists():
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the warm driver did not start; see {slot / _LOG}")
        time.sleep(0.02)
    return process


def _connect(slot: Path) -> socket.socket:
    """A connection to the slot's socket (by a relative name: a socket path is short)."""
    here = os.getcwd()
    os.chdir(slot)
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(_SOCKET)
        return conn
    finally:
        os.chdir(here)


def _run_in(driver: dict, slot: Path, request: bytes) -> int:
    """Hand the job to ``driver`` with this process's stdout and stderr; its exit code."""
    try:
        conn = _connect(slot)
        socket.send_fds(conn, [_HEADER.pack(len(request))], [1, 2])
        conn.sendall(request)
        accepted = conn.recv(1)
    except OSError as error:
        raise DriverGone(str(error)) from error
    if accepted != b"A":
        raise DriverGone("the driver closed the connection before taking the job")

    def on_sigterm(signum, frame):
        # Stopped (or past its maximum runtime): the job ends with all it started, then so do we.
        _end_driver(driver)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    reply = b""
    while chunk := conn.recv(64):
        reply += chunk
    if not reply:
        print(
            f"[warm-driver] the driver (pid {driver['pid']}) ended during the job; "
            f"see {slot / _LOG}",
            file=sys.stderr,
        )
        return 1
    return int(reply)


def _end_driver(driver: dict) -> None:
    """SIGTERM the driver's process group (it leads one), SIGKILL what is left after
    STOP_GRACE_S.

    Every member of the group is waited for, not only the driver: its JVM deletes Spark's
    ``blockmgr-*`` directories (``/tmp`` by default) in a shutdown hook that runs after the
    driver's Python has exited. A SIGKILL right then left one directory, about 80 MB, per
    ``make demo``.
    """
    import psutil  # an Airflow dependency; imported late to keep this module cheap to import

    pid = driver["pid"]
    if not process_matches(pid, driver.get("create_time")):
        return
    members = []  # (pid, create time) of each process in the group
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == pid:
                members.append((process.pid, process.create_time()))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while any(process_matches(*member) for member in members) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def stop_drivers(pool: Path) -> int:
    """End every driver of ``pool`` (``make down``); how many were running."""
    stopped = 0
    for record in sorted(Path(pool).glob(f"*/slot-*/{_PROCESS}")):
        driver = read_json(record)
        if driver and process_matches(driver["pid"], driver.get("create_time")):
            _end_driver(driver)
            stopped += 1
    return stopped


# --- the driver ------------------------------------------------------------------------------


def serve(slot: Path) -> int:
    """Take jobs on the slot's socket, one at a time, until idle for the idle time."""
    idle_s = float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_S))
    os.chdir(slot)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(_SOCKET)
    listener.listen(1)
    listener.settimeout(1.0)
    # The driver's stdout and stderr become pipes relayed to the running job's (to driver.log
    # between jobs): the JVM, started by the first job that asks for Spark, inherits them, so its
    # log reaches whichever job is running, and it never holds a job's files open.
    own_log = os.dup(1)
    relays = [_Relay(1, own_log), _Relay(2, own_log)]
    libraries_only = set(sys.modules)
    base_path = list(sys.path)
    base_env = dict(os.environ)
    idle_since = time.monotonic()
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if time.monotonic() - idle_since > idle_s and _retire(slot):
                return 0
            continue
        conn.settimeout(None)
        with conn:
            _serve_one(conn, relays, own_log)
        # The job's code is imported afresh by the next one; the libraries stay.
        for name, module in list(sys.modules.items()):
            if name not in libraries_only and not _is_library(module):
                del sys.modules[name]
        sys.path[:] = base_path
        # A handler the job installed would outlive it; a stop must end the driver.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(base_env)
        os.chdir(slot)
        idle_since = time.monotonic()


def _retire(slot: Path) -> bool:
    """Whether no job holds the slot; if none does, the slot's files are removed (lock kept)."""
    lock = open(_LOCK, "w")  # noqa: SIM115 - released when this process exits
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return False
    for name in (_SOCKET, _PROCESS):
        Path(name).unlink(missing_ok=True)
    return True


def _is_library(module) -> bool:
    """Whether ``module`` comes from the interpreter or its site-packages (not a job's code)."""
    path = getattr(module, "__file__", None)
    if path is None:
        return True
    return os.path.realpath(path).startswith(_LIBRARY_ROOTS)


_LIBRARY_ROOTS = tuple(
    os.path.realpath(root) + os.sep for root in {sys.prefix, sys.base_prefix, sys.exec_prefix}
)


def _serve_one(conn: socket.socket, relays: Sequence[_Relay], own_log: int) -> None:
    """Run one job: its output to the client's stdout and stderr, its exit code sent back."""
    header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 2)
    if len(header) != _HEADER.size or len(fds) != 2:
        for fd in fds:
            os.close(fd)
        return
    (size,) = _HEADER.unpack(header)
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            return
        body += chunk
    request = json.loads(body)
    done = threading.Event()

    def watch_client() -> None:
        # The client's end of the connection closes only after the exit code, unless it died.
        conn.recv(1)
        if not done.is_set():
            os.killpg(0, signal.SIGKILL)

    conn.sendall(b"A")
    watcher = threading.Thread(target=watch_client, daemon=True)
    watcher.start()
    for relay, fd in zip(relays, fds, strict=True):
        relay.switch(fd)
    try:
        exit_code = _run_job(request)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for relay in relays:
            relay.switch(own_log)
        done.set()
        for fd in fds:
            os.close(fd)
    conn.sendall(str(exit_code).encode())
    # Ends the watcher's read (the job is done: it kills nothing) before the socket is closed.
    conn.shutdown(socket.SHUT_RDWR)
    watcher.join()


class _Relay(threading.Thread):
    """Makes ``fd`` a pipe and copies what is written to it to the current sink."""

    def __init__(self, fd: int, sink: int):
        super().__init__(daemon=True)
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        os.set_blocking(read_end, False)
        self.read_end = read_end
        self.sink = sink
        self.lock = threading.Lock()
        self.start()

    def run(self) -> None:
        import select

        while True:
            select.select([self.read_end], [], [])
            with self.lock:
                try:
                    data = os.read(self.read_end, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    return
                with contextlib.suppress(OSError):  # a sink whose reader is gone
                    while data:
                        data = data[os.write(self.sink, data) :]

    def switch(self, sink: int) -> None:
        """Send what follows to ``sink``, once everything written before is relayed."""
        import termios

        while True:
            with self.lock:
                pending = fcntl.ioctl(self.read_end, termios.FIONREAD, b"\0\0\0\0")
                if struct.unpack("i", pending)[0] == 0:
                    self.sink = sink
                    return
            time.sleep(0.002)


def _run_job(request: Mapping) -> int:
    """Run the request's module as ``__main__`` in a fresh Spark session; its exit code."""
    import runpy
    import traceback

    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = [request["module"], *request["argv"]]
    _fresh_spark_session()
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _fresh_spark_session() -> None:
    """Make a new session of the running SparkContext the active one (none before the first job:
    its ``get_spark`` starts the JVM, which stays for the next)."""
    if "pyspark" not in sys.modules:
        return
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    if SparkContext._active_spark_context is None:
        return
    previous = SparkSession._activeSession or SparkSession._instantiatedSession
    if previous is None:
        return
    previous.catalog.clearCache()
    fresh = previous.newSession()
    SparkSession._instantiatedSession = fresh
    SparkSession._activeSession = fresh
    jvm = fresh._jvm
    jvm.SparkSession.setDefaultSession(fresh._jsparkSession)
    jvm.SparkSession.setActiveSession(fresh._jsparkSession)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 3 and argv[0] == "run":
        return run(Path(argv[1]), argv[2], argv[3:])
    if len(argv) == 2 and argv[0] == "serve":
        return serve(Path(argv[1]))
    print(
        "usage: python -m include.warm_drivers run <pool> <module> [args…]\n"
        "       python -m include.warm_drivers serve <slot>",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
