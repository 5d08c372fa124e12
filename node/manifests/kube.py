"""Kubernetes documents into service specs, as kubectl would apply them.

Deployments and StatefulSets are replicated services, DaemonSets global ones. A `v1`
Service publishes the ports of the workloads its selector matches: those in the same file,
or (an attachment) services already in the cluster whose labels match. ConfigMaps and
Secrets become configs and secrets (`NAME.KEY`, one per key), which their volumes mount and
`valueFrom`/`envFrom` read; `emptyDir` is an anonymous volume (tmpfs for `medium: Memory`),
a `persistentVolumeClaim` the named volume of the claim. Anything else is a warning.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from dataclasses import dataclass
from typing import Any, Optional

from consensus.services import ServiceSpec
from consensus.units import parse_cpu, parse_memory
from node.manifests.fields import labels, to_spec, words
from node.manifests.reader import ManifestError, Reader, shown
from node.manifests.refs import FileSource

_WORKLOADS = {("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"),
              ("v1", "Pod")}
# A Pod's restartPolicy as a restart condition (a workload's pods always restart).
_POD_RESTART = {"Always": "any", "OnFailure": "on-failure", "Never": "none"}
_CONTAINER_KEYS = {"name", "image", "command", "args", "env", "envFrom", "ports", "resources",
                   "livenessProbe", "readinessProbe", "startupProbe", "volumeMounts",
                   "imagePullPolicy", "lifecycle", "securityContext", "terminationMessagePath",
                   "terminationMessagePolicy", "workingDir"}
_POD_KEYS = {"containers", "nodeSelector", "terminationGracePeriodSeconds", "restartPolicy",
             "volumes", "initContainers", "securityContext", "serviceAccountName",
             "automountServiceAccountToken"}
_NOT_CARRIED = {
    "imagePullPolicy": "the node's --image-pull decides when images are pulled",
    "initContainers": "init containers do not run",
    "serviceAccountName": "there is no service account", "automountServiceAccountToken":
    "there is no service account", "startupProbe": "one health check runs (readiness, else liveness)",
    "terminationMessagePath": "ignored", "terminationMessagePolicy": "ignored",
}


@dataclass(frozen=True, slots=True)
class Attachment:
    """A Service whose selector matched no workload in its file: its ports go to the
    services in the cluster whose labels hold the selector, when they exist."""

    name: str
    where: str
    selector: dict[str, str]
    ports: tuple[dict, ...]


@dataclass
class _Data:
    """The ConfigMaps and Secrets of the file: name -> {key: content}."""

    configs: dict[str, dict[str, bytes]]
    secrets: dict[str, dict[str, bytes]]


def _where(doc: dict) -> str:
    meta = doc.get("metadata")
    name = meta.get("name", "?") if isinstance(meta, dict) else "?"
    return f"{shown(doc.get('kind'))[1:-1] if isinstance(doc.get('kind'), str) else '?'}/{name}"


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _port(value: Any, named: dict[str, int], where: str) -> int:
    if isinstance(value, str) and value in named:
        return named[value]
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ManifestError(where, f"must be a port number or a container port's name, not {shown(value)}")


def _probe(r: Reader, probe: dict, named: dict[str, int], where: str) -> dict:
    r.unsupported(probe, {"httpGet", "tcpSocket", "exec", "grpc", "periodSeconds", "timeoutSeconds",
                          "failureThreshold", "initialDelaySeconds", "successThreshold"}, where)
    if "httpGet" in probe:
        get = r.mapping(probe["httpGet"], f"{where}.httpGet")
        r.unsupported(get, {"path", "port", "scheme", "httpHeaders"}, f"{where}.httpGet")
        plain: dict[str, Any] = {"kind": "http", "path": get.get("path", "/"),
                                 "port": _port(get.get("port", 0), named, f"{where}.httpGet.port")}
    elif "tcpSocket" in probe:
        sock = r.mapping(probe["tcpSocket"], f"{where}.tcpSocket")
        plain = {"kind": "tcp", "port": _port(sock.get("port", 0), named, f"{where}.tcpSocket.port")}
    elif "grpc" in probe:
        grpc = r.mapping(probe["grpc"], f"{where}.grpc")
        r.warnings.append(f"{where}.grpc: Shoal checks that the port accepts connections; it does "
                          "not call the gRPC health service")
        plain = {"kind": "tcp", "port": _port(grpc.get("port", 0), named, f"{where}.grpc.port")}
    elif "exec" in probe:
        plain = {"kind": "cmd", "command": words(r.mapping(probe["exec"], f"{where}.exec").get("command"),
                                                 f"{where}.exec.command")}
    else:
        raise ManifestError(where, "needs httpGet, tcpSocket, grpc or exec")
    # Kubernetes' defaults, not Docker's, when the probe leaves them out.
    plain["interval"] = probe.get("periodSeconds", 10)
    plain["timeout"] = probe.get("timeoutSeconds", 1)
    plain["retries"] = probe.get("failureThreshold", 3)
    plain["start_period"] = probe.get("initialDelaySeconds", 0)
    return plain


def _resources(r: Reader, resources: dict, where: str) -> dict:
    r.unsupported(resources, {"requests", "limits"}, where)
    out: dict[str, dict] = {}
    for source, target in (("requests", "reservations"), ("limits", "limits")):
        amounts = r.mapping(resources.get(source), f"{where}.{source}")
        r.unsupported(amounts, {"cpu", "memory"}, f"{where}.{source}")
        plain = {}
        if "cpu" in amounts:
            plain["cpu_millis"] = parse_cpu(amounts["cpu"], f"{where}.{source}.cpu")
        if "memory" in amounts:
            plain["memory_bytes"] = parse_memory(amounts["memory"], f"{where}.{source}.memory", kubernetes=True)
        out[target] = plain
    # Kubernetes: a limit without a request requests the limit.
    out["reservations"] = {**out.get("limits", {}), **out.get("reservations", {})}
    return out


def _env(r: Reader, container: dict, data: _Data, where: str, plain: dict) -> dict[str, str]:
    env: dict[str, str] = {}
    for i, source in enumerate(r.listing(container.get("envFrom"), f"{where}.envFrom")):
        at = f"{where}.envFrom[{i}]"
        source = r.mapping(source, at)
        r.unsupported(source, {"configMapRef", "secretRef", "prefix"}, at)
        if "configMapRef" in source:
            name = r.mapping(source["configMapRef"], f"{at}.configMapRef").get("name")
            if name in data.configs:
                prefix = str(source.get("prefix", ""))
                env.update({prefix + k: v.decode(errors="replace") for k, v in data.configs[name].items()})
                continue
            r.warnings.append(f"{at}.configMapRef: ConfigMap {shown(name)} is not in this file; "
                              "its variables are not set")
        else:
            r.warnings.append(f"{at}: Shoal gives secrets to tasks as files, not variables; not set")
    for i, var in enumerate(r.listing(container.get("env"), f"{where}.env")):
        at = f"{where}.env[{i}]"
        var = r.mapping(var, at)
        r.unsupported(var, {"name", "value", "valueFrom"}, at)
        name = str(var.get("name", ""))
        if "valueFrom" in var:
            value = _value_from(r, r.mapping(var["valueFrom"], f"{at}.valueFrom"), data, f"{at}.valueFrom", plain)
            if value is not None:
                env[name] = value
            continue
        env[name] = "" if var.get("value") is None else str(var.get("value"))
    return env


def _value_from(r: Reader, source: dict, data: _Data, where: str, plain: dict) -> Optional[str]:
    r.unsupported(source, {"configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef"}, where)
    if "configMapKeyRef" in source:
        ref = r.mapping(source["configMapKeyRef"], f"{where}.configMapKeyRef")
        value = data.configs.get(ref.get("name"), {}).get(ref.get("key"))
        if value is None:
            r.warnings.append(f"{where}.configMapKeyRef: key {shown(ref.get('key'))} of ConfigMap "
                              f"{shown(ref.get('name'))} is not in this file; not set")
            return None
        return value.decode(errors="replace")
    if "secretKeyRef" in source:
        ref = r.mapping(source["secretKeyRef"], f"{where}.secretKeyRef")
        name = f"{ref.get('name')}.{ref.get('key')}"
        if ref.get("key") not in data.secrets.get(ref.get("name"), {}):
            r.warnings.append(f"{where}.secretKeyRef: key {shown(ref.get('key'))} of Secret "
                              f"{shown(ref.get('name'))} is not in this file; not set")
            return None
        plain.setdefault("secrets", []).append({"source": name})
        r.warnings.append(f"{where}.secretKeyRef: Shoal gives secrets to tasks as files: the value "
                          f"is in /run/secrets/{name}, not in the variable")
        return None
    if "fieldRef" in source:
        path = r.mapping(source["fieldRef"], f"{where}.fieldRef").get("fieldPath")
        r.warnings.append(f"{where}.fieldRef: {shown(path)} is not available; tasks get "
                          "SHOAL_SERVICE, SHOAL_TASK_ID, SHOAL_TASK_SLOT and SHOAL_NODE_ID instead")
        return None
    r.warnings.append(f"{where}: not supported, not set")
    return None


def _files(kind: str, name: Any, keys: dict[str, bytes], items: Any, mount: str,
           where: str, r: Reader) -> list[dict]:
    """A configMap or secret volume: one file per key (or per listed item) under `mount`."""
    chosen = [(k, k) for k in keys]
    if items is not None:
        chosen = [(str(item.get("key")), str(item.get("path", item.get("key"))))
                  for item in (r.mapping(i, f"{where}.items") for i in r.listing(items, f"{where}.items"))]
    if not keys and items is None:
        r.warnings.append(f"{where}: {kind} {shown(name)} is not in this file, so its keys are "
                          "unknown; nothing is mounted")
    return [{"source": f"{name}.{key}", "target": posixpath.join(mount, path)} for key, path in chosen]


def _volumes(r: Reader, pod: dict, container: dict, data: _Data, where: str, pod_where: str,
             plain: dict) -> None:
    volumes = {}
    for i, volume in enumerate(r.listing(pod.get("volumes"), f"{pod_where}.volumes")):
        volume = r.mapping(volume, f"{pod_where}.volumes[{i}]")
        volumes[volume.get("name")] = (volume, f"{pod_where}.volumes[{i}]")
    mounts = []
    for i, mount in enumerate(r.listing(container.get("volumeMounts"), f"{where}.volumeMounts")):
        at = f"{where}.volumeMounts[{i}]"
        mount = r.mapping(mount, at)
        r.unsupported(mount, {"name", "mountPath", "readOnly"}, at)
        if mount.get("name") not in volumes:
            raise ManifestError(f"{at}.name", f"no volume {shown(mount.get('name'))} in the pod's volumes")
        volume, vat = volumes[mount["name"]]
        target, read_only = mount.get("mountPath"), bool(mount.get("readOnly", False))
        if "emptyDir" in volume:
            memory = r.mapping(volume["emptyDir"], f"{vat}.emptyDir").get("medium") == "Memory"
            mounts.append({"type": "tmpfs" if memory else "volume", "target": target, "read_only": read_only})
        elif "persistentVolumeClaim" in volume:
            claim = r.mapping(volume["persistentVolumeClaim"], f"{vat}.persistentVolumeClaim")
            mounts.append({"type": "volume", "source": claim.get("claimName"), "target": target,
                           "read_only": read_only or bool(claim.get("readOnly", False))})
        elif "hostPath" in volume:
            path = r.mapping(volume["hostPath"], f"{vat}.hostPath").get("path")
            mounts.append({"type": "bind", "source": path, "target": target, "read_only": read_only})
        elif "configMap" in volume or "secret" in volume:
            kind = "configMap" if "configMap" in volume else "secret"
            ref = r.mapping(volume[kind], f"{vat}.{kind}")
            name = ref.get("name") if kind == "configMap" else ref.get("secretName")
            keys = (data.configs if kind == "configMap" else data.secrets).get(name, {})
            files = _files(kind, name, keys, ref.get("items"), str(target), f"{vat}.{kind}", r)
            plain.setdefault("configs" if kind == "configMap" else "secrets", []).extend(files)
        else:
            r.warnings.append(f"{vat}: this kind of volume is not supported; {shown(target)} is an "
                              "empty volume")
            mounts.append({"type": "volume", "target": target, "read_only": read_only})
    if mounts:
        plain["volumes"] = mounts


def _stop_delay(r: Reader, lifecycle: dict, where: str) -> Optional[float]:
    """A preStop hook that only sleeps is a stop delay (endpoints withdrawn, then the wait)."""
    r.unsupported(lifecycle, {"preStop", "postStart"}, where)
    if "postStart" in lifecycle:
        r.warnings.append(f"{where}.postStart: not run")
    hook = r.mapping(lifecycle.get("preStop"), f"{where}.preStop")
    if not hook:
        return None
    sleep = hook.get("sleep")
    if isinstance(sleep, dict) and isinstance(sleep.get("seconds"), int):
        return float(sleep["seconds"])
    command = (hook.get("exec") or {}).get("command") if isinstance(hook.get("exec"), dict) else None
    if isinstance(command, list):
        text = command[-1] if command[:2] in (["/bin/sh", "-c"], ["sh", "-c"]) and len(command) == 3 else " ".join(map(str, command))
        parts = str(text).split()
        if len(parts) == 2 and parts[0] in ("sleep", "/bin/sleep") and parts[1].isdigit():
            return float(parts[1])
    r.warnings.append(f"{where}.preStop: only a sleep is supported (it becomes the stop delay); "
                      "this hook does not run")
    return None


def _security(r: Reader, context: dict, where: str, options: dict) -> None:
    """runAsUser/runAsGroup as the container's user, readOnlyRootFilesystem as read_only."""
    r.unsupported(context, {"runAsUser", "runAsGroup", "readOnlyRootFilesystem", "runAsNonRoot",
                            "allowPrivilegeEscalation", "capabilities", "privileged", "fsGroup",
                            "seccompProfile"}, where)
    if "runAsUser" in context:
        group = f":{context['runAsGroup']}" if "runAsGroup" in context else ""
        options["user"] = f"{context['runAsUser']}{group}"
    if "readOnlyRootFilesystem" in context:
        options["read_only"] = context["readOnlyRootFilesystem"]
    for key in ("capabilities", "privileged", "fsGroup", "seccompProfile"):
        if key in context and context[key] not in (False, None):
            r.once(f"securityContext.{key}", f"{where}.{key}", "not granted or changed by Shoal")


def _container(r: Reader, container: dict, pod: dict, data: _Data, where: str, pod_where: str,
               plain: dict) -> dict[str, int]:
    """Fill `plain` from the container; returns its port names."""
    for key in container:
        if key in _NOT_CARRIED:
            r.once(key, f"{where}.{key}", _NOT_CARRIED[key])
    r.unsupported(container, _CONTAINER_KEYS, where)
    plain["image"] = container.get("image")
    options: dict[str, Any] = {}
    # The container's context over the pod's, as in Kubernetes.
    for context, at in ((pod.get("securityContext"), f"{pod_where}.securityContext"),
                        (container.get("securityContext"), f"{where}.securityContext")):
        _security(r, r.mapping(context, at), at, options)
    if "workingDir" in container:
        options["working_dir"] = container["workingDir"]
    if options:
        plain["container"] = options
    for key in ("command", "args"):  # command replaces the entrypoint, args the image's CMD
        if key in container:
            plain[key] = words(container[key], f"{where}.{key}")
    plain["env"] = _env(r, container, data, where, plain)
    named: dict[str, int] = {}
    ports = []
    for i, port in enumerate(r.listing(container.get("ports"), f"{where}.ports")):
        port = r.mapping(port, f"{where}.ports[{i}]")
        r.unsupported(port, {"containerPort", "protocol", "name", "hostPort"}, f"{where}.ports[{i}]")
        entry = {"target": port.get("containerPort"), "protocol": str(port.get("protocol", "TCP")).lower()}
        if "hostPort" in port:
            entry.update(published=port["hostPort"], mode="host")
        if "name" in port:
            named[str(port["name"])] = port.get("containerPort")
        ports.append(entry)
    plain["ports"] = ports
    if "resources" in container:
        plain["resources"] = _resources(r, r.mapping(container["resources"], f"{where}.resources"),
                                        f"{where}.resources")
    probes = [(key, r.mapping(container[key], f"{where}.{key}"))
              for key in ("readinessProbe", "livenessProbe") if key in container]
    if probes:
        # One check serves both: readiness decides load-balancer membership, so it wins.
        (key, probe), *rest = probes
        plain["health"] = _probe(r, probe, named, f"{where}.{key}")
        if rest and rest[0][1] != probe:
            r.warnings.append(f"{where}.livenessProbe: Shoal runs one health check per task; "
                              "the readinessProbe is used")
    delay = _stop_delay(r, r.mapping(container.get("lifecycle"), f"{where}.lifecycle"), f"{where}.lifecycle")
    if delay is not None:
        plain["stop_delay"] = delay
    _volumes(r, pod, container, data, where, pod_where, plain)
    return named


def _update(r: Reader, strategy: dict, replicas: int, where: str) -> Optional[dict]:
    r.unsupported(strategy, {"type", "rollingUpdate"}, where)
    if strategy.get("type") in ("Recreate", "OnDelete"):
        return {"parallelism": 0, "order": "stop-first"}
    rolling = r.mapping(strategy.get("rollingUpdate"), f"{where}.rollingUpdate")
    if not rolling:
        return None
    r.unsupported(rolling, {"maxSurge", "maxUnavailable", "partition"}, f"{where}.rollingUpdate")

    def count(key: str) -> int:
        value = rolling.get(key, "25%")
        if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
            return max(1, replicas * int(value[:-1]) // 100)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise ManifestError(f"{where}.rollingUpdate.{key}", f"must be a count or a percentage, not {shown(value)}")

    surge, unavailable = count("maxSurge"), count("maxUnavailable")
    # Shoal replaces `parallelism` tasks at a time: start-first when only surge is allowed.
    return {"parallelism": max(surge, unavailable, 1),
            "order": "start-first" if surge and not unavailable else "stop-first"}


def _as_workload(doc: dict) -> dict:
    """A bare Pod as a workload of one replica whose template is the pod."""
    if doc.get("kind") != "Pod":
        return doc
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return {**doc, "metadata": meta, "spec": {"template": {"metadata": {"labels": meta.get("labels")},
                                                           "spec": doc.get("spec")}}}


def _workload(r: Reader, doc: dict, data: _Data, where: str, services: list[tuple[dict, str]]) -> ServiceSpec:
    kind = doc.get("kind")
    if kind == "Pod":
        r.warnings.append(f"{where}: a Pod runs as a service of one replica, started again "
                          "elsewhere if its node fails")
    doc = _as_workload(doc)
    r.unsupported(doc, {"apiVersion", "kind", "metadata", "spec"}, where)
    meta = r.mapping(doc.get("metadata"), f"{where}.metadata")
    r.unsupported(meta, {"name", "labels", "annotations", "namespace"}, f"{where}.metadata")
    spec = r.mapping(doc.get("spec"), f"{where}.spec")
    known = {"selector", "template", "minReadySeconds", "revisionHistoryLimit"}
    known |= {"updateStrategy"} if kind == "DaemonSet" else {"replicas", "strategy"}
    if kind == "StatefulSet":
        known |= {"serviceName", "volumeClaimTemplates", "podManagementPolicy", "updateStrategy"}
        r.warnings.append(f"{where}: a StatefulSet runs as a replicated service: replicas get no "
                          "stable names or ordered start")
    r.unsupported(spec, known, f"{where}.spec")
    template = r.mapping(spec.get("template"), f"{where}.spec.template")
    r.unsupported(template, {"metadata", "spec"}, f"{where}.spec.template")
    pod_meta = r.mapping(template.get("metadata"), f"{where}.spec.template.metadata")
    r.unsupported(pod_meta, {"labels", "annotations"}, f"{where}.spec.template.metadata")
    pod_where = f"{where}.spec.template.spec"
    pod = r.mapping(template.get("spec"), pod_where)
    for key in pod:
        if key in _NOT_CARRIED:
            r.once(key, f"{pod_where}.{key}", _NOT_CARRIED[key])
    r.unsupported(pod, _POD_KEYS, pod_where)
    pod_labels = labels(pod_meta.get("labels"), f"{where}.spec.template.metadata.labels")
    replicas = spec.get("replicas", 1)
    plain: dict[str, Any] = {"name": meta.get("name"),
                             "labels": {**labels(meta.get("labels"), f"{where}.metadata.labels"), **pod_labels}}
    if kind == "DaemonSet":
        plain["mode"] = "global"
    else:
        plain["replicas"] = replicas
    containers = r.listing(pod.get("containers"), f"{pod_where}.containers")
    if not containers:
        raise ManifestError(f"{pod_where}.containers", "needs one container")
    for i in range(1, len(containers)):
        r.warnings.append(f"{pod_where}.containers[{i}]: only the first container runs")
    at = f"{pod_where}.containers[0]"
    if kind == "StatefulSet":
        templates = r.listing(spec.get("volumeClaimTemplates"), f"{where}.spec.volumeClaimTemplates")
        pod = {**pod, "volumes": r.listing(pod.get("volumes"), f"{pod_where}.volumes") + [
            {"name": (t.get("metadata") or {}).get("name"),
             "persistentVolumeClaim": {"claimName": (t.get("metadata") or {}).get("name")}}
            for t in (r.mapping(t, f"{where}.spec.volumeClaimTemplates") for t in templates)]}
        if templates:
            r.warnings.append(f"{where}.spec.volumeClaimTemplates: each claim is a named volume "
                              "on the node a replica runs on, shared by the replicas there")
    named = _container(r, r.mapping(containers[0], at), pod, data, at, pod_where, plain)
    selector = pod.get("nodeSelector")
    if selector:
        plain["constraints"] = [f"node.labels.{k}=={v}" for k, v in
                                r.mapping(selector, f"{pod_where}.nodeSelector").items()]
    if "terminationGracePeriodSeconds" in pod:
        plain["stop_grace_period"] = pod["terminationGracePeriodSeconds"]
    if kind == "Pod" and pod.get("restartPolicy", "Always") in _POD_RESTART:
        plain["restart"] = {"condition": _POD_RESTART[pod.get("restartPolicy", "Always")]}
    elif pod.get("restartPolicy", "Always") != "Always":
        r.warnings.append(f"{pod_where}.restartPolicy: a {kind} always restarts")
    strategy_key = "strategy" if kind == "Deployment" else "updateStrategy"
    update = _update(r, r.mapping(spec.get(strategy_key), f"{where}.spec.{strategy_key}"),
                     replicas if isinstance(replicas, int) else 1, f"{where}.spec.{strategy_key}")
    if "minReadySeconds" in spec:  # a new task counts once it stayed ready this long
        update = {**(update or {}), "monitor": spec["minReadySeconds"]}
    if update:
        plain["update"] = update
    for service, service_where in services:
        if _selects(service, pod_labels):
            _publish(r, service, service_where, plain, named)
    return to_spec(plain, where, {"name": "metadata.name", "replicas": "spec.replicas",
                                  "image": "spec.template.spec.containers[0].image",
                                  "update": f"spec.{strategy_key}",
                                  "container": "spec.template.spec.containers[0]",
                                  "container.user": "spec.template.spec.containers[0].securityContext.runAsUser",
                                  "container.read_only":
                                  "spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem"})


def _selector(service: dict) -> dict[str, str]:
    selector = (service.get("spec") or {}).get("selector") if isinstance(service.get("spec"), dict) else None
    return {str(k): str(v) for k, v in selector.items()} if isinstance(selector, dict) else {}


def _selects(service: dict, pod_labels: dict[str, str]) -> bool:
    selector = _selector(service)
    return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())


def _service_ports(r: Reader, service: dict, where: str, named: dict[str, int]) -> list[dict]:
    """NodePort and LoadBalancer ports are published (on every node, by the routing mesh);
    ClusterIP ports are the tasks' own, reachable inside the cluster only, as in Kubernetes."""
    spec = r.mapping(service.get("spec"), f"{where}.spec")
    published = spec.get("type", "ClusterIP") in ("NodePort", "LoadBalancer")
    out = []
    for i, port in enumerate(r.listing(spec.get("ports"), f"{where}.spec.ports")):
        at = f"{where}.spec.ports[{i}]"
        port = r.mapping(port, at)
        r.unsupported(port, {"port", "targetPort", "nodePort", "protocol", "name", "appProtocol"}, at)
        target_value = port.get("targetPort", port.get("port"))
        if isinstance(target_value, str) and not target_value.isdigit() and target_value not in named:
            r.warnings.append(f"{at}.targetPort: port name {shown(target_value)} is not known here; "
                              "the port number is used")
            target_value = port.get("port")
        target = _port(target_value, named, f"{at}.targetPort")
        entry = {"target": target, "protocol": str(port.get("protocol", "TCP")).lower()}
        if published:
            entry["published"] = port.get("nodePort") or port.get("port")
        elif port.get("port") not in (None, target):
            r.warnings.append(f"{at}: inside the cluster the service is reached on its tasks' "
                              f"port {target}, not {shown(port.get('port'))}")
        out.append(entry)
    return out


def _publish(r: Reader, service: dict, where: str, plain: dict, named: dict[str, int]) -> None:
    """A v1 Service's ports become ports of the workload it selects."""
    plain["ports"] = merge_ports(plain.get("ports", []), _service_ports(r, service, where, named))


def merge_ports(ports: list[dict], new: list[dict]) -> list[dict]:
    """`new` ports over `ports`: a published port replaces the unpublished one of the same
    target, and a port already there (two Services naming the same) is kept once."""
    out = list(ports)

    def key(p: dict) -> tuple:
        return p.get("target"), p.get("protocol", "tcp"), p.get("published") or 0

    for port in new:
        target, protocol, published = key(port)
        if any(key(p) == (target, protocol, published) for p in out):
            continue
        if published:
            out = [p for p in out if key(p) != (target, protocol, 0)]
        elif any(key(p)[:2] == (target, protocol) for p in out):
            continue  # already published: no unpublished twin
        out.append(port)
    return out


def _data(r: Reader, doc: dict, where: str) -> dict[str, bytes]:
    r.unsupported(doc, {"apiVersion", "kind", "metadata", "data", "stringData", "binaryData",
                        "type", "immutable"}, where)
    out: dict[str, bytes] = {}
    binary = doc.get("kind") == "Secret"
    for key in ("data", "binaryData"):
        for name, value in r.mapping(doc.get(key), f"{where}.{key}").items():
            if (binary or key == "binaryData"):
                try:
                    out[str(name)] = base64.b64decode(str(value), validate=True)
                except (binascii.Error, ValueError):
                    raise ManifestError(f"{where}.{key}.{name}", "must be base64") from None
            else:
                out[str(name)] = str(value).encode()
    for name, value in r.mapping(doc.get("stringData"), f"{where}.stringData").items():
        out[str(name)] = str(value).encode()
    return out


def translate(r: Reader, docs: list[dict]) -> tuple[list[ServiceSpec], tuple[FileSource, ...], tuple[Attachment, ...]]:
    services, workloads, files = [], [], []
    data = _Data({}, {})
    for doc in docs:
        api, kind, where = _text(doc.get("apiVersion")), _text(doc.get("kind")), _where(doc)
        if (api, kind) in _WORKLOADS:
            workloads.append((doc, where))
        elif (api, kind) == ("v1", "Service"):
            r.unsupported(doc, {"apiVersion", "kind", "metadata", "spec"}, where)
            r.unsupported(r.mapping(doc.get("spec"), f"{where}.spec"),
                          {"type", "selector", "ports", "clusterIP"}, f"{where}.spec")
            services.append((doc, where))
        elif (api, kind) in (("v1", "ConfigMap"), ("v1", "Secret")):
            name = r.mapping(doc.get("metadata"), f"{where}.metadata").get("name")
            content = _data(r, doc, where)
            (data.configs if kind == "ConfigMap" else data.secrets)[name] = content
            files += [FileSource("config" if kind == "ConfigMap" else "secret", f"{name}.{key}",
                                 f"{where}.data.{key}", content=value) for key, value in content.items()]
        elif (api, kind) == ("v1", "PersistentVolumeClaim"):
            r.warnings.append(f"{where}: a claim is the local named volume of that name on each "
                              "node that runs a task mounting it; its size and class are not enforced")
        else:
            r.warnings.append(f"{where}: {shown(api)} {shown(kind)} is not supported, skipped")
    specs = [_workload(r, doc, data, where, services) for doc, where in workloads]
    attachments = []
    for service, where in services:
        pods = [(((_as_workload(d).get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels")
                or {} for d, _ in workloads]
        if any(_selects(service, {str(k): str(v) for k, v in p.items()}) for p in pods if isinstance(p, dict)):
            continue
        selector = _selector(service)
        if not selector:
            r.warnings.append(f"{where}.spec.selector: a Service without a selector is not supported, skipped")
            continue
        name = (service.get("metadata") or {}).get("name") if isinstance(service.get("metadata"), dict) else None
        if not isinstance(name, str) or not name:
            raise ManifestError(f"{where}.metadata.name", "a Service needs a name")
        attachments.append(Attachment(name, where, selector, tuple(_service_ports(r, service, where, {}))))
    return specs, tuple(files), tuple(attachments)
