"""Compose files into service specs, as `docker stack deploy` reads them: interpolation first
(see interpolation.py), then each service's keys. A key Shoal acts on is translated; one it
cannot act on is a warning, once per key however many services use it; `x-*` extension
fields and YAML anchors are legal and pass silently."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from consensus.services import ServiceSpec, parse_port
from consensus.units import parse_amounts, parse_duration
from node.manifests.fields import labels, to_spec, words
from node.manifests.interpolation import Interpolator, parse_env_file
from node.manifests.networks import (
    NetworkDef,
    default_network,
    expose,
    read_networks,
    service_networks,
    uses_networks,
)
from node.manifests.reader import ManifestError, Reader, shown
from node.manifests.refs import (
    FileSource,
    read_definitions,
    service_files,
    service_volumes,
    used_sources,
)

# (path as written, field, required) -> the file's text ("" for a missing optional one)
EnvFileReader = Callable[[str, str, bool], str]

_TOP_KEYS = {"version", "name", "services", "secrets", "configs", "volumes", "networks"}
# Translated to the spec.
_SERVICE_KEYS = {
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "healthcheck",
    "deploy",
    "labels",
    "stop_grace_period",
    "secrets",
    "configs",
    "volumes",
    "restart",
    "init",
    "networks",
    "expose",
}
# Container options, as docker run takes them (the Docker runtime honours them).
_CONTAINER_KEYS = {
    "user",
    "working_dir",
    "hostname",
    "stop_signal",
    "tty",
    "read_only",
    "sysctls",
    "extra_hosts",
    "ulimits",
    "logging",
}
# Honoured by Docker (`docker run`, Swarm) but not carried by a Shoal spec: one warning each.
_NOT_CARRIED = {
    "stdin_open": "tasks get no standard input",
    "cap_add": "capabilities are not granted (that needs an authorisation Shoal lacks)",
    "cap_drop": "capabilities are not changed",
    "privileged": "tasks never run privileged",
    "container_name": "Shoal names containers after the task",
    "depends_on": "services start together, as with docker stack deploy",
    "links": "services reach each other by name",
    "profiles": "every service is applied, as with docker stack deploy",
    "platform": "nodes run what their runtime runs",
    "pull_policy": "the node's --image-pull decides",
}
_DEPLOY_KEYS = {
    "mode",
    "replicas",
    "resources",
    "placement",
    "restart_policy",
    "update_config",
    "rollback_config",
    "labels",
    "endpoint_mode",
}
# Swarm's job modes and the mode of the job each is.
_JOB_MODES = {"replicated-job": "replicated", "global-job": "global"}
_UPDATE_KEYS = {"parallelism", "delay", "order", "monitor", "failure_action", "max_failure_ratio"}
# `restart:` (docker run's policy) as a Swarm restart condition.
_RESTART = {"no": "none", "always": "any", "unless-stopped": "any", "on-failure": "on-failure"}
# Spec fields and where they come from in the file, for errors.
_FIELDS = {
    "replicas": "deploy.replicas",
    "mode": "deploy.mode",
    "job.completions": "deploy.replicas",
    "job.parallelism": "deploy.replicas",
    "job.backoff_limit": "deploy.restart_policy.max_attempts",
    "job.backoff_delay": "deploy.restart_policy.delay",
    "endpoint_mode": "deploy.endpoint_mode",
    "restart": "deploy.restart_policy",
    "update": "deploy.update_config",
    "rollback": "deploy.rollback_config",
    "args": "command",
    "command": "entrypoint",
    "health": "healthcheck",
    "env": "environment",
    "resources": "deploy.resources",
    "constraints": "deploy.placement.constraints",
    "preferences": "deploy.placement.preferences",
    "container": "",
    "container.log_driver": "logging.driver",
    "container.log_options": "logging.options",
}


# Compose long-syntax port keys and the spec's; `x-` extensions carry what only the routing
# mesh does (Compose lets any object carry `x-` fields).
_PORT_KEYS = {
    "target": "target",
    "published": "published",
    "protocol": "protocol",
    "mode": "mode",
    "x-proxy-protocol": "proxy_protocol",
    "x-idle-timeout": "idle_timeout",
}


def _ports(r: Reader, ports: list, where: str) -> list:
    out = []
    for i, port in enumerate(ports):
        at = f"{where}[{i}]"
        if isinstance(port, dict):
            r.unsupported(port, {*_PORT_KEYS, "name", "app_protocol"}, at)
            out.append(
                {
                    _PORT_KEYS[k]: int(v)
                    if k == "published" and isinstance(v, str) and v.isdigit()
                    else v
                    for k, v in port.items()
                    if k in _PORT_KEYS
                }
            )
            continue
        text = str(port)
        if text.count(":") == 2:  # HOST_IP:PUBLISHED:TARGET
            r.warnings.append(
                f"{at}: host address {shown(text.split(':')[0])} ignored; Shoal "
                "publishes on every node's advertise address"
            )
            text = text.split(":", 1)[1]
        out.append(parse_port(text, at))
    return out


def _health(r: Reader, health: dict, where: str) -> dict:
    r.unsupported(
        health,
        {"test", "interval", "timeout", "retries", "start_period", "disable", "start_interval"},
        where,
    )
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
        raise ManifestError(
            f"{where}.test",
            f"must be a string, [CMD, ...], [CMD-SHELL, ...] or [NONE], not {shown(test)}",
        )
    plain: dict[str, Any] = {"kind": "cmd", "command": command}
    for key in ("interval", "timeout", "start_period"):
        if key in health:
            plain[key] = parse_duration(health[key], f"{where}.{key}")
    if "retries" in health:
        plain["retries"] = health["retries"]
    return plain


def _resources(r: Reader, resources: dict, where: str) -> dict:
    out = {}
    r.unsupported(resources, {"limits", "reservations"}, where)
    for kind in ("limits", "reservations"):
        amounts = r.mapping(resources.get(kind), f"{where}.{kind}")
        known = {"cpus", "memory"}
        if kind == "reservations" and "devices" in amounts:
            r.warnings.append(
                f"{where}.reservations.devices: Shoal cannot reserve or hand devices "
                "(GPUs) to tasks; the service is placed as if it needed none"
            )
            known.add("devices")
        r.unsupported(amounts, known | {"pids"}, f"{where}.{kind}")
        if "pids" in amounts:
            r.once("pids", f"{where}.{kind}.pids", "a pids limit is not carried by Shoal, ignored")
        out[kind] = parse_amounts(amounts, f"{where}.{kind}")
    return out


def _deploy(r: Reader, deploy: dict, where: str, plain: dict) -> None:
    r.unsupported(deploy, _DEPLOY_KEYS, where)
    for key in ("mode", "replicas", "endpoint_mode"):
        if key in deploy:
            plain[key] = deploy[key]
    if isinstance(deploy.get("mode"), str) and deploy["mode"] in _JOB_MODES:
        _job(deploy, where, plain)
    if "resources" in deploy:
        plain["resources"] = _resources(
            r, r.mapping(deploy["resources"], f"{where}.resources"), f"{where}.resources"
        )
    placement = r.mapping(deploy.get("placement"), f"{where}.placement")
    r.unsupported(placement, {"constraints", "preferences"}, f"{where}.placement")
    if "constraints" in placement:
        plain["constraints"] = r.listing(placement["constraints"], f"{where}.placement.constraints")
    prefs = r.listing(placement.get("preferences"), f"{where}.placement.preferences")
    if prefs:
        plain["preferences"] = [
            r.mapping(p, f"{where}.placement.preferences[{i}]") for i, p in enumerate(prefs)
        ]
    restart = r.mapping(deploy.get("restart_policy"), f"{where}.restart_policy")
    r.unsupported(
        restart, {"condition", "delay", "max_attempts", "window"}, f"{where}.restart_policy"
    )
    if restart:
        plain["restart"] = restart  # wins over the service's `restart:`, as in Swarm
    for source, target in (("update_config", "update"), ("rollback_config", "rollback")):
        config = r.mapping(deploy.get(source), f"{where}.{source}")
        r.unsupported(config, _UPDATE_KEYS, f"{where}.{source}")
        if config:
            plain[target] = config
    # Swarm puts deploy.labels on the service and `labels:` on its containers; Shoal has one set.
    plain["labels"] = {**plain.get("labels", {}), **labels(deploy.get("labels"), f"{where}.labels")}
    if "job" in plain:  # the policy is deploy.restart_policy's, else the service's restart:
        _job_restart(
            r,
            plain,
            f"{where}.restart_policy" if restart else f"{where.removesuffix('.deploy')}.restart",
        )


def _job(deploy: dict, where: str, plain: dict) -> None:
    """Swarm's job modes: a replicated job needs `replicas` completions (default 1) and runs
    them all at once (Swarm's MaxConcurrent is the replica count); a global job runs one
    task to success on every node."""
    plain["mode"] = _JOB_MODES[deploy["mode"]]
    replicas = plain.pop("replicas", 1)
    if plain["mode"] == "global":
        plain["job"] = {"parallelism": 0}
        return
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        raise ManifestError(
            f"{where}.replicas", f"must be a count of completions, not {shown(replicas)}"
        )
    plain["job"] = {"completions": replicas, "parallelism": replicas}


def _job_restart(r: Reader, plain: dict, where: str) -> None:
    """A job's tasks restart on failure only, as in Swarm: condition `none` retries nothing,
    `max_attempts` bounds the retries and `delay` is the first retry's wait."""
    policy = dict(plain.get("restart") or {})
    condition = policy.get("condition", "on-failure")
    if condition == "any":
        r.warnings.append(
            f"{where}: a job's task that succeeded is done; its tasks restart on failure only"
        )
    job = plain["job"]
    if condition == "none":
        job["backoff_limit"] = 0
    elif policy.get("max_attempts"):
        job["backoff_limit"] = policy["max_attempts"]
    if "delay" in policy:
        job["backoff_delay"] = parse_duration(policy["delay"], f"{where}.delay")
    plain["restart"] = {**policy, "condition": "none" if condition == "none" else "on-failure"}


def _restart(value: Any, where: str) -> dict:
    """docker run's `restart:` policy: no, always, unless-stopped, on-failure[:N]."""
    text = str(value) if isinstance(value, (str, bool)) else None
    if text == "False":  # YAML 1.1 reads a bare `no` as false
        text = "no"
    name, _, count = (text or "").partition(":")
    if name not in _RESTART or (count and (name != "on-failure" or not count.isdigit())):
        raise ManifestError(
            where, f"must be no, always, unless-stopped or on-failure[:N], not {shown(value)}"
        )
    policy: dict[str, Any] = {"condition": _RESTART[name]}
    if count:
        policy["max_attempts"] = int(count)
    return policy


def _key_values(r: Reader, value: Any, separators: str, where: str) -> dict[str, str]:
    """A mapping, or a list of KEY=VALUE (or KEY:VALUE where `separators` allows)."""
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    out = {}
    for i, item in enumerate(r.listing(value, where)):
        text = str(item)
        cut = min((text.find(s) for s in separators if s in text), default=-1)
        if cut <= 0:
            raise ManifestError(
                f"{where}[{i}]", f"expected KEY{separators[0]}VALUE, not {shown(item)}"
            )
        out[text[:cut]] = text[cut + 1 :]
    return out


def _ulimits(r: Reader, value: Any, where: str) -> dict[str, dict]:
    out = {}
    for name, limit in r.mapping(value, where).items():
        if isinstance(limit, dict):
            r.unsupported(limit, {"soft", "hard"}, f"{where}.{name}")
            out[str(name)] = {"soft": limit.get("soft"), "hard": limit.get("hard")}
        else:
            out[str(name)] = {"soft": limit, "hard": limit}
    return out


def _container(r: Reader, svc: dict, where: str) -> dict:
    """The service's docker run options, as a ContainerOptions plain."""
    plain: dict[str, Any] = {
        key: svc[key]
        for key in ("user", "working_dir", "hostname", "stop_signal", "tty", "read_only")
        if key in svc
    }
    if isinstance(plain.get("user"), int):
        plain["user"] = str(plain["user"])
    if "sysctls" in svc:
        plain["sysctls"] = _key_values(r, svc["sysctls"], "=", f"{where}.sysctls")
    if "extra_hosts" in svc:  # "host:ip", or "host=ip" as newer Compose writes it
        plain["extra_hosts"] = _key_values(r, svc["extra_hosts"], "=:", f"{where}.extra_hosts")
    if "ulimits" in svc:
        plain["ulimits"] = _ulimits(r, svc["ulimits"], f"{where}.ulimits")
    if "logging" in svc:
        logging = r.mapping(svc["logging"], f"{where}.logging")
        r.unsupported(logging, {"driver", "options"}, f"{where}.logging")
        plain["log_driver"] = logging.get("driver", "")
        plain["log_options"] = _key_values(
            r, logging.get("options"), "=", f"{where}.logging.options"
        )
    if svc.get("init") is False:
        r.warnings.append(f"{where}.init: Shoal always runs an init in a container")
    return plain


def _image(r: Reader, svc: dict, where: str) -> Any:
    if "build" in svc and "image" not in svc:
        raise ManifestError(
            f"{where}.image",
            "the service has build: but no image:, and Shoal "
            "does not build images (neither does docker stack deploy): build and "
            "push it (docker build -t NAME ...), then set image: NAME",
        )
    if "build" in svc:
        r.once(
            "build",
            f"{where}.build",
            "ignored, as by docker stack deploy: the service runs its image",
        )
    if "image" not in svc:
        raise ManifestError(f"{where}.image", "needed: the service has no image")
    return svc["image"]


def _environment(r: Reader, svc: dict, where: str, env_file: EnvFileReader) -> dict:
    """env_file entries in order, then `environment:` over them."""
    env: dict[str, str] = {}
    files = svc.get("env_file")
    for i, entry in enumerate(
        [files] if isinstance(files, (str, dict)) else r.listing(files, f"{where}.env_file")
    ):
        at = f"{where}.env_file" if isinstance(files, (str, dict)) else f"{where}.env_file[{i}]"
        entry = {"path": entry} if isinstance(entry, str) else r.mapping(entry, at)
        r.unsupported(entry, {"path", "required", "format"}, at)
        path = entry.get("path")
        if not isinstance(path, str) or not path:
            raise ManifestError(at, f"must be a file path, not {shown(path)}")
        text = env_file(path, at, entry.get("required", True) is not False)
        env.update(parse_env_file(text, at))
    value = svc.get("environment")
    if isinstance(value, dict):
        env.update({str(k): "" if v is None else str(v) for k, v in value.items()})
    elif value is not None:
        for i, item in enumerate(r.listing(value, f"{where}.environment")):
            if not isinstance(item, str):
                raise ManifestError(
                    f"{where}.environment[{i}]", f"must be 'KEY=VALUE', not {shown(item)}"
                )
            key, _, val = item.partition("=")
            env[key] = val
    return env


def _bind_resolver(directory: str, home: str) -> Callable[[str, str], str]:
    """Relative and `~` host paths against the Compose file's directory and the user's home,
    as docker stack deploy resolves them."""

    def resolve(path: str, where: str) -> str:
        if path.startswith("/"):
            return path
        if path == "~" or path.startswith("~/"):
            if not home:
                raise ManifestError(
                    where,
                    f"the host path {shown(path)} starts with ~ and no home "
                    "directory was given: apply it with shoal apply -f FILE, or "
                    "give an absolute path",
                )
            return posixpath.normpath(home + path[1:])
        if not directory:
            raise ManifestError(
                where,
                f"the host path {shown(path)} is relative and the file's "
                "directory is unknown: apply it with shoal apply -f FILE, or give "
                "an absolute path",
            )
        return posixpath.normpath(posixpath.join(directory, path))

    return resolve


def translate(
    r: Reader,
    doc: dict,
    interpolator: Interpolator,
    directory: str,
    home: str,
    env_file: EnvFileReader,
) -> tuple[list[ServiceSpec], tuple[FileSource, ...], tuple[NetworkDef, ...]]:
    """The file's services, the secrets and configs they use, and the overlay networks they
    join (made before the services)."""
    doc = {k: v for k, v in doc.items() if not str(k).startswith("x-")}
    doc = interpolator.value(doc, "")
    r.unsupported(doc, _TOP_KEYS, "")
    defs = read_definitions(r, doc)
    nets = read_networks(r, doc)
    if uses_networks(doc):
        nets.setdefault("default", default_network(doc))
    resolve = _bind_resolver(directory, home)
    used: set = set()
    used_nets: set[str] = set()
    specs = []
    for name, svc in r.mapping(doc.get("services"), "services").items():
        where = f"services.{name}"
        svc = r.mapping(svc, where)
        specs.append(
            _service(r, str(name), svc, where, defs, used, resolve, env_file, nets, used_nets)
        )
    return (
        specs,
        used_sources(r, defs, used),
        tuple(n for n in nets.values() if n.name in used_nets),
    )


def mesh_ports(specs: list[ServiceSpec]) -> tuple[tuple[str, int, str], ...]:
    """(service, target, protocol) of the target-only ingress ports of Compose services,
    which Swarm publishes on a mesh port the cluster picks (consensus.mesh_ports)."""
    return tuple(
        (spec.name, p.target, p.protocol)
        for spec in specs
        for p in spec.ports
        if p.mode == "ingress" and not p.published
    )


def _service(
    r: Reader,
    name: str,
    svc: dict,
    where: str,
    defs: Any,
    used: set,
    resolve: Callable[[str, str], str],
    env_file: EnvFileReader,
    nets: dict[str, NetworkDef],
    used_nets: set[str],
) -> ServiceSpec:
    for key in svc:
        if key in _NOT_CARRIED:
            r.once(key, f"{where}.{key}", f"{_NOT_CARRIED[key]}; ignored")
    r.unsupported(svc, _SERVICE_KEYS | _CONTAINER_KEYS | set(_NOT_CARRIED), where)
    plain: dict[str, Any] = {"name": name, "image": _image(r, svc, where)}
    if "entrypoint" in svc:
        plain["command"] = words(svc["entrypoint"], f"{where}.entrypoint")
    if "command" in svc:
        plain["args"] = words(svc["command"], f"{where}.command")
    plain["env"] = _environment(r, svc, where, env_file)
    if "ports" in svc:
        plain["ports"] = _ports(r, r.listing(svc["ports"], f"{where}.ports"), f"{where}.ports")
    if "healthcheck" in svc:
        plain["health"] = _health(
            r, r.mapping(svc["healthcheck"], f"{where}.healthcheck"), f"{where}.healthcheck"
        )
    if "restart" in svc:
        plain["restart"] = _restart(svc["restart"], f"{where}.restart")
    container = _container(r, svc, where)
    if container:
        plain["container"] = container
    plain["labels"] = labels(svc.get("labels"), f"{where}.labels")
    _deploy(r, r.mapping(svc.get("deploy"), f"{where}.deploy"), f"{where}.deploy", plain)
    if "stop_grace_period" in svc:
        plain["stop_grace_period"] = svc["stop_grace_period"]
    for kind, key in (("secret", "secrets"), ("config", "configs")):
        if key in svc:
            plain[key] = service_files(
                r, defs, kind, r.listing(svc[key], f"{where}.{key}"), f"{where}.{key}", used
            )
    if "volumes" in svc:
        plain["volumes"] = service_volumes(
            r, defs, r.listing(svc["volumes"], f"{where}.volumes"), f"{where}.volumes", resolve
        )
    if "expose" in svc:
        expose(r, svc["expose"], f"{where}.expose")
    if nets:
        plain["networks"] = service_networks(
            r, nets, svc.get("networks") or ["default"], f"{where}.networks"
        )
        used_nets.update(n["name"] for n in plain["networks"])
    return to_spec(plain, where, _FIELDS)


def project_name(doc: dict) -> str | None:
    """The Compose file's own `name:`, if it has one."""
    name = doc.get("name")
    return name if isinstance(name, str) and name else None
