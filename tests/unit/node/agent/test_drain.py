"""Drain before stop: which tasks told to shut down keep running a while first, and for how
long (the service's `stop_delay`, set with `--stop-delay`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.services import DEFAULT_STOP_DELAY, SpecError, parse_service_spec
from consensus.tasks import Task
from node.agent.plan import Assigned, decide, drain_period
from node.cli import build_parser
from node.cli_service import create_body, update_patch

PUBLISHED = {"name": "web", "image": "busybox", "ports": ["8080:80"]}


def spec(**plain):
    return parse_service_spec({**PUBLISHED, **plain})


def told_to_stop(task_id: str, service_spec) -> Assigned:
    return Assigned(
        Task(
            task_id,
            "s1",
            "web",
            1,
            1,
            node_id="n1",
            state="running",
            desired="shutdown",
            message="scaled down",
        ),
        service_spec,
    )


def test_the_default_delay_is_the_gossip_bound_and_durations_are_read():
    assert spec().stop_delay == DEFAULT_STOP_DELAY == 2.0
    assert spec(stop_delay="500ms").stop_delay == 0.5
    assert spec(stop_delay="0s").stop_delay == 0.0


@pytest.mark.parametrize(
    "value, reason",
    [
        (-1, "must not be negative"),
        ("2h", "between 0s and 3600s"),
        ("soon", "cannot read 'soon' as a duration"),
    ],
)
def test_a_bad_delay_is_refused_naming_the_field(value, reason):
    with pytest.raises(SpecError) as caught:
        spec(stop_delay=value)
    assert caught.value.field == "stop_delay" and reason in str(caught.value)


@pytest.mark.parametrize(
    "service_spec, phase, expected",
    [
        # A running task with ports may be in some load balancer: it drains for the spec's delay.
        (spec(), "running", 2.0),
        (spec(stop_delay="7s"), "running", 7.0),
        (spec(ports=["80"]), "running", 2.0),  # no published port, but DNS names it
        # Zero means stop at once, as before.
        (spec(stop_delay="0s"), "running", 0.0),
        # No ports: no endpoint anywhere, nothing to drain.
        (spec(ports=[]), "running", 0.0),
        # Not running here: nothing gets traffic from it.
        (spec(), "ended", 0.0),
        (spec(), "starting", 0.0),
        # Its spec version is gone: nothing says it had ports.
        (None, "running", 0.0),
    ],
)
def test_drain_period(service_spec, phase, expected):
    assert drain_period(told_to_stop("a", service_spec), phase) == expected


def test_decide_drains_the_running_task_with_ports_and_not_the_others():
    assigned = {
        "a": told_to_stop("a", spec(stop_delay="3s")),
        "b": told_to_stop("b", spec(ports=[], stop_delay="3s")),
    }
    retire = {
        r.task_id: r
        for r in decide(assigned, {"a": "running", "b": "running", "x": "running"}).retire
    }
    assert (retire["a"].drain, retire["b"].drain) == (3.0, 0.0)
    assert retire["x"].drain == 0.0  # an orphan: gone from the state, so no endpoint announced
    # One already retiring is not asked again (its drain is under way).
    assert decide(assigned, {"a": "retiring"}).retire == ()


@given(st.floats(min_value=0, max_value=3600, allow_nan=False))
def test_any_allowed_delay_is_the_drain_of_a_running_published_task(seconds):
    assert drain_period(told_to_stop("a", spec(stop_delay=seconds)), "running") == seconds


def test_the_cli_flag_sets_and_changes_the_delay():
    parser = build_parser()
    created = parse_service_spec(
        create_body(
            parser.parse_args(
                [
                    "service",
                    "create",
                    "--name",
                    "web",
                    "-p",
                    "8080:80",
                    "--stop-delay",
                    "5s",
                    "busybox",
                ]
            )
        )
    )
    assert created.stop_delay == 5.0
    patch = update_patch({}, parser.parse_args(["service", "update", "web", "--stop-delay", "0s"]))
    assert patch == {"stop_delay": "0s"}
