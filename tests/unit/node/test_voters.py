"""The voter-set planner: target sizes, autopilot replacement, never losing quorum."""

from __future__ import annotations

import dataclasses

from consensus.model import Node, target_voter_count
from node.voters import VoterChange, plan_voter_change, safe_to_apply

GRACE = 60.0


def _node(i: int, role: str = "member", status: str = "ready", changed: float = 0.0) -> Node:
    return Node(
        id=f"id{i}",
        name=f"n{i}",
        address=f"127.0.0.{i}",
        api_port=7420,
        raft_port=7421,
        gossip_port=7422,
        role=role,
        status=status,
        joined_at=float(i),
        status_changed_at=changed,
    )


def test_target_is_the_largest_odd_number_up_to_five():
    assert [target_voter_count(n) for n in range(0, 9)] == [1, 1, 1, 3, 3, 5, 5, 5, 5]


def test_promotes_the_longest_standing_member_until_the_target():
    nodes = [_node(1, "voter"), _node(3), _node(2)]
    change = plan_voter_change(nodes, "id1", now=100, grace=GRACE)
    assert change == VoterChange("promote", nodes[2], change.reason)
    nodes[2] = dataclasses.replace(nodes[2], role="voter")
    assert plan_voter_change(nodes, "id1", 100, GRACE).node.id == "id3"


def test_two_nodes_keep_a_single_voter_and_six_keep_five():
    assert plan_voter_change([_node(1, "voter"), _node(2)], "id1", 100, GRACE) is None
    six = [_node(i, "voter") for i in range(1, 6)] + [_node(6)]
    assert plan_voter_change(six, "id1", 100, GRACE) is None


def test_a_voter_down_within_its_grace_keeps_its_seat():
    nodes = [_node(1, "voter"), _node(2, "voter"), _node(3, "voter", "down", changed=90), _node(4)]
    assert plan_voter_change(nodes, "id1", now=100, grace=GRACE) is None


def test_a_voter_down_past_its_grace_is_replaced_by_a_member_promoted_first():
    nodes = [_node(1, "voter"), _node(2, "voter"), _node(3, "voter", "down", changed=10), _node(4)]
    change = plan_voter_change(nodes, "id1", now=100, grace=GRACE)
    assert (change.action, change.node.id) == ("promote", "id4")
    nodes[3] = dataclasses.replace(nodes[3], role="voter")
    change = plan_voter_change(nodes, "id1", now=100, grace=GRACE)
    assert (change.action, change.node.id) == ("demote", "id3")
    nodes[2] = dataclasses.replace(nodes[2], role="member")
    assert plan_voter_change(nodes, "id1", now=100, grace=GRACE) is None


def test_three_nodes_keep_three_voters_while_one_is_down_for_good():
    # The wedge: a voter down past its grace was demoted, then the set shrank to one.
    nodes = [_node(1, "voter"), _node(2, "voter"), _node(3, "voter", "down", changed=10)]
    assert plan_voter_change(nodes, "id1", now=10_000, grace=GRACE) is None
    # Already down to two voters (an older version did that): none is demoted either.
    two = [_node(1, "voter"), _node(2, "voter"), _node(3, "member", "down", changed=10)]
    assert plan_voter_change(two, "id1", now=10_000, grace=GRACE) is None
    # When the third node returns it is promoted back.
    back = two[:2] + [dataclasses.replace(two[2], status="ready")]
    assert plan_voter_change(back, "id1", now=10_000, grace=GRACE).action == "promote"


def test_autopilot_never_goes_below_three_voters_while_three_nodes_exist():
    """Every sequence of nodes going down, coming back and autopilot acting, on 3-6 nodes:
    once three voters are seated the set never drops below three."""
    import random

    for seed in range(300):
        rng = random.Random(seed)
        count = rng.randint(3, 6)
        nodes = [_node(i, "voter" if i <= 3 else "member") for i in range(1, count + 1)]
        now = 0.0
        for _ in range(40):
            now += rng.choice((1.0, GRACE + 1))
            i = rng.randrange(1, count)  # the leader, id1, stays up
            if rng.random() < 0.5:
                status = "down" if nodes[i].status == "ready" else "ready"
                nodes[i] = dataclasses.replace(nodes[i], status=status, status_changed_at=now)
            change = plan_voter_change(nodes, "id1", now, GRACE)
            if change is not None:
                k = next(j for j, n in enumerate(nodes) if n.id == change.node.id)
                nodes[k] = dataclasses.replace(
                    nodes[k], role="voter" if change.action == "promote" else "member"
                )
            seated = sum(n.role == "voter" for n in nodes)
            assert seated >= 3, (seed, nodes, change)


def test_never_a_change_that_loses_quorum():
    # Two of three voters dead: no membership change can commit, so none is planned.
    nodes = [_node(1, "voter"), _node(2, "voter", "down"), _node(3, "voter", "down"), _node(4)]
    assert plan_voter_change(nodes, "id1", now=1000, grace=GRACE) is None
    three = [_node(1, "voter"), _node(2, "voter"), _node(3, "voter", "down")]
    assert not safe_to_apply(VoterChange("demote", three[1], "x"), three)
    assert safe_to_apply(VoterChange("demote", three[2], "x"), three)


def test_too_many_voters_demotes_a_down_one_first_and_never_the_leader():
    nodes = [_node(1, "voter"), _node(2, "voter"), _node(3, "voter"), _node(4, "voter")]
    change = plan_voter_change(nodes, "id1", 100, GRACE)
    assert change.action == "demote" and change.node.id != "id1"
