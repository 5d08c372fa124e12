"""An apply is checked whole, on a copy of the state, before anything changes."""

from __future__ import annotations

import consensus  # noqa: F401  (registers commands and tables)
from consensus.secrets import blobs
from consensus.services import parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import CreateService, services
from node.apply_check import apply_problems
from node.manifests import load_manifest
from node.manifests.plan import plan_apply

STACK = """
services:
  web:
    image: busybox
    ports: ["8080:80"]
    secrets: [pw, key]
  worker:
    image: busybox
    ports: ["9090:90"]
secrets:
  pw: {file: ./pw.txt}
  key: {external: true}
"""


def _check(state: ClusterState, text: str = STACK, *, files_to_come: bool = True):
    manifest = load_manifest(text)
    steps = plan_apply(dict(services(state)), manifest.specs)
    return apply_problems(state, steps, manifest.files, files_to_come=files_to_come)


def test_every_problem_is_found_and_nothing_changes():
    state = ClusterState()
    state.apply(
        CreateService(
            "s1", parse_service_spec({"name": "old", "image": "busybox", "ports": ["9090:90"]}), 1.0
        )
    )
    problems = _check(state)
    assert [(p.where, p.field, p.code) for p in problems] == [
        ("secrets.key", "secrets.key", 400),
        ("worker", "services.worker.ports", 409),
    ]
    assert "external, but the cluster has no secret 'key'" in problems[0].error
    assert sorted(services(state)) == ["old"] and not blobs(state, "secret")


def test_a_file_the_cli_creates_counts_only_in_the_check_before_it_does():
    state = ClusterState()
    text = STACK.replace("  key: {external: true}\n", "").replace("[pw, key]", "[pw]")
    assert _check(state, text) == []
    (problem,) = _check(state, text, files_to_come=False)
    assert problem.field == "secrets.pw" and "create it first" in problem.error
