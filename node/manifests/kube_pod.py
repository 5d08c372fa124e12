"""A Kubernetes pod's first container as the parts of a service spec: image, command, env
(with `valueFrom` and `envFrom`), ports, resources, probes, lifecycle, security context and
volumes. The workloads and Services around it are kube.py's."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from consensus.units import parse_amounts
from node.manifests.fields import words
from node.manifests.reader import ManifestError, Reader, shown

_CONTAINER_KEYS = {
    "name",
    "image",
    "command",
    "args",
    "env",
    "envFrom",
    "ports",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "volumeMounts",
    "imagePullPolicy",
    "lifecycle",
    "securityContext",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "workingDir",
}
# A pod's keys Shoal reads (or warns about, NOT_CARRIED): any other is "not supported".
POD_KEYS = {
    "containers",
    "nodeSelector",
    "terminationGracePeriodSeconds",
    "restartPolicy",
    "volumes",
    "initContainers",
    "securityContext",
    "serviceAccountName",
    "automountServiceAccountToken",
}
# Pod and container keys Shoal has no use for, with why: one warning per key.
NOT_CARRIED = {
    "imagePullPolicy": "the node's --image-pull decides when images are pulled",
    "initContainers": "init containers do not run",
    "serviceAccountName": "there is no service account",
    "automountServiceAccountToken": "there is no service account",
    "startupProbe": "one health check runs (readiness, else liveness)",
    "terminationMessagePath": "ignored",
    "terminationMessagePolicy": "ignored",
}


@dataclass
class PodData:
    """The ConfigMaps and Secrets of the file: name -> {key: content}."""

    configs: dict[str, dict[str, bytes]]
    secrets: dict[str, dict[str, bytes]]


def port_number(value: Any, named: dict[str, int], where: str) -> int:
    if isinstance(value, str) and value in named:
        return named[value]
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ManifestError(
        where, f"must be a port number or a container port's name, not {shown(value)}"
    )


def _probe(r: Reader, probe: dict, named: dict[str, int], where: str) -> dict:
    r.unsupported(
        probe,
        {
            "httpGet",
            "tcpSocket",
            "exec",
            "grpc",
            "periodSeconds",
            "timeoutSeconds",
            "failureThreshold",
            "initialDelaySeconds",
            "successThreshold",
        },
        where,
    )
    if "httpGet" in probe:
        get = r.mapping(probe["httpGet"], f"{where}.httpGet")
        r.unsupported(get, {"path", "port", "scheme", "httpHeaders"}, f"{where}.httpGet")
        plain: dict[str, Any] = {
            "kind": "http",
            "path": get.get("path", "/"),
            "port": port_number(get.get("port", 0), named, f"{where}.httpGet.port"),
        }
    elif "tcpSocket" in probe:
        sock = r.mapping(probe["tcpSocket"], f"{where}.tcpSocket")
        plain = {
            "kind": "tcp",
            "port": port_number(sock.get("port", 0), named, f"{where}.tcpSocket.port"),
        }
    elif "grpc" in probe:
        grpc = r.mapping(probe["grpc"], f"{where}.grpc")
        r.warnings.append(
            f"{where}.grpc: Shoal checks that the port accepts connections; it does "
            "not call the gRPC health service"
        )
        plain = {
            "kind": "tcp",
            "port": port_number(grpc.get("port", 0), named, f"{where}.grpc.port"),
        }
    elif "exec" in probe:
        plain = {
            "kind": "cmd",
            "command": words(
                r.mapping(probe["exec"], f"{where}.exec").get("command"), f"{where}.exec.command"
            ),
        }
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
        out[target] = parse_amounts(amounts, f"{where}.{source}", kubernetes=True)
    # Kubernetes: a limit without a request requests the limit.
    out["reservations"] = {**out.get("limits", {}), **out.get("reservations", {})}
    return out


def _env(r: Reader, container: dict, data: PodData, where: str, plain: dict) -> dict[str, str]:
    env: dict[str, str] = {}
    for i, source in enumerate(r.listing(container.get("envFrom"), f"{where}.envFrom")):
        at = f"{where}.envFrom[{i}]"
        source = r.mapping(source, at)
        r.unsupported(source, {"configMapRef", "secretRef", "prefix"}, at)
        if "configMapRef" in source:
            name = r.mapping(source["configMapRef"], f"{at}.configMapRef").get("name")
            if name in data.configs:
                prefix = str(source.get("prefix", ""))
                env.update(
                    {prefix + k: v.decode(errors="replace") for k, v in data.configs[name].items()}
                )
                continue
            r.warnings.append(
                f"{at}.configMapRef: ConfigMap {shown(name)} is not in this file; "
                "its variables are not set"
            )
        else:
            r.warnings.append(
                f"{at}: Shoal gives secrets to tasks as files, not variables; not set"
            )
    for i, var in enumerate(r.listing(container.get("env"), f"{where}.env")):
        at = f"{where}.env[{i}]"
        var = r.mapping(var, at)
        r.unsupported(var, {"name", "value", "valueFrom"}, at)
        name = str(var.get("name", ""))
        if "valueFrom" in var:
            value = _value_from(
                r, r.mapping(var["valueFrom"], f"{at}.valueFrom"), data, f"{at}.valueFrom", plain
            )
            if value is not None:
                env[name] = value
            continue
        env[name] = "" if var.get("value") is None else str(var.get("value"))
    return env


def _value_from(r: Reader, source: dict, data: PodData, where: str, plain: dict) -> str | None:
    r.unsupported(
        source, {"configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef"}, where
    )
    if "configMapKeyRef" in source:
        ref = r.mapping(source["configMapKeyRef"], f"{where}.configMapKeyRef")
        value = data.configs.get(ref.get("name"), {}).get(ref.get("key"))
        if value is None:
            r.warnings.append(
                f"{where}.configMapKeyRef: key {shown(ref.get('key'))} of ConfigMap "
                f"{shown(ref.get('name'))} is not in this file; not set"
            )
            return None
        return value.decode(errors="replace")
    if "secretKeyRef" in source:
        ref = r.mapping(source["secretKeyRef"], f"{where}.secretKeyRef")
        name = f"{ref.get('name')}.{ref.get('key')}"
        if ref.get("key") not in data.secrets.get(ref.get("name"), {}):
            r.warnings.append(
                f"{where}.secretKeyRef: key {shown(ref.get('key'))} of Secret "
                f"{shown(ref.get('name'))} is not in this file; not set"
            )
            return None
        plain.setdefault("secrets", []).append({"source": name})
        r.warnings.append(
            f"{where}.secretKeyRef: Shoal gives secrets to tasks as files: the value "
            f"is in /run/secrets/{name}, not in the variable"
        )
        return None
    if "fieldRef" in source:
        path = r.mapping(source["fieldRef"], f"{where}.fieldRef").get("fieldPath")
        r.warnings.append(
            f"{where}.fieldRef: {shown(path)} is not available; tasks get "
            "SHOAL_SERVICE, SHOAL_TASK_ID, SHOAL_TASK_SLOT and SHOAL_NODE_ID instead"
        )
        return None
    r.warnings.append(f"{where}: not supported, not set")
    return None


def _files(
    kind: str, name: Any, keys: dict[str, bytes], items: Any, mount: str, where: str, r: Reader
) -> list[dict]:
    """A configMap or secret volume: one file per key (or per listed item) under `mount`."""
    chosen = [(k, k) for k in keys]
    if items is not None:
        chosen = [
            (str(item.get("key")), str(item.get("path", item.get("key"))))
            for item in (r.mapping(i, f"{where}.items") for i in r.listing(items, f"{where}.items"))
        ]
    if not keys and items is None:
        r.warnings.append(
            f"{where}: {kind} {shown(name)} is not in this file, so its keys are "
            "unknown; nothing is mounted"
        )
    return [
        {"source": f"{name}.{key}", "target": posixpath.join(mount, path)} for key, path in chosen
    ]


def _volumes(
    r: Reader, pod: dict, container: dict, data: PodData, where: str, pod_where: str, plain: dict
) -> None:
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
            raise ManifestError(
                f"{at}.name", f"no volume {shown(mount.get('name'))} in the pod's volumes"
            )
        volume, vat = volumes[mount["name"]]
        target, read_only = mount.get("mountPath"), bool(mount.get("readOnly", False))
        if "emptyDir" in volume:
            memory = r.mapping(volume["emptyDir"], f"{vat}.emptyDir").get("medium") == "Memory"
            mounts.append(
                {"type": "tmpfs" if memory else "volume", "target": target, "read_only": read_only}
            )
        elif "persistentVolumeClaim" in volume:
            claim = r.mapping(volume["persistentVolumeClaim"], f"{vat}.persistentVolumeClaim")
            mounts.append(
                {
                    "type": "volume",
                    "source": claim.get("claimName"),
                    "target": target,
                    "read_only": read_only or bool(claim.get("readOnly", False)),
                }
            )
        elif "hostPath" in volume:
            path = r.mapping(volume["hostPath"], f"{vat}.hostPath").get("path")
            mounts.append(
                {"type": "bind", "source": path, "target": target, "read_only": read_only}
            )
        elif "configMap" in volume or "secret" in volume:
            kind = "configMap" if "configMap" in volume else "secret"
            ref = r.mapping(volume[kind], f"{vat}.{kind}")
            name = ref.get("name") if kind == "configMap" else ref.get("secretName")
            keys = (data.configs if kind == "configMap" else data.secrets).get(name, {})
            files = _files(kind, name, keys, ref.get("items"), str(target), f"{vat}.{kind}", r)
            plain.setdefault("configs" if kind == "configMap" else "secrets", []).extend(files)
        else:
            r.warnings.append(
                f"{vat}: this kind of volume is not supported; {shown(target)} is an empty volume"
            )
            mounts.append({"type": "volume", "target": target, "read_only": read_only})
    if mounts:
        plain["volumes"] = mounts


def _stop_delay(r: Reader, lifecycle: dict, where: str) -> float | None:
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
    command = (
        (hook.get("exec") or {}).get("command") if isinstance(hook.get("exec"), dict) else None
    )
    if isinstance(command, list):
        text = (
            command[-1]
            if command[:2] in (["/bin/sh", "-c"], ["sh", "-c"]) and len(command) == 3
            else " ".join(map(str, command))
        )
        parts = str(text).split()
        if len(parts) == 2 and parts[0] in ("sleep", "/bin/sleep") and parts[1].isdigit():
            return float(parts[1])
    r.warnings.append(
        f"{where}.preStop: only a sleep is supported (it becomes the stop delay); "
        "this hook does not run"
    )
    return None


def _security(r: Reader, context: dict, where: str, options: dict) -> None:
    """runAsUser/runAsGroup as the container's user, readOnlyRootFilesystem as read_only."""
    r.unsupported(
        context,
        {
            "runAsUser",
            "runAsGroup",
            "readOnlyRootFilesystem",
            "runAsNonRoot",
            "allowPrivilegeEscalation",
            "capabilities",
            "privileged",
            "fsGroup",
            "seccompProfile",
        },
        where,
    )
    if "runAsUser" in context:
        group = f":{context['runAsGroup']}" if "runAsGroup" in context else ""
        options["user"] = f"{context['runAsUser']}{group}"
    if "readOnlyRootFilesystem" in context:
        options["read_only"] = context["readOnlyRootFilesystem"]
    for key in ("capabilities", "privileged", "fsGroup", "seccompProfile"):
        if key in context and context[key] not in (False, None):
            r.once(f"securityContext.{key}", f"{where}.{key}", "not granted or changed by Shoal")


def read_container(
    r: Reader, container: dict, pod: dict, data: PodData, where: str, pod_where: str, plain: dict
) -> dict[str, int]:
    """Fill `plain` from the container; returns its port names."""
    for key in container:
        if key in NOT_CARRIED:
            r.once(key, f"{where}.{key}", NOT_CARRIED[key])
    r.unsupported(container, _CONTAINER_KEYS, where)
    plain["image"] = container.get("image")
    options: dict[str, Any] = {}
    # The container's context over the pod's, as in Kubernetes.
    for context, at in (
        (pod.get("securityContext"), f"{pod_where}.securityContext"),
        (container.get("securityContext"), f"{where}.securityContext"),
    ):
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
        r.unsupported(
            port, {"containerPort", "protocol", "name", "hostPort"}, f"{where}.ports[{i}]"
        )
        entry = {
            "target": port.get("containerPort"),
            "protocol": str(port.get("protocol", "TCP")).lower(),
        }
        if "hostPort" in port:
            entry.update(published=port["hostPort"], mode="host")
        if "name" in port:
            named[str(port["name"])] = port.get("containerPort")
        ports.append(entry)
    plain["ports"] = ports
    if "resources" in container:
        plain["resources"] = _resources(
            r, r.mapping(container["resources"], f"{where}.resources"), f"{where}.resources"
        )
    probes = [
        (key, r.mapping(container[key], f"{where}.{key}"))
        for key in ("readinessProbe", "livenessProbe")
        if key in container
    ]
    if probes:
        # One check serves both: readiness decides load-balancer membership, so it wins.
        (key, probe), *rest = probes
        plain["health"] = _probe(r, probe, named, f"{where}.{key}")
        if rest and rest[0][1] != probe:
            r.warnings.append(
                f"{where}.livenessProbe: Shoal runs one health check per task; "
                "the readinessProbe is used"
            )
    delay = _stop_delay(
        r, r.mapping(container.get("lifecycle"), f"{where}.lifecycle"), f"{where}.lifecycle"
    )
    if delay is not None:
        plain["stop_delay"] = delay
    _volumes(r, pod, container, data, where, pod_where, plain)
    return named
