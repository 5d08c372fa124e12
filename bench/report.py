"""The Markdown report of a suite run, with its PNG plots beside it.

    write_report(suite, Path("bench/REPORT.md"))   # suite: the results.json of bench.__main__

Every figure is the median of its runs with the min-max in brackets; every comparison is a
ratio of two figures from the same run (published anchors are labelled as such).
"""

from __future__ import annotations

from pathlib import Path

from bench.figures import (
    KUBE_SCHEDULER_PER_S,
    NOMAD_C1M_PER_S,
    Comparison,
    Figure,
    comparisons,
    figure,
    lb_figure,
    placements,
    result,
)
from bench.members import BUSY_CPU_KEY, LAG_KEY
from bench.plots import draw_all


def fmt(f: Figure | None, digits: int = 2) -> str:
    if f is None:
        return "—"
    if f.low == f.high:
        return f"{f.median:,.{digits}f}"
    return f"{f.median:,.{digits}f} [{f.low:,.{digits}f}–{f.high:,.{digits}f}]"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def _digits(unit: str) -> int:
    return 0 if unit in ("writes/s", "req/s", "/s") else 1 if unit == "MiB" else 2


def summary_section(found: list[Comparison]) -> list[str]:
    rows = [
        [
            c.area,
            c.figure,
            fmt(c.shoal, _digits(c.unit)),
            c.reference,
            fmt(c.ref, _digits(c.unit)),
            c.unit,
            f"{c.ratio:,.2f}",
            "Shoal" if c.shoal_wins else c.reference,
        ]
        for c in found
    ]
    return [
        "## Shoal beside the reference systems",
        "",
        "Ratio = Shoal / reference, both from this run (published anchors excepted); for "
        "times and memory lower is better, for rates higher is better.",
        "",
        *table(
            ["area", "figure", "Shoal", "reference", "reference figure", "unit", "ratio", "better"],
            rows,
        ),
    ]


def losses_section(found: list[Comparison]) -> list[str]:
    lines = ["## Where Shoal loses", ""]
    losing = [c for c in found if not c.shoal_wins]
    if not losing:
        return lines + ["Nowhere in this run.", ""]
    for c in losing:
        how = (
            f"{1 / c.ratio:,.2f}× the rate"
            if c.higher_is_better
            else f"{c.ratio:,.2f}× the {'time' if c.unit in ('s', 'ms') else 'amount'}"
        )
        source = " (a published figure, not measured here)" if c.published else ""
        lines.append(
            f"- **{c.area}, {c.figure}**: {c.reference}{source} "
            f"{fmt(c.ref, _digits(c.unit))} {c.unit} vs Shoal "
            f"{fmt(c.shoal, _digits(c.unit))} {c.unit} (Shoal needs {how}). "
            f"Why: {c.why_reference_wins}."
        )
    return lines + [""]


def control_section(suite: dict) -> list[str]:
    keys = (
        ("writes_per_s", "committed writes/s, 64 clients", 0),
        ("p50_ms", "p50 ms (1 client)", 2),
        ("p99_ms", "p99 ms (1 client)", 2),
        ("read_p50_ms", "linearizable follower read p50 ms (1 client)", 2),
        ("read_p99_ms", "linearizable follower read p99 ms (1 client)", 2),
        ("paused_failover_s", "failover s (leader paused)", 2),
        ("failover_s", "failover s (kill -9 leader)", 2),
    )
    rows = [
        [label, fmt(figure(suite, "consensus", k), d), fmt(figure(suite, "etcd", k), d)]
        for k, label, d in keys
    ]
    return [
        "## Control plane: Shoal vs etcd",
        "",
        "3 voters on loopback each; the same aiohttp client and concurrency (Shoal: `PATCH "
        "/v1/nodes/n1` label writes; etcd: `POST /v3/kv/put`, base64 key, 100-byte value). "
        "Reads go to a follower as each serves them by default, linearizable (Shoal: `GET "
        "/v1/nodes/n1`; etcd: `POST /v3/kv/range`). Failover: the leader paused (SIGSTOP; it "
        "keeps its connections open), then killed (kill -9; they close), until a survivor "
        "commits a write.",
        "",
        *table(["figure", "Shoal", "etcd 3.4"], rows),
    ]


def orchestration_section(suite: dict) -> list[str]:
    replicas = (result(suite, "orchestration") or result(suite, "swarm") or {}).get("replicas", 30)
    rows = [
        [label, fmt(figure(suite, "orchestration", k)), fmt(figure(suite, "swarm", k))]
        for k, label in (
            ("create_to_running_s", f"create -> {replicas} running, s"),
            ("node_death_to_replaced_s", "node death -> its tasks running elsewhere, s"),
            ("tasks_on_dead_node", "tasks that were on the dead node"),
        )
    ]
    lines = [
        "## Orchestration: Shoal vs Docker Swarm mode",
        "",
        "3 hosts (network namespaces on a bridge) with a private dockerd each; a busybox "
        "httpd service with a published port (Swarm: host mode, its routing mesh needs "
        "IPVS, which this kernel lacks). Node death: the host's network cable pulled "
        "(link down), a worker for Swarm (1 manager, 2 workers), a non-leader for Shoal "
        "(3 voters).",
        "",
        *table(["figure", "Shoal", "Swarm mode"], rows),
    ]
    agent = result(suite, "agent")
    if agent:
        lines += [
            f"On one shared engine (bench.agent, 3 nodes on loopback): "
            f"{agent['replicas']} running after {fmt(figure(suite, 'agent', 'create_to_running_s'))} s; "
            f"{agent['replicas']} plain parallel `docker run` take "
            f"{fmt(figure(suite, 'agent', 'docker_run_floor_s'))} s.",
            "",
        ]
    return lines


def scheduling_section(suite: dict) -> list[str]:
    sched = result(suite, "scheduler") or {}
    rows = [
        [
            "Shoal, pure placements/s (bench.scale, its largest size)",
            fmt(placements(suite), 0),
            "this run",
        ],
        [
            "Shoal, pure placements/s (bench.scheduler)",
            fmt(Figure.of(sched.get("placements_per_s")), 0),
            "this run",
        ],
        [
            "Shoal, assignments committed/s through Raft (bench.scheduler --e2e)",
            fmt(Figure.of(sched.get("committed_per_s")), 0),
            "this run",
        ],
        [
            "Nomad C1M: 1,000,000 containers on 5,000 hosts in < 5 min",
            f"≈{NOMAD_C1M_PER_S:,.0f}",
            "published",
        ],
        ["kube-scheduler at 5,000 nodes", f"≈{KUBE_SCHEDULER_PER_S:,.0f}", "published"],
    ]
    return ["## Scheduling", "", *table(["figure", "per second", "source"], rows)]


def lb_section(suite: dict) -> list[str]:
    lb = result(suite, "lb")
    if not lb:
        return []
    rows = []
    for variant in ("keepalive", "close", "light"):
        for target, row in sorted(lb.get(variant, {}).items()):
            rows.append(
                [
                    variant,
                    target,
                    fmt(lb_figure(suite, variant, target), 0),
                    f"{row['p50_ms']:.2f}",
                    f"{row['p99_ms']:.2f}",
                    f"{row['vs_direct']:.2f}",
                    f"{row['vs_haproxy']:.2f}",
                ]
            )
    return [
        "## Load balancing",
        "",
        f"wrk against nginx serving a small page: keepalive and close `-t2 "
        f"-c{lb['connections']}`, light `-t1 -c1`, {lb['duration_s']} s each, medians of "
        f"{lb['runs']} runs (req/s min–max in brackets).",
        "",
        *table(["variant", "target", "req/s", "p50 ms", "p99 ms", "vs direct", "vs haproxy"], rows),
    ]


def gossip_section(suite: dict) -> list[str]:
    data = result(suite, "gossip")
    lines = []
    if data:
        ranges = data.get("ranges", {})

        def cell(n: str, key: str, digits: int) -> str:
            low, high = ranges.get(n, {}).get(key, [None, None])
            return fmt(
                Figure(
                    data["sizes"][n][key],
                    low if low is not None else data["sizes"][n][key],
                    high if high is not None else data["sizes"][n][key],
                ),
                digits,
            )

        rows = [
            [
                n,
                cell(n, "dead_99_s", 2),
                cell(n, "dead_100_s", 2),
                cell(n, "broadcast_100_s", 2),
                cell(n, "msgs_per_node_s", 1),
                cell(n, "bytes_per_node_s", 0),
                cell(n, "quiet_bytes_per_node_s", 0),
            ]
            for n in sorted(data["sizes"], key=int)
        ]
        lines += [
            "## Gossip (simulated, the real SWIM core on an in-memory network)",
            "",
            f"Medians of {data['seeds']} seeds; times in simulated seconds.",
            "",
            *table(
                [
                    "nodes",
                    "crash known 99 %",
                    "crash known 100 %",
                    "write known 100 %",
                    "msgs/node/s",
                    "bytes/node/s",
                    "quiet bytes/node/s",
                ],
                rows,
            ),
        ]
    if result(suite, "liveness"):
        nodes = result(suite, "liveness")["nodes"]
        lines += [
            f"On a real {nodes}-node cluster (bench.liveness): kill -9 of a node -> `down` "
            f"on every survivor after {fmt(figure(suite, 'liveness', 'all_down_s'))} s.",
            "",
        ]
    return lines


def memory_section(suite: dict) -> list[str]:
    data = result(suite, "memory")
    if not data:
        return []
    rows = [
        [
            "idle",
            fmt(figure(suite, "memory", "shoal_idle_mib"), 1),
            fmt(figure(suite, "memory", "docker_idle_mib"), 1),
        ],
        [
            f"{data['tasks']} tasks",
            fmt(figure(suite, "memory", "shoal_with_tasks_mib"), 1),
            fmt(figure(suite, "memory", "docker_with_tasks_mib"), 1),
        ],
    ]
    return [
        "## Memory (resident, MiB)",
        "",
        "Shoal: the node process, tasks run by the process runtime (their own memory not "
        "counted). Docker: dockerd, containerd and the per-container shims of a private "
        "engine, containers running `sleep`.",
        "",
        *table(["", "Shoal node", "dockerd+containerd"], rows),
    ]


def overlay_section(suite: dict) -> list[str]:
    data = result(suite, "overlay")
    if not data:
        return []
    rows = [
        [
            target,
            f"{data[target]['rps']:,.0f}",
            f"{data[target]['p50_ms']:.2f}",
            f"{data[target]['p99_ms']:.2f}",
        ]
        for target in ("vip", "overlay", "underlay")
    ]
    join, death = data["new_task_behind_vip_s"], data["dead_task_out_of_vip_s"]
    return [
        "## Overlay networks",
        "",
        f"wrk -t1 -c{data['connections']} from one namespace host to busybox httpd on another "
        "(a new connection per request): through the service's VIP, to the task's overlay "
        "address, and to a container publishing a host port (the underlay).",
        "",
        *table(["target", "req/s", "p50 ms", "p99 ms"], rows),
        f"VIP {data['vip_vs_overlay']:.2f}× overlay; overlay {data['overlay_vs_underlay']:.2f}× "
        f"underlay. A new task behind the VIP {fmt(Figure(join['median'], join['min'], join['max']), 3)} s "
        f"after its container starts; a killed task out of every node's VIP after "
        f"{fmt(Figure(death['median'], death['min'], death['max']), 3)} s.",
        *_dead_host(data),
        "",
    ]


def _dead_host(data: dict) -> list[str]:
    dead = (data.get("dead_host") or {}).get("out_of_vip_s")
    if not dead:
        return []
    suspected = data["dead_host"]["suspected_s"]
    return [
        f"A host's link cut: its task out of the live nodes' VIPs after "
        f"{fmt(Figure(dead['median'], dead['min'], dead['max']), 3)} s (max {dead['max']:.2f} s), "
        f"of which {fmt(Figure(suspected['median'], suspected['min'], suspected['max']), 3)} s "
        "until a node suspects it."
    ]


def scale_section(suite: dict) -> list[str]:
    data = result(suite, "scale")
    if not data:
        return []
    rows = [
        [
            f"{int(n):,}",
            fmt(Figure.of(r["schedule_s"]), 3),
            fmt(Figure.of(r["schedule_cpu_s"]), 3),
            fmt(Figure.of(r["placements_per_s"]), 0),
            f"{r['snapshot_bytes'] / 1e6:,.2f}",
            f"{r['snapshot_serialize_s']:.2f}",
            f"{r['snapshot_restore_s']:.2f}",
        ]
        for n, r in sorted(data["sizes"].items(), key=lambda kv: int(kv[0]))
    ]
    return [
        "## Scale curve",
        "",
        f"{data['nodes']:,} simulated nodes, {data['services']} services; the snapshot is "
        "`len(state.to_msgpack())` once every task is assigned (it includes the node records).",
        "",
        *table(
            [
                "tasks",
                "place s (wall)",
                "place s (CPU)",
                "placements/s",
                "snapshot MB",
                "serialize s",
                "restore s",
            ],
            rows,
        ),
    ]


def members_section(suite: dict) -> list[str]:
    data = result(suite, "members")
    if not data:
        return []

    def cell(value: float | None, digits: int = 1) -> str:
        return "—" if value is None else f"{value:,.{digits}f}"

    rows = [
        [
            f"{r['members']:,}",
            cell(r["leader_cpu_idle_pct"]),
            cell(r.get(BUSY_CPU_KEY)),
            cell(r["write_p50_ms"]),
            cell(r["write_p99_ms"]),
            cell(r["applied_99pct_ms"]),
            cell(r["applied_100pct_ms"]),
            cell(r.get(LAG_KEY)),
            cell(r["idle_bytes_per_s_per_member"], 0),
            " / ".join(f"{m:,.0f}" for m in r["voter_rss_mib"]),
        ]
        for r in data["sizes"]
    ]
    return [
        "## Members following the feed",
        "",
        "3 real voters; N simulated members (the node's own feed follower, many per process, on "
        "the same cores) follow the followers' feed (bench.members).",
        "",
        *table(
            [
                "members",
                "leader idle % CPU",
                "leader % CPU at 100 writes/s",
                "write p50 ms",
                "write p99 ms",
                "applied 99 % ms",
                "applied 100 % ms",
                "applied 99 % at 10 writes/s ms",
                "idle B/s per member",
                "voter RSS MiB",
            ],
            rows,
        ),
    ]


def status_section(suite: dict) -> list[str]:
    def detail(entry: dict) -> str:
        if entry["status"] == "ok":
            return "`" + " ".join(entry["argv"]) + "`"
        last = entry.get("reason", "").strip().splitlines()
        return last[-1] if last else ""

    rows = [
        [name, entry["status"], f"{entry.get('seconds', 0):.0f}", detail(entry)]
        for name, entry in suite["steps"].items()
    ]
    return [
        "## How this was run",
        "",
        "`python -m bench all --report bench/REPORT.md"
        + (" --quick`" if suite["quick"] else "`")
        + "; raw figures in `results.json` beside this file, re-rendered with `python -m bench "
        "report`.",
        "",
        *table(["benchmark", "status", "wall s", "arguments / reason"], rows),
    ]


def write_report(suite: dict, path: Path) -> list[Path]:
    """Write the Markdown report to `path` and its plots beside it; returns the plot paths."""
    plots = draw_all(suite, path.parent, path.stem.lower())
    m = suite["machine"]
    found = comparisons(suite)
    lines = [
        "# Shoal benchmark report",
        "",
        f"{m['date']} · {m['uname']} · {m['cores']} cores · {m['memory_gib']} GiB · Python "
        f"{m['python']} · load average at start {m['load_at_start'][0]:.2f}"
        + (" · **--quick sizes: smoke test, not figures to quote**" if suite["quick"] else ""),
        "",
        "Every figure: median of its runs, min–max in brackets.",
        "",
        *summary_section(found),
        *losses_section(found),
    ]
    sections = [
        control_section(suite),
        orchestration_section(suite),
        scheduling_section(suite),
        lb_section(suite),
        overlay_section(suite),
        gossip_section(suite),
        memory_section(suite),
        scale_section(suite),
        members_section(suite),
    ]
    for section in sections:
        lines += section
    lines += ["## Plots", ""] + [f"![{name}]({p.name})" for name, p in plots.items()] + [""]
    lines += status_section(suite)
    path.write_text("\n".join(lines))
    return list(plots.values())
