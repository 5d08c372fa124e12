"""Compose files and Kubernetes Deployments into service specs, with every ignored field listed."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import consensus  # noqa: F401
from consensus.services import PortSpec
from node.manifests import ManifestError, load_manifest
from tests.support import fixture_text

SEED_DEPLOYMENT = fixture_text("web-app-deployment.yaml")

STACK = """\
version: "3.8"
services:
  web:
    image: nginx:1.25
    command: ["nginx", "-g", "daemon off;"]
    environment:
      MODE: prod
      WORKERS: 4
    ports:
      - "8080:80"
      - target: 443
        published: 8443
        mode: host
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"]
      interval: 10s
      timeout: 2s
      retries: 5
      start_period: 30s
    deploy:
      replicas: 3
      resources:
        limits: {cpus: "0.5", memory: 256M}
        reservations: {cpus: "0.25", memory: 64M}
      placement:
        constraints: [node.labels.zone==a, node.role!=voter]
        preferences: [{spread: node.labels.rack}]
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 2m}
      update_config: {parallelism: 2, delay: 10s, order: start-first, failure_action: rollback}
    stop_grace_period: 1m30s
  agent:
    image: busybox
    deploy:
      mode: global
"""


def test_compose_publishes_udp_and_asks_the_mesh_for_a_proxy_header():
    stack = """\
services:
  dns:
    image: coredns/coredns
    ports:
      - "5353:53/udp"
      - {target: 80, published: 8080, x-proxy-protocol: v1, x-idle-timeout: 5m}
      - {target: 81, published: 8081, x-proxy-protocol: true}
"""
    (spec,) = load_manifest(stack, strict=True).specs
    assert spec.ports == (
        PortSpec(53, 5353, "udp"),
        PortSpec(80, 8080, proxy_protocol="v1", idle_timeout=300.0),
        PortSpec(81, 8081, proxy_protocol="v2"),
    )


def test_a_kubernetes_annotation_asks_the_mesh_for_a_proxy_header_on_published_tcp_ports():
    text = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: dns}
spec:
  selector: {matchLabels: {app: dns}}
  template:
    metadata: {labels: {app: dns}}
    spec:
      containers: [{name: dns, image: coredns/coredns}]
---
apiVersion: v1
kind: Service
metadata:
  name: dns
  annotations: {shoal.io/proxy-protocol: v2}
spec:
  type: NodePort
  selector: {app: dns}
  ports:
  - {port: 53, nodePort: 30053, protocol: UDP}
  - {port: 80, nodePort: 30080}
"""
    (spec,) = load_manifest(text, strict=True).specs
    assert spec.ports == (PortSpec(53, 30053, "udp"), PortSpec(80, 30080, proxy_protocol="v2"))


def test_the_seed_deployment_applies_exactly_as_written():
    manifest = load_manifest(SEED_DEPLOYMENT, strict=True)
    assert manifest.warnings == ()
    (spec,) = manifest.specs
    assert (spec.name, spec.image, spec.replicas, spec.mode) == (
        "web-app",
        "myapp:v2",
        50,
        "replicated",
    )
    assert spec.resources.reservations.cpu_millis == 100
    assert spec.resources.reservations.memory_bytes == 128 * 1024 * 1024
    assert spec.labels == {"app": "web"}


def test_a_compose_stack_with_deploy_translates():
    manifest = load_manifest(STACK, strict=True)
    web, agent = manifest.specs
    assert web.args == ("nginx", "-g", "daemon off;") and web.env == {
        "MODE": "prod",
        "WORKERS": "4",
    }
    assert web.ports == (PortSpec(80, 8080), PortSpec(443, 8443, "tcp", "host"))
    assert web.health.command == ("/bin/sh", "-c", "wget -q -O- http://localhost/ || exit 1")
    assert (
        web.health.interval,
        web.health.timeout,
        web.health.retries,
        web.health.start_period,
    ) == (10, 2, 5, 30)
    assert web.replicas == 3
    assert (web.resources.limits.cpu_millis, web.resources.limits.memory_bytes) == (500, 256 << 20)
    assert (web.resources.reservations.cpu_millis, web.resources.reservations.memory_bytes) == (
        250,
        64 << 20,
    )
    assert [str(c) for c in web.constraints] == ["node.labels.zone==a", "node.role!=voter"]
    assert web.preferences[0].label == "rack"
    assert (web.restart.condition, web.restart.max_attempts, web.restart.window) == (
        "on-failure",
        3,
        120,
    )
    assert (web.update.parallelism, web.update.order, web.update.failure_action) == (
        2,
        "start-first",
        "rollback",
    )
    assert web.stop_grace_period == 90
    assert agent.mode == "global"


def test_unsupported_fields_are_warnings_or_errors_in_strict_mode():
    text = STACK.replace(
        "    stop_grace_period: 1m30s\n",
        "    stop_grace_period: 1m30s\n    cap_add: [NET_ADMIN]\n    build: .\n",
    )
    manifest = load_manifest(text)
    assert manifest.warnings == (
        "services.web.cap_add: capabilities are not granted (that needs an authorisation Shoal "
        "lacks); ignored",
        "services.web.build: ignored, as by docker stack deploy: the service runs its image",
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(text, strict=True)
    assert "services.web.cap_add" in info.value.reason


def test_deployment_with_a_service_probes_and_node_selector():
    text = (
        SEED_DEPLOYMENT.replace(
            """        resources:""",
            """        args: ["--port", "8080"]
        env:
        - {name: LOG, value: debug}
        ports:
        - {name: http, containerPort: 8080}
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 5
        resources:""",
        ).replace("      containers:", "      nodeSelector: {disk: ssd}\n      containers:")
        + """\
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {port: 80, targetPort: http, nodePort: 30080}
"""
    )
    manifest = load_manifest(text, strict=True)
    (spec,) = manifest.specs
    assert spec.args == ("--port", "8080") and spec.env == {"LOG": "debug"}
    assert spec.ports == (PortSpec(8080, 30080, vip_port=80),)
    assert (spec.health.kind, spec.health.path, spec.health.port, spec.health.interval) == (
        "http",
        "/ready",
        8080,
        5,
    )
    assert [str(c) for c in spec.constraints] == ["node.labels.disk==ssd"]


def test_other_kinds_are_skipped_with_a_warning():
    manifest = load_manifest(
        SEED_DEPLOYMENT
        + "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: c}\n"
    )
    assert manifest.warnings == (
        "Ingress/c: 'networking.k8s.io/v1' 'Ingress' is not supported, skipped",
    )
    assert len(manifest.specs) == 1


@pytest.mark.parametrize(
    "text, field, reason",
    [
        (
            SEED_DEPLOYMENT.replace("replicas: 50", "replicas: -1"),
            "Deployment/web-app.spec.replicas",
            "between 0",
        ),
        (
            SEED_DEPLOYMENT.replace('"128Mi"', '"12XB"'),
            "Deployment/web-app.spec.template.spec.containers[0].resources.requests.memory",
            "cannot read '12XB'",
        ),
        (STACK.replace('"8080:80"', '"99999:80"'), "services.web.ports[0].published", "1-65535"),
        (
            STACK.replace("node.labels.zone==a", "zone=a"),
            "services.web.deploy.placement.constraints[0]",
            "unknown constraint syntax",
        ),
        (STACK.replace("replicas: 3", "replicas: -3"), "services.web.deploy.replicas", "between 0"),
        ("services: [1, 2]", "services", "must be a mapping"),
        ("just text", "<root>", "expected a Compose file"),
        ("a: [", "<root>", "not valid YAML"),
    ],
)
def test_bad_files_name_the_field(text, field, reason):
    with pytest.raises(ManifestError) as info:
        load_manifest(text)
    assert info.value.field == field
    assert reason in info.value.reason


def test_a_name_defined_twice_is_an_error():
    with pytest.raises(ManifestError, match="defined twice"):
        load_manifest(SEED_DEPLOYMENT + "---\n" + SEED_DEPLOYMENT)


yaml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 70000)
    | st.text(max_size=12)
    | st.sampled_from(["8080:80", "100m", "128Mi", "10s", "node.labels.a==b", "CMD", "http"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "services",
                    "image",
                    "deploy",
                    "ports",
                    "replicas",
                    "resources",
                    "limits",
                    "memory",
                    "kind",
                    "apiVersion",
                    "spec",
                    "template",
                    "containers",
                    "metadata",
                    "name",
                    "healthcheck",
                    "test",
                    "placement",
                    "constraints",
                    "selector",
                    "httpGet",
                    "port",
                    "readinessProbe",
                    "rollingUpdate",
                    "strategy",
                    "environment",
                    "env",
                    "command",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(yaml_values)
def test_garbage_never_crashes_the_translator(doc):
    try:
        load_manifest(json.dumps(doc))
    except ManifestError as exc:
        assert exc.field and exc.reason


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _replace(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([STACK, SEED_DEPLOYMENT]), st.data(), yaml_values)
def test_a_valid_file_with_one_field_garbled_never_crashes(text, data, garbage):
    doc = yaml.safe_load(text)
    path = data.draw(st.sampled_from(list(_paths(doc))))
    try:
        load_manifest(json.dumps(_replace(doc, path, garbage)))
    except ManifestError as exc:
        assert exc.field and exc.reason
