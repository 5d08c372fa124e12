"""HTTP API: scoped tokens (admin only, see node.api.acl). A token's secret is made here and
answered once; the state holds its hash (consensus.tokens)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web

from consensus.tokens import ApiToken, CreateToken, RevokeToken, Role, token_problem, tokens
from consensus.units import parse_duration
from consensus.wire import WireError
from node.api.acl import PRINCIPAL, note_resource
from node.api.context import NODE
from node.api.http_util import HttpError, parse_body, result_or_raise
from node.security import NewUserToken

routes = web.RouteTableDef()

# Longer than any cluster lives, short enough for every clock and float to hold.
MAX_TTL = 100 * 365 * 86400.0


@dataclass(frozen=True, slots=True)
class TokenRequest:
    role: Role
    name: str = ""
    services: str = ""  # an operator's glob over service names
    ttl: str = ""  # a duration (`30d` is not one: `720h`); empty: never expires


def token_json(token: ApiToken, now: float) -> dict:
    return {
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "services": token.services,
        "created_at": token.created_at,
        "expires_at": token.expires_at or None,
        "expired": token.expired(now),
        "created_by": token.created_by,
    }


def _ttl(text: str) -> float:
    if not text:
        return 0.0
    try:
        seconds = parse_duration(text, "ttl")
    except WireError as exc:
        raise HttpError(400, exc.reason, "ttl") from None
    if not 0 < seconds <= MAX_TTL:
        raise HttpError(400, f"must be more than 0 and at most 100 years, not {text!r}", "ttl")
    return seconds


@routes.post("/v1/tokens")
async def create_token(request: web.Request) -> web.Response:
    shoal = request.app[NODE]
    body = await parse_body(request, TokenRequest)
    ttl, now, new = _ttl(body.ttl), time.time(), NewUserToken.generate()
    principal = request.get(PRINCIPAL)
    row = ApiToken(
        id=new.id,
        name=body.name or f"{body.role}-{new.id[:6]}",
        role=body.role,
        secret_hash=new.hash,
        created_at=now,
        expires_at=now + ttl if ttl else 0.0,
        services=body.services,
        created_by=principal.who if principal else "",
    )
    note_resource(request, row.name)
    problem = token_problem(row)
    if problem is not None:  # checked again at commit; this answer comes without a round
        raise HttpError(400, problem[1], problem[0])
    result_or_raise(await shoal.control.submit(CreateToken(row)))
    return web.json_response({**token_json(row, now), "token": new.token}, status=201)


@routes.get("/v1/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    shoal, now = request.app[NODE], time.time()
    with shoal.store.view() as state:
        rows = sorted(tokens(state).values(), key=lambda t: (t.created_at, t.id))
    return web.json_response([token_json(t, now) for t in rows])


@routes.delete("/v1/tokens/{ref}")
async def revoke_token(request: web.Request) -> web.Response:
    """Revoke by id or name. Once this answers, every node refuses the token: each confirms
    a scoped token against the cluster's latest state (node.api.guard)."""
    shoal = request.app[NODE]
    revoked = result_or_raise(await shoal.control.submit(RevokeToken(request.match_info["ref"])))
    return web.json_response({"revoked": revoked})
