"""Autoscaling in the replicated state: the policy's validation (errors name the field), load
reports (one row per node, pruned of gone nodes and services), and the autoscaler's scale
command (guarded by version, recorded on the Service, undone by nothing but a newer change)."""

from __future__ import annotations

import msgpack
import pytest

from consensus import codec
from consensus.autoscale import AutoscaleRecord
from consensus.metrics import ReportMetrics, ServiceSample, node_metrics
from consensus.nodes import RemoveNode
from consensus.scaling import ScaleService
from consensus.services import SpecError, merge_spec, parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import DeleteService, UpdateService, services
from tests.unit.scheduler.helpers import Cluster

RPS = {"min": 1, "max": 5, "metric": "rps", "target": 20}


def spec(**autoscale):
    return parse_service_spec({"name": "web", "image": "busybox", "autoscale": autoscale})


def test_a_policy_gets_defaults_and_reads_durations():
    policy = spec(max=4, target=70, cooldown_up="10s", cooldown_down="1m30s").autoscale
    assert (policy.min, policy.max, policy.metric, policy.target) == (1, 4, "cpu", 70.0)
    assert (policy.tolerance, policy.cooldown_up, policy.cooldown_down) == (0.1, 10.0, 90.0)
    assert parse_service_spec({"name": "web", "image": "busybox"}).autoscale is None


@pytest.mark.parametrize(
    "autoscale, field, words",
    [
        ({"max": 3, "target": 50, "min": 0}, "autoscale.min", "at least 1"),
        ({"max": 2, "target": 50, "min": 3}, "autoscale.max", "at least autoscale.min (3)"),
        ({"max": 3, "target": 0}, "autoscale.target", "positive"),
        ({"max": 3, "target": -5, "metric": "rps"}, "autoscale.target", "requests/s per replica"),
        ({"max": 3, "target": 50, "tolerance": 1.5}, "autoscale.tolerance", "fraction"),
        ({"max": 3, "target": 50, "cooldown_down": -1}, "autoscale.cooldown_down", "negative"),
        ({"max": 3, "target": 50, "metric": "memory"}, "autoscale.metric", "'cpu', 'rps'"),
        ({"max": 3}, "autoscale.target", "is required"),
        ({"max": 3, "target": 50, "cooldown_up": "soon"}, "autoscale.cooldown_up", ""),
        ({"max": 3, "target": 50, "step": 2}, "autoscale.step", "unknown field"),
    ],
)
def test_a_bad_policy_names_its_field(autoscale, field, words):
    with pytest.raises(SpecError) as err:
        spec(**autoscale)
    assert err.value.field == field and words in err.value.reason


def test_only_replicated_services_autoscale():
    with pytest.raises(SpecError) as err:
        parse_service_spec(
            {
                "name": "agent",
                "image": "busybox",
                "mode": "global",
                "autoscale": {"max": 3, "target": 50},
            }
        )
    assert err.value.field == "autoscale" and "global" in err.value.reason


def cluster() -> Cluster:
    c = Cluster(2)
    c.create(name="web", replicas=1, autoscale=RPS)
    return c


def web(c: Cluster):
    return services(c.state)["web"]


def scale(c: Cluster, to: int, version: int = 0, at: float = 2000.0, **fields) -> ScaleService:
    service = web(c)
    record = AutoscaleRecord(
        at,
        fields.pop("from_replicas", service.spec.replicas),
        to,
        "rps",
        45.0,
        20.0,
        "45.0 requests/s per replica, target 20: 1 -> 3",
    )
    return ScaleService("web", service.id, version or service.version, record)


def test_scaling_sets_replicas_records_why_and_keeps_the_old_spec():
    c = cluster()
    result = c.ok(scale(c, 3))
    service = web(c)
    assert result.value["version"] == 2 and service.spec.replicas == 3
    assert service.updated_at == 2000.0 and service.autoscaled.to_replicas == 3
    assert service.history[-1].spec.replicas == 1
    # A user's own scale stays possible; the record of the autoscaler's last step stays too.
    c.ok(UpdateService(merge_spec(service.spec, {"replicas": 2}), 2100.0))
    assert web(c).spec.replicas == 2 and web(c).autoscaled.to_replicas == 3


@pytest.mark.parametrize(
    "change, code, words",
    [
        (lambda c: scale(c, 3, version=7), 409, "not 7"),
        (lambda c: scale(c, 3, from_replicas=2), 409, "runs 1 replicas, not 2"),
        (lambda c: scale(c, 6), 400, "within 1..5"),
        (lambda c: ScaleService("db", "x", 1, scale(c, 2).record), 404, "no such service"),
    ],
)
def test_a_stale_or_out_of_bounds_scale_changes_nothing(change, code, words):
    c = cluster()
    result = c.state.apply(change(c))
    assert not result.ok and result.code == code and words in result.error
    assert web(c).spec.replicas == 1 and web(c).version == 1 and web(c).autoscaled is None


def test_a_service_without_a_policy_is_not_autoscaled():
    c = cluster()
    c.update("web", autoscale=None)
    result = c.state.apply(scale(c, 2))
    assert result.code == 409 and "no autoscale policy" in result.error


def sample(c: Cluster, rps: float = 10.0, **fields) -> ServiceSample:
    return ServiceSample("web", web(c).id, fields.pop("tasks", 1), rps=rps, **fields)


def test_a_report_replaces_the_nodes_row_and_refuses_an_older_one():
    c = cluster()
    c.ok(ReportMetrics("n0", 100.0, (sample(c, 10.0),)))
    c.ok(ReportMetrics("n1", 100.0, (sample(c, 5.0, cpu_percent=12.5),)))
    c.ok(ReportMetrics("n0", 105.0, ()))
    rows = node_metrics(c.state)
    assert rows["n0"].samples == () and rows["n0"].at == 105.0
    assert rows["n1"].samples[0].cpu_percent == 12.5
    older = c.state.apply(ReportMetrics("n0", 104.0, (sample(c, 99.0),)))
    assert older.code == 409 and rows["n0"].samples == ()
    unknown = c.state.apply(ReportMetrics("n9", 106.0, ()))
    assert unknown.code == 404 and "node_id" in unknown.error


def test_samples_of_gone_services_and_rows_of_gone_nodes_are_dropped():
    c = cluster()
    c.ok(ReportMetrics("n0", 100.0, (sample(c),)))
    c.ok(ReportMetrics("n1", 100.0, (sample(c),)))
    stranger = ServiceSample("db", "nope", 1, rps=3.0)
    result = c.ok(ReportMetrics("n1", 101.0, (sample(c), stranger)))
    assert result.value == {"kept": 1, "dropped": 1}
    c.ok(RemoveNode("n0"))
    c.ok(DeleteService("web", 102.0))
    c.ok(ReportMetrics("n1", 103.0, ()))
    assert list(node_metrics(c.state)) == ["n1"]
    c.create(name="web", replicas=1, autoscale=RPS)  # a new service of the same name
    c.ok(ReportMetrics("n1", 104.0, (ServiceSample("web", "svc-old", 1, rps=1.0),)))
    assert node_metrics(c.state)["n1"].samples == ()


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"rps": -1.0}, "samples[0]: rps"),
        ({"rps": float("nan")}, "samples[0].rps"),
        ({"cpu_percent": float("inf")}, "samples[0].cpu_percent"),
        ({"tasks": -2}, "samples[0]: tasks"),
        ({"rps": "fast"}, "samples[0].rps"),
    ],
)
def test_a_malformed_report_from_the_wire_is_refused_naming_the_field(bad, field):
    plain = {
        "node_id": "n0",
        "at": 1.0,
        "samples": [{"service": "web", "service_id": "svc-web", "tasks": 1, **bad}],
    }
    raw = msgpack.packb([codec.FORMAT, "metrics.report", 1, "", plain], use_bin_type=True)
    with pytest.raises(codec.CodecError) as err:
        codec.decode(raw)
    assert field in str(err.value)
    state = ClusterState()
    assert not state.apply_bytes(raw).ok


def test_reports_and_records_survive_a_snapshot():
    c = cluster()
    c.ok(scale(c, 2))
    c.ok(ReportMetrics("n0", 100.0, (sample(c, 7.5, cpu_percent=3.0),)))
    restored = ClusterState.from_msgpack(c.state.to_msgpack())
    assert node_metrics(restored) == node_metrics(c.state)
    assert services(restored)["web"] == web(c)
