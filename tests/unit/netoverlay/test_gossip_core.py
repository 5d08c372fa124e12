"""The SWIM core on the in-memory network: detection, refutation, dissemination, partitions."""

from __future__ import annotations

from netoverlay.gossip import codec
from netoverlay.gossip.config import GossipConfig
from netoverlay.gossip.core import GossipCore
from netoverlay.gossip.model import Ack, MemberState, Ping, PingReq
from tests.unit.netoverlay.gossip_sim import Cluster, address, node_id

ALIVE, SUSPECT, DEAD, LEFT = (
    MemberState.ALIVE,
    MemberState.SUSPECT,
    MemberState.DEAD,
    MemberState.LEFT,
)


def test_a_crashed_node_is_suspected_then_declared_dead_by_all():
    c = Cluster(12)
    c.net.stop(address(5))
    assert c.net.run_until_true(lambda: c.all_see([5], DEAD), 30)
    assert c.ever(5, SUSPECT)
    # Nobody else was ever suspected on this lossless network.
    assert not any(c.ever(i, SUSPECT) for i in range(12) if i != 5)


def test_a_crashed_node_is_declared_dead_despite_packet_loss():
    c = Cluster(12, seed=3, loss=0.1)
    c.net.stop(address(2))
    assert c.net.run_until_true(lambda: c.all_see([2], DEAD), 60)


def test_indirect_probes_keep_a_node_with_one_broken_link_alive():
    c = Cluster(8, seed=2)
    # Node 0 cannot reach node 3 directly; everybody else can, so ping-req through them works.
    c.net.block(address(0), address(3))
    c.net.run_for(40)
    assert not c.ever(3, SUSPECT)
    assert c.all_see([3], ALIVE)


def test_a_node_that_goes_silent_briefly_refutes_the_suspicion_and_is_never_declared_dead():
    c = Cluster(10, seed=4)
    silent = address(6)
    others = [address(i) for i in range(10) if i != 6]
    for other in others:
        c.net.block(silent, other)  # one-way: it still hears everything
    assert c.net.run_until_true(lambda: c.ever(6, SUSPECT), 10, step=0.01)
    c.net.heal()
    assert c.net.run_until_true(lambda: c.all_see([6], ALIVE), 10)
    c.net.run_for(10)
    assert not c.ever(6, DEAD)
    assert c.core(6).local.incarnation >= 1
    assert all(
        c.core(i).member(node_id(6)).incarnation == c.core(6).local.incarnation
        for i in range(10)
        if i != 6
    )


def test_a_table_write_reaches_every_node_and_so_does_its_deletion():
    c = Cluster(16, seed=5)
    c.net.act(address(3), lambda core, now: core.local_set("web/1", {"port": 8080}, now))
    assert c.net.run_until_true(
        lambda: all(c.core(i).table_get("n3", "web/1") is not None for i in range(16)), 5, step=0.05
    )
    assert {c.core(i).table_get("n3", "web/1").value["port"] for i in range(16)} == {8080}
    c.net.act(address(3), lambda core, now: core.local_delete("web/1", now))
    assert c.net.run_until_true(
        lambda: all(c.core(i).table_get("n3", "web/1") is None for i in range(16)), 5, step=0.05
    )


def test_member_news_reaches_nodes_that_never_exchanged_state_with_the_joiner():
    c = Cluster(10, seed=6)
    # Only node 0 took part in every join; the others learned of each other by gossip.
    assert all(sum(not m.gone for m in c.core(i).members()) == 10 for i in range(10))


def test_a_partition_makes_each_side_declare_the_other_dead_and_healing_restores_all():
    c = Cluster(8, seed=7)
    for i in range(8):
        c.net.act(address(i), lambda core, now, i=i: core.local_set("endpoint", i, now))
    left, right = [0, 1, 2, 3], [4, 5, 6, 7]
    c.net.partition([address(i) for i in left], [address(i) for i in right])
    assert c.net.run_until_true(
        lambda: c.all_see(right, DEAD, observers=left) and c.all_see(left, DEAD, observers=right),
        60,
    )
    # Entries of nodes believed dead are dropped, so nobody routes to them.
    assert all(c.core(0).table_get(node_id(i), "endpoint") is None for i in right)
    c.net.heal()
    assert c.net.run_until_true(lambda: c.all_see(range(8), ALIVE), 180)
    assert c.net.run_until_true(
        lambda: all(
            c.core(o).table_get(node_id(s), "endpoint") is not None
            for o in range(8)
            for s in range(8)
        ),
        60,
    )


def test_a_graceful_leave_is_seen_as_left_not_dead():
    c = Cluster(8, seed=8)
    c.net.act(address(2), lambda core, now: core.leave(now))
    c.net.run_for(1)
    c.net.stop(address(2))
    assert c.net.run_until_true(lambda: c.all_see([2], LEFT), 10)
    c.net.run_for(20)
    assert not c.ever(2, SUSPECT) and not c.ever(2, DEAD)


def test_a_restarted_node_is_alive_again_with_a_higher_incarnation_and_its_stale_entries_go():
    c = Cluster(8, seed=9)

    def set_both(core, now) -> None:
        core.local_set("a", "old", now)
        core.local_set("b", 1, now)

    c.net.act(address(4), set_both)
    assert c.net.run_until_true(lambda: all(c.core(i).table_get("n4", "b") for i in range(8)), 5)
    # Crash and restart before anyone declares it dead: the others still hold its entries.
    c.net.stop(address(4))
    c.net.run_for(0.5)
    fresh = c.restart(4)
    c.net.act(address(4), lambda core, now: core.local_set("a", "new", now))
    c.net.act(address(4), lambda core, now: core.join([address(0)], now))
    assert c.net.run_until_true(
        lambda: all(
            c.core(i).table_get("n4", "a")
            and c.core(i).table_get("n4", "a").value == "new"
            and c.core(i).table_get("n4", "b") is None
            for i in range(8)
        ),
        20,
    )
    assert c.all_see([4], ALIVE)
    assert fresh.local.incarnation == 0 or c.ever(4, SUSPECT)


def test_a_node_declared_dead_that_comes_back_refutes_and_is_alive_again():
    c = Cluster(8, seed=10)
    c.net.stop(address(1))
    assert c.net.run_until_true(lambda: c.all_see([1], DEAD), 30)
    fresh = c.restart(1)
    c.net.act(address(1), lambda core, now: core.join([address(0)], now))
    assert c.net.run_until_true(lambda: c.all_see([1], ALIVE), 20)
    assert fresh.local.incarnation >= 1  # outbid the incarnation it was declared dead at


def test_a_ping_for_another_node_id_is_not_acked():
    core = GossipCore(GossipConfig(), "n0", address(0), now=0.0, seed=1)
    assert core.handle(address(1), Ping(7, "someone-else"), 0.1) == []
    [reply] = core.handle(address(1), Ping(7, "n0"), 0.1)
    assert reply.to == address(1) and isinstance(reply.message, Ack) and reply.message.seq == 7


def test_a_ping_req_is_relayed_and_the_ack_returned_under_the_requesters_seq():
    core = GossipCore(GossipConfig(), "n0", address(0), now=0.0, seed=1)
    [ping] = core.handle(address(1), PingReq(41, "n2", address(2)), 0.1)
    assert ping.to == address(2) and ping.message.target == "n2"
    [relayed] = core.handle(address(2), Ack(ping.message.seq), 0.2)
    assert relayed.to == address(1) and relayed.message.seq == 41


def test_same_seed_same_run():
    def trace(seed):
        c = Cluster(6, seed=seed)
        c.net.stop(address(3))
        c.net.run_for(10)
        return sorted((o, s, tuple(v)) for (o, s), v in c.seen.items())

    assert trace(11) == trace(11)


def test_datagrams_stay_under_the_packet_limit_while_many_entries_spread():
    c = Cluster(5, seed=12)
    sizes = []
    send = c.net.send

    def measuring_send(src, outbound):
        outbound = list(outbound)
        sizes.extend(
            len(codec.encode(o.message)) + c.net.overhead for o in outbound if not o.is_stream
        )
        send(src, outbound)

    c.net.send = measuring_send
    for k in range(300):
        c.net.act(address(0), lambda core, now, k=k: core.local_set(f"key-{k}", "v" * 40, now))
    assert c.net.run_until_true(
        lambda: all(len(c.core(i).table_items()) == 300 for i in range(5)), 60
    )
    assert max(sizes) <= c.config.udp_packet_limit
    assert max(sizes) > c.config.udp_packet_limit // 2  # packets were really filled
