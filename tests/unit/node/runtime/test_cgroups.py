"""cgroup v1 limits: the join wrapper, and groups on this machine's hierarchy where writable."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from node.runtime.cgroups import CgroupsV1, join_command


def test_join_command_is_the_plain_command_without_groups():
    assert join_command((), ("python3", "-V")) == ("python3", "-V")


def test_join_command_moves_the_process_then_execs(tmp_path):
    procs = tmp_path / "cgroup.procs"
    out = subprocess.run(
        join_command((str(procs),), ("sh", "-c", "echo $$")),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # The pid written is the pid that ran the command: exec kept it.
    assert procs.read_text().strip() == out.strip()


def test_join_command_fails_with_125_when_it_cannot_join(tmp_path):
    result = subprocess.run(
        join_command((str(tmp_path / "no" / "cgroup.procs"),), ("true",)), capture_output=True
    )
    assert result.returncode == 125


def test_a_missing_hierarchy_is_a_stated_problem(tmp_path):
    assert "no cgroup v1 memory controller" in CgroupsV1(root=str(tmp_path)).problem()


def test_groups_get_the_limits_and_go_away():
    cgroups = CgroupsV1(parent="shoal-test")
    problem = cgroups.problem()
    if problem is not None:
        pytest.skip(f"cgroup v1 is not writable here: {problem}")
    task_id = f"t-{uuid.uuid4().hex[:8]}"
    procs = cgroups.create(task_id, 64 << 20, 250)
    try:
        memory = os.path.dirname(procs[0])
        cpu = os.path.dirname(procs[1])
        with open(os.path.join(memory, "memory.limit_in_bytes")) as f:
            assert int(f.read()) == 64 << 20
        with open(os.path.join(cpu, "cpu.cfs_quota_us")) as f:
            assert int(f.read()) == 25_000
        # Created again (an agent retrying): a lower limit and a higher one both apply.
        cgroups.create(task_id, 32 << 20, 0)
        cgroups.create(task_id, 128 << 20, 0)
        with open(os.path.join(memory, "memory.limit_in_bytes")) as f:
            assert int(f.read()) == 128 << 20
        assert not cgroups.oom_killed(task_id)
    finally:
        cgroups.remove(task_id)
    assert not os.path.exists(memory) and not os.path.exists(cpu)
    for parent in (os.path.dirname(memory), os.path.dirname(cpu)):
        os.rmdir(parent)
