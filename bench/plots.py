"""The report's PNG plots, drawn with matplotlib from a suite's results (headless: Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from bench.figures import (  # noqa: E402
    KUBE_SCHEDULER_PER_S,
    NOMAD_C1M_PER_S,
    Figure,
    figure,
    lb_figure,
    placements,
    result,
)

SHOAL, REFERENCE, PUBLISHED = "#1f77b4", "#ff7f0e", "#999999"


def _bars(
    ax, bars: list[tuple[str, Figure | None, str]], title: str, unit: str, log: bool = False
) -> None:
    """Bars at the medians with min-max whiskers; bars whose figure is missing are left out."""
    shown = [(label, f, color) for label, f, color in bars if f is not None]
    heights = [f.median for _, f, _ in shown]
    errors = [[f.median - f.low for _, f, _ in shown], [f.high - f.median for _, f, _ in shown]]
    ax.bar(
        range(len(shown)), heights, yerr=errors, capsize=4, color=[color for _, _, color in shown]
    )
    ax.set_xticks(range(len(shown)), [label for label, _, _ in shown], rotation=20, ha="right")
    ax.set_title(title)
    ax.set_ylabel(unit)
    if log:
        ax.set_yscale("log")


def _log_axes(panels: tuple, xlabel: str, logy: bool = False) -> None:
    """Title and label each (axis, title, unit) panel of a curve over sizes on a log x axis."""
    for ax, title, unit in panels:
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(unit)
        ax.set_title(title)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def control_plane(suite: dict, path: Path) -> Path | None:
    if not result(suite, "consensus"):
        return None
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.8))
    for ax, key, title, unit in zip(
        axes,
        ("writes_per_s", "p50_ms", "read_p50_ms", "paused_failover_s", "failover_s"),
        (
            "committed writes/s, 64 clients",
            "write latency p50",
            "linearizable follower read p50",
            "failover, leader paused",
            "failover, leader killed",
        ),
        ("writes/s", "ms", "ms", "s", "s"),
        strict=True,
    ):
        _bars(
            ax,
            [
                ("Shoal", figure(suite, "consensus", key), SHOAL),
                ("etcd 3.4", figure(suite, "etcd", key), REFERENCE),
            ],
            title,
            unit,
        )
    return _save(fig, path)


def orchestration(suite: dict, path: Path) -> Path | None:
    if not (result(suite, "orchestration") or result(suite, "swarm")):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    for ax, key, title in zip(
        axes,
        ("create_to_running_s", "node_death_to_replaced_s"),
        ("create -> all replicas running", "node death -> tasks elsewhere"),
        strict=True,
    ):
        _bars(
            ax,
            [
                ("Shoal", figure(suite, "orchestration", key), SHOAL),
                ("Swarm mode", figure(suite, "swarm", key), REFERENCE),
            ],
            title,
            "s",
        )
    return _save(fig, path)


def load_balancing(suite: dict, path: Path) -> Path | None:
    lb = result(suite, "lb")
    if not lb:
        return None
    variants = [v for v in ("keepalive", "close") if v in lb]
    fig, axes = plt.subplots(1, len(variants), figsize=(5.5 * len(variants), 4), squeeze=False)
    for ax, variant in zip(axes[0], variants, strict=True):
        _bars(
            ax,
            [
                (
                    target,
                    lb_figure(suite, variant, target),
                    SHOAL if target.startswith("shoal") else REFERENCE,
                )
                for target in ("direct", "shoal_proxy", "shoal_nft", "haproxy", "nginx_http")
            ],
            f"wrk, {variant}",
            "requests/s",
        )
    return _save(fig, path)


def gossip(suite: dict, path: Path) -> Path | None:
    data = result(suite, "gossip")
    if not data:
        return None
    sizes = sorted(data["sizes"], key=int)
    xs = [int(n) for n in sizes]
    fig, (times, traffic) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (
        ("dead_100_s", "crash known everywhere"),
        ("broadcast_100_s", "write known everywhere"),
    ):
        times.plot(xs, [data["sizes"][n][key] for n in sizes], marker="o", label=label)
    traffic.plot(
        xs,
        [data["sizes"][n]["bytes_per_node_s"] for n in sizes],
        marker="o",
        label="during the scenario",
    )
    traffic.plot(
        xs, [data["sizes"][n]["quiet_bytes_per_node_s"] for n in sizes], marker="o", label="quiet"
    )
    panels = (
        (times, "gossip: detection and dissemination", "s (simulated)"),
        (traffic, "gossip: traffic per node", "bytes/s"),
    )
    _log_axes(panels, "nodes")
    times.legend()
    traffic.legend()
    return _save(fig, path)


def scale_curve(suite: dict, path: Path) -> Path | None:
    data = result(suite, "scale")
    if not data:
        return None
    sizes = sorted(data["sizes"], key=int)
    xs = [int(n) for n in sizes]
    rows = [data["sizes"][n] for n in sizes]
    fig, (sched, snap) = plt.subplots(1, 2, figsize=(10, 3.8))
    medians = [r["schedule_s"]["median"] for r in rows]
    sched.errorbar(
        xs,
        medians,
        yerr=[
            [m - r["schedule_s"]["min"] for m, r in zip(medians, rows, strict=True)],
            [r["schedule_s"]["max"] - m for m, r in zip(medians, rows, strict=True)],
        ],
        marker="o",
        capsize=3,
        label="wall clock",
    )
    sched.plot(xs, [r["schedule_cpu_s"]["median"] for r in rows], marker="o", label="CPU time")
    snap.plot(xs, [r["snapshot_bytes"] / 1e6 for r in rows], marker="o")
    panels = (
        (sched, f"placing every task ({data['nodes']} nodes)", "s"),
        (snap, "Raft snapshot (msgpack of the state)", "MB"),
    )
    _log_axes(panels, "tasks", logy=True)
    sched.legend()
    return _save(fig, path)


def members_scale(suite: dict, path: Path) -> Path | None:
    data = result(suite, "members")
    rows = [r for r in (data or {}).get("sizes", []) if r["members"] > 0]
    if not rows:
        return None
    xs = [r["members"] for r in rows]
    fig, (cpu, writes, applied) = plt.subplots(1, 3, figsize=(14, 3.8))
    cpu.plot(xs, [r["leader_cpu_idle_pct"] for r in rows], marker="o")
    for key, label in (("write_p50_ms", "p50"), ("write_p99_ms", "p99")):
        writes.plot(xs, [r[key] for r in rows], marker="o", label=label)
    for key, label in (("applied_99pct_ms", "99 %"), ("applied_100pct_ms", "100 %")):
        shown = [(x, r[key]) for x, r in zip(xs, rows, strict=True) if r[key] is not None]
        applied.plot([x for x, _ in shown], [v for _, v in shown], marker="o", label=label)
    panels = (
        (cpu, "leader CPU, idle (3 voters)", "% of a core"),
        (writes, "sequential write latency", "ms"),
        (applied, "a commit applied on members", "ms"),
    )
    _log_axes(panels, "members following the feed")
    cpu.set_ylim(bottom=0)
    writes.legend()
    applied.legend()
    return _save(fig, path)


def scheduling(suite: dict, path: Path) -> Path | None:
    pure, committed = placements(suite), figure(suite, "scheduler", "committed_per_s")
    if not (pure or committed):
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    _bars(
        ax,
        [
            ("Shoal placements/s", pure, SHOAL),
            ("Shoal committed/s", committed, SHOAL),
            ("Nomad C1M\n(published)", Figure.of(NOMAD_C1M_PER_S), PUBLISHED),
            ("kube-scheduler\n(published)", Figure.of(KUBE_SCHEDULER_PER_S), PUBLISHED),
        ],
        "scheduling throughput, 5,000 nodes",
        "per second (log)",
        log=True,
    )
    return _save(fig, path)


def memory(suite: dict, path: Path) -> Path | None:
    if not result(suite, "memory"):
        return None
    tasks = result(suite, "memory")["tasks"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    _bars(
        ax,
        [
            ("Shoal node idle", figure(suite, "memory", "shoal_idle_mib"), SHOAL),
            (f"Shoal node, {tasks} tasks", figure(suite, "memory", "shoal_with_tasks_mib"), SHOAL),
            ("dockerd+containerd idle", figure(suite, "memory", "docker_idle_mib"), REFERENCE),
            (
                f"dockerd+containerd,\n{tasks} containers",
                figure(suite, "memory", "docker_with_tasks_mib"),
                REFERENCE,
            ),
        ],
        "resident memory",
        "MiB",
    )
    return _save(fig, path)


PLOTS = {
    "control_plane": control_plane,
    "orchestration": orchestration,
    "load_balancing": load_balancing,
    "scheduling": scheduling,
    "gossip": gossip,
    "scale_curve": scale_curve,
    "members_scale": members_scale,
    "memory": memory,
}


def draw_all(suite: dict, directory: Path, prefix: str) -> dict[str, Path]:
    """Every plot the results allow, as PNGs named `<prefix>-<plot>.png` in `directory`."""
    drawn = {}
    for name, draw in PLOTS.items():
        path = draw(suite, directory / f"{prefix}-{name}.png")
        if path is not None:
            drawn[name] = path
    return drawn
