"""aiohttp plumbing shared by every API module: error mapping, auth, body parsing, forwarding."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from typing import Any, Awaitable, Callable, Mapping, Optional, TypeVar

from aiohttp import web

from consensus.raft import NotLeader, ProposeError
from consensus.state import Result
from consensus.wire import WireError, from_plain
from node.client import ApiError, Unreachable

log = logging.getLogger(__name__)
T = TypeVar("T")


class HttpError(Exception):
    def __init__(self, status: int, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


# An error quotes at most this much of what it was given: a value echoed back whole would let
# a small request make a large answer.
MAX_ERROR = 1_000


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def error_response(status: int, message: str, field: Optional[str] = None) -> web.Response:
    body: dict[str, Any] = {"error": _bounded(message, MAX_ERROR)}
    if field:
        body["field"] = _bounded(field, 200)
    return web.json_response(body, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable]):
    """Every failure becomes a JSON error with a status that says whose fault it is."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except HttpError as exc:
        return error_response(exc.status, exc.message, exc.field)
    except WireError as exc:
        return error_response(400, exc.reason, "body" if exc.field == "<root>" else exc.field)
    except NotLeader as exc:
        return error_response(421, str(exc))
    except ProposeError as exc:
        return error_response(503, str(exc))
    except ApiError as exc:  # a forwarded request's answer, passed through
        return error_response(exc.status, exc.message, exc.field)
    except Unreachable as exc:
        return error_response(503, str(exc))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal error; see the node's log")


def is_loopback(remote: Optional[str]) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def auth_middleware(check_token: Callable[[str], bool]):
    """The API needs the bearer token except from loopback; /v1/internal/* always needs it.
    /v1/join carries its own proof of the join token."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        path = request.path
        if path in ("/healthz", "/v1/join"):
            return await handler(request)
        internal = path.startswith("/v1/internal/")
        if internal or not is_loopback(request.remote):
            header = request.headers.get("Authorization", "")
            token = header[7:] if header.startswith("Bearer ") else ""
            if not token or not check_token(token):
                return error_response(401, "missing or wrong API token: pass --token or set "
                                           "SHOAL_TOKEN (see `shoal cluster token` on a node)")
        return await handler(request)

    return middleware


async def json_body(request: web.Request) -> Any:
    if not request.can_read_body:
        raise HttpError(400, "a JSON body is required", "body")
    raw = await request.read()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"is not valid JSON: {exc}", "body") from None


_YES = ("1", "true", "yes")
_NO = ("0", "false", "no", "")


def query_flag(query: Mapping[str, str], name: str) -> bool:
    """A yes/no query parameter (absent: no); anything else is a 400 naming it."""
    raw = query.get(name, "").lower()
    if raw in _YES:
        return True
    if raw in _NO:
        return False
    raise HttpError(400, f"must be 1 or 0 (or true/false), not {raw!r}", name)


async def parse_body(request: web.Request, tp: type[T]) -> T:
    return from_plain(tp, await json_body(request))


# The state machine starts an error about one field of the command with that field's path
# (`secrets[0].source: no such secret 'db'`); prose never starts with a bare path and a colon.
_FIELD_PREFIX = re.compile(r"([a-z_][a-z0-9_]*(?:\[\d+\])*(?:\.[a-z_][a-z0-9_]*(?:\[\d+\])*)*): (.+)",
                           re.DOTALL)


def field_of(error: str) -> tuple[Optional[str], str]:
    """A state-machine error split into (the field it names or None, the message)."""
    match = _FIELD_PREFIX.fullmatch(error)
    return (match[1], match[2]) if match else (None, error)


def result_or_raise(result: Result) -> Any:
    """Turn a committed command's error result into the matching HTTP error, with the field
    its message names."""
    if not result.ok:
        field, message = field_of(result.error)
        raise HttpError(result.code if result.code >= 400 else 409, message, field)
    return result.value
