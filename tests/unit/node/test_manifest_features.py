"""The Compose keys and Kubernetes fields that files from the wild use: what each becomes."""

from __future__ import annotations

import pytest

import consensus  # noqa: F401
from consensus.services import FileRef, VolumeRef
from node.manifests import STACK_LABEL, ManifestError, Origin, load_manifest

HERE = Origin(directory="/srv/app", home="/home/me", stack="shop")


def _one(text: str, origin: Origin = HERE):
    manifest = load_manifest(text, origin=origin)
    return manifest.specs[0], manifest.warnings


def test_underscores_in_compose_service_names_are_accepted():
    manifest = load_manifest(
        "services:\n  reverse_proxy: {image: nginx}\n  payment_gateway: {image: x}\n"
    )
    assert [s.name for s in manifest.specs] == ["reverse_proxy", "payment_gateway"]


def test_build_with_an_image_runs_the_image_and_warns_once():
    manifest = load_manifest(
        "services:\n  a: {image: a:1, build: .}\n  b: {image: b:1, build: {context: b}}\n"
    )
    assert [s.image for s in manifest.specs] == ["a:1", "b:1"]
    assert manifest.warnings == (
        "services.a.build (and 1 more): ignored, as by docker stack deploy: "
        "the service runs its image",
    )


def test_build_without_an_image_says_what_to_do():
    with pytest.raises(ManifestError) as caught:
        load_manifest("services:\n  backend: {build: ./backend}\n")
    assert caught.value.field == "services.backend.image"
    assert "docker build -t NAME" in caught.value.reason and "image: NAME" in caught.value.reason


def test_relative_and_home_bind_paths_resolve_like_docker_stack_deploy():
    spec, warnings = _one(
        "services:\n  web:\n    image: nginx\n    volumes:\n"
        "      - ./config:/etc/app:ro\n      - ~/data:/data\n"
        "      - {type: bind, source: ../logs, target: /logs}\n"
    )
    assert spec.volumes == (
        VolumeRef("/etc/app", "/srv/app/config", "bind", True),
        VolumeRef("/data", "/home/me/data", "bind"),
        VolumeRef("/logs", "/srv/logs", "bind"),
    )
    assert (
        "services.web.volumes[0]: host path './config' is /srv/app/config; it must exist on every "
        "node that runs the service's tasks" in warnings
    )


def test_without_the_files_directory_a_relative_bind_is_refused_saying_why():
    with pytest.raises(ManifestError) as caught:
        load_manifest("services:\n  web:\n    image: nginx\n    volumes: ['./config:/etc/app']\n")
    assert caught.value.field == "services.web.volumes[0]"
    assert "the file's directory is unknown" in caught.value.reason


@pytest.mark.parametrize(
    "value, policy",
    [
        ("'no'", ("none", 0)),
        ("always", ("any", 0)),
        ("unless-stopped", ("any", 0)),
        ("on-failure", ("on-failure", 0)),
        ("'on-failure:3'", ("on-failure", 3)),
        ("no", ("none", 0)),
    ],
)
def test_restart_becomes_the_restart_policy(value, policy):
    spec, _ = _one(f"services:\n  web: {{image: x, restart: {value}}}\n")
    assert (spec.restart.condition, spec.restart.max_attempts) == policy


def test_deploy_restart_policy_wins_over_restart():
    spec, _ = _one(
        "services:\n  web: {image: x, restart: 'no', deploy: {restart_policy: {condition: any}}}\n"
    )
    assert spec.restart.condition == "any"


def test_a_bad_restart_names_the_field():
    with pytest.raises(ManifestError) as caught:
        load_manifest("services:\n  web: {image: x, restart: sometimes}\n")
    assert caught.value.field == "services.web.restart"


def test_docker_only_keys_warn_once_per_key_and_extensions_and_anchors_pass_silently():
    text = """\
x-defaults: &defaults
  image: app:1
  user: "1000"
  logging: {driver: json-file}
services:
  a:
    <<: *defaults
    x-note: anything
    cap_add: [NET_ADMIN]
  b:
    <<: *defaults
    deploy:
      endpoint_mode: dnsrr
      resources:
        reservations:
          devices: [{capabilities: [gpu]}]
  c: {image: c, profiles: [debug]}
"""
    manifest = load_manifest(text)
    assert [s.image for s in manifest.specs] == ["app:1", "app:1", "c"]
    assert [(s.container.user, s.container.log_driver) for s in manifest.specs] == [
        ("1000", "json-file"),
        ("1000", "json-file"),
        ("", ""),
    ]
    warnings = "\n".join(manifest.warnings)
    assert "services.a.cap_add: capabilities are not granted" in warnings
    assert manifest.specs[1].endpoint_mode == "dnsrr" and "endpoint_mode" not in warnings
    assert "services.b.deploy.resources.reservations.devices: Shoal cannot reserve" in warnings
    assert "services.c.profiles: every service is applied" in warnings
    assert "x-" not in warnings


def test_docker_run_options_become_container_options():
    text = """\
services:
  web:
    image: x
    user: 1000:1000
    working_dir: /app
    hostname: web1
    stop_signal: SIGQUIT
    tty: true
    read_only: true
    init: true
    sysctls: [net.core.somaxconn=1024]
    extra_hosts: ["db.local:10.0.0.5", "cache=10.0.0.6"]
    ulimits: {nproc: 65535, nofile: {soft: 20000, hard: 40000}}
    logging: {driver: json-file, options: {max-size: 10m}}
"""
    spec, warnings = _one(text)
    c = spec.container
    assert (c.user, c.working_dir, c.hostname, c.stop_signal, c.tty, c.read_only) == (
        "1000:1000",
        "/app",
        "web1",
        "SIGQUIT",
        True,
        True,
    )
    assert c.sysctls == {"net.core.somaxconn": "1024"}
    assert c.extra_hosts == {"db.local": "10.0.0.5", "cache": "10.0.0.6"}
    assert {k: (u.soft, u.hard) for k, u in c.ulimits.items()} == {
        "nproc": (65535, 65535),
        "nofile": (20000, 40000),
    }
    assert (c.log_driver, c.log_options) == ("json-file", {"max-size": "10m"})
    assert warnings == ()


@pytest.mark.parametrize(
    "line, field",
    [
        ("stop_signal: SIGNOPE", "services.web.stop_signal"),
        ("working_dir: app", "services.web.working_dir"),
        ("extra_hosts: ['db:not-an-ip']", "services.web.extra_hosts.db"),
        ("ulimits: {nofile: {soft: 9, hard: 1}}", "services.web.ulimits.nofile"),
        ("logging: {driver: 'no such'}", "services.web.logging.driver"),
    ],
)
def test_bad_container_options_name_the_compose_field(line, field):
    with pytest.raises(ManifestError) as caught:
        load_manifest(f"services:\n  web:\n    image: x\n    {line}\n")
    assert caught.value.field == field


def test_env_file_then_environment_over_it():
    text = (
        "services:\n  web:\n    image: x\n    env_file: [common.env, {path: opt.env, required: false}]\n"
        "    environment: {B: from-environment}\n"
    )
    origin = Origin(env_files={"common.env": "A=1\nB=2\n"})
    manifest = load_manifest(text, origin=origin)
    assert manifest.specs[0].env == {"A": "1", "B": "from-environment"}
    assert manifest.env_files == ("common.env", "opt.env")
    with pytest.raises(ManifestError) as caught:
        load_manifest(text)
    assert caught.value.field == "services.web.env_file[0]"


def test_secret_with_name_and_template_driver_warns():
    manifest = load_manifest(
        "services:\n  web: {image: x, secrets: [s]}\n"
        "secrets:\n  s: {name: s_v2, file: s.txt, template_driver: golang}\n"
    )
    assert manifest.specs[0].secrets == (FileRef("s_v2", "s"),)
    assert any("template_driver: Shoal does not render templates" in w for w in manifest.warnings)


def test_the_stack_labels_every_service_and_the_compose_name_is_the_default():
    manifest = load_manifest("name: shop\nservices:\n  web: {image: x, labels: {a: b}}\n")
    assert manifest.stack == "shop" and manifest.specs[0].labels == {"a": "b", STACK_LABEL: "shop"}
    manifest = load_manifest(
        "name: shop\nservices:\n  web: {image: x}\n", origin=Origin(stack="other")
    )
    assert manifest.specs[0].labels == {STACK_LABEL: "other"}
    assert load_manifest("services:\n  web: {image: x}\n").specs[0].labels == {}


# -- Kubernetes -----------------------------------------------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  minReadySeconds: 7
  selector: {matchLabels: {app: api}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: api}}
    spec:
      terminationGracePeriodSeconds: 45
      securityContext: {runAsUser: 1000}
      volumes:
        - {name: scratch, emptyDir: {}}
        - {name: cache, emptyDir: {medium: Memory}}
        - {name: data, persistentVolumeClaim: {claimName: api-data}}
        - {name: conf, configMap: {name: api-conf}}
        - {name: tls, secret: {secretName: api-tls, items: [{key: crt, path: server.crt}]}}
      containers:
        - name: api
          image: api:1
          imagePullPolicy: Always
          command: [/bin/api]
          args: [--serve]
          ports: [{name: grpc, containerPort: 9000}]
          env:
            - {name: MODE, valueFrom: {configMapKeyRef: {name: api-conf, key: mode}}}
            - {name: TOKEN, valueFrom: {secretKeyRef: {name: api-tls, key: token}}}
            - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
          envFrom: [{configMapRef: {name: api-conf}, prefix: CONF_}]
          resources: {limits: {cpu: 500m, memory: 256Mi}}
          readinessProbe: {grpc: {port: 9000}, periodSeconds: 3}
          lifecycle: {preStop: {exec: {command: [sh, -c, sleep 5]}}}
          volumeMounts:
            - {name: scratch, mountPath: /tmp}
            - {name: cache, mountPath: /cache}
            - {name: data, mountPath: /var/lib/api}
            - {name: conf, mountPath: /etc/api}
            - {name: tls, mountPath: /etc/tls, readOnly: true}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: api-conf}
data: {mode: fast, api.yaml: "port: 9000"}
---
apiVersion: v1
kind: Secret
metadata: {name: api-tls}
data: {crt: Y2VydA==, token: dG9r}
"""


def test_a_deployment_with_volumes_config_and_secrets():
    manifest = load_manifest(DEPLOYMENT)
    (spec,) = manifest.specs
    assert (spec.command, spec.args) == (("/bin/api",), ("--serve",))
    assert spec.env == {"MODE": "fast", "CONF_mode": "fast", "CONF_api.yaml": "port: 9000"}
    assert spec.volumes == (
        VolumeRef("/tmp"),
        VolumeRef("/cache", type="tmpfs"),
        VolumeRef("/var/lib/api", "api-data"),
    )
    assert spec.configs == (
        FileRef("api-conf.mode", "/etc/api/mode"),
        FileRef("api-conf.api.yaml", "/etc/api/api.yaml"),
    )
    assert spec.secrets == (FileRef("api-tls.token"), FileRef("api-tls.crt", "/etc/tls/server.crt"))
    assert {(f.kind, f.name, f.content) for f in manifest.files} == {
        ("config", "api-conf.mode", b"fast"),
        ("config", "api-conf.api.yaml", b"port: 9000"),
        ("secret", "api-tls.crt", b"cert"),
        ("secret", "api-tls.token", b"tok"),
    }
    # A limit without a request requests the limit, as in Kubernetes.
    assert spec.resources.reservations == spec.resources.limits
    assert (spec.resources.limits.cpu_millis, spec.resources.limits.memory_bytes) == (
        500,
        256 * 2**20,
    )
    assert (spec.health.kind, spec.health.port, spec.health.interval) == ("tcp", 9000, 3)
    assert (spec.stop_delay, spec.stop_grace_period) == (5.0, 45.0)
    assert spec.container.user == "1000"  # the pod's securityContext
    assert (spec.update.parallelism, spec.update.order, spec.update.monitor) == (
        1,
        "start-first",
        7.0,
    )
    warnings = "\n".join(manifest.warnings)
    for expected in (
        "readinessProbe.grpc: Shoal checks that the port accepts connections",
        "env[1].valueFrom.secretKeyRef: Shoal gives secrets to tasks as files: the value "
        "is in /run/secrets/api-tls.token",
        "env[2].valueFrom.fieldRef: 'metadata.name'",
        "imagePullPolicy: the node's --image-pull decides",
    ):
        assert expected in warnings


def test_process_runtime_nodes_get_one_warning_per_container_option():
    from node.manifests.plan import plan_manifest

    manifest = load_manifest(
        "services:\n  a: {image: x, user: '1', tty: true}\n  b: {image: x, user: '2'}\n"
    )
    assert plan_manifest({}, manifest).warnings == ()
    assert plan_manifest({}, manifest, process_nodes=("n2", "n1")).warnings == (
        "container.user (a, b): honoured by the Docker runtime only; ignored on process-runtime nodes (n1, n2)",
        "container.tty (a): honoured by the Docker runtime only; ignored on process-runtime nodes (n1, n2)",
    )


def test_daemonset_is_global_and_statefulset_replicated_with_claim_volumes():
    daemon = (
        DEPLOYMENT.split("---")[0]
        .replace("kind: Deployment", "kind: DaemonSet")
        .replace("  replicas: 2\n", "")
        .replace("  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n", "")
    )
    assert load_manifest(daemon).specs[0].mode == "global"
    stateful = """\
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: pg, volumeMounts: [{name: pgdata, mountPath: /data}]}]
  volumeClaimTemplates:
    - metadata: {name: pgdata}
      spec: {resources: {requests: {storage: 1Gi}}}
"""
    manifest = load_manifest(stateful)
    (spec,) = manifest.specs
    assert (spec.mode, spec.replicas, spec.volumes) == (
        "replicated",
        3,
        (VolumeRef("/data", "pgdata"),),
    )
    assert any("StatefulSet runs as a replicated service" in w for w in manifest.warnings)


def test_a_service_alone_is_an_attachment_and_other_kinds_are_skipped_with_a_warning():
    text = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n"
        "  ports: [{port: 80, targetPort: 8080}]\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\n"
        "metadata: {name: web}\n"
    )
    manifest = load_manifest(text)
    assert manifest.specs == ()
    (attachment,) = manifest.attachments
    # ClusterIP (the default) is reachable inside the cluster only, at the VIP's port 80: not published.
    assert (attachment.selector, attachment.ports) == (
        {"app": "web"},
        ({"target": 8080, "protocol": "tcp", "vip_port": 80},),
    )
    assert manifest.warnings == (
        "PodDisruptionBudget/web: 'policy/v1' 'PodDisruptionBudget' is not supported, skipped",
    )
    nodeport = load_manifest(text.replace("  selector:", "  type: NodePort\n  selector:"))
    assert nodeport.attachments[0].ports == (
        {"target": 8080, "published": 80, "protocol": "tcp", "vip_port": 80},
    )


def test_two_services_publishing_the_same_port_publish_it_once():
    text = DEPLOYMENT.split("---")[0] + "".join(
        f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {n}}}\nspec:\n  type: {t}\n"
        "  selector: {app: api}\n  ports: [{port: 80, targetPort: grpc}]\n"
        for n, t in (("api", "ClusterIP"), ("api-external", "LoadBalancer"))
    )
    (spec,) = load_manifest(text).specs
    assert [(p.target, p.published) for p in spec.ports] == [(9000, 80)]


def test_a_secret_that_is_not_base64_names_the_key():
    with pytest.raises(ManifestError) as caught:
        load_manifest("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: '!!!'}\n")
    assert caught.value.field == "Secret/s.data.k"
