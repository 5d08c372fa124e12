"""Scoped API tokens in the replicated state: who may do what through the API.

A token is a role (`read-only` < `operator` < `admin`), for an operator optionally limited to
services whose names match a glob, with an optional expiry. The state holds only the SHA-256
of the token's secret (a high-entropy string, so its hash cannot be guessed back): a node,
its data dir and its snapshots never hold a usable token. A revoked token's row is removed,
so every node refuses it once it applied the revocation.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Literal

from consensus.codec import command
from consensus.state import ClusterState, Result, handles, register_table

Role = Literal["read-only", "operator", "admin"]
# Weakest first: a role may do what every role before it may.
ROLES: tuple[Role, ...] = ("read-only", "operator", "admin")
TOKENS = "tokens"
MAX_TOKENS = 1000
_ID = re.compile(r"[0-9a-f]{16}")
_HASH = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
# A glob over service names (their alphabet plus fnmatch's `*`, `?` and `[...]`).
_GLOB = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,128}")


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: str
    name: str
    role: Role
    secret_hash: str  # sha256 hex of the whole token string
    created_at: float
    expires_at: float = 0.0  # 0: never
    services: str = ""  # an operator's glob over service names; empty: every service
    created_by: str = ""

    def at_least(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def expired(self, now: float) -> bool:
        return bool(self.expires_at) and now >= self.expires_at

    def covers(self, service: str) -> bool:
        """May this token act on the service named `service`?"""
        return glob_covers(self.services, service)


def glob_covers(glob: str, service: str) -> bool:
    """A token's service glob (empty: every service) matches the service named `service`."""
    return not glob or fnmatch.fnmatchcase(service, glob)


register_table(TOKENS, ApiToken)


def tokens(state: ClusterState) -> dict[str, ApiToken]:
    """Tokens by id."""
    return state.table(TOKENS)


def token_matching(state: ClusterState, ref: str) -> ApiToken | None:
    """The token with this id, else the one with this name."""
    table = tokens(state)
    if ref in table:
        return table[ref]
    return next((t for t in table.values() if t.name == ref), None)


@command("token.create")
@dataclass(frozen=True, slots=True)
class CreateToken:
    token: ApiToken


@command("token.revoke")
@dataclass(frozen=True, slots=True)
class RevokeToken:
    ref: str  # id or name


def token_problem(token: ApiToken) -> tuple[str, str] | None:
    """(field, what is wrong) with a token row, or None."""
    if not _ID.fullmatch(token.id):
        return "id", "must be 16 hex digits"
    if not isinstance(token.name, str) or not _NAME.fullmatch(token.name):
        return "name", (
            f"{token.name!r} is not a valid name: 1-64 letters, digits, '_', '.', "
            "'@' or '-', starting with a letter or digit"
        )
    if token.role not in ROLES:
        return "role", f"must be one of {', '.join(ROLES)}, not {token.role!r}"
    if not _HASH.fullmatch(token.secret_hash):
        return "secret_hash", "must be a SHA-256 in hex"
    if token.services and not _GLOB.fullmatch(token.services):
        return "services", (
            f"{token.services!r} is not a glob over service names (letters, "
            "digits, '_.-' and '*?[]!', at most 128)"
        )
    if token.services and token.role != "operator":
        return "services", f"only an operator token is limited to services, not {token.role}"
    if token.expires_at and token.expires_at <= token.created_at:
        return "expires_at", "must be after created_at"
    return None


@handles(CreateToken)
def _create(state: ClusterState, cmd: CreateToken) -> Result:
    token, table = cmd.token, tokens(state)
    problem = token_problem(token)
    if problem is not None:
        return Result.fail(f"{problem[0]}: {problem[1]}", 400)
    if token.id in table:
        return Result.fail(f"id: token {token.id} exists", 409)
    if any(t.name == token.name for t in table.values()):
        return Result.fail(f"name: a token named {token.name!r} exists", 409)
    if len(table) >= MAX_TOKENS:
        return Result.fail(f"at most {MAX_TOKENS} tokens: revoke some first", 409)
    table[token.id] = token
    return Result(True, value=token.id)


@handles(RevokeToken)
def _revoke(state: ClusterState, cmd: RevokeToken) -> Result:
    token = token_matching(state, cmd.ref)
    if token is None:
        return Result.fail(f"no such token {cmd.ref!r}", 404)
    del tokens(state)[token.id]
    return Result(True, value=token.id)
