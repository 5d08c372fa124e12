"""Creating a secret or config that exists, as `shoal apply` does (`exist_ok`): the same
content is accepted, other content is refused saying so, for sealed secrets as for configs."""

from __future__ import annotations

import base64

import pytest

import consensus  # noqa: F401  (registers commands and tables)
from consensus.secrets import Blob
from node.api.http_util import HttpError
from node.api.secrets import parse_create, refuse_other_content
from node.secret_box import SecretBox

BOX = SecretBox(b"k" * 32)


def stored(kind: str, data: bytes) -> Blob:
    return Blob("b1", "db", kind, len(data), BOX.seal("db", data) if kind == "secret" else data)


@pytest.mark.parametrize("kind", ["secret", "config"])
def test_the_same_content_is_accepted_and_other_content_refused(kind):
    blob = stored(kind, b"hunter2")
    refuse_other_content(blob, BOX, b"hunter2")
    with pytest.raises(HttpError) as caught:
        refuse_other_content(blob, BOX, b"hunter3")
    assert (caught.value.status, caught.value.field) == (409, "data")
    assert f"{kind} 'db' already exists with other content" in caught.value.message


def test_a_secret_that_does_not_open_is_a_clear_server_error():
    blob = stored("secret", b"hunter2")
    with pytest.raises(HttpError) as caught:
        refuse_other_content(blob, SecretBox(b"o" * 32), b"hunter2")
    assert caught.value.status == 500 and "does not open" in caught.value.message


def test_exist_ok_is_a_boolean():
    body = {"name": "db", "data": base64.b64encode(b"x").decode()}
    assert parse_create("secret", {**body, "exist_ok": True}) == ("db", b"x")
    with pytest.raises(HttpError) as caught:
        parse_create("secret", {**body, "exist_ok": "yes"})
    assert (caught.value.status, caught.value.field) == (400, "exist_ok")
