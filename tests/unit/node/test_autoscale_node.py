"""The node side of autoscaling: rates from the proxy's counters, what a node reports and when
it stays quiet, the leader loop's step against the real state machine, and the
`service.autoscaled` event it leads to."""

from __future__ import annotations

import asyncio

from consensus.metrics import NodeMetrics, ReportMetrics, ServiceSample, node_metrics
from consensus.state import Result
from consensus.store import StateVersion, version_of
from consensus.tasks import services, tasks
from netoverlay.lb.stats import ServiceStats
from node.loops.autoscaler import Autoscaler, next_expiry
from node.loops.events import diff_states
from node.loops.metrics_reporter import Scope, Sent, build_samples, ingress_rates, worth_sending
from scheduler.view import StateView
from tests.unit.scheduler.helpers import Cluster


def stats(port: int, service: str, at: float, total: int) -> ServiceStats:
    return ServiceStats(service, port, at, total, 0, 0, 0, 0, 0)


def test_ingress_rates_add_up_a_services_ports_and_skip_new_or_reset_ones():
    before = {
        80: stats(80, "web", 10.0, 100),
        81: stats(81, "web", 10.0, 0),
        90: stats(90, "db", 10.0, 50),
    }
    after = {
        80: stats(80, "web", 15.0, 200),
        81: stats(81, "web", 15.0, 50),
        90: stats(90, "db", 15.0, 10),  # reopened: counters started again
        91: stats(91, "api", 15.0, 7),
    }  # new since the last snapshot
    assert ingress_rates(before, after) == {"web": 30.0}


def scaled_cluster(metric: str = "rps") -> Cluster:
    c = Cluster(2)
    c.create(
        name="web",
        replicas=2,
        constraints=["node.id==n0"],
        autoscale={"max": 5, "metric": metric, "target": 20, "cooldown_up": 0},
    )
    c.create(name="plain", replicas=1)
    c.round()
    for task in list(tasks(c.state).values()):
        c.report(task, "running")
    return c


def test_a_node_reports_its_running_tasks_cpu_and_its_ingress_rate_rounded():
    c = scaled_cluster("cpu")
    here, elsewhere = Scope.read(version_of(c.state), "n0"), Scope.read(version_of(c.state), "n1")
    web = services(c.state)["web"]
    assert [s.name for s in here.services] == ["web"] and len(here.cpu_tasks()) == 2
    cpu = {task_id: pct for task_id, pct in zip(here.cpu_tasks(), (30.04, 10.0), strict=True)}
    assert build_samples(here, cpu, {"web": 12.345, "plain": 3.0}) == (
        ServiceSample("web", web.id, 2, 20.0, 12.3),
    )
    # No task here: only what this node's load balancer forwarded counts.
    assert build_samples(elsewhere, {}, {"web": 4.0}) == (
        ServiceSample("web", web.id, 0, None, 4.0),
    )
    assert build_samples(elsewhere, {}, {}) == ()


def test_a_report_is_sent_when_it_changed_or_carries_load_about_to_go_stale():
    busy, idle = (
        (ServiceSample("web", "s", 1, 5.0, 3.0),),
        (ServiceSample("web", "s", 1, 0.0, 0.0),),
    )
    assert not worth_sending(None, (), 0.0, refresh=10.0)
    assert worth_sending(None, busy, 0.0, refresh=10.0)
    assert not worth_sending(Sent(100.0, busy), busy, 105.0, refresh=10.0)
    assert worth_sending(Sent(100.0, busy), busy, 110.0, refresh=10.0)
    assert worth_sending(Sent(100.0, busy), idle, 101.0, refresh=10.0)
    assert not worth_sending(Sent(100.0, idle), idle, 500.0, refresh=10.0)


def test_only_reports_with_load_wake_the_autoscaler_when_they_go_stale():
    idle = NodeMetrics("n0", 100.0, (ServiceSample("web", "s", 1, 0.0, 0.0),))
    busy = NodeMetrics("n1", 104.0, (ServiceSample("web", "s", 1, None, 9.0),))
    assert next_expiry((idle, busy), now=110.0, max_age=15.0) == 119.0
    assert next_expiry((idle, busy), now=120.0, max_age=15.0) is None


class Leader:
    """The autoscaler's view of a leader: commands go straight into the real state machine."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.proposed: list = []

    def read(self) -> StateVersion:
        return version_of(self.c.state)

    async def propose(self, cmd) -> Result:
        self.proposed.append(cmd)
        return self.c.state.apply(cmd)


def autoscaler(leader: Leader, now: float, is_leader: bool = True) -> Autoscaler:
    return Autoscaler(
        read_state=leader.read,
        changed=asyncio.Event(),
        propose=leader.propose,
        is_leader=lambda: is_leader,
        max_age=15.0,
        clock=lambda: now,
    )


async def test_the_leader_scales_on_fresh_reports_and_the_event_says_from_to_and_why():
    c = scaled_cluster()
    web = services(c.state)["web"]
    c.ok(ReportMetrics("n0", c.now + 1, (ServiceSample("web", web.id, 2, None, 50.0),)))
    c.ok(ReportMetrics("n1", c.now + 1, (ServiceSample("web", web.id, 0, None, 40.0),)))
    leader, before = Leader(c), StateView.capture(c.state)

    assert await autoscaler(leader, c.now + 2, is_leader=False).step() is not None
    assert leader.proposed == []
    await autoscaler(leader, c.now + 2).step()
    after = services(c.state)["web"]
    assert after.spec.replicas == 5 and after.autoscaled.reason.endswith("2 -> 5")
    (event,) = [
        e for e in diff_states(before, StateView.capture(c.state)) if e.type == "service.autoscaled"
    ]
    assert event.detail == {"from": 2, "to": 5, "metric": "rps", "value": 45.0, "target": 20.0}
    assert "from 2 to 5 replicas" in event.message

    # Stale reports count as no load: scale-down, once its cooldown (120 s) has passed.
    later = autoscaler(leader, c.now + 2 + 60)
    wake = await later.step()
    assert services(c.state)["web"].spec.replicas == 5 and wake == c.now + 2 + 120
    await autoscaler(leader, wake).step()
    assert services(c.state)["web"].spec.replicas == 1
    assert node_metrics(c.state)  # the reports stay until nodes send newer ones


def cli(*argv: str):
    from node.cli.main import build_parser

    return build_parser().parse_args(list(argv))


def test_autoscale_flags_make_a_policy_and_update_or_remove_it():
    from consensus.services import merge_spec, parse_service_spec
    from consensus.wire import to_plain
    from node.cli.service import create_body, update_patch

    body = create_body(
        cli(
            "service",
            "create",
            "--name",
            "web",
            "--autoscale-max",
            "6",
            "--autoscale-rps",
            "40",
            "--autoscale-cooldown-down",
            "1m",
            "img",
        )
    )
    policy = parse_service_spec(body).autoscale
    assert (policy.metric, policy.target, policy.max, policy.cooldown_down) == (
        "rps",
        40.0,
        6,
        60.0,
    )
    current = to_plain(parse_service_spec(body))
    patch = update_patch(current, cli("service", "update", "web", "--autoscale-cpu", "70"))
    changed = merge_spec(parse_service_spec(body), patch).autoscale
    assert (changed.metric, changed.target, changed.max) == ("cpu", 70.0, 6)
    off = update_patch(current, cli("service", "update", "web", "--no-autoscale"))
    assert merge_spec(parse_service_spec(body), off).autoscale is None
