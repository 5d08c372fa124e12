"""The report names every figure where a reference system beats Shoal, and only those."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib", reason="the bench extra (matplotlib) is not installed")

from bench.figures import comparisons  # noqa: E402
from bench.report import write_report  # noqa: E402


def spread(value: float) -> dict:
    return {"median": value, "min": value * 0.9, "max": value * 1.1}


def suite_with(
    shoal_writes: float, etcd_writes: float, shoal_failover: float, etcd_failover: float
) -> dict:
    def ok(figures: dict) -> dict:
        return {"status": "ok", "seconds": 1, "argv": [], "result": figures}

    return {
        "quick": False,
        "machine": {
            "date": "d",
            "uname": "Linux",
            "cores": 2,
            "memory_gib": 1.0,
            "python": "3.11",
            "load_at_start": [0.1, 0.1, 0.1],
        },
        "steps": {
            "consensus": ok(
                {"writes_per_s": spread(shoal_writes), "failover_s": spread(shoal_failover)}
            ),
            "etcd": ok({"writes_per_s": spread(etcd_writes), "failover_s": spread(etcd_failover)}),
            "swarm": {"status": "failed", "seconds": 1, "reason": "boom"},
        },
    }


def losses(text: str) -> str:
    return text.split("## Where Shoal loses")[1].split("\n## ")[0]


def test_a_reference_that_wins_is_named_with_its_ratio(tmp_path):
    report = tmp_path / "REPORT.md"
    write_report(suite_with(500, 2000, 0.5, 1.0), report)
    section = losses(report.read_text())
    assert "writes/s" in section and "4.00×" in section
    assert "failover" not in section, "Shoal's faster failover is no loss"


def test_no_loss_section_entries_when_shoal_wins_everything(tmp_path):
    report = tmp_path / "REPORT.md"
    write_report(suite_with(3000, 2000, 0.5, 1.0), report)
    assert losses(report.read_text()).strip() == "Nowhere in this run."


def test_lower_is_better_for_times_higher_for_rates():
    found = {c.figure: c for c in comparisons(suite_with(1000, 2000, 2.0, 1.0))}
    assert not found["writes/s (64 clients)"].shoal_wins
    assert not found["leader failover, killed"].shoal_wins
    assert found["leader failover, killed"].ratio == pytest.approx(2.0)


def test_linearizable_follower_reads_stand_beside_etcds_in_the_table_and_the_losses(tmp_path):
    suite = suite_with(3000, 2000, 0.5, 1.0)
    suite["steps"]["consensus"]["result"] |= {
        "read_p50_ms": spread(6.0),
        "read_p99_ms": spread(9.0),
    }
    suite["steps"]["etcd"]["result"] |= {"read_p50_ms": spread(2.0), "read_p99_ms": spread(9.0)}
    report = tmp_path / "REPORT.md"
    write_report(suite, report)
    text = report.read_text()
    assert "| linearizable follower read p50 ms (1 client) | 6.00 [5.40–6.60] | 2.00" in text
    assert "linearizable follower read p50**" in losses(text) and "3.00×" in losses(text)
    assert "follower read p99" not in losses(text), "an equal figure is no loss"


def test_steps_that_did_not_run_are_left_out_of_comparisons_and_listed_as_failed(tmp_path):
    report = tmp_path / "REPORT.md"
    write_report(suite_with(1000, 2000, 0.5, 1.0), report)
    assert not any(c.reference == "Docker Swarm mode" for c in comparisons(suite_with(1, 1, 1, 1)))
    assert "| swarm | failed |" in report.read_text()


def test_the_overlay_section_shows_the_three_paths_and_the_vip_timings():
    from bench.report import overlay_section

    paths = {
        t: {"rps": rps, "p50_ms": 1.5, "p99_ms": 9.0}
        for t, rps in (("vip", 1800.0), ("overlay", 1820.0), ("underlay", 2000.0))
    }
    data = {
        **paths,
        "connections": 8,
        "vip_vs_overlay": 0.989,
        "overlay_vs_underlay": 0.91,
        "new_task_behind_vip_s": {"median": 0.2, "min": 0.1, "max": 0.3},
        "dead_task_out_of_vip_s": {"median": 1.6, "min": 1.2, "max": 2.0},
    }
    text = "\n".join(overlay_section({"steps": {"overlay": {"status": "ok", "result": data}}}))
    assert "| vip | 1,800 | 1.50 | 9.00 |" in text and "| underlay | 2,000 |" in text
    assert "VIP 0.99× overlay; overlay 0.91× underlay" in text
    assert "0.200 [0.100–0.300] s" in text and "1.600 [1.200–2.000] s" in text
    assert "link cut" not in text, "no host-death figure when the run had none"
    data["dead_host"] = {
        "suspected_s": {"median": 1.2, "min": 0.8, "max": 2.1},
        "out_of_vip_s": {"median": 1.5, "min": 1.0, "max": 2.3},
    }
    text = "\n".join(overlay_section({"steps": {"overlay": {"status": "ok", "result": data}}}))
    assert "its task out of the live nodes' VIPs after 1.500 [1.000–2.300] s (max 2.30 s)" in text
    assert overlay_section({"steps": {}}) == []


def test_the_members_section_and_plot_show_every_size_with_members(tmp_path):
    from bench.plots import members_scale
    from bench.report import members_section

    def row(members: int, applied: float | None) -> dict:
        return {
            "members": members,
            "leader_cpu_idle_pct": 3.5,
            "leader_cpu_100_writes_per_s_pct": 30.0,
            "write_p50_ms": 4.0,
            "write_p99_ms": 9.0,
            "applied_99pct_ms": applied,
            "applied_100pct_ms": applied,
            "applied_99pct_under_10_writes_per_s_ms": applied and applied * 2,
            "idle_bytes_per_s_per_member": 60.0 if members else None,
            "voter_rss_mib": [70.0, 80.0, 90.0],
        }

    suite = {
        "steps": {
            "members": {
                "status": "ok",
                "result": {"sizes": [row(0, None), row(100, 80.0), row(1000, 300.0)]},
            }
        }
    }
    text = "\n".join(members_section(suite))
    assert "| 1,000 | 3.5 | 30.0 | 4.0 | 9.0 | 300.0 | 300.0 | 600.0 | 60 | 70 / 80 / 90 |" in text
    assert "| 0 | 3.5 | 30.0 | 4.0 | 9.0 | — | — | — | — |" in text
    # A result of a release before these columns: a dash in each.
    old = row(100, 80.0)
    del old["leader_cpu_100_writes_per_s_pct"], old["applied_99pct_under_10_writes_per_s_ms"]
    suite["steps"]["members"]["result"]["sizes"] = [old]
    assert "| 100 | 3.5 | — | 4.0 | 9.0 | 80.0 | 80.0 | — | 60 |" in "\n".join(
        members_section(suite)
    )
    assert members_scale(suite, tmp_path / "m.png").stat().st_size > 0
    assert (
        members_section({"steps": {}}) == []
        and members_scale({"steps": {}}, tmp_path / "x") is None
    )
