"""Which user process-runtime tasks run as."""

from __future__ import annotations

import os
import pwd

import pytest

from node.runtime.task_user import DEFAULT_TASK_USER, node_user, resolve_task_user


def test_a_root_node_runs_tasks_as_nobody_by_default_and_others_as_themselves():
    chosen = resolve_task_user("")
    if os.geteuid() == 0:
        assert chosen.name == DEFAULT_TASK_USER and chosen.switches
        assert chosen.popen_options() == {
            "user": chosen.uid,
            "group": chosen.gid,
            "extra_groups": [],
        }
    else:
        assert chosen == node_user() and not chosen.switches and chosen.popen_options() == {}


def test_an_unknown_user_or_a_switch_without_root_is_refused():
    with pytest.raises(ValueError, match="no such user"):
        resolve_task_user("no-such-user-here")
    own = pwd.getpwuid(os.geteuid()).pw_name
    assert not resolve_task_user(own).switches
    if os.geteuid() != 0:
        with pytest.raises(ValueError, match="only a node running as root"):
            resolve_task_user("root")
