"""Fuzzing every API route of a real node: no request, however malformed, gets a 500.

Requests are drawn by hypothesis: the routes are read from the node's own route tables, the
service specs from the spec's own fields (each filled with what its parser takes, or junk),
and the rest from hostile values (huge and negative numbers, lone surrogates, deep nesting,
wrong types, bad gzip, foreign Origins, non-ASCII tokens). The node must answer each one
with something other than a 500, write no traceback, and stay healthy after.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import http.client
import json
import os
import re
import tempfile
import time
from collections import Counter
from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.services import ServiceSpec
from node.api.autoscale import routes as autoscale_routes
from node.api.cluster import routes as cluster_routes
from node.api.events import routes as event_routes
from node.api.mesh import routes as mesh_routes
from node.api.secrets import routes as secret_routes
from node.api.services import routes as service_routes
from node.api.tasks import routes as task_routes
from node.api.tokens import routes as token_routes
from node.api.volumes import routes as volume_routes
from node.devcluster.localcluster import LocalCluster

CASES = int(os.environ.get("SHOAL_FUZZ_CASES", "2000"))
pytestmark = pytest.mark.timeout(240)

ROUTES = [
    (r.method, r.path)
    for table in (
        cluster_routes,
        service_routes,
        mesh_routes,
        task_routes,
        volume_routes,
        event_routes,
        autoscale_routes,
        secret_routes,
        token_routes,
    )
    for r in table
]
_VARIABLE = re.compile(r"\{(\w+)(?::([^}]+))?\}")

# -- values -------------------------------------------------------------------------------
HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, 10**450, -1, 0])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | HUGE_INTS
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["\ud800", "é" * 3, "", " ", "\x00"])
)
UNITS = st.sampled_from(
    [
        "10s",
        "1m30s",
        "-1s",
        "9" * 40 + "s",
        "0.5",
        "100m",
        "128Mi",
        "64M",
        "1e999",
        "9" * 450,
        "8080:80",
        "80:80/udp",
        "mode=host,target=80",
        "node.labels.zone==a",
        "spread=node.labels.zone",
        "K=V",
        "/a:/b:ro",
        "abc",
        "",
    ]
)
JSON = st.recursive(
    SCALARS | UNITS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
NAMES = (
    st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True) | st.text(max_size=70) | st.just("web")
)


def _field_values(field: dataclasses.Field) -> st.SearchStrategy:
    """What a spec field gets: a value its parser takes, a shorthand, or junk."""
    good = {
        "replicas": st.integers(0, 3),
        "mode": st.sampled_from(["replicated", "global", "x"]),
        "command": st.sampled_from([["sleep", "60"], "sleep 60", "'unclosed", "a\\"]),
        "image": st.sampled_from(["process", "", "x y", "a" * 300]),
        "ports": st.lists(
            UNITS
            | st.dictionaries(
                st.sampled_from(["target", "published", "protocol", "mode"]), SCALARS | UNITS
            ),
            max_size=3,
        ),
        "env": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)
        | st.lists(st.text(max_size=10), max_size=3),
    }
    return good.get(field.name, st.nothing()) | UNITS | JSON


SPECS = st.fixed_dictionaries(
    {"name": NAMES, "image": st.just("process"), "replicas": st.integers(0, 2)},
    optional={
        f.name: _field_values(f)
        for f in dataclasses.fields(ServiceSpec)
        if f.name not in ("name", "image", "replicas")
    },
)

# -- requests -----------------------------------------------------------------------------
PARAMS = st.dictionaries(
    st.sampled_from(
        [
            "version",
            "since",
            "tail",
            "follow",
            "local",
            "service",
            "task",
            "node",
            "force",
            "strict",
        ]
    ),
    st.sampled_from(["0", "1", "-1", "99999999999999999999", "²", "all", "true", "x", ""]),
    max_size=3,
)


def _path(pattern: str) -> st.SearchStrategy[str]:
    parts = _VARIABLE.split(pattern)
    pieces: list[st.SearchStrategy[str]] = []
    for i in range(0, len(parts), 3):
        pieces.append(st.just(parts[i]))
        if i + 1 < len(parts):
            choices = parts[i + 2]
            pieces.append(
                st.sampled_from(choices.split("|"))
                if choices
                else st.sampled_from(["web", "n1", "nope", "a" * 300, "%00", "..", "é"])
                | st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True)
            )
    return st.tuples(*pieces).map("".join)


def _body(method: str, path: str) -> st.SearchStrategy:
    if path == "/v1/services" or path.startswith("/v1/services/{ref}") and method == "PATCH":
        return SPECS.map(json.dumps) | JSON.map(json.dumps)
    if path == "/v1/apply":
        return st.lists(SPECS, max_size=3).map(yaml.safe_dump) | st.text(max_size=200)
    if "secrets" in path or "configs" in path:
        return st.fixed_dictionaries(
            {"name": NAMES, "data": st.text(max_size=20)}, optional={"exist_ok": SCALARS}
        ).map(json.dumps)
    if path == "/v1/tokens":
        return st.fixed_dictionaries(
            {"role": st.sampled_from(["read-only", "operator", "x"])},
            optional={"name": NAMES, "services": NAMES | UNITS, "ttl": UNITS | SCALARS},
        ).map(json.dumps)
    return JSON.map(json.dumps) | st.binary(max_size=50)


@st.composite
def requests(draw) -> tuple[str, str, bytes, dict[str, str]]:
    method, pattern = draw(st.sampled_from(ROUTES))
    path = draw(_path(pattern))
    params = draw(PARAMS)
    if pattern in ("/v1/events", "/v1/tasks/{id}/logs"):
        params["follow"] = "0"  # an endless stream is what following asks for
    query = "&".join(f"{k}={v}" for k, v in params.items())
    body = draw(_body(method, pattern)) if method in ("POST", "PATCH") else ""
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    headers = {
        "Content-Type": draw(
            st.sampled_from(
                ["application/json"] * 6
                + [
                    "application/yaml",
                    "text/plain",
                    "application/msgpack",
                    "application/json; charset=x",
                ]
            )
        )
    }
    twist = draw(
        st.sampled_from(
            ["none"] * 12
            + ["gzip", "bad-gzip", "origin", "host", "bad-token", "no-token", "scoped-token"]
        )
    )
    if twist == "gzip":
        data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
    elif twist == "bad-gzip":
        data, headers["Content-Encoding"] = b"\x1f\x8b\x08\x00garbage", "gzip"
    elif twist == "origin":
        headers["Origin"] = "http://evil.example"
    elif twist == "host":
        headers["Host"] = "evil.example"
    elif twist == "bad-token":
        headers["Authorization"] = "Bearer é".encode().decode("latin-1")
    elif twist == "no-token":
        headers["Authorization"] = ""
    elif twist == "scoped-token":  # shaped as one, of no token the cluster made
        headers["Authorization"] = "Bearer SHOALT-" + draw(
            st.sampled_from(
                ["0123456789abcdef-" + "A" * 43, "0123456789abcdef-" + "é" * 43, "zz-x"]
            )
        )
    target = quote(path + (f"?{query}" if query else ""), safe="/?&=%:,")
    return method, target, data, headers


@pytest.fixture(scope="module")
def node():
    with tempfile.TemporaryDirectory() as base:
        cluster = LocalCluster(
            base, 1, ["--runtime", "process", "--cpus", "1", "--memory", str(1 << 30)]
        )
        try:
            asyncio.run(cluster.start())
            yield cluster.nodes[0]
        finally:
            cluster.stop()
            print(cluster.logs())


class Answers:
    def __init__(self, node) -> None:
        self.node = node
        host, port = node.api.split(":")
        self.address = (host, int(port))
        self.connection = self._connect()
        self.token = node.api_token
        self.server_errors: list[tuple] = []
        self.statuses: Counter[int] = Counter()
        self.slowest: tuple = (0.0,)
        self.count = 0

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            *self.address, timeout=10, context=self.node.ssl_context()
        )

    def send(self, method: str, target: str, data: bytes, headers: dict[str, str]) -> int:
        headers = {"Authorization": f"Bearer {self.token}", **headers}
        for _attempt in range(2):
            began = time.monotonic()
            try:
                self.connection.request(method, target, body=data or None, headers=headers)
                answer = self.connection.getresponse()
                answer.read()
                break
            except (http.client.HTTPException, OSError):
                # The node ends a connection after a request whose body it did not read: the
                # next request on it finds it closed, and goes again on a new one. That one
                # trusts the node's CAs as they are now: a fuzzed rotate-ca moves the node to
                # a new root, and two rotations leave the first root untrusted.
                self.connection.close()
                self.connection = self._connect()
        else:
            return 0
        self.slowest = max(self.slowest, (time.monotonic() - began, method, target))
        self.count += 1
        self.statuses[answer.status] += 1
        if answer.status >= 500 and answer.status != 503:
            self.server_errors.append((answer.status, method, target, data[:200], headers))
        return answer.status


def test_fuzzed_requests_never_get_a_500_and_the_node_stays_healthy(node):
    answers = Answers(node)
    # Nothing the fuzzer creates is run: the node takes no tasks.
    assert (
        answers.send(
            "PATCH",
            "/v1/nodes/n1",
            b'{"availability": "drain"}',
            {"Content-Type": "application/json"},
        )
        == 200
    )

    @settings(
        max_examples=CASES, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(requests())
    def one(request):
        answers.send(*request)

    started = time.monotonic()
    one()
    print(
        f"{answers.count} requests in {time.monotonic() - started:.1f} s; statuses "
        f"{sorted(answers.statuses.items())}"
    )
    print(f"slowest: {answers.slowest}")
    assert answers.count >= CASES * 0.9
    assert answers.server_errors == []
    assert answers.send("GET", "/healthz", b"", {}) == 200
    with open(node.log_path, errors="replace") as log:
        written = log.read()
    assert "Traceback" not in written and "unhandled error" not in written
