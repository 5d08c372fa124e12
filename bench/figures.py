"""Reading a suite's results: one figure (median with min-max) per step and key, and the
side-by-side comparisons of Shoal with the reference systems. Pure: data in, data out."""

from __future__ import annotations

from dataclasses import dataclass

# Published figures, not measured here: labelled as such wherever they appear.
NOMAD_C1M_PER_S = 3_750.0  # HashiCorp C1M: 1,000,000 containers on 5,000 hosts in under 5 min
KUBE_SCHEDULER_PER_S = 100.0  # kube-scheduler at 5,000 nodes (SIG Scalability's target)


@dataclass(frozen=True, slots=True)
class Figure:
    """A median with the min-max of its runs (equal to the median when only one number exists)."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, plain) -> Figure | None:
        if plain is None:
            return None
        if isinstance(plain, dict):
            return cls(plain["median"], plain["min"], plain["max"])
        return cls(plain, plain, plain)


@dataclass(frozen=True, slots=True)
class Comparison:
    area: str
    figure: str
    unit: str
    higher_is_better: bool
    shoal: Figure
    reference: str
    ref: Figure
    why_reference_wins: str
    published: bool = False  # the reference figure comes from a publication, not this run

    @property
    def ratio(self) -> float:
        """Shoal / reference, from the same run."""
        return self.shoal.median / self.ref.median if self.ref.median else float("inf")

    @property
    def shoal_wins(self) -> bool:
        return self.ratio >= 1 if self.higher_is_better else self.ratio <= 1


def result(suite: dict, step: str) -> dict | None:
    entry = suite["steps"].get(step)
    return entry["result"] if entry and entry["status"] == "ok" else None


def figure(suite: dict, step: str, *path: str) -> Figure | None:
    node = result(suite, step)
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return Figure.of(node)


def lb_figure(suite: dict, variant: str, target: str) -> Figure | None:
    """Requests/s of one load-balancer target, with the min-max of its runs when recorded."""
    lb = result(suite, "lb")
    row = (lb or {}).get(variant, {}).get(target)
    if row is None:
        return None
    low, high = lb.get("rps_ranges", {}).get(f"{variant}/{target}", [row["rps"], row["rps"]])
    return Figure(row["rps"], low, high)


def placements(suite: dict) -> Figure | None:
    """Pure placements/s at the largest size the scale curve ran (5,000 nodes / 100,000 tasks)."""
    scale = result(suite, "scale")
    if not scale:
        return None
    largest = max(scale["sizes"], key=int)
    return Figure.of(scale["sizes"][largest]["placements_per_s"])


WHY = {
    "etcd-throughput": "etcd is compiled Go that pipelines and batches its Raft log on all cores; "
    "a Shoal write crosses aiohttp, msgpack and pysyncobj's one Raft thread, all "
    "under one Python interpreter lock",
    "etcd-latency": "each Shoal write is an HTTP handler, a msgpack command and a pysyncobj round "
    "on Python threads handing results back to the event loop; etcd's path is Go",
    "etcd-read": "a Shoal follower's read index is asked of the leader and answered on "
    "pysyncobj's Raft thread of both nodes (no log entry, no disk), each crossing to and from "
    "its event loop under one interpreter lock; etcd's ReadIndex is the same round, in Go",
    "etcd-failover": "a killed Shoal leader's connections close and its followers elect at "
    "once; etcd waits out its election timeout (1 s). etcd wins only a run where Shoal's "
    "election went wrong: both survivors candidates of one term (a split vote), or followers "
    "still busy with the load when the leader died",
    "etcd-failover-paused": "a paused leader keeps its connections open, so both wait out an "
    "election timeout: Shoal's (0.2-0.4 s) is shorter than etcd's (1 s); etcd wins only a run "
    "where Shoal's election split or its followers were still busy with the load",
    "swarm-create": "Swarm's dispatcher lives inside dockerd and starts containers in-process; a "
    "Shoal agent drives the engine through the Docker SDK over its socket",
    "swarm-death": "Swarm declared the node down first on this run",
    "haproxy": "haproxy is C with one thread per core on a tuned event loop; Shoal's proxy is one "
    "Python process with one event loop, so on 2 cores it gets about one",
    "nginx": "nginx is C; its HTTP proxy parses every request, yet still beats a Python byte pump",
    "memory": "a Python interpreter with aiohttp, cryptography, pysyncobj and the Docker SDK "
    "loaded weighs more than the Go engine's idle daemons",
    "scheduling-published": "every assignment round is committed through pysyncobj on one Python "
    "thread; Nomad's C1M spread the work over 5 Go servers and workers",
}


def comparisons(suite: dict) -> list[Comparison]:
    """Every figure where Shoal stands beside a reference system, skipping what did not run."""
    pairs = [
        (
            "control plane",
            "writes/s (64 clients)",
            "writes/s",
            True,
            "consensus",
            "etcd",
            ("writes_per_s",),
            "etcd-throughput",
        ),
        (
            "control plane",
            "write latency p50",
            "ms",
            False,
            "consensus",
            "etcd",
            ("p50_ms",),
            "etcd-latency",
        ),
        (
            "control plane",
            "write latency p99",
            "ms",
            False,
            "consensus",
            "etcd",
            ("p99_ms",),
            "etcd-latency",
        ),
        (
            "control plane",
            "linearizable follower read p50",
            "ms",
            False,
            "consensus",
            "etcd",
            ("read_p50_ms",),
            "etcd-read",
        ),
        (
            "control plane",
            "linearizable follower read p99",
            "ms",
            False,
            "consensus",
            "etcd",
            ("read_p99_ms",),
            "etcd-read",
        ),
        (
            "control plane",
            "leader failover, paused",
            "s",
            False,
            "consensus",
            "etcd",
            ("paused_failover_s",),
            "etcd-failover-paused",
        ),
        (
            "control plane",
            "leader failover, killed",
            "s",
            False,
            "consensus",
            "etcd",
            ("failover_s",),
            "etcd-failover",
        ),
        (
            "orchestration",
            "create -> 30 running (3 hosts)",
            "s",
            False,
            "orchestration",
            "swarm",
            ("create_to_running_s",),
            "swarm-create",
        ),
        (
            "orchestration",
            "node death -> tasks running elsewhere",
            "s",
            False,
            "orchestration",
            "swarm",
            ("node_death_to_replaced_s",),
            "swarm-death",
        ),
    ]
    found = []
    for area, label, unit, higher, mine, ref, path, why in pairs:
        shoal, other = figure(suite, mine, *path), figure(suite, ref, *path)
        if shoal and other:
            names = {"etcd": "etcd 3.4", "swarm": "Docker Swarm mode"}
            found.append(Comparison(area, label, unit, higher, shoal, names[ref], other, WHY[why]))
    for variant in ("keepalive", "close"):
        for target, ref, why in (
            ("shoal_proxy", "haproxy", "haproxy"),
            ("shoal_proxy", "nginx_http", "nginx"),
            ("shoal_nft", "haproxy", "haproxy"),
        ):
            shoal, other = lb_figure(suite, variant, target), lb_figure(suite, variant, ref)
            if shoal and other:
                names = {"haproxy": "haproxy (TCP)", "nginx_http": "nginx (HTTP proxy)"}
                found.append(
                    Comparison(
                        "load balancing",
                        f"{target} req/s ({variant})",
                        "req/s",
                        True,
                        shoal,
                        names[ref],
                        other,
                        WHY[why],
                    )
                )
    for phase in ("idle", "with_tasks"):
        shoal = figure(suite, "memory", f"shoal_{phase}_mib")
        other = figure(suite, "memory", f"docker_{phase}_mib")
        if shoal and other:
            found.append(
                Comparison(
                    "memory",
                    f"RSS {phase.replace('_', ' ')}",
                    "MiB",
                    False,
                    shoal,
                    "dockerd+containerd",
                    other,
                    WHY["memory"],
                )
            )
    rate = placements(suite)
    committed = figure(suite, "scheduler", "committed_per_s")
    scale = result(suite, "scale") or {}
    size = (
        f"{scale.get('nodes', 0):,} nodes / {max(map(int, scale.get('sizes', {'0': 0}))):,} tasks"
    )
    for label, mine in (
        (f"placements/s (pure, {size})", rate),
        ("assignments committed/s (Raft)", committed),
    ):
        if mine:
            for name, value in (
                ("Nomad C1M (published)", NOMAD_C1M_PER_S),
                ("kube-scheduler (published)", KUBE_SCHEDULER_PER_S),
            ):
                found.append(
                    Comparison(
                        "scheduling",
                        label,
                        "/s",
                        True,
                        mine,
                        name,
                        Figure.of(value),
                        WHY["scheduling-published"],
                        published=True,
                    )
                )
    return found
