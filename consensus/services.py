"""The service spec: what a user declares, typed, validated and parsed from plain data.

`parse_service_spec(plain)` is the one way in from the HTTP API and manifests: it accepts
the canonical form (`wire.to_plain(spec)`, so a spec round-trips) and the shorthands an
operator types (`"8080:80/udp"`, `"node.labels.zone==a"`, `"128Mi"`, `"1m30s"`), then checks
the meaning (`spec_errors`). Every failure is a `SpecError` naming the field and the reason.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from consensus.autoscale import AutoscaleSpec, check_autoscale
from consensus.container import ContainerOptions, check_container
from consensus.jobs import JobConfig, check_job
from consensus.model import Node, Resources
from consensus.shell_words import WordsError, split_words
from consensus.units import AMOUNT_KEYS, parse_amounts, parse_duration
from consensus.wire import WireError, from_plain, to_plain

# How many earlier specs a service keeps for rollback.
SPEC_HISTORY = 10
# Quotas: what one cluster holds, at most. 100,000 tasks on 5,000 nodes is the scale the
# scheduler benchmark runs; past it a typo ("replicas: 1000000") would take every node's
# memory for tasks that can never be placed.
MAX_REPLICAS = 10_000
MAX_SERVICES = 1_000
MAX_CLUSTER_REPLICAS = 100_000
# A withdrawn endpoint leaves every node's gossip table within a few gossip rounds: each
# round (0.2 s) sends it to 3 random members, who pass it on, so ~log3(n) rounds reach n
# nodes (5 at 200 nodes); each load balancer then syncs after a 0.05 s debounce. 2 s covers
# that with room for lost datagrams, and makes a rolling update only slightly slower.
DEFAULT_STOP_DELAY = 2.0
# A longer drain is a typo ("2m" for "2s") more likely than a wish: it would hold every
# rollout and scale-down of the service that long.
MAX_STOP_DELAY = 3600.0
MAX_IDLE_TIMEOUT = 86_400.0
# A DNS label, with '_' also allowed inside as Compose and Swarm allow it (`reverse_proxy`):
# resolvers answer such names, only hostnames forbid them.
_SERVICE_NAME = re.compile(r"[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?")
_PERCENT = re.compile(r"\d{1,3}%")
_CONSTRAINT = re.compile(r"\s*([^=!\s]+)\s*(==|!=)\s*(.*?)\s*")
_NODE_FIELDS = ("node.id", "node.hostname", "node.role")
# Swarm stacks place by Swarm's roles: its managers hold the Raft log, as Shoal's voters do.
_SWARM_ROLES = {"manager": "voter", "worker": "member"}
# Docker's rule for volume names, which also keeps them safe as directory names.
VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class SpecError(WireError):
    """A service spec is wrong: `field` is the dotted path, `reason` says why."""


@dataclass(frozen=True, slots=True)
class Constraint:
    """`node.labels.zone==a`: the task may only run on nodes where `key` compares true."""

    key: str
    op: Literal["==", "!="]
    value: str

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"

    def matches(self, node: Node) -> bool:
        if self.key == "node.id":
            actual: str | None = node.id
        elif self.key == "node.hostname":
            actual = node.name
        elif self.key == "node.role":
            actual = node.role
        else:
            actual = node.labels.get(self.key[len("node.labels.") :])
        wanted = self.value.casefold()
        if self.key == "node.role":
            wanted = _SWARM_ROLES.get(wanted, wanted)
        # Case-insensitive, as Docker Swarm compares; a missing label never equals.
        equal = actual is not None and actual.casefold() == wanted
        return equal if self.op == "==" else not equal


@dataclass(frozen=True, slots=True)
class PlacementPreference:
    """Spread tasks evenly over the values of a node label (`node.labels.zone`)."""

    spread: str

    @property
    def label(self) -> str:
        return self.spread[len("node.labels.") :]


@dataclass(frozen=True, slots=True)
class PortSpec:
    """`published:target/protocol`. `published` 0 means reachable inside the cluster only.
    Ingress ports listen on every node (the routing mesh); host ports only where the task runs."""

    target: int
    published: int = 0
    protocol: Literal["tcp", "udp"] = "tcp"
    mode: Literal["ingress", "host"] = "ingress"
    # The port the service's VIP answers on for `target` (a Kubernetes Service's `port` in
    # front of its `targetPort`); 0: the target itself, as every port of a task is.
    vip_port: int = 0
    # What the routing mesh's proxy adds on a published ingress TCP port: a PROXY protocol
    # header first ("v1" text, "v2" binary; "" none), so the task sees the client's address
    # instead of the node's; and closing a connection idle this many seconds (0: never).
    # A bool is how specs stored before there were versions say it (true: v2); parsing a
    # spec turns it into the version, `proxy_version` reads either.
    proxy_protocol: Literal["", "v1", "v2"] | bool = ""
    idle_timeout: float = 0.0

    def __str__(self) -> str:
        return f"{self.published}:{self.target}/{self.protocol}"

    @property
    def proxy_version(self) -> Literal["", "v1", "v2"]:
        if isinstance(self.proxy_protocol, bool):
            return "v2" if self.proxy_protocol else ""
        return self.proxy_protocol


@dataclass(frozen=True, slots=True)
class ResourceRequirements:
    reservations: Resources = field(default_factory=Resources)
    limits: Resources = field(default_factory=Resources)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """`cmd` runs `command` in the task (exit 0 = healthy); `http` GETs `path` on `port`
    (2xx/3xx = healthy); `tcp` connects to `port`. Port 0 means the first target port."""

    kind: Literal["none", "cmd", "http", "tcp"] = "none"
    command: tuple[str, ...] = ()
    path: str = "/"
    port: int = 0
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When a task ends: restart on `any` end, `on-failure` (non-zero exit) or `none`.
    `max_attempts` 0 is unlimited; with a `window`, only failures that ran shorter count."""

    condition: Literal["any", "on-failure", "none"] = "any"
    delay: float = 5.0
    max_attempts: int = 0
    window: float = 0.0


@dataclass(frozen=True, slots=True)
class UpdateConfig:
    """How a changed spec rolls out (and, as `rollback`, rolls back). `parallelism` 0 = all."""

    parallelism: int = 1
    delay: float = 0.0
    order: Literal["stop-first", "start-first"] = "stop-first"
    monitor: float = 5.0
    failure_action: Literal["pause", "continue", "rollback"] = "pause"
    max_failure_ratio: float = 0.0
    # An update replaces this many tasks first, then waits in its `canary` phase for a
    # promote (or for `auto_promote` seconds after they passed their monitor) before the rest.
    canary: int = 0
    auto_promote: float = 0.0  # 0: only a promote by hand goes on


# Where secret and config files go in a task when their `target` is empty or relative
# (as Docker: /run/secrets/NAME, and /NAME for configs).
SECRETS_DIR = "/run/secrets"
CONFIGS_DIR = "/"
DEFAULT_FILE_MODE = 0o444


@dataclass(frozen=True, slots=True)
class FileRef:
    """A secret or config (`source`, by name) mounted as a file in the task at `target`."""

    source: str
    target: str = ""
    mode: int = DEFAULT_FILE_MODE

    def path(self, default_dir: str) -> str:
        """The absolute path in the task: relative targets go under `default_dir`."""
        target = self.target or self.source
        return target if target.startswith("/") else posixpath.join(default_dir, target)


@dataclass(frozen=True, slots=True)
class VolumeRef:
    target: str
    source: str = ""
    type: Literal["volume", "bind", "tmpfs"] = "volume"
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class NetworkAttachment:
    """An overlay network a service's tasks join; `aliases` are extra names it answers to
    there (Compose `networks: {NAME: {aliases: [...]}}`)."""

    name: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    image: str
    command: tuple[str, ...] = ()  # replaces the image's entrypoint
    args: tuple[str, ...] = ()  # replaces the image's default arguments
    env: dict[str, str] = field(default_factory=dict)
    mode: Literal["replicated", "global"] = "replicated"
    replicas: int = 1  # ignored for global services
    resources: ResourceRequirements = field(default_factory=ResourceRequirements)
    constraints: tuple[Constraint, ...] = ()
    preferences: tuple[PlacementPreference, ...] = ()
    ports: tuple[PortSpec, ...] = ()
    health: HealthCheck = field(default_factory=HealthCheck)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    rollback: UpdateConfig = field(default_factory=UpdateConfig)
    secrets: tuple[FileRef, ...] = ()
    configs: tuple[FileRef, ...] = ()
    volumes: tuple[VolumeRef, ...] = ()
    # `node`: a slot whose task used a named volume stays on the node holding that volume's
    # data; `none`: it may move (and starts on an empty volume where it lands).
    volume_affinity: Literal["node", "none"] = "node"
    labels: dict[str, str] = field(default_factory=dict)
    stop_grace_period: float = 10.0
    # How long a task with endpoints keeps running after they are withdrawn, before its stop
    # (Nomad's shutdown_delay, a Kubernetes preStop sleep): every node's load balancer must
    # hear of the withdrawal first, or it sends new connections to a stopping task.
    stop_delay: float = DEFAULT_STOP_DELAY
    container: ContainerOptions = field(default_factory=ContainerOptions)
    autoscale: AutoscaleSpec | None = None  # `replicas` is then the autoscaler's to move
    # Overlay networks its tasks join, each with a VIP for the service (none: the runtime's
    # own default network, reached through published ports only).
    networks: tuple[NetworkAttachment, ...] = ()
    # `vip`: a virtual IP per network, its name answers it; `dnsrr`: no VIP, its name
    # answers its tasks' addresses (Swarm's endpoint_mode, a Kubernetes headless Service).
    endpoint_mode: Literal["vip", "dnsrr"] = "vip"
    # Moving running tasks to restore the spread over nodes (scheduler.rebalance): `auto`
    # whenever it drifts, `manual` after a request (`shoal service rebalance`), `off` never.
    rebalance: Literal["auto", "manual", "off"] = "manual"
    # Tasks being moved at once (each start-first): a count, or a percentage of the replicas
    # ("25%", at least 1).
    max_unavailable: int | str = 1
    # Set for a job: its tasks run to completion (see consensus.jobs); `replicas` is unused.
    job: JobConfig | None = None

    @property
    def move_budget(self) -> int:
        """`max_unavailable` as a number of tasks."""
        if isinstance(self.max_unavailable, int):
            return self.max_unavailable
        return max(1, self.replicas * int(self.max_unavailable.rstrip("%")) // 100)

    @property
    def host_ports(self) -> tuple[PortSpec, ...]:
        """Ports bound on the task's own node, which two tasks on one node cannot share."""
        return tuple(p for p in self.ports if p.mode == "host" and p.published)


# -- shorthand forms -> canonical plain ----------------------------------------------------


def parse_constraint(text: object, field: str) -> Constraint:
    if not isinstance(text, str):
        raise SpecError(field, f"must be a string like 'node.labels.zone==a', not {text!r}")
    match = _CONSTRAINT.fullmatch(text)
    if match is None or not match.group(3):
        raise SpecError(
            field, f"unknown constraint syntax {text!r}: expected KEY==VALUE or KEY!=VALUE"
        )
    op: Literal["==", "!="] = "==" if match.group(2) == "==" else "!="  # all _CONSTRAINT takes
    constraint = Constraint(match.group(1), op, match.group(3))
    _check_constraint(constraint, field)
    return constraint


def parse_port(text: object, field: str) -> dict[str, int | str]:
    """`"80"`, `"8080:80"`, `"8080:80/udp"` -> canonical plain port (ingress mode)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return {"target": text}
    if not isinstance(text, str):
        raise SpecError(field, f"must be 'PUBLISHED:TARGET[/PROTOCOL]' or an object, not {text!r}")
    match = re.fullmatch(r"(?:(\d+):)?(\d+)(?:/(\w+))?", text.strip())
    if match is None:
        raise SpecError(field, f"cannot read port {text!r}: expected PUBLISHED:TARGET[/tcp|udp]")
    published, target, protocol = match.groups()
    return {"target": int(target), "published": int(published or 0), "protocol": protocol or "tcp"}


def parse_volume(text: object, field: str) -> dict[str, str | bool]:
    """`"data:/var/lib/data"`, `"/host:/in:ro"`, `"/scratch"` -> canonical plain volume."""
    if not isinstance(text, str):
        raise SpecError(field, f"must be 'SOURCE:TARGET[:ro]' or an object, not {text!r}")
    parts = text.split(":")
    read_only = len(parts) > 1 and parts[-1] in ("ro", "rw")
    mode = parts.pop() if read_only else "rw"
    if len(parts) == 1:
        return {"target": parts[0], "read_only": mode == "ro"}
    if len(parts) != 2:
        raise SpecError(field, f"cannot read volume {text!r}: expected SOURCE:TARGET[:ro]")
    source, target = parts
    return {
        "source": source,
        "target": target,
        "type": "bind" if source.startswith("/") else "volume",
        "read_only": mode == "ro",
    }


def _words(value: Any, field: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return split_words(value)
    except WordsError as exc:
        raise SpecError(field, f"the command line {exc}") from None


def _env(value: Any, field: str) -> Any:
    if not isinstance(value, list):
        return value
    env = {}
    for i, item in enumerate(value):
        if not isinstance(item, str) or "=" not in item:
            raise SpecError(f"{field}[{i}]", f"must be 'KEY=VALUE', not {item!r}")
        key, _, val = item.partition("=")
        env[key] = val
    return env


def _resources(value: Any, field: str) -> Any:
    if not isinstance(value, dict):
        return value
    out = {}
    for kind, amounts in value.items():
        if not isinstance(amounts, dict):
            out[kind] = amounts
            continue
        plain = {k: v for k, v in amounts.items() if k not in AMOUNT_KEYS}
        out[kind] = {**plain, **parse_amounts(amounts, f"{field}.{kind}")}
    return out


def _each(
    convert: Callable[[Any, str], Any],
    objects: Callable[[Any, str], Any] = lambda item, field: item,
) -> Callable[[Any, str], Any]:
    """Apply `convert` to the shorthand (non-object) items of a list, `objects` to the others."""

    def over_list(value: Any, field: str) -> Any:
        if not isinstance(value, list):
            return value
        return [
            objects(item, f"{field}[{i}]")
            if isinstance(item, dict)
            else convert(item, f"{field}[{i}]")
            for i, item in enumerate(value)
        ]

    return over_list


def _durations(*names: str) -> Callable[[Any, str], Any]:
    def convert(value: Any, field: str) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: parse_duration(v, f"{field}.{k}") if k in names else v for k, v in value.items()}

    return convert


def _proxy_version(port: dict[str, Any], field: str) -> dict[str, Any]:
    """`proxy_protocol: true` asks for the binary version 2, false for none."""
    value = port.get("proxy_protocol", "")
    if isinstance(value, bool):
        return {**port, "proxy_protocol": "v2" if value else ""}
    if value not in ("", "v1", "v2"):
        raise SpecError(
            f"{field}.proxy_protocol", f"must be v1, v2, true or false, not {str(value)[:40]!r}"
        )
    return port


def _health(value: Any, field: str) -> Any:
    value = _durations("interval", "timeout", "start_period")(value, field)
    if isinstance(value, dict) and isinstance(value.get("command"), str):
        # A string is a shell command line, as Docker's --health-cmd.
        value = {**value, "command": ["/bin/sh", "-c", value["command"]]}
    return value


_SHORTHANDS: dict[str, Callable[[Any, str], Any]] = {
    "command": _words,
    "args": _words,
    "env": _env,
    "resources": _resources,
    "constraints": _each(lambda item, f: to_plain(parse_constraint(item, f))),
    "preferences": _each(
        lambda item, f: {"spread": item.removeprefix("spread=")} if isinstance(item, str) else item
    ),
    "ports": _each(
        parse_port, lambda item, f: _proxy_version(_durations("idle_timeout")(item, f), f)
    ),
    "health": _health,
    "restart": _durations("delay", "window"),
    "update": _durations("delay", "monitor", "auto_promote"),
    "rollback": _durations("delay", "monitor", "auto_promote"),
    "secrets": _each(lambda item, f: {"source": item}),
    "configs": _each(lambda item, f: {"source": item}),
    "volumes": _each(parse_volume),
    "stop_grace_period": lambda value, f: parse_duration(value, f),
    "stop_delay": lambda value, f: parse_duration(value, f),
    "autoscale": _durations("cooldown_up", "cooldown_down"),
    "networks": _each(lambda item, f: {"name": item}),
    "max_unavailable": lambda value, f: (
        int(value) if isinstance(value, str) and value.isdigit() else value
    ),
    "job": _durations("backoff_delay", "deadline", "ttl_after_finished"),
}


# The fields the API also accepts in a shorthand form ("8080:80", "128Mi", "10s", a string
# command), turned into their canonical form before the spec is checked.
SHORTHAND_FIELDS = frozenset(_SHORTHANDS)


def parse_service_spec(plain: object) -> ServiceSpec:
    """A checked ServiceSpec from the API's plain data, or SpecError naming the bad field."""
    if not isinstance(plain, dict):
        raise SpecError("", f"a service spec must be an object, not {type(plain).__name__}")
    try:
        canonical = {
            key: _SHORTHANDS[key](value, key) if key in _SHORTHANDS and value is not None else value
            for key, value in plain.items()
        }
        spec = from_plain(ServiceSpec, canonical)
    except SpecError:
        raise
    except WireError as exc:  # the unit parsers and from_plain speak WireError
        raise SpecError(exc.field, exc.reason) from None
    errors = spec_errors(spec)
    if errors:
        raise errors[0]
    return spec


def merge_spec(spec: ServiceSpec, patch: object) -> ServiceSpec:
    """`spec` with the top-level fields of `patch` replaced (an HTTP PATCH body), re-checked."""
    if not isinstance(patch, dict):
        raise SpecError("", f"a patch must be an object, not {type(patch).__name__}")
    return parse_service_spec({**to_plain(spec), **patch})


# -- meaning ---------------------------------------------------------------------------


def _check_constraint(c: Constraint, field: str) -> None:
    label = c.key.startswith("node.labels.") and len(c.key) > len("node.labels.")
    if c.key not in _NODE_FIELDS and not label:
        raise SpecError(
            field,
            f"unsupported constraint key {c.key!r}: use node.id, node.hostname, "
            "node.role or node.labels.KEY",
        )
    if not c.value:
        raise SpecError(field, f"constraint {c} has no value")


def spec_errors(spec: ServiceSpec) -> list[SpecError]:
    """Everything wrong with a spec, each naming its field; empty when it is valid."""
    errors: list[SpecError] = []

    def check(ok: bool, field: str, reason: str) -> None:
        if not ok:
            errors.append(SpecError(field, reason))

    check(
        bool(_SERVICE_NAME.fullmatch(spec.name)),
        "name",
        f"{spec.name!r} is not a DNS label: 1-63 lowercase letters, digits, '-' or '_', "
        "starting and ending with a letter or digit",
    )
    check(
        bool(spec.image) and not any(c.isspace() for c in spec.image),
        "image",
        f"must be an image reference without spaces, not {spec.image!r}",
    )
    check(
        0 <= spec.replicas <= MAX_REPLICAS,
        "replicas",
        f"must be between 0 and {MAX_REPLICAS}, not {spec.replicas}",
    )
    for key in spec.env:
        check(
            bool(key) and "=" not in key,
            f"env.{key}",
            "variable names must be non-empty without '='",
        )
    for kind in ("reservations", "limits"):
        amounts: Resources = getattr(spec.resources, kind)
        check(amounts.cpu_millis >= 0, f"resources.{kind}.cpu_millis", "must not be negative")
        check(amounts.memory_bytes >= 0, f"resources.{kind}.memory_bytes", "must not be negative")
    res, lim = spec.resources.reservations, spec.resources.limits
    check(
        not lim.cpu_millis or res.cpu_millis <= lim.cpu_millis,
        "resources.limits.cpu_millis",
        "must not be below the CPU reservation",
    )
    check(
        not lim.memory_bytes or res.memory_bytes <= lim.memory_bytes,
        "resources.limits.memory_bytes",
        "must not be below the memory reservation",
    )
    for i, c in enumerate(spec.constraints):
        try:
            _check_constraint(c, f"constraints[{i}]")
        except SpecError as exc:
            errors.append(exc)
    for i, pref in enumerate(spec.preferences):
        check(
            pref.spread.startswith("node.labels.") and bool(pref.label),
            f"preferences[{i}].spread",
            f"can only spread over a node label (node.labels.KEY), not {pref.spread!r}",
        )
    _check_ports(spec, check)
    _check_health(spec, check)
    _check_policies(spec, check)
    _check_files(spec, check)
    _check_networks(spec, check)
    check_autoscale(spec.autoscale, spec.mode, check)
    check_container(spec.container, check)
    check_job(spec.job, check)
    if spec.job is not None:
        check(spec.autoscale is None, "autoscale", "a job does not autoscale")
        check(
            not spec.ports,
            "ports",
            "a job publishes no ports: its tasks end, so nothing could route to them",
        )
    return errors


def _check_ports(spec: ServiceSpec, check: Callable[[bool, str, str], None]) -> None:
    seen: dict[tuple[int, str], int] = {}
    for i, port in enumerate(spec.ports):
        check(
            1 <= port.target <= 65535, f"ports[{i}].target", f"must be 1-65535, not {port.target}"
        )
        check(
            0 <= port.published <= 65535,
            f"ports[{i}].published",
            f"must be 1-65535 (or 0 for none), not {port.published}",
        )
        check(
            0 <= port.vip_port <= 65535,
            f"ports[{i}].vip_port",
            f"must be 1-65535 (or 0 for the target), not {port.vip_port}",
        )
        check(
            0 <= port.idle_timeout <= MAX_IDLE_TIMEOUT,
            f"ports[{i}].idle_timeout",
            f"must be 0 (never) to {MAX_IDLE_TIMEOUT:g} seconds, not {port.idle_timeout}",
        )
        if port.proxy_protocol or port.idle_timeout:
            name = "proxy_protocol" if port.proxy_protocol else "idle_timeout"
            check(
                port.mode == "ingress" and port.protocol == "tcp" and port.published > 0,
                f"ports[{i}].{name}",
                "only the routing mesh's proxy does this: for a published ingress tcp port only",
            )
        key = (port.published, port.protocol)
        if port.published:
            check(
                key not in seen,
                f"ports[{i}].published",
                f"{port.published}/{port.protocol} is already published by ports[{seen.get(key)}]",
            )
            seen.setdefault(key, i)


def _check_health(spec: ServiceSpec, check: Callable[[bool, str, str], None]) -> None:
    h = spec.health
    if h.kind == "none":
        return
    if h.kind == "cmd":
        check(bool(h.command), "health.command", "a command health check needs a command")
    else:
        check(
            0 <= h.port <= 65535,
            "health.port",
            f"must be 1-65535 (or 0 for the first port), not {h.port}",
        )
        check(
            h.port > 0 or bool(spec.ports),
            "health.port",
            f"an {h.kind} health check needs a port: set health.port or declare ports",
        )
    if h.kind == "http":
        check(h.path.startswith("/"), "health.path", f"must start with '/', not {h.path!r}")
    check(h.interval > 0, "health.interval", "must be positive")
    check(h.timeout > 0, "health.timeout", "must be positive")
    check(h.retries >= 1, "health.retries", f"must be at least 1, not {h.retries}")
    check(h.start_period >= 0, "health.start_period", "must not be negative")


def _check_policies(spec: ServiceSpec, check: Callable[[bool, str, str], None]) -> None:
    r = spec.restart
    check(r.delay >= 0, "restart.delay", "must not be negative")
    check(
        r.max_attempts >= 0, "restart.max_attempts", f"must not be negative, not {r.max_attempts}"
    )
    check(r.window >= 0, "restart.window", "must not be negative")
    for name in ("update", "rollback"):
        u: UpdateConfig = getattr(spec, name)
        check(
            u.parallelism >= 0,
            f"{name}.parallelism",
            f"must not be negative (0 = all), not {u.parallelism}",
        )
        check(u.delay >= 0, f"{name}.delay", "must not be negative")
        check(u.monitor >= 0, f"{name}.monitor", "must not be negative")
        check(
            0.0 <= u.max_failure_ratio <= 1.0,
            f"{name}.max_failure_ratio",
            f"must be between 0 and 1, not {u.max_failure_ratio}",
        )
        check(0 <= u.canary <= MAX_REPLICAS, f"{name}.canary", f"must be 0 or more, not {u.canary}")
        check(u.auto_promote >= 0, f"{name}.auto_promote", "must not be negative")
    check(
        spec.rollback.canary == 0 and spec.rollback.auto_promote == 0,
        "rollback.canary",
        "a rollback has no canary phase",
    )
    for i, vol in enumerate(spec.volumes):
        check(
            vol.target.startswith("/"),
            f"volumes[{i}].target",
            f"must be an absolute path, not {vol.target!r}",
        )
        if vol.type == "bind":
            check(
                vol.source.startswith("/"),
                f"volumes[{i}].source",
                f"a bind mount needs an absolute host path, not {vol.source!r}",
            )
        elif vol.type == "volume":
            check(
                not vol.source or bool(VOLUME_NAME.fullmatch(vol.source)),
                f"volumes[{i}].source",
                f"{vol.source!r} is not a volume name: letters, digits, '_', '.' or '-', "
                "starting with a letter or digit",
            )
        else:
            check(not vol.source, f"volumes[{i}].source", "a tmpfs mount has no source")
    budget = spec.max_unavailable
    check(
        1 <= budget <= MAX_REPLICAS
        if isinstance(budget, int)
        else bool(_PERCENT.fullmatch(budget)) and 1 <= int(budget[:-1]) <= 100,
        "max_unavailable",
        f"must be a number of tasks (1 or more) or a percentage (1%-100%), not {budget!r}",
    )
    check(spec.stop_grace_period >= 0, "stop_grace_period", "must not be negative")
    check(
        0 <= spec.stop_delay <= MAX_STOP_DELAY,
        "stop_delay",
        f"must be between 0s and {MAX_STOP_DELAY:.0f}s, not {spec.stop_delay}",
    )


def _check_networks(spec: ServiceSpec, check: Callable[[bool, str, str], None]) -> None:
    seen: set[str] = set()
    for i, attachment in enumerate(spec.networks):
        check(
            attachment.name not in seen,
            f"networks[{i}].name",
            f"network {attachment.name!r} is named twice",
        )
        seen.add(attachment.name)
        for j, alias in enumerate(attachment.aliases):
            check(
                bool(_SERVICE_NAME.fullmatch(alias)),
                f"networks[{i}].aliases[{j}]",
                f"{alias!r} is not a DNS label: 1-63 lowercase letters, digits, '-' or '_'",
            )


def _check_files(spec: ServiceSpec, check: Callable[[bool, str, str], None]) -> None:
    """Each secret and config names its source and lands on a path of its own."""
    paths: dict[str, str] = {}
    for kind, refs, default_dir in (
        ("secrets", spec.secrets, SECRETS_DIR),
        ("configs", spec.configs, CONFIGS_DIR),
    ):
        for i, ref in enumerate(refs):
            at = f"{kind}[{i}]"
            check(bool(ref.source), f"{at}.source", f"must name a {kind[:-1]}")
            path = ref.path(default_dir)
            parts = path.split("/")
            check(
                path != "/" and "" not in parts[1:] and not {".", ".."} & set(parts),
                f"{at}.target",
                f"{path!r} is not a file path (no '.', '..' or empty parts)",
            )
            check(
                path not in paths,
                f"{at}.target",
                f"{path!r} is also the target of {paths.get(path)}",
            )
            paths.setdefault(path, at)
            check(
                0 <= ref.mode <= 0o777,
                f"{at}.mode",
                f"must be a file mode 0-0o777, not {ref.mode:#o}",
            )
