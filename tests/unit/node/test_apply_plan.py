"""The apply plan: stacks, prune, and Kubernetes Services kept as port selectors, so that a
Service applied before its Deployment, or a Deployment applied again, keeps its ports."""

from __future__ import annotations

import pytest

import consensus  # noqa: F401
from consensus.networks import CreateNetwork, networks
from consensus.selectors import DeleteSelector, PutSelector, port_selectors
from consensus.state import ClusterState
from consensus.tasks import CreateService, DeleteService, UpdateService, services
from node.manifests import Origin, load_manifest
from node.manifests.plan import PlanConflict, plan_manifest

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: vote}
spec:
  selector: {matchLabels: {app: vote}}
  template:
    metadata: {labels: {app: vote}}
    spec: {containers: [{name: vote, image: vote:1, ports: [{containerPort: 80}]}]}
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: vote}
spec:
  type: NodePort
  selector: {app: vote}
  ports: [{port: 8080, targetPort: 80, nodePort: 31000}]
"""


def apply(state: ClusterState, text: str, stack: str = "voting", **flags) -> dict:
    """Plan against `state` and commit it as the API does; returns {name: action}."""
    manifest = load_manifest(text, origin=Origin(stack=stack))
    for network in manifest.networks:  # as the API makes them first
        if network.name not in networks(state):
            assert state.apply(CreateNetwork(f"net-{network.name}", network.name, 0.0)).ok
    plan = plan_manifest(
        dict(services(state)), manifest, selectors=dict(port_selectors(state)), **flags
    )
    for selector in plan.keep_selectors:
        assert state.apply(PutSelector(selector)).ok
    for i, step in enumerate(plan.steps):
        match step.action:
            case "create":
                assert state.apply(CreateService(f"id-{step.spec.name}", step.spec, float(i))).ok
            case "update":
                assert state.apply(UpdateService(step.spec, float(i), step.expected_version)).ok
            case "remove":
                assert state.apply(DeleteService(step.spec.name, float(i))).ok
    for name in plan.drop_selectors:
        assert state.apply(DeleteSelector(name)).ok
    return {step.spec.name: step.action for step in plan.steps} | {"warnings": plan.warnings}


def published(state: ClusterState) -> list[tuple[int, int]]:
    return [(p.target, p.published) for p in services(state)["vote"].spec.ports]


def test_a_service_applied_first_publishes_on_the_deployment_applied_after():
    state = ClusterState()
    first = apply(state, SERVICE)
    assert first["warnings"] == (
        "Service/vote: selects no service in the cluster yet; its ports go to "
        "the services it selects when they are applied",
    )
    assert apply(state, DEPLOYMENT)["vote"] == "create"
    assert published(state) == [(80, 31000)]
    # Applying the Deployment's file again keeps the Service's port: nothing changes.
    assert apply(state, DEPLOYMENT)["vote"] == "unchanged"
    assert published(state) == [(80, 31000)]


def test_a_service_applied_after_updates_the_deployment_once():
    state = ClusterState()
    apply(state, DEPLOYMENT)
    assert apply(state, SERVICE)["vote"] == "update"
    assert published(state) == [(80, 31000)]
    assert apply(state, SERVICE)["vote"] == "unchanged"


def test_removing_the_stack_removes_its_selectors():
    state = ClusterState()
    apply(state, SERVICE)
    apply(state, DEPLOYMENT)
    assert apply(state, "[]", prune=True)["vote"] == "remove"
    assert port_selectors(state) == {} and services(state) == {}
    assert apply(state, DEPLOYMENT)["vote"] == "create"
    assert published(state) == [(80, 0)]  # the Service went with its stack


def test_another_stacks_service_or_selector_is_not_taken_over():
    state = ClusterState()
    apply(state, DEPLOYMENT + "---\n" + SERVICE.replace("name: vote", "name: other"))
    apply(state, SERVICE)
    with pytest.raises(PlanConflict) as caught:
        apply(state, DEPLOYMENT, stack="elsewhere")
    assert "belongs to stack 'voting'" in caught.value.reason
    with pytest.raises(PlanConflict) as caught:
        apply(state, SERVICE, stack="elsewhere")
    assert caught.value.field == "Service/vote.metadata.name"


def test_prune_without_a_stack_is_refused():
    with pytest.raises(PlanConflict) as caught:
        plan_manifest({}, load_manifest(DEPLOYMENT), prune=True)
    assert caught.value.field == "stack"
