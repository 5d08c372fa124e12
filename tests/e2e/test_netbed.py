"""The multi-host test bed itself: hosts reach each other over the bridge, and each fault does
what it says (partitions, one-way partitions, link down, SIGSTOP, kill -9, random loss), heals,
and leaves nothing behind. Echo servers stand in for Shoal nodes.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.netbed import Faults
from tests.netbed.names import owner_of
from tests.netbed.teardown import sweep_stale_beds
from tests.netbed.workload import start_echo, tcp_probe, udp_probe, udp_received
from tests.support import require_netbed

pytestmark = pytest.mark.e2e

PROBES = 20


@pytest.fixture
def echo_bed(netbed_factory):
    """Three hosts, each running an echo server."""
    bed = netbed_factory(3)
    servers = {host.name: start_echo(host) for host in bed.hosts}
    return bed, servers


def test_hosts_reach_each_other_and_the_test_process(echo_bed):
    bed, _ = echo_bed
    for source, target in itertools.permutations(bed.hosts, 2):
        assert udp_probe(source, target, PROBES) == PROBES, f"{source} -> {target} over UDP"
        assert tcp_probe(source, target), f"{source} -> {target} over TCP"
    assert [udp_received(host) for host in bed.hosts] == [2 * PROBES] * 3
    addresses = {host.address for host in bed.hosts} | {bed.gateway}
    assert len(addresses) == 4, "every host and the bridge have an address of their own"


def test_partition_cuts_groups_apart_and_heal_restores_them(echo_bed):
    bed, _ = echo_bed
    a, b, c = bed.hosts
    with Faults(bed) as faults:
        faults.partition([a], [b, c])
        assert udp_probe(a, b) == 0 and udp_probe(b, a) == 0
        assert udp_probe(a, c) == 0 and not tcp_probe(c, a)
        assert udp_probe(b, c) == PROBES and tcp_probe(c, b), "the majority side still talks"
    assert udp_probe(a, b) == PROBES and tcp_probe(b, a)


def test_one_way_partition_drops_one_direction_only(echo_bed):
    bed, _ = echo_bed
    a, b, _ = bed.hosts
    with Faults(bed) as faults:
        faults.one_way([a], [b])
        b_before, a_before = udp_received(b), udp_received(a)
        assert udp_probe(a, b) == 0
        assert udp_received(b) == b_before, "nothing sent by a reached b"
        assert udp_probe(b, a) == 0, "a's echoes back to b are dropped"
        assert udp_received(a) == a_before + PROBES, "everything sent by b reached a"
    assert udp_probe(a, b) == PROBES


def test_link_down_takes_a_host_off_the_network_until_link_up(echo_bed):
    bed, _ = echo_bed
    a, b, c = bed.hosts
    with Faults(bed) as faults:
        faults.link_down(b)
        assert udp_probe(a, b) == 0 and udp_probe(b, c) == 0
        assert udp_probe(a, c) == PROBES
        faults.link_up(b)
        assert udp_probe(a, b) == PROBES
        faults.link_down(c)
    assert udp_probe(a, c) == PROBES, "heal brings every link back up"


def test_a_paused_server_answers_only_after_resume(echo_bed):
    bed, servers = echo_bed
    a, b, _ = bed.hosts
    with Faults(bed) as faults:
        faults.pause(servers["h1"])
        assert udp_probe(a, b) == 0
        faults.resume(servers["h1"])
        assert udp_probe(a, b) == PROBES
        faults.pause(servers["h1"])
    assert udp_probe(a, b) == PROBES, "heal resumes paused processes"


def test_kill_9_ends_the_server(echo_bed):
    bed, servers = echo_bed
    a, b, _ = bed.hosts
    Faults(bed).kill(servers["h1"])
    assert servers["h1"].returncode == -9
    assert udp_probe(a, b) == 0 and not tcp_probe(a, b)


def test_loss_drops_about_the_set_fraction(echo_bed):
    bed, _ = echo_bed
    a, b, _ = bed.hosts
    sent, percent = 1000, 30
    with Faults(bed) as faults:
        faults.loss(b, percent, "in")
        echoed = udp_probe(a, b, count=sent)
    expected = sent * (100 - percent) / 100
    spread = 5 * math.sqrt(sent * percent / 100 * (100 - percent) / 100)  # 5 sigma of a binomial
    assert abs(echoed - expected) < spread, (
        f"{echoed} of {sent} echoed, expected about {expected:.0f}"
    )
    assert udp_probe(a, b) == PROBES


def _objects_named(tag: str) -> list[str]:
    """Lines of the machine's network listings that name an object of the bed tagged `tag`."""
    bed = owner_of(tag)
    names = (bed.tag, bed.bridge, bed.nft_table)
    listings = [
        ["ip", "netns", "list"],
        ["ip", "link", "show"],
        ["nft", "list", "tables"],
        ["iptables", "-w", "-S", "FORWARD"],
    ]
    found = []
    for argv in listings:
        out = subprocess.run(argv, capture_output=True, text=True).stdout
        found += [line for line in out.splitlines() if any(name in line for name in names)]
    return found


def test_close_removes_every_object_and_process(netbed_factory):
    bed = netbed_factory(2)
    server = start_echo(bed.hosts[0])
    assert _objects_named(bed.name.tag)
    bed.close()
    assert _objects_named(bed.name.tag) == []
    assert server.returncode is not None


_ORPHAN_MAKER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.netbed.bed import NetBed
bed = NetBed.create(2)
sleeper = bed.hosts[1].spawn(["sleep", "600"])
print(bed.name.tag, sleeper.pid, flush=True)
time.sleep(600)
"""


def test_sweep_removes_the_bed_of_a_killed_run():
    """A run killed with -9 runs no finalizer; the next bed's sweep removes what it left."""
    require_netbed()
    repo = Path(__file__).resolve().parents[2]
    owner = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_MAKER, str(repo)], stdout=subprocess.PIPE, text=True
    )
    try:
        tag, sleeper = owner.stdout.readline().split()
    finally:
        owner.kill()
        owner.wait()
    assert _objects_named(tag), "the killed run left its bed behind"
    swept = sweep_stale_beds()
    assert tag in {bed.tag for bed in swept}
    assert _objects_named(tag) == []
    assert not _running(int(sleeper)), "the process the killed run started is stopped too"


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit is reaped by PID 1 whenever it gets to it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_private_dockerd_publishes_ports_on_its_own_host(netbed_factory, busybox_image):
    bed = netbed_factory(2)
    h0, h1 = bed.hosts
    daemon = h0.start_dockerd()
    daemon.load_from(busybox_image)
    daemon.docker(
        "run",
        "-d",
        "--init",
        "-p",
        "8080:80",
        busybox_image,
        "sh",
        "-c",
        "echo served-by-h0 > /tmp/index.html && exec httpd -f -p 80 -h /tmp",
    )
    # busybox wget -T segfaults here, so `timeout` bounds it; the container may need a moment
    # to start listening, which the retries of one bounded loop absorb.
    fetch = ["timeout", "2", "busybox", "wget", "-q", "-O-", f"http://{h0.address}:8080/"]
    for _ in range(20):
        done = h1.run(fetch, check=False)
        if done.returncode == 0:
            break
        time.sleep(0.25)
    assert done.stdout == "served-by-h0\n", done.stderr


@pytest.mark.chaos
def test_soak_echo_servers_under_rotating_faults(netbed_factory):
    """Rotates faults over the echo hosts for SHOAL_CHAOS_SECONDS (default 60): after each fault
    heals, every host reaches every other again and no server has died."""
    seconds = float(os.environ.get("SHOAL_CHAOS_SECONDS", "60"))
    seed = int(os.environ.get("SHOAL_CHAOS_SEED", str(random.randrange(2**32))))
    rng = random.Random(seed)
    bed = netbed_factory(3)
    servers = {host.name: start_echo(host) for host in bed.hosts}
    faults_seen: list[str] = []

    def inject(faults: Faults) -> str:
        victim, *others = rng.sample(bed.hosts, 3)
        choice = rng.choice(["partition", "one_way", "loss", "link_down", "pause"])
        if choice == "partition":
            faults.partition([victim], others)
        elif choice == "one_way":
            faults.one_way([victim], others)
        elif choice == "loss":
            faults.loss(victim, rng.randrange(5, 60))
        elif choice == "link_down":
            faults.link_down(victim)
        else:
            faults.pause(servers[victim.name])
        return f"{choice}({victim.name})"

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with Faults(bed) as faults:
            faults_seen.append(inject(faults))
            for source, target in itertools.permutations(bed.hosts, 2):
                udp_probe(source, target, count=50, timeout=0.2)  # traffic through the fault
        for source, target in itertools.permutations(bed.hosts, 2):
            # A few attempts: after a link comes back, neighbour (ARP) resolution can take a
            # retransmit interval, as on a real network.
            echoed = [udp_probe(source, target, timeout=1.0) for _ in range(3)]
            assert PROBES in echoed, (
                f"{source.name} -> {target.name} after {faults_seen[-1]}: {echoed} (seed {seed})"
            )
    assert all(server.alive for server in servers.values())
    print(json.dumps({"seed": seed, "faults": len(faults_seen)}))
