"""The lifecycle driver's measure of what a task adds to its worker's memory (``TaskMemory``, the
figure bench/worker_memory.py compares between day sizes), called as Airflow calls a listener."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.contract.aws_lifecycle_driver import TaskMemory

MB = 2**20


def held(megabytes: int) -> bytes:
    """``megabytes`` of memory, every byte written (resident)."""
    return b"\x01" * (megabytes * MB)


def test_a_task_holding_rows_is_seen_and_one_holding_none_is_not():
    memory = TaskMemory()
    memory.on_task_instance_running(None, SimpleNamespace(task_id="holds_rows"))
    rows = held(64)
    memory.on_task_instance_success(None, SimpleNamespace(task_id="holds_rows"))
    del rows
    memory.on_task_instance_running(None, SimpleNamespace(task_id="orchestrates"))
    memory.on_task_instance_success(None, SimpleNamespace(task_id="orchestrates"))

    added = memory.take()
    assert 64 <= added["holds_rows"] < 72
    assert 0 <= added["orchestrates"] < 4
    assert memory.take() == {}  # taken once


def test_memory_freed_by_an_earlier_task_does_not_hide_a_later_tasks_rows():
    """The earlier task's freed heap is returned to the system before the next task starts, so
    a later task whose rows reuse it is still seen (without ``malloc_trim`` it is not: the freed
    blocks stay resident under the one still held above them)."""
    memory = TaskMemory()
    memory.on_task_instance_running(None, SimpleNamespace(task_id="first"))
    blocks = [b"\x01" * 100_000 for _ in range(480)]  # 48 MB of heap (under the mmap threshold)
    pinned_above_them = b"\x02" * 100_000  # as large: no hole below fits it
    del blocks
    memory.on_task_instance_failed(None, SimpleNamespace(task_id="first"), error=None)
    memory.on_task_instance_running(None, SimpleNamespace(task_id="second"))
    rows = [b"\x03" * 100_000 for _ in range(320)]  # 32 MB
    memory.on_task_instance_success(None, SimpleNamespace(task_id="second"))
    del rows, pinned_above_them
    assert memory.take()["second"] == pytest.approx(32, abs=4)


def test_a_deferred_task_keeps_the_larger_of_its_two_parts():
    memory = TaskMemory()
    memory.on_task_instance_running(None, SimpleNamespace(task_id="waits"))
    before_deferral = held(24)
    # Deferred: no hook. Resumed: running again.
    memory.on_task_instance_running(None, SimpleNamespace(task_id="waits"))
    del before_deferral
    memory.on_task_instance_success(None, SimpleNamespace(task_id="waits"))
    assert memory.take()["waits"] == pytest.approx(24, abs=4)
