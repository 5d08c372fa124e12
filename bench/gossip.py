"""SWIM gossip at scale: the real core on the in-memory network, in simulated time.

    python -m bench.gossip --nodes 1000
    python -m bench.gossip --nodes 100,1000,5000 --seeds 3

For each size and seed: a cluster that already knows all its members runs a few seconds,
then one node crashes (how long until 99 % and 100 % of the others know it is dead?), then
one node writes a table key (how long until every node has it?). Traffic is measured per
node and per second, while quiet and over the whole scenario. Figures are medians over
seeds; the last line is `RESULT {json}`.
Targets at 1,000 nodes (1 s probe interval): dead known everywhere <= 5 s, a broadcast
everywhere <= 2 s, per-node traffic flat from 100 to 5,000 nodes.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time

from netoverlay.gossip.config import GossipConfig
from netoverlay.gossip.core import GossipCore
from netoverlay.gossip.model import Member, MemberEvent, MemberState, TableEvent
from netoverlay.gossip.simnet import SimNetwork

WARMUP = 3.0
QUIET = 5.0
LIMIT = 30.0


def _address(i: int) -> tuple[str, int]:
    return (f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", 7422)


def _percentile_time(times: list[float], fraction: float, population: int) -> float:
    """When `fraction` of `population` had learned it (inf if they never did)."""
    needed = math.ceil(fraction * population)
    return sorted(times)[needed - 1] if len(times) >= needed else math.inf


def run_once(nodes: int, seed: int, config: GossipConfig) -> dict[str, float]:
    net = SimNetwork(seed)
    ids = [f"node-{i:05d}" for i in range(nodes)]
    members = [Member(ids[i], _address(i), since=0.0) for i in range(nodes)]
    for i in range(nodes):
        net.add(
            GossipCore(
                config, ids[i], _address(i), now=0.0, seed=seed * 100_003 + i, members=members
            )
        )
    net.run_until(WARMUP)

    packets0, bytes0 = sum(net.packets_sent.values()), sum(net.bytes_sent.values())
    net.run_for(QUIET)
    quiet_packets = (sum(net.packets_sent.values()) - packets0) / nodes / QUIET
    quiet_bytes = (sum(net.bytes_sent.values()) - bytes0) / nodes / QUIET

    victim_index = random.Random(seed).randrange(2, nodes)
    victim, victim_id, writer = _address(victim_index), ids[victim_index], _address(1)
    dead_at: dict[tuple, float] = {}
    got_at: dict[tuple, float] = {}

    def listen(address, event, now):
        if (
            isinstance(event, MemberEvent)
            and event.member.node_id == victim_id
            and event.member.state == MemberState.DEAD
        ):
            dead_at.setdefault(address, now)
        elif isinstance(event, TableEvent) and event.key == "bench" and event.entry is not None:
            got_at.setdefault(address, now)

    net.listener = listen
    scenario_start = net.now
    packets0, bytes0 = sum(net.packets_sent.values()), sum(net.bytes_sent.values())
    stream0 = sum(net.stream_bytes_sent.values())
    net.stop(victim)
    others = nodes - 1
    net.run_until_true(lambda: len(dead_at) >= others, LIMIT)
    dead_times = [t - scenario_start for t in dead_at.values()]

    written = net.now
    net.act(
        writer, lambda core, now: core.local_set("bench", {"addr": "10.0.0.1", "port": 80}, now)
    )
    got_at[writer] = written
    net.run_until_true(lambda: len(got_at) >= others, LIMIT, step=0.02)
    got_times = [t - written for t in got_at.values()]
    elapsed = net.now - scenario_start
    return {
        "dead_99_s": _percentile_time(dead_times, 0.99, others),
        "dead_100_s": _percentile_time(dead_times, 1.0, others),
        "broadcast_100_s": _percentile_time(got_times, 1.0, others),
        "quiet_msgs_per_node_s": quiet_packets,
        "quiet_bytes_per_node_s": quiet_bytes,
        "msgs_per_node_s": (sum(net.packets_sent.values()) - packets0) / others / elapsed,
        "bytes_per_node_s": (sum(net.bytes_sent.values()) - bytes0) / others / elapsed,
        "push_pull_bytes_per_node_s": (sum(net.stream_bytes_sent.values()) - stream0)
        / others
        / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1000", help="cluster sizes, comma-separated")
    parser.add_argument("--seeds", type=int, default=3, help="runs per size (median reported)")
    args = parser.parse_args()
    config = GossipConfig()
    results, ranges = {}, {}
    for n in (int(x) for x in args.nodes.split(",")):
        runs = []
        for seed in range(1, args.seeds + 1):
            started = time.perf_counter()
            runs.append(run_once(n, seed, config))
            print(
                f"  n={n} seed={seed}: "
                + ", ".join(f"{k}={v:.2f}" for k, v in runs[-1].items())
                + f" ({time.perf_counter() - started:.0f} s wall)",
                flush=True,
            )
        results[str(n)] = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
        ranges[str(n)] = {
            k: [round(min(r[k] for r in runs), 3), round(max(r[k] for r in runs), 3)]
            for k in runs[0]
        }
    print(
        f"\nmedians of {args.seeds} seeds (probe interval {config.probe_interval} s, "
        f"gossip interval {config.gossip_interval} s x {config.gossip_nodes} nodes)"
    )
    print(
        f"{'nodes':>6} {'dead 99%':>9} {'dead 100%':>10} {'bcast 100%':>11} "
        f"{'msg/node/s':>11} {'B/node/s':>9} {'quiet B/n/s':>12} {'pp B/n/s':>9}"
    )
    for n, r in results.items():
        print(
            f"{n:>6} {r['dead_99_s']:>8.2f}s {r['dead_100_s']:>9.2f}s {r['broadcast_100_s']:>10.2f}s "
            f"{r['msgs_per_node_s']:>11.1f} {r['bytes_per_node_s']:>9.0f} "
            f"{r['quiet_bytes_per_node_s']:>12.0f} {r['push_pull_bytes_per_node_s']:>9.0f}"
        )
    print(
        "RESULT "
        + json.dumps(
            {"benchmark": "gossip", "seeds": args.seeds, "sizes": results, "ranges": ranges}
        )
    )


if __name__ == "__main__":
    main()
