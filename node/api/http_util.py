"""aiohttp plumbing shared by every API module: error mapping, bounded body parsing."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestPayloadError as PayloadEncodingError

from consensus.raft import NotLeader, ProposeError
from consensus.state import Result
from consensus.wire import WireError, from_plain
from node.client import ApiError, Unreachable

log = logging.getLogger(__name__)
T = TypeVar("T")


class HttpError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


# An error quotes at most this much of what it was given: a value echoed back whole would let
# a small request make a large answer.
MAX_ERROR = 1_000


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def error_response(status: int, message: str, field: str | None = None) -> web.Response:
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


# Body limits per kind of request; the app-wide limit (client_max_size) is the largest.
BODY_LIMIT = 1 << 20
# Seconds a client may take to send a body once its headers arrived.
BODY_TIMEOUT = 30.0
# How deeply a JSON body may nest: a service spec nests 4 levels.
JSON_DEPTH = 32
JSON_TYPES = ("application/json",)


def is_json_type(content_type: str) -> bool:
    return content_type in JSON_TYPES or content_type.endswith("+json")


def require_type(request: web.Request, accepted: Callable[[str], bool], wanted: str) -> None:
    """415 unless the body says it is what the route reads. Browsers send cross-site forms
    only as text/plain, form or multipart: a route that insists on its own type refuses them."""
    if not accepted(request.content_type):
        raise HttpError(
            415, f"the body must be sent as {wanted}, not {request.content_type!r}", "Content-Type"
        )


async def read_body(request: web.Request, limit: int = BODY_LIMIT) -> bytes:
    """The request body (decompressed when sent gzip'd), at most `limit` bytes (413 above),
    within BODY_TIMEOUT (408)."""
    if request.content_length is not None and request.content_length > limit:
        raise HttpError(
            413,
            f"the body is {request.content_length} bytes; this route takes at most {limit}",
            "body",
        )
    chunks, size = [], 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise HttpError(
                        413, f"the body is over {limit} bytes, the most this route takes", "body"
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise HttpError(408, f"the body did not arrive within {BODY_TIMEOUT:g} s", "body") from None
    except (ContentEncodingError, PayloadEncodingError) as exc:
        raise HttpError(
            400,
            f"the body cannot be decoded as its Content-Encoding says: {str(exc).strip()}",
            "body",
        ) from None
    return b"".join(chunks)


def _check_plain(value: Any, limit: int = JSON_DEPTH) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise HttpError(400, f"the body nests deeper than {limit} levels", "body")
        if isinstance(item, dict):
            stack.extend((k, depth) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode()
            except UnicodeEncodeError:
                raise HttpError(
                    400,
                    "the body holds a lone UTF-16 surrogate (\\ud800-\\udfff "
                    "unpaired), which is no character",
                    "body",
                ) from None


def parse_json(raw: bytes) -> Any:
    """JSON text into plain values, refusing what json.loads lets through but nothing
    downstream holds: NaN and infinities, lone surrogates, nesting past JSON_DEPTH."""
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise HttpError(400, f"the body nests deeper than {JSON_DEPTH} levels", "body") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"is not valid JSON: {exc}", "body") from None
    _check_plain(value)
    return value


def _no_constant(name: str) -> Any:
    raise HttpError(400, f"body is not valid JSON: {name} is not a number JSON allows", "body")


async def json_body(request: web.Request, limit: int = BODY_LIMIT) -> Any:
    if not request.can_read_body:
        raise HttpError(400, "a JSON body is required", "body")
    require_type(request, is_json_type, "application/json")
    return parse_json(await read_body(request, limit))


_COUNT = re.compile(r"[0-9]{1,18}")


def parse_count(raw: str, field: str, what: str) -> int:
    """A whole number 0 or more from a query parameter: ASCII digits, small enough for the
    state to hold (unicode digits and 20-digit numbers are a 400, not a crash)."""
    if not _COUNT.fullmatch(raw):
        raise HttpError(400, f"must be {what} (0 to {10**18 - 1}), not {raw[:40]!r}", field)
    return int(raw)


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
_FIELD_PREFIX = re.compile(
    r"([a-z_][a-z0-9_]*(?:\[\d+\])*(?:\.[a-z_][a-z0-9_]*(?:\[\d+\])*)*): (.+)", re.DOTALL
)


def field_of(error: str) -> tuple[str | None, str]:
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
