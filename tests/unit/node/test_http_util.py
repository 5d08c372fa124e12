"""Error bodies name the field when it is known: a malformed body is `body`, and an error
the state machine gives about one field of a command carries that field."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import consensus  # noqa: F401  (registers commands and tables)
from consensus.services import parse_service_spec
from consensus.state import ClusterState
from consensus.tasks import CreateService, UpdateService
from consensus.updates import RollbackService
from node.http_util import HttpError, errors_middleware, field_of, json_body, result_or_raise


def _raised(result) -> HttpError:
    with pytest.raises(HttpError) as caught:
        result_or_raise(result)
    return caught.value


def test_a_missing_secret_is_an_error_on_its_reference():
    state = ClusterState()
    spec = parse_service_spec({"name": "db", "image": "busybox", "secrets": ["pw"]})
    error = _raised(state.apply(CreateService("s1", spec, 1.0)))
    assert (error.status, error.field) == (400, "secrets[0].source")
    assert error.message.startswith("no such secret 'pw'")


def test_a_version_not_kept_is_an_error_on_to_version():
    state = ClusterState()
    spec = parse_service_spec({"name": "web", "image": "busybox"})
    state.apply(CreateService("s1", spec, 1.0))
    state.apply(UpdateService(parse_service_spec({"name": "web", "image": "busybox:2"}), 2.0))
    error = _raised(state.apply(RollbackService("web", 3.0, to_version=9)))
    assert (error.status, error.field) == (404, "to_version")


@pytest.mark.parametrize(
    "text, field",
    [
        ("name: service 'web' already exists", "name"),
        ("record.from_replicas: service 'web' runs 3", "record.from_replicas"),
        ("ports[1].published: taken", "ports[1].published"),
        ("no such service 'web'", None),
        ("stale rollout: service 'web' is at version 3", None),
        ("service 'web' has no earlier spec to roll back to", None),
    ],
)
def test_only_a_leading_field_path_is_taken_for_the_field(text, field):
    assert field_of(text)[0] == field


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b""])
async def test_a_body_that_is_not_json_is_an_error_on_body(body):
    async def echo(request: web.Request) -> web.Response:
        return web.json_response(await json_body(request))

    app = web.Application(middlewares=[errors_middleware])
    app.router.add_post("/echo", echo)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.post(
            "/echo", data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status == 400
        assert (await response.json())["field"] == "body"
