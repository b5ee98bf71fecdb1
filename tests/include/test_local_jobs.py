"""The one local supervisor: steps in order, one job per name however often started, outcomes
recorded in one vocabulary, stop and max runtime ending the whole job, a lost job seen as lost."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time

import psutil
import pytest

from include import local_jobs


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def appender(path, text: str) -> list[str]:
    """A step that appends ``text`` and the job outcome it sees to ``path``."""
    return python(
        f"import os; open({str(path)!r}, 'a').write({text!r} + ':' + "
        f"os.environ.get({local_jobs.OUTCOME_VARIABLE!r}, '-') + '\\n')"
    )


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def test_steps_run_in_order_and_a_second_start_returns_the_same_job(tmp_path):
    trace = tmp_path / "trace.txt"
    steps = local_jobs.JobSteps(
        prepare=appender(trace, "prepare"),
        command=[
            *python(
                "from include.local_jobs import write_result; import sys; "
                f"open({str(trace)!r}, 'a').write('command\\n'); "
                "write_result(sys.argv[1], RecordsWritten=42)",
            ),
            str(tmp_path / "job-1"),
        ],
        finalize=appender(trace, "finalize"),
    )

    _, started = local_jobs.start(tmp_path / "job-1", {"Name": "job-1"}, steps)
    assert started
    done = local_jobs.wait(tmp_path / "job-1", timeout=60)

    assert done["Status"] == local_jobs.COMPLETED
    assert done["ExitCode"] == 0
    assert done["Result"] == {"RecordsWritten": 42}
    assert done["Request"] == {"Name": "job-1"}
    assert trace.read_text() == "prepare:-\ncommand\nfinalize:Completed\n"
    again, started_again = local_jobs.start(tmp_path / "job-1", {"Name": "job-1"}, steps)
    assert not started_again
    assert again["Status"] == local_jobs.COMPLETED
    assert trace.read_text().count("command") == 1


def test_a_failed_step_fails_the_job_with_its_log_and_a_new_start_runs_again(tmp_path):
    trace = tmp_path / "trace.txt"
    steps = local_jobs.JobSteps(
        prepare=python("import sys; print('input manifest lists no files'); sys.exit(3)"),
        command=appender(trace, "command"),
        finalize=appender(trace, "finalize"),
    )
    local_jobs.start(tmp_path / "job-2", {}, steps)
    failed = local_jobs.wait(tmp_path / "job-2", timeout=60, raise_on_failure=False)

    assert failed["Status"] == local_jobs.FAILED
    assert failed["FailureReason"].startswith("prepare step exited with code 3; log tail:\n")
    assert "input manifest lists no files" in failed["FailureReason"]
    # The command never ran; finalize did, and saw the outcome.
    assert trace.read_text() == "finalize:Failed\n"
    with pytest.raises(local_jobs.LocalJobError, match="job-2 is Failed: prepare step exited"):
        local_jobs.wait(tmp_path / "job-2", timeout=5)

    fixed = local_jobs.JobSteps(command=appender(trace, "command"))
    _, started = local_jobs.start(tmp_path / "job-2", {}, fixed)
    assert started
    assert local_jobs.wait(tmp_path / "job-2", timeout=60)["Status"] == local_jobs.COMPLETED
    history = tmp_path / "job-2" / "history" / "1"
    assert json.loads((history / "status.json").read_text())["Status"] == local_jobs.FAILED


def test_stop_ends_the_running_step_and_its_children_then_finalizes(tmp_path):
    trace = tmp_path / "trace.txt"
    pids = tmp_path / "pids.json"
    # The command starts a grandchild, as a Spark driver starts a JVM; both must end.
    command = python(
        "import json, subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
        f"open({str(pids)!r}, 'w').write(json.dumps([child.pid])); time.sleep(120)"
    )
    steps = local_jobs.JobSteps(
        command=command, finalize=appender(trace, "finalize"), stop_grace_s=2
    )
    local_jobs.start(tmp_path / "job-3", {}, steps)
    wait_until(pids.exists)
    assert local_jobs.describe(tmp_path / "job-3")["Status"] == local_jobs.IN_PROGRESS

    assert local_jobs.stop(tmp_path / "job-3", grace_period=2)

    stopped = local_jobs.describe(tmp_path / "job-3")
    assert stopped["Status"] == local_jobs.STOPPED
    assert stopped["FailureReason"] == "stopped"
    assert trace.read_text() == "finalize:Stopped\n"
    (grandchild,) = json.loads(pids.read_text())
    wait_until(lambda: not psutil.pid_exists(grandchild) or _zombie(grandchild), timeout=10)
    assert not local_jobs.stop(tmp_path / "job-3")


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_max_runtime_stops_the_job_and_says_so(tmp_path):
    steps = local_jobs.JobSteps(
        command=python("import time; time.sleep(120)"), max_runtime_s=1, stop_grace_s=2
    )
    local_jobs.start(tmp_path / "job-4", {}, steps)
    ended = local_jobs.wait(tmp_path / "job-4", timeout=60, raise_on_failure=False)
    assert ended["Status"] == local_jobs.STOPPED
    assert ended["FailureReason"] == (
        "MaxRuntimeExceeded: the job ran longer than MaxRuntimeInSeconds=1"
    )


def test_a_failed_finalize_fails_a_completed_job(tmp_path):
    steps = local_jobs.JobSteps(
        command=python("pass"),
        finalize=python("import sys; print('upload refused: AccessDenied'); sys.exit(1)"),
    )
    local_jobs.start(tmp_path / "job-5", {}, steps)
    ended = local_jobs.wait(tmp_path / "job-5", timeout=60, raise_on_failure=False)
    assert ended["Status"] == local_jobs.FAILED
    assert ended["FailureReason"].startswith("finalize step exited with code 1")
    assert "upload refused: AccessDenied" in ended["FailureReason"]


def test_a_lost_supervisor_is_a_failed_job_that_starts_again(tmp_path):
    steps = local_jobs.JobSteps(command=python("import time; time.sleep(120)"), stop_grace_s=1)
    description, _ = local_jobs.start(tmp_path / "job-6", {}, steps)
    # The machine "restarts": the supervisor and its job vanish without recording anything.
    os.killpg(description["Pid"], signal.SIGKILL)
    wait_until(lambda: local_jobs.describe(tmp_path / "job-6")["Status"] == local_jobs.FAILED)
    lost = local_jobs.describe(tmp_path / "job-6")
    assert lost["Lost"] is True
    assert "ended without recording a result" in lost["FailureReason"]

    quick = local_jobs.JobSteps(command=python("pass"))
    _, started = local_jobs.start(tmp_path / "job-6", {}, quick)
    assert started
    assert local_jobs.wait(tmp_path / "job-6", timeout=60)["Status"] == local_jobs.COMPLETED


def test_an_environment_value_of_none_removes_the_variable(tmp_path):
    seen = tmp_path / "env.json"
    steps = local_jobs.JobSteps(
        command=python(
            "import json, os; "
            f"open({str(seen)!r}, 'w').write(json.dumps([os.environ.get('PYTHONPATH'), "
            "os.environ.get('HEADRACE_TEST_VALUE')]))"
        ),
        env={"PYTHONPATH": None, "HEADRACE_TEST_VALUE": "kept"},
    )
    local_jobs.start(tmp_path / "job-7", {}, steps)
    local_jobs.wait(tmp_path / "job-7", timeout=60)
    assert json.loads(seen.read_text()) == [None, "kept"]


def test_a_step_names_its_own_failure_reason(tmp_path):
    folder = tmp_path / "job-8"
    steps = local_jobs.JobSteps(
        command=python(
            "import sys; from include.local_jobs import write_failure; "
            "print('Traceback (most recent call last): ...'); "
            f"write_failure({str(folder)!r}, 'ValueError: part-00000.csv line 38: score is NaN'); "
            "sys.exit(1)"
        )
    )
    local_jobs.start(tmp_path / "job-8", {}, steps)
    ended = local_jobs.wait(tmp_path / "job-8", timeout=60, raise_on_failure=False)
    assert ended["Status"] == local_jobs.FAILED
    assert ended["FailureReason"] == "ValueError: part-00000.csv line 38: score is NaN"
    assert "Lost" not in ended


def test_a_status_an_older_version_wrote_is_refused_naming_the_folder(tmp_path):
    # What the local tuning job wrote before it ran on the supervisor: its request, and a
    # status of its own without the supervisor's "Status".
    folder = tmp_path / "tuning-jobs" / "churn-tune-1"
    folder.mkdir(parents=True)
    (folder / "request.json").write_text(json.dumps({"HyperParameterTuningJobName": "t"}))
    (folder / "status.json").write_text(json.dumps({"HyperParameterTuningJobStatus": "Completed"}))

    with pytest.raises(RuntimeError, match=re.escape(f"delete {folder}")):
        local_jobs.describe(folder)


def test_a_job_that_ends_between_describes_two_looks_is_not_lost(tmp_path, monkeypatch):
    """The supervisor writes its status, then exits. ``describe`` reads the status, then checks
    the supervisor; a job that ended in between (seen in CI) is completed, not lost."""
    steps = local_jobs.JobSteps(command=python("pass"))
    description, _ = local_jobs.start(tmp_path / "job-9", {}, steps)
    assert local_jobs.wait(tmp_path / "job-9", timeout=60)["Status"] == local_jobs.COMPLETED
    status = tmp_path / "job-9" / "status.json"
    recorded = status.read_text()
    status.unlink()
    looks = []

    def supervisor_ends_now(pid, create_time):
        # Called between the two looks: the supervisor records its result and is gone.
        looks.append(pid)
        status.write_text(recorded)
        return False

    monkeypatch.setattr(local_jobs, "process_matches", supervisor_ends_now)
    ended = local_jobs.describe(tmp_path / "job-9")
    assert looks == [description["Pid"]]
    assert (ended["Status"], ended.get("Lost")) == (local_jobs.COMPLETED, None)
