"""`GET /v1/openapi.json` describes every route a live node serves, and nothing else; it is
a valid OpenAPI 3.1 document, and its body schemas accept what the API accepts and refuse
what it refuses."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest
from openapi_spec_validator import validate

from node.api.openapi import OPERATIONS, UNDESCRIBED
from node.devcluster.dev import demo_service
from node.devcluster.localcluster import started_cluster

pytestmark = pytest.mark.timeout(120)


def _body_schema(doc: dict, method: str, path: str) -> dict:
    schema = doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    # Resolve the document's own references with the document as the root.
    return {**schema, "components": doc["components"]}


async def test_the_description_covers_every_route_and_validates(tmp_path):
    async with started_cluster(str(tmp_path), 1) as cluster:
        doc = await cluster.get(0, "/v1/openapi.json")
        async with cluster.nodes[0].client() as client:
            created = await client.post("/v1/services", demo_service(18090) | {"replicas": 0})
    validate(doc)
    served = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    undescribed = sorted(
        f"{m} {p}" for m, p in served if doc["paths"][p][m.lower()]["summary"] == UNDESCRIBED
    )
    assert undescribed == [], "routes missing from node.api.openapi.OPERATIONS"
    # Each entry names a route the node serves (the dashboard's are added with it).
    assert served == set(OPERATIONS)
    # The spec the dev cluster's demo sends (with shorthands) fits the create schema, as the
    # API accepted it; a field the API refuses does not.
    create = _body_schema(doc, "post", "/v1/services")
    jsonschema.validate(demo_service(18090), create)
    assert created["name"] == "hello"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**demo_service(18090), "colour": "red"}, create)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"image": "x"}, create)  # no name
    patch = _body_schema(doc, "patch", "/v1/services/{ref}")
    jsonschema.validate({"replicas": 5}, patch)
    node_patch = _body_schema(doc, "patch", "/v1/nodes/{ref}")
    jsonschema.validate({"availability": "drain", "add_labels": {"zone": "a"}}, node_patch)
    for bad in ({"availability": "sideways"}, {"add_labels": {"k": 5}}, {"colour": "red"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, node_patch)
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    # Each operation says who may call it (node.api.acl).
    assert doc["paths"]["/v1/tokens"]["post"]["x-shoal-permission"] == "admin"
    assert doc["paths"]["/v1/services"]["get"]["x-shoal-permission"] == "read"
    assert doc["paths"]["/ui"]["get"]["security"] == []
    assert "security" not in doc["paths"]["/metrics"]["get"]  # the API token, as everywhere


async def test_fuzzing_the_read_routes_from_the_description_finds_no_server_error(tmp_path):
    """schemathesis drives every GET route (streams aside) from the served description with
    generated paths and queries: no answer is a 500, every status and content type is one
    the description names."""
    pytest.importorskip("schemathesis", reason="schemathesis is not installed")
    async with started_cluster(str(tmp_path), 1) as cluster:
        doc = await cluster.get(0, "/v1/openapi.json")
        token = (await cluster.get(0, "/v1/cluster/token"))["api_token"]
        spec = tmp_path / "openapi.json"
        spec.write_text(json.dumps(doc))
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                str(spec),
                "--url",
                f"https://{cluster.nodes[0].api}",
                "-H",
                f"Authorization: Bearer {token}",
                "--tls-verify",
                cluster.nodes[0].ca_file,
                "--include-method",
                "GET",
                "--exclude-path-regex",
                "/v1/(events|tasks/.*/logs)",
                "--max-examples",
                "25",
                "--seed",
                "1",
                "--workers",
                "2",
                "--checks",
                "not_a_server_error,status_code_conformance,"
                "content_type_conformance,response_schema_conformance",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
