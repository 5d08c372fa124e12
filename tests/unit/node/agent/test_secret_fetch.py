"""The agent opens its tasks' secrets and configs from the replicated state in its own
process: only for a task of this node whose spec uses them, a secret opened with the
cluster's key, a tampered one refused."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus.secrets import CreateBlob, blobs
from consensus.services import parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import CreateService, Task, tasks
from node.agent.secret_fetch import FetchError, FileOpener
from node.runtime.model import RunSpec, TaskFile
from node.secret_box import SecretBox

BOX = SecretBox(b"k" * 32)


@pytest.fixture
def state() -> ClusterState:
    s = ClusterState()
    sealed = BOX.seal("db", b"hunter2")
    assert s.apply(CreateBlob("secret", "s1", "db", 7, sealed, 1.0)).ok
    assert s.apply(CreateBlob("config", "c1", "app", 3, b"a=1", 1.0)).ok
    spec = parse_service_spec(
        {"name": "web", "image": "busybox", "secrets": ["db"], "configs": ["app"]}
    )
    assert s.apply(CreateService("svc", spec, 1.0)).ok
    tasks(s)["t1"] = Task("t1", "svc", "web", 1, 1, node_id="n1", state="assigned")
    return s


def fill(state: ClusterState, node_id: str, *files: TaskFile) -> RunSpec:
    opener = FileOpener(lambda: contextlib.nullcontext(state), BOX, node_id)
    run = RunSpec(task_id="t1", service="web", slot=1, image="busybox", files=files)
    return asyncio.run(opener.fill(run))


def test_the_node_of_the_task_gets_the_secret_opened_and_the_config(state):
    run = fill(
        state, "n1", TaskFile("secret", "db", "/run/secrets/db"), TaskFile("config", "app", "/app")
    )
    assert [f.data for f in run.files] == [b"hunter2", b"a=1"]


@pytest.mark.parametrize(
    "node_id, file, words",
    [
        ("n2", TaskFile("secret", "db", "/s"), "not assigned to node 'n2'"),
        ("n1", TaskFile("config", "db", "/s"), "no such config"),
        ("n1", TaskFile("secret", "other", "/s"), "no such secret"),
    ],
)
def test_what_the_task_may_not_have_is_refused(state, node_id, file, words):
    with pytest.raises(FetchError, match=words):
        fill(state, node_id, file)


def test_a_tampered_secret_is_refused(state):
    table = blobs(state, "secret")
    sealed = table["db"].data
    table["db"] = dataclasses.replace(table["db"], data=sealed[:-1] + bytes([sealed[-1] ^ 1]))
    with pytest.raises(FetchError, match="cannot open secret 'db'"):
        fill(state, "n1", TaskFile("secret", "db", "/s"))
