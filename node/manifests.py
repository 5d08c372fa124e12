"""Declarative files into service specs: a YAML or JSON list of Shoal specs, Compose files (as
`docker stack deploy` reads them) and Kubernetes `apps/v1` Deployments with optional `v1`
Services, in one multi-document YAML.

`load_manifest(text)` returns the specs and a warning for every field Shoal does not act on
(with `strict=True` those warnings are an error): nothing is dropped silently. Errors name
the field in the file, e.g. `services.web.deploy.resources.limits.memory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


from consensus.services import ServiceSpec, SpecError, parse_port, parse_service_spec
from consensus.shell_words import WordsError, split_words
from consensus.units import parse_cpu, parse_duration, parse_memory
from consensus.wire import WireError
from node.compose_refs import (FileSource, read_definitions, service_files, service_volumes,
                               used_sources)
from node.manifest_reader import ManifestError, Reader


@dataclass(frozen=True, slots=True)
class Manifest:
    specs: tuple[ServiceSpec, ...]
    warnings: tuple[str, ...]
    # The secrets and configs a Compose file defines and its services use: the CLI creates
    # them before it applies the services.
    files: tuple[FileSource, ...] = ()


def _words(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        try:
            return split_words(value)
        except WordsError as exc:
            raise ManifestError(where, f"the command line {exc}") from None
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    raise ManifestError(where, f"must be a string or a list of strings, not {value!r}")


def _spec(plain: dict, where: str, fields: dict[str, str]) -> ServiceSpec:
    """parse_service_spec, with errors pointing at the file's field (`fields` maps spec
    fields to file paths where they differ)."""
    try:
        return parse_service_spec(plain)
    except SpecError as exc:
        top = exc.field.split(".")[0].split("[")[0]
        field = fields.get(top, top) + exc.field[len(top):] if top in fields else exc.field
        raise ManifestError(f"{where}.{field}", exc.reason) from None


# -- Compose ------------------------------------------------------------------------------

_COMPOSE_KEYS = {"image", "command", "entrypoint", "environment", "ports", "healthcheck", "deploy",
                 "labels", "stop_grace_period", "secrets", "configs", "volumes"}
_DEPLOY_KEYS = {"mode", "replicas", "resources", "placement", "restart_policy", "update_config",
                "rollback_config", "labels"}
_UPDATE_KEYS = {"parallelism", "delay", "order", "monitor", "failure_action", "max_failure_ratio"}


def _compose_ports(r: Reader, ports: list, where: str) -> list:
    out = []
    for i, port in enumerate(ports):
        at = f"{where}[{i}]"
        if isinstance(port, dict):
            r.unsupported(port, {"target", "published", "protocol", "mode"}, at)
            out.append({k: int(v) if k == "published" and isinstance(v, str) and v.isdigit() else v
                        for k, v in port.items() if k in ("target", "published", "protocol", "mode")})
            continue
        text = str(port)
        if text.count(":") == 2:  # HOST_IP:PUBLISHED:TARGET
            r.warnings.append(f"{at}: host address {text.split(':')[0]} ignored; Shoal publishes on "
                              "every node's advertise address")
            text = text.split(":", 1)[1]
        out.append(parse_port(text, at))
    return out


def _compose_health(r: Reader, health: dict, where: str) -> dict:
    r.unsupported(health, {"test", "interval", "timeout", "retries", "start_period", "disable"}, where)
    test = health.get("test")
    if health.get("disable") or test in (["NONE"], "NONE"):
        return {"kind": "none"}
    if isinstance(test, str):
        command = ["/bin/sh", "-c", test]
    elif isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"):
        command = [str(t) for t in test[1:]]
        if test[0] == "CMD-SHELL":
            command = ["/bin/sh", "-c", " ".join(command)]
    else:
        raise ManifestError(f"{where}.test", f"must be a string, [CMD, ...], [CMD-SHELL, ...] or [NONE], not {test!r}")
    plain: dict[str, Any] = {"kind": "cmd", "command": command}
    for key in ("interval", "timeout", "start_period"):
        if key in health:
            plain[key] = parse_duration(health[key], f"{where}.{key}")
    if "retries" in health:
        plain["retries"] = health["retries"]
    return plain


def _compose_resources(r: Reader, resources: dict, where: str) -> dict:
    out = {}
    r.unsupported(resources, {"limits", "reservations"}, where)
    for kind in ("limits", "reservations"):
        amounts = r.mapping(resources.get(kind), f"{where}.{kind}")
        r.unsupported(amounts, {"cpus", "memory"}, f"{where}.{kind}")
        plain = {}
        if "cpus" in amounts:
            plain["cpu_millis"] = parse_cpu(amounts["cpus"], f"{where}.{kind}.cpus")
        if "memory" in amounts:
            plain["memory_bytes"] = parse_memory(amounts["memory"], f"{where}.{kind}.memory")
        out[kind] = plain
    return out


def _compose_deploy(r: Reader, deploy: dict, where: str, plain: dict) -> None:
    r.unsupported(deploy, _DEPLOY_KEYS, where)
    for key in ("mode", "replicas"):
        if key in deploy:
            plain[key] = deploy[key]
    if "resources" in deploy:
        plain["resources"] = _compose_resources(r, r.mapping(deploy["resources"], f"{where}.resources"),
                                                f"{where}.resources")
    placement = r.mapping(deploy.get("placement"), f"{where}.placement")
    r.unsupported(placement, {"constraints", "preferences"}, f"{where}.placement")
    if "constraints" in placement:
        plain["constraints"] = r.listing(placement["constraints"], f"{where}.placement.constraints")
    prefs = r.listing(placement.get("preferences"), f"{where}.placement.preferences")
    if prefs:
        plain["preferences"] = [r.mapping(p, f"{where}.placement.preferences[{i}]") for i, p in enumerate(prefs)]
    restart = r.mapping(deploy.get("restart_policy"), f"{where}.restart_policy")
    r.unsupported(restart, {"condition", "delay", "max_attempts", "window"}, f"{where}.restart_policy")
    if restart:
        plain["restart"] = restart
    for source, target in (("update_config", "update"), ("rollback_config", "rollback")):
        config = r.mapping(deploy.get(source), f"{where}.{source}")
        r.unsupported(config, _UPDATE_KEYS, f"{where}.{source}")
        if config:
            plain[target] = config
    plain["labels"] = {**plain.get("labels", {}), **_labels(deploy.get("labels"), f"{where}.labels")}


def _labels(value: Any, where: str) -> dict[str, str]:
    if isinstance(value, list):
        return {k: v for k, _, v in (str(item).partition("=") for item in value)}
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if value is None:
        return {}
    raise ManifestError(where, f"must be a mapping or a list of KEY=VALUE, not {value!r}")


def _compose(r: Reader, doc: dict) -> tuple[list[ServiceSpec], tuple[FileSource, ...]]:
    r.unsupported(doc, {"version", "services", "secrets", "configs", "volumes"}, "")
    defs = read_definitions(r, doc)
    used: set = set()
    specs = []
    for name, svc in r.mapping(doc.get("services"), "services").items():
        where = f"services.{name}"
        svc = r.mapping(svc, where)
        r.unsupported(svc, _COMPOSE_KEYS, where)
        plain: dict[str, Any] = {"name": name, "image": svc.get("image")}
        if "entrypoint" in svc:
            plain["command"] = _words(svc["entrypoint"], f"{where}.entrypoint")
        if "command" in svc:
            plain["args"] = _words(svc["command"], f"{where}.command")
        env = svc.get("environment")
        if isinstance(env, dict):
            plain["env"] = {str(k): "" if v is None else str(v) for k, v in env.items()}
        elif env is not None:
            plain["env"] = r.listing(env, f"{where}.environment")
        if "ports" in svc:
            plain["ports"] = _compose_ports(r, r.listing(svc["ports"], f"{where}.ports"), f"{where}.ports")
        if "healthcheck" in svc:
            plain["health"] = _compose_health(r, r.mapping(svc["healthcheck"], f"{where}.healthcheck"),
                                              f"{where}.healthcheck")
        plain["labels"] = _labels(svc.get("labels"), f"{where}.labels")
        _compose_deploy(r, r.mapping(svc.get("deploy"), f"{where}.deploy"), f"{where}.deploy", plain)
        if "stop_grace_period" in svc:
            plain["stop_grace_period"] = svc["stop_grace_period"]
        for kind, key in (("secret", "secrets"), ("config", "configs")):
            if key in svc:
                plain[key] = service_files(r, defs, kind, r.listing(svc[key], f"{where}.{key}"),
                                           f"{where}.{key}", used)
        if "volumes" in svc:
            plain["volumes"] = service_volumes(r, defs, r.listing(svc["volumes"], f"{where}.volumes"),
                                               f"{where}.volumes")
        specs.append(_spec(plain, where, {"replicas": "deploy.replicas", "mode": "deploy.mode",
                                          "restart": "deploy.restart_policy",
                                          "update": "deploy.update_config",
                                          "rollback": "deploy.rollback_config",
                                          "args": "command", "command": "entrypoint",
                                          "health": "healthcheck", "env": "environment",
                                          "resources": "deploy.resources",
                                          "constraints": "deploy.placement.constraints",
                                          "preferences": "deploy.placement.preferences"}))
    return specs, used_sources(r, defs, used)


# -- Kubernetes ---------------------------------------------------------------------------

_CONTAINER_KEYS = {"name", "image", "command", "args", "env", "ports", "resources", "livenessProbe",
                   "readinessProbe"}
_POD_KEYS = {"containers", "nodeSelector", "terminationGracePeriodSeconds", "restartPolicy"}


def _kube_port(value: Any, named: dict[str, int], where: str) -> int:
    if isinstance(value, str) and value in named:
        return named[value]
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ManifestError(where, f"must be a port number or a container port's name, not {value!r}")


def _kube_probe(r: Reader, probe: dict, named: dict[str, int], where: str) -> dict:
    r.unsupported(probe, {"httpGet", "tcpSocket", "exec", "periodSeconds", "timeoutSeconds",
                          "failureThreshold", "initialDelaySeconds", "successThreshold"}, where)
    if "httpGet" in probe:
        get = r.mapping(probe["httpGet"], f"{where}.httpGet")
        r.unsupported(get, {"path", "port"}, f"{where}.httpGet")
        plain: dict[str, Any] = {"kind": "http", "path": get.get("path", "/"),
                                 "port": _kube_port(get.get("port", 0), named, f"{where}.httpGet.port")}
    elif "tcpSocket" in probe:
        sock = r.mapping(probe["tcpSocket"], f"{where}.tcpSocket")
        plain = {"kind": "tcp", "port": _kube_port(sock.get("port", 0), named, f"{where}.tcpSocket.port")}
    elif "exec" in probe:
        plain = {"kind": "cmd", "command": _words(r.mapping(probe["exec"], f"{where}.exec").get("command"),
                                                  f"{where}.exec.command")}
    else:
        raise ManifestError(where, "needs httpGet, tcpSocket or exec")
    # Kubernetes' defaults, not Docker's, when the probe leaves them out.
    plain["interval"] = probe.get("periodSeconds", 10)
    plain["timeout"] = probe.get("timeoutSeconds", 1)
    plain["retries"] = probe.get("failureThreshold", 3)
    plain["start_period"] = probe.get("initialDelaySeconds", 0)
    return plain


def _kube_resources(r: Reader, resources: dict, where: str) -> dict:
    r.unsupported(resources, {"requests", "limits"}, where)
    out = {}
    for source, target in (("requests", "reservations"), ("limits", "limits")):
        amounts = r.mapping(resources.get(source), f"{where}.{source}")
        r.unsupported(amounts, {"cpu", "memory"}, f"{where}.{source}")
        plain = {}
        if "cpu" in amounts:
            plain["cpu_millis"] = parse_cpu(amounts["cpu"], f"{where}.{source}.cpu")
        if "memory" in amounts:
            plain["memory_bytes"] = parse_memory(amounts["memory"], f"{where}.{source}.memory", kubernetes=True)
        out[target] = plain
    return out


def _kube_container(r: Reader, container: dict, where: str, plain: dict) -> dict[str, int]:
    """Fill `plain` from the container; returns its port names."""
    r.unsupported(container, _CONTAINER_KEYS, where)
    plain["image"] = container.get("image")
    for key in ("command", "args"):
        if key in container:
            plain[key] = _words(container[key], f"{where}.{key}")
    env = {}
    for i, var in enumerate(r.listing(container.get("env"), f"{where}.env")):
        var = r.mapping(var, f"{where}.env[{i}]")
        r.unsupported(var, {"name", "value"}, f"{where}.env[{i}]")
        env[str(var.get("name", ""))] = str(var.get("value", ""))
    plain["env"] = env
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
        plain["resources"] = _kube_resources(r, r.mapping(container["resources"], f"{where}.resources"),
                                             f"{where}.resources")
    probes = [(key, r.mapping(container[key], f"{where}.{key}"))
              for key in ("readinessProbe", "livenessProbe") if key in container]
    if probes:
        # One check serves both: readiness decides load-balancer membership, so it wins.
        (key, probe), *rest = probes
        plain["health"] = _kube_probe(r, probe, named, f"{where}.{key}")
        if rest and rest[0][1] != probe:
            r.warnings.append(f"{where}.livenessProbe: Shoal runs one health check per task; "
                              "the readinessProbe is used")
    return named


def _kube_update(r: Reader, strategy: dict, replicas: int, where: str) -> Optional[dict]:
    r.unsupported(strategy, {"type", "rollingUpdate"}, where)
    if strategy.get("type") == "Recreate":
        return {"parallelism": 0, "order": "stop-first"}
    rolling = r.mapping(strategy.get("rollingUpdate"), f"{where}.rollingUpdate")
    if not rolling:
        return None
    r.unsupported(rolling, {"maxSurge", "maxUnavailable"}, f"{where}.rollingUpdate")

    def count(key: str) -> int:
        value = rolling.get(key, "25%")
        if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
            return max(1, replicas * int(value[:-1]) // 100)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise ManifestError(f"{where}.rollingUpdate.{key}", f"must be a count or a percentage, not {value!r}")

    surge, unavailable = count("maxSurge"), count("maxUnavailable")
    return {"parallelism": max(surge, unavailable, 1),
            "order": "start-first" if surge and not unavailable else "stop-first"}


def _deployment(r: Reader, doc: dict, where: str, services: list[tuple[dict, str]]) -> ServiceSpec:
    r.unsupported(doc, {"apiVersion", "kind", "metadata", "spec"}, where)
    meta = r.mapping(doc.get("metadata"), f"{where}.metadata")
    r.unsupported(meta, {"name", "labels"}, f"{where}.metadata")
    spec = r.mapping(doc.get("spec"), f"{where}.spec")
    r.unsupported(spec, {"replicas", "selector", "template", "strategy"}, f"{where}.spec")
    template = r.mapping(spec.get("template"), f"{where}.spec.template")
    r.unsupported(template, {"metadata", "spec"}, f"{where}.spec.template")
    pod_meta = r.mapping(template.get("metadata"), f"{where}.spec.template.metadata")
    r.unsupported(pod_meta, {"labels"}, f"{where}.spec.template.metadata")
    pod = r.mapping(template.get("spec"), f"{where}.spec.template.spec")
    r.unsupported(pod, _POD_KEYS, f"{where}.spec.template.spec")
    pod_labels = _labels(pod_meta.get("labels"), f"{where}.spec.template.metadata.labels")
    replicas = spec.get("replicas", 1)
    plain: dict[str, Any] = {"name": meta.get("name"), "replicas": replicas,
                             "labels": {**_labels(meta.get("labels"), f"{where}.metadata.labels"), **pod_labels}}
    containers = r.listing(pod.get("containers"), f"{where}.spec.template.spec.containers")
    if not containers:
        raise ManifestError(f"{where}.spec.template.spec.containers", "needs one container")
    for i in range(1, len(containers)):
        r.warnings.append(f"{where}.spec.template.spec.containers[{i}]: only the first container runs")
    at = f"{where}.spec.template.spec.containers[0]"
    named = _kube_container(r, r.mapping(containers[0], at), at, plain)
    selector = pod.get("nodeSelector")
    if selector:
        plain["constraints"] = [f"node.labels.{k}=={v}" for k, v in
                                r.mapping(selector, f"{where}.spec.template.spec.nodeSelector").items()]
    if "terminationGracePeriodSeconds" in pod:
        plain["stop_grace_period"] = pod["terminationGracePeriodSeconds"]
    if pod.get("restartPolicy", "Always") != "Always":
        r.warnings.append(f"{where}.spec.template.spec.restartPolicy: a Deployment always restarts")
    update = _kube_update(r, r.mapping(spec.get("strategy"), f"{where}.spec.strategy"),
                          replicas if isinstance(replicas, int) else 1, f"{where}.spec.strategy")
    if update:
        plain["update"] = update
    for service, service_where in services:
        if _selects(service, pod_labels):
            _publish(r, service, service_where, plain, named)
    return _spec(plain, where, {"name": "metadata.name", "replicas": "spec.replicas",
                                "image": "spec.template.spec.containers[0].image"})


def _selects(service: dict, pod_labels: dict[str, str]) -> bool:
    selector = (service.get("spec") or {}).get("selector") or {}
    return bool(selector) and all(pod_labels.get(str(k)) == str(v) for k, v in selector.items())


def _publish(r: Reader, service: dict, where: str, plain: dict, named: dict[str, int]) -> None:
    """A v1 Service's ports become published ports of the Deployment it selects."""
    spec = r.mapping(service.get("spec"), f"{where}.spec")
    kind = spec.get("type", "ClusterIP")
    if kind == "ClusterIP":
        r.warnings.append(f"{where}.spec.type: ClusterIP ports are published on every node by "
                          "Shoal's routing mesh")
    for i, port in enumerate(r.listing(spec.get("ports"), f"{where}.spec.ports")):
        at = f"{where}.spec.ports[{i}]"
        port = r.mapping(port, at)
        r.unsupported(port, {"port", "targetPort", "nodePort", "protocol", "name"}, at)
        target = _kube_port(port.get("targetPort", port.get("port")), named, f"{at}.targetPort")
        protocol = str(port.get("protocol", "TCP")).lower()
        published = port.get("nodePort") or port.get("port")
        plain["ports"] = [p for p in plain.get("ports", [])
                          if (p.get("target"), p.get("protocol"), p.get("published", 0)) != (target, protocol, 0)]
        plain["ports"].append({"target": target, "published": published, "protocol": protocol})


def _kube_where(doc: dict) -> str:
    name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc.get("metadata"), dict) else "?"
    return f"{doc.get('kind')}/{name}"


def _kubernetes(r: Reader, docs: list[dict]) -> list[ServiceSpec]:
    services, deployments, matched = [], [], set()
    for doc in docs:
        api, kind, where = doc.get("apiVersion"), doc.get("kind"), _kube_where(doc)
        if (api, kind) == ("apps/v1", "Deployment"):
            deployments.append((doc, where))
        elif (api, kind) == ("v1", "Service"):
            r.unsupported(doc, {"apiVersion", "kind", "metadata", "spec"}, where)
            r.unsupported(r.mapping(doc.get("spec"), f"{where}.spec"), {"type", "selector", "ports"}, f"{where}.spec")
            services.append((doc, where))
        else:
            r.warnings.append(f"{where}: {api} {kind} is not supported, skipped")
    specs = [_deployment(r, doc, where, services) for doc, where in deployments]
    for doc, where in deployments:
        pod_labels = ((((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {})
        matched.update(i for i, (service, _) in enumerate(services) if _selects(service, pod_labels))
    for i, (_, where) in enumerate(services):
        if i not in matched:
            r.warnings.append(f"{where}: selects no Deployment in this file, skipped")
    return specs


def load_manifest(text: str, *, strict: bool = False) -> Manifest:
    """Specs from a list of Shoal specs, a Compose file or Kubernetes documents (YAML or JSON,
    several documents allowed). Raises ManifestError on anything it cannot translate, and
    with `strict` on any field it would ignore."""
    import yaml  # loaded on first use: most nodes never parse a file, and stay smaller

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError("", f"not valid YAML or JSON: {exc}") from None
    if len(docs) == 1 and isinstance(docs[0], list):
        return _shoal_specs(docs[0])
    try:
        return _translate(docs, strict)
    except ManifestError:
        raise
    except WireError as exc:  # the unit parsers name the file's field already
        raise ManifestError(exc.field, exc.reason) from None


def _shoal_specs(plains: list) -> Manifest:
    specs = []
    for i, plain in enumerate(plains):
        try:
            specs.append(parse_service_spec(plain))
        except SpecError as exc:
            raise ManifestError(f"[{i}].{exc.field}" if exc.field != "<root>" else f"[{i}]",
                                exc.reason) from None
    _refuse_duplicates(specs)
    return Manifest(tuple(specs), ())


def _refuse_duplicates(specs: list[ServiceSpec]) -> None:
    names = [s.name for s in specs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ManifestError("", f"service {duplicate!r} is defined twice")


def _translate(docs: list, strict: bool) -> Manifest:
    r = Reader()
    compose = [d for d in docs if isinstance(d, dict) and "services" in d and "kind" not in d]
    kube = [d for d in docs if isinstance(d, dict) and "kind" in d]
    if len(compose) + len(kube) != len(docs) or not docs:
        raise ManifestError("", "expected a Compose file (with services:) or Kubernetes documents (with kind:)")
    specs, files = [], []
    for doc in compose:
        doc_specs, doc_files = _compose(r, doc)
        specs += doc_specs
        files += doc_files
    specs += _kubernetes(r, kube)
    _refuse_duplicates(specs)
    if strict and r.warnings:
        raise ManifestError("", "unsupported fields (strict mode): " + "; ".join(r.warnings))
    return Manifest(tuple(specs), tuple(r.warnings), tuple(files))
