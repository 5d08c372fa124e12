"""The autoscaler's pure decision: a table of cases, properties over random inputs (always
within [min, max], never a change inside the tolerance band, cooldowns respected), and the
measurement from load reports (stale ones count as none)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.autoscale import AutoscaleSpec
from consensus.metrics import NodeMetrics, ReportMetrics, ServiceSample, node_metrics
from consensus.tasks import services, tasks
from scheduler.autoscale import decide, evaluate, fresh_samples, per_replica
from tests.unit.scheduler.helpers import Cluster

RPS = AutoscaleSpec(min=1, max=5, metric="rps", target=20.0, cooldown_up=30.0, cooldown_down=120.0)
NOW = 10_000.0
LONG_AGO = NOW - 1000.0


@pytest.mark.parametrize(
    "current, running, value, last_change, desired, words",
    [
        # value is per replica; desired = ceil(running * value / target), within [1, 5]
        (1, 1, 45.0, LONG_AGO, 3, "45.0 requests/s per replica, target 20: 1 -> 3"),
        (1, 1, 500.0, LONG_AGO, 5, "1 -> 5"),
        (3, 3, 2.0, LONG_AGO, 1, "3 -> 1"),
        (3, 3, 0.0, LONG_AGO, 1, "3 -> 1"),
        (2, 2, 21.9, LONG_AGO, 2, "within the tolerance of 10%"),
        (2, 2, 18.1, LONG_AGO, 2, "within the tolerance"),
        (2, 2, 40.0, LONG_AGO, 4, "2 -> 4"),  # exactly twice the target: twice the replicas
        (5, 5, 90.0, LONG_AGO, 5, "at the maximum (5 replicas)"),
        (1, 1, 5.0, LONG_AGO, 1, "at the minimum (1 replicas)"),
        (3, 1, 50.0, LONG_AGO, 3, "already"),  # two replicas still starting
        (1, 1, 45.0, NOW - 10.0, 1, "scale-up to 3 waits for the cooldown (20 s left)"),
        (3, 3, 2.0, NOW - 100.0, 3, "scale-down to 1 waits for the cooldown (20 s left)"),
        (3, 3, 2.0, NOW - 120.0, 1, "3 -> 1"),
        (1, 0, None, LONG_AGO, 1, "no running replica to measure"),
        (
            0,
            0,
            None,
            NOW,
            1,
            "0 replicas is outside the minimum of 1",
        ),  # set by hand: fixed at once
        (9, 9, 50.0, NOW, 5, "9 replicas is outside the maximum of 5"),
    ],
)
def test_decision_table(current, running, value, last_change, desired, words):
    decision = decide("web", RPS, current, running, value, NOW, last_change)
    assert decision.desired == desired and words in decision.reason
    assert decision.changes == (desired != current)


def test_a_held_change_says_when_to_look_again():
    held = decide("web", RPS, 1, 1, 45.0, NOW, NOW - 10.0)
    assert held.wake_at == NOW + 20.0
    assert decide("web", RPS, 1, 1, 45.0, held.wake_at, NOW - 10.0).desired == 3


policies = st.builds(
    lambda lo, extra, target, tol, up, down: AutoscaleSpec(
        min=lo,
        max=lo + extra,
        target=target,
        metric="rps",
        tolerance=tol,
        cooldown_up=up,
        cooldown_down=down,
    ),
    st.integers(1, 10),
    st.integers(0, 20),
    st.floats(0.1, 1000.0),
    st.floats(0.0, 0.5),
    st.integers(0, 300),
    st.integers(0, 600),
)
# Whole seconds: times this close to the float resolution of NOW are not what is tested.
ages = st.integers(0, 1000)
loads = st.floats(0.0, 1e6, allow_nan=False)


@given(policies, st.integers(0, 40), st.integers(0, 40), loads, ages)
def test_the_decision_is_always_within_bounds(policy, current, running, value, since):
    decision = decide("web", policy, current, running, value, NOW, NOW - since)
    assert policy.min <= decision.desired <= policy.max or (
        not decision.changes and policy.min <= current <= policy.max
    )


@given(policies, st.integers(1, 40), st.floats(-1.0, 1.0), ages)
def test_nothing_changes_inside_the_tolerance_band(policy, replicas, position, since):
    current = policy.clamp(replicas)
    value = policy.target * (1 + position * policy.tolerance * 0.999)
    decision = decide("web", policy, current, current, value, NOW, NOW - since)
    assert not decision.changes


@given(policies, st.integers(1, 40), st.integers(1, 40), loads, ages)
def test_cooldowns_hold_changes_of_their_direction(policy, replicas, running, value, since):
    current = policy.clamp(replicas)
    decision = decide("web", policy, current, running, value, NOW, NOW - since)
    if decision.desired > current:
        assert since >= policy.cooldown_up
    if decision.desired < current:
        assert since >= policy.cooldown_down


def test_rps_is_the_sum_over_nodes_per_running_replica_and_cpu_the_mean():
    a = ServiceSample("web", "s1", tasks=2, cpu_percent=80.0, rps=30.0)
    b = ServiceSample("web", "s1", tasks=1, cpu_percent=20.0, rps=15.0)
    assert per_replica("rps", [a, b], 3) == 15.0
    assert per_replica("cpu", [a, b], 3) == 60.0
    # A replica no report covers counts as idle; one the runtime could not measure does not.
    assert per_replica("cpu", [a], 4) == 40.0
    unmeasured = ServiceSample("web", "s1", tasks=1, cpu_percent=None)
    assert per_replica("cpu", [a, unmeasured], 3) == 80.0
    assert per_replica("cpu", [unmeasured], 1) is None
    assert per_replica("rps", [a], 0) is None


def test_stale_reports_and_other_services_samples_are_not_counted():
    mine, other = ServiceSample("web", "s1", 1, rps=9.0), ServiceSample("db", "s2", 1, rps=4.0)
    rows = [NodeMetrics("n0", NOW - 5.0, (mine, other)), NodeMetrics("n1", NOW - 16.0, (mine,))]
    assert fresh_samples(rows, "s1", NOW, max_age=15.0) == [mine]


def test_evaluate_reads_running_tasks_reports_and_the_last_change_from_the_state():
    c = Cluster(2)
    c.now = NOW - 200.0
    c.create(name="web", replicas=1, autoscale={"max": 5, "metric": "rps", "target": 20})
    c.create(name="plain", replicas=1)
    c.round()
    for task in list(tasks(c.state).values()):
        c.report(task, "running")
    web = services(c.state)["web"]
    c.ok(ReportMetrics("n0", NOW - 2.0, (ServiceSample("web", web.id, 1, rps=30.0),)))
    c.ok(ReportMetrics("n1", NOW - 3.0, (ServiceSample("web", web.id, 0, rps=35.0),)))
    (decision,) = evaluate(
        services(c.state),
        tasks(c.state).values(),
        node_metrics(c.state).values(),
        NOW,
        max_age=15.0,
    )
    assert (decision.service, decision.current, decision.desired) == ("web", 1, 4)
    assert decision.value == 65.0
    # Right after the service changed, the same load waits out the scale-up cooldown.
    c.now = NOW - 5.0
    c.update("web", env={"A": "1"})
    (held,) = evaluate(services(c.state), tasks(c.state).values(), [], NOW, max_age=15.0)
    assert not held.changes and held.value == 0.0
