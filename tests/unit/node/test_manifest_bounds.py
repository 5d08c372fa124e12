"""A small file must not make a large answer or a large process: YAML aliases are capped
before anything walks the document ("billion laughs", as Kubernetes' CVE-2019-11253), and
errors quote at most a few hundred bytes of any value."""

from __future__ import annotations

import time
import tracemalloc

import pytest

import consensus  # noqa: F401
from node.manifests import ManifestError, load_manifest
from node.manifests.reader import MAX_QUOTE

LAUGHS = (
    "\n".join(
        ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        + [
            f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ]
        + ["services: {web: {image: *i, command: *i, labels: *i}}"]
    )
    + "\n"
)


def _refusal(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        load_manifest(text)
    return caught.value


def test_billion_laughs_is_refused_small_and_fast():
    assert len(LAUGHS.encode()) < 500
    tracemalloc.start()
    started = time.monotonic()
    try:
        error = _refusal(LAUGHS)
        seconds, peak = time.monotonic() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "aliases expand it" in error.reason
    assert len(error.reason) < 300
    # Unbounded, this takes minutes and gigabytes; the bound on time is loose for loaded machines.
    assert seconds < 5 and peak < 5 * 1024 * 1024


def test_an_alias_that_holds_itself_is_refused():
    error = _refusal("services: &s {web: {image: x, labels: *s}}\n")
    assert "refers to the value that holds it" in error.reason


@pytest.mark.parametrize(
    "where", ["image", "command", "environment", "ports", "deploy: {replicas", "healthcheck: {test"]
)
def test_an_error_quotes_a_few_hundred_bytes_of_a_large_value(where):
    # A large value within the alias cap, in a field that quotes what it refuses.
    big = "x" * 20_000
    value = f'[["{big}"], ["{big}"]]'
    text = f"services:\n  web:\n    image: nginx\n    {where}: {value}{'}' * where.count('{')}\n"
    if where == "image":
        text = f"services:\n  web:\n    image: {value}\n"
    error = _refusal(text)
    assert error.field.startswith("services.web"), error.field
    assert len(error.reason) <= 1_000 + 3 and len(error.field) < 200
    assert big not in error.reason


def test_a_deeply_nested_document_is_an_error_not_a_crash():
    assert _refusal("services: " + "[" * 5000 + "]" * 5000 + "\n").reason == "nested too deeply"


def test_quotes_are_bounded():
    from node.manifests.reader import shown

    assert len(shown("y" * 10_000)) <= MAX_QUOTE + 3
    nested: list = ["z" * 1000]
    for _ in range(50):
        nested = [nested] * 10
    assert len(shown(nested)) <= MAX_QUOTE + 3


def test_every_api_error_answer_is_bounded():
    import json

    from node.api.http_util import MAX_ERROR, error_response

    answer = json.loads(error_response(400, "bad " + "v" * 1_000_000, "f" * 10_000).text)
    assert len(answer["error"]) <= MAX_ERROR + 3 and len(answer["field"]) <= 203
