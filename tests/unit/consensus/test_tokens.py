"""Scoped tokens, the audit trail and join nonces in the state machine: checked in apply,
kept in snapshots, bounded."""

from __future__ import annotations

import dataclasses

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus import codec
from consensus.audit import AUDIT, AUDIT_KEPT, AuditEntry, RecordAudit
from consensus.model import Node
from consensus.nodes import JOIN_NONCES, JOIN_WINDOW, JoinTicket, RegisterNode
from consensus.state import ClusterState
from consensus.tokens import ApiToken, CreateToken, RevokeToken, token_matching, tokens

HASH = "ab" * 32


def token(name: str = "ci", role: str = "operator", **fields) -> ApiToken:
    return ApiToken(
        **{
            "id": f"{abs(hash(name)) % 16**16:016x}",
            "name": name,
            "role": role,
            "secret_hash": HASH,
            "created_at": 100.0,
            **fields,
        }
    )


def replayed(state: ClusterState, cmd) -> ClusterState:
    """The command through the wire and a snapshot, as another node holds it."""
    state.apply(codec.decode(codec.encode(cmd, "")).command)
    return ClusterState.from_msgpack(state.to_msgpack())


def test_a_token_is_created_found_by_id_or_name_and_revoked():
    state = ClusterState()
    row = token(services="web-*", expires_at=200.0, created_by="local")
    state = replayed(state, CreateToken(row))
    assert tokens(state) == {row.id: row}
    assert token_matching(state, "ci") == row and token_matching(state, row.id) == row
    assert row.covers("web-1") and not row.covers("db")
    assert not row.expired(199.9) and row.expired(200.0)
    result = state.apply(RevokeToken("ci"))
    assert result.ok and result.value == row.id and tokens(state) == {}
    assert state.apply(RevokeToken("ci")).code == 404


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"id": "XYZ"}, "id"),
        ({"name": "has space"}, "name"),
        ({"name": ""}, "name"),
        ({"role": "root"}, "role"),
        ({"secret_hash": "plain-secret"}, "secret_hash"),
        ({"services": "web/*"}, "services"),
        ({"services": "web-*", "role": "admin"}, "services"),
        ({"expires_at": 50.0}, "expires_at"),
    ],
)
def test_a_malformed_token_is_refused_naming_the_field(fields, field):
    state = ClusterState()
    result = state.apply(CreateToken(token(**fields)))
    assert not result.ok and result.code == 400 and result.error.startswith(f"{field}:"), result
    assert tokens(state) == {}


def test_names_and_ids_are_unique():
    state = ClusterState()
    assert state.apply(CreateToken(token("a"))).ok
    assert state.apply(CreateToken(dataclasses.replace(token("a"), id="0" * 16))).code == 409
    assert state.apply(CreateToken(dataclasses.replace(token("b"), id=token("a").id))).code == 409


def test_the_audit_trail_keeps_its_last_rows_in_order_and_cuts_long_fields():
    state = ClusterState()
    entry = AuditEntry(1.0, "local", "admin", "POST", "/v1/services", 201, "x" * 5000)
    for _ in range(AUDIT_KEPT // 100 + 2):
        assert state.apply(RecordAudit((entry,) * 100)).ok
    rows = state.table(AUDIT)
    assert len(rows) == AUDIT_KEPT and list(rows) == sorted(rows)
    assert max(len(r.resource) for r in rows.values()) == 256
    assert state.apply(RecordAudit((entry,) * 257)).code == 400


def node(name: str = "n2") -> Node:
    return Node(
        f"id-{name}",
        name,
        f"10.0.0.{len(name) + ord(name[-1]) % 200}",
        7420,
        7421,
        7422,
        key_hash=HASH,
    )


def test_a_join_nonce_is_refused_the_second_time_even_by_another_replica():
    state = ClusterState()
    ticket = JoinTicket("ab" * 16, 1000.0, 1001.0)
    state = replayed(state, RegisterNode(node(), ticket))
    assert set(state.table(JOIN_NONCES)) == {ticket.nonce}
    again = state.apply(RegisterNode(node("n3"), dataclasses.replace(ticket, accepted_at=1030.0)))
    assert not again.ok and again.code == 403 and "replayed" in again.error
    assert "n3" not in {n.name for n in state.table("nodes").values()}
    # A restart's registration carries no ticket and is not a join.
    assert state.apply(RegisterNode(node())).ok


def test_nonces_are_forgotten_once_no_join_signed_then_passes_the_window():
    state = ClusterState()
    assert state.apply(RegisterNode(node("a"), JoinTicket("a" * 32, 1000.0, 1000.0))).ok
    later = 1000.0 + 2 * JOIN_WINDOW + 1
    assert state.apply(RegisterNode(node("b"), JoinTicket("b" * 32, later, later))).ok
    assert set(state.table(JOIN_NONCES)) == {"b" * 32}
    assert state.apply(RegisterNode(node("c"), JoinTicket("short", later, later))).code == 400
