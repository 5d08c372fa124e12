"""The pure parts of the services API: apply planning, apply documents, summaries."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.services import parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import CreateService, Task, UpdateService, services
from node.api.services import tasks_summary
from node.manifests import ManifestError, load_manifest
from node.manifests.plan import plan_apply


def spec(name: str, image: str = "busybox", replicas: int = 1):
    return parse_service_spec({"name": name, "image": image, "replicas": replicas})


def run_plan(state: ClusterState, specs) -> list[str]:
    """Plan against `state`, then commit the plan as the API does; returns the actions."""
    steps = plan_apply(dict(services(state)), tuple(specs))
    for i, step in enumerate(steps):
        if step.action == "create":
            assert state.apply(CreateService(f"id-{step.spec.name}", step.spec, float(i))).ok
        elif step.action == "update":
            assert state.apply(UpdateService(step.spec, float(i), step.expected_version)).ok
    return [step.action for step in steps]


names = st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True, min_size=1)


@settings(max_examples=50)
@given(
    first=names,
    second=names,
    images=st.lists(st.sampled_from(["busybox", "x:2"]), min_size=4, max_size=4),
)
def test_applying_the_same_specs_twice_changes_nothing_the_second_time(first, second, images):
    state = ClusterState()
    run_plan(state, [spec(n) for n in first])
    wanted = [spec(n, images[i]) for i, n in enumerate(second)]
    actions = run_plan(state, wanted)
    for n, action in zip(second, actions, strict=False):
        before = spec(n) if n in first else None
        after = wanted[second.index(n)]
        assert action == (
            "create" if before is None else "unchanged" if before == after else "update"
        )
    versions = {s.name: s.version for s in services(state).values()}
    assert run_plan(state, wanted) == ["unchanged"] * len(wanted)
    assert {s.name: s.version for s in services(state).values()} == versions


def test_an_update_is_planned_against_the_version_it_saw():
    state = ClusterState()
    run_plan(state, [spec("web")])
    (step,) = plan_apply(dict(services(state)), (spec("web", replicas=4),))
    assert (step.action, step.expected_version) == ("update", 1)
    state.apply(UpdateService(spec("web", replicas=2), 1.0))  # someone else got there first
    assert state.apply(UpdateService(step.spec, 2.0, step.expected_version)).code == 409


def test_a_list_of_shoal_specs_in_json_or_yaml():
    plain = [
        {"name": "web", "image": "nginx", "replicas": 2, "ports": ["8080:80"]},
        {"name": "db", "image": "postgres", "resources": {"reservations": {"memory": "1G"}}},
    ]
    for text in (
        json.dumps(plain),
        "- name: web\n  image: nginx\n  replicas: 2\n  ports: ['8080:80']\n"
        "- name: db\n  image: postgres\n  resources: {reservations: {memory: 1G}}\n",
    ):
        manifest = load_manifest(text, strict=True)
        assert [s.name for s in manifest.specs] == ["web", "db"] and manifest.warnings == ()
        assert manifest.specs[1].resources.reservations.memory_bytes == 1 << 30


@pytest.mark.parametrize(
    "text, field",
    [
        (
            '[{"name": "web", "image": "x"}, {"name": "db", "image": "y", "replicas": -2}]',
            "[1].replicas",
        ),
        ('[{"name": "web", "image": "x", "colour": "red"}]', "[0].colour"),
        ('["web"]', "[0]"),
        ('[{"name": "web", "image": "x"}, {"name": "web", "image": "y"}]', "<root>"),
        ("{not: [valid", "<root>"),
        ("just a string", "<root>"),
    ],
)
def test_bad_documents_name_the_field(text, field):
    with pytest.raises(ManifestError) as exc_info:
        load_manifest(text, strict=False)
    assert exc_info.value.field == field


def test_compose_and_kubernetes_documents_go_to_the_manifest_reader():
    compose = load_manifest(
        "services:\n  web:\n    image: nginx\n    deploy:\n      replicas: 3\n"
        "    cap_add: [NET_ADMIN]\n",
        strict=False,
    )
    assert compose.specs[0].replicas == 3 and any("cap_add" in w for w in compose.warnings)
    with pytest.raises(ManifestError):
        load_manifest(
            "services:\n  web:\n    image: nginx\n    cap_add: [NET_ADMIN]\n", strict=True
        )


def test_summary_counts_the_current_tasks_of_this_service_only():
    state = ClusterState()
    state.apply(CreateService("s1", spec("web", replicas=3), 0.0))
    service = services(state)["web"]
    tasks = [
        Task("t1", "s1", "web", 1, 1, state="running"),
        Task("t2", "s1", "web", 2, 1, state="pending"),
        Task("t3", "s1", "web", 3, 1, state="failed", desired="shutdown"),
        Task("t4", "old-id", "web", 3, 1, state="running"),  # a deleted namesake's task
        Task("t5", "s1", "web", 1, 2, state="running", canary=True),
    ]  # beside t1
    assert tasks_summary(service, tasks) == {
        "desired": 3,
        "running": 1,
        "canaries": 1,
        "states": {"pending": 1, "running": 2},
    }
