"""`shoal service ...`: flags as `docker service` has them.

The CLI only translates flags into a plain spec (or a patch) and lets the API validate it,
so the server stays the one place that decides what a valid spec is; argparse rejects only
what cannot even be written down (`--env X` without `=`, a non-number for `--replicas`).
"""

from __future__ import annotations

import argparse
import functools
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from node.cli import output, tasks
from node.cli import rollout as cli_rollout
from node.cli.common import (
    LazyHelp,
    Refused,
    UsageError,
    add_follow_flag,
    emit,
    follow,
    kv,
    needs_loop,
)
from node.cli.lean_client import ApiError

if TYPE_CHECKING:
    from node.client import ShoalClient


class _Choices(Sequence):
    """The allowed values of a Literal-typed spec field, read from the spec itself when
    argparse first checks a value or prints help: the state machine's modules cost a
    command more to import than everything else it does."""

    def __init__(self, spec_class: str, name: str) -> None:
        self._where = (spec_class, name)

    @functools.cached_property
    def _values(self) -> tuple[str, ...]:
        from consensus import services

        spec_class, name = self._where
        return typing.get_args(typing.get_type_hints(getattr(services, spec_class))[name])

    def __getitem__(self, index):
        return self._values[index]

    def __len__(self) -> int:
        return len(self._values)


def _choices(spec_class: str, name: str) -> _Choices:
    return _Choices(spec_class, name)


def _add_choice(parser, *flags: str, choices: _Choices, help: Any = "", **kwargs: Any) -> None:
    """An option limited to `choices`, whose help lists them without reading them now."""
    text = (
        help + " (%(choices)s)"
        if isinstance(help, _DefaultHelp)
        else f"{help} (%(choices)s)".lstrip()
    )
    parser.add_argument(
        *flags,
        choices=choices,
        metavar=flags[-1].lstrip("-").replace("-", "_").upper(),
        help=text,
        **kwargs,
    )


def _csv_kv(text: str, keys: dict[str, str], flags: tuple[str, ...] = ()) -> dict[str, Any]:
    """`a=1,b=x` -> {a: 1, b: "x"}; `keys` maps accepted spellings to spec keys, `flags`
    are keys that may stand alone (`readonly`: true) or take a yes/no word or another value,
    passed on for the spec to judge (`proxy-protocol=v1`). Digits become integers."""
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if key not in keys:
            raise argparse.ArgumentTypeError(
                f"unknown key {key!r} in {text!r}: use " + ", ".join(sorted(keys))
            )
        if key in flags:
            word = value.lower()
            out[keys[key]] = (
                not sep or word in ("true", "1", "yes")
                if not sep or word in ("true", "1", "yes", "false", "0", "no")
                else value
            )
        elif not sep:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r} in {text!r}")
        else:
            out[keys[key]] = int(value) if value.isdigit() else value
    return out


def _port(text: str) -> Any:
    """`8080:80[/udp]` (passed on as written) or `mode=host,published=8080,target=80`, with
    `proxy-protocol[=v1|v2]` (alone: v2) and `idle-timeout=5m` for the routing mesh's proxy."""
    if "=" not in text and "," not in text:
        return text
    keys = {k: k for k in ("mode", "published", "target", "protocol")}
    keys.update({"proxy-protocol": "proxy_protocol", "idle-timeout": "idle_timeout"})
    return _csv_kv(text, keys, flags=("proxy-protocol",))


def _mount(text: str) -> dict:
    """Docker's `--mount type=bind,source=/data,target=/data,readonly`."""
    keys = {
        "type": "type",
        "source": "source",
        "src": "source",
        "target": "target",
        "dst": "target",
        "destination": "target",
        "readonly": "read_only",
        "ro": "read_only",
    }
    return _csv_kv(text, keys, flags=("readonly", "ro"))


def _file_ref(text: str) -> Any:
    """`NAME` (passed on as written), `NAME,target=T[,mode=0400]` or `source=NAME,...` for
    --secret and --config."""
    if "=" not in text and "," not in text:
        return text
    first, sep, rest = text.partition(",")
    if "=" not in first:
        text = f"source={first}{sep}{rest}"
    ref = _csv_kv(text, {"source": "source", "src": "source", "target": "target", "mode": "mode"})
    if "mode" in ref:
        try:
            ref["mode"] = int(str(ref["mode"]), 8)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"mode must be octal like 0400, not {ref['mode']!r}"
            ) from None
    return ref


def _scale_arg(text: str) -> tuple[str, int]:
    name, value = kv(text)
    try:
        return name, int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=REPLICAS, got {text!r}") from None


# -- flags that set one spec value ------------------------------------------------------


# The tables' rows are named tuples: dataclasses would import `inspect`, a tenth of the CPU
# time of a `service ls`.
class Setting(NamedTuple):
    """A flag that sets the spec value at `path`; `implies` is merged into the enclosing
    object too (`--health-cmd` also sets `health.kind` to `cmd`)."""

    flag: str
    path: tuple[str, ...]
    type: Callable[[str], Any] | None = str  # None: a switch
    help: str = ""
    implies: Mapping[str, str] = MappingProxyType({})
    choices: _Choices | None = None
    group: str = ""  # flags of one group exclude each other
    # Help shows the spec's default for `path`; off where that default means something else.
    show_default: bool = True

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _policy_settings(prefix: str) -> list[Setting]:
    return [
        Setting(
            f"--{prefix}-parallelism",
            (prefix, "parallelism"),
            int,
            "tasks changed at once (0 = all)",
        ),
        Setting(f"--{prefix}-delay", (prefix, "delay"), help="wait between batches (e.g. 10s)"),
        Setting(f"--{prefix}-order", (prefix, "order"), choices=_choices("UpdateConfig", "order")),
        Setting(
            f"--{prefix}-failure-action",
            (prefix, "failure_action"),
            choices=_choices("UpdateConfig", "failure_action"),
        ),
        Setting(f"--{prefix}-monitor", (prefix, "monitor"), help="watch each batch this long"),
        Setting(f"--{prefix}-max-failure-ratio", (prefix, "max_failure_ratio"), float),
    ]


AUTOSCALE_SETTINGS: tuple[Setting, ...] = (
    Setting("--autoscale-min", ("autoscale", "min"), int, "fewest replicas"),
    Setting("--autoscale-max", ("autoscale", "max"), int, "most replicas"),
    Setting(
        "--autoscale-cpu",
        ("autoscale", "target"),
        float,
        "keep cpu near PCT percent of one core per replica",
        implies={"metric": "cpu"},
        group="autoscale",
    ),
    Setting(
        "--autoscale-rps",
        ("autoscale", "target"),
        float,
        "keep requests (connections) per second near N per replica",
        implies={"metric": "rps"},
        group="autoscale",
    ),
    Setting(
        "--autoscale-tolerance",
        ("autoscale", "tolerance"),
        float,
        "no change within this fraction of the target",
    ),
    Setting(
        "--autoscale-cooldown-up",
        ("autoscale", "cooldown_up"),
        help="wait after a change before scaling up",
    ),
    Setting(
        "--autoscale-cooldown-down",
        ("autoscale", "cooldown_down"),
        help="wait after a change before scaling down",
    ),
)
SETTINGS: tuple[Setting, ...] = (
    Setting("--replicas", ("replicas",), int, "number of tasks (replicated mode)"),
    Setting("--entrypoint", ("command",), help="override the image's entrypoint"),
    Setting(
        "--reserve-cpu",
        ("resources", "reservations", "cpu"),
        help="cores (0.5) or millicores (500m)",
    ),
    Setting("--reserve-memory", ("resources", "reservations", "memory"), help="e.g. 128M"),
    Setting("--limit-cpu", ("resources", "limits", "cpu")),
    Setting("--limit-memory", ("resources", "limits", "memory")),
    Setting(
        "--health-cmd",
        ("health", "command"),
        help="shell command; exit 0 = healthy",
        implies={"kind": "cmd"},
        group="health",
    ),
    Setting(
        "--health-http",
        ("health", "path"),
        help="GET this path (2xx/3xx = healthy)",
        implies={"kind": "http"},
        group="health",
        show_default=False,
    ),
    Setting(
        "--health-tcp",
        ("health", "port"),
        int,
        "connect to this port",
        implies={"kind": "tcp"},
        group="health",
        show_default=False,
    ),
    Setting(
        "--no-healthcheck",
        ("health", "kind"),
        None,
        "disable the health check",
        implies={"kind": "none"},
        group="health",
    ),
    Setting(
        "--health-port",
        ("health", "port"),
        int,
        "port for --health-http (default: first port)",
        show_default=False,
    ),
    Setting("--health-interval", ("health", "interval"), help="time between checks"),
    Setting("--health-timeout", ("health", "timeout"), help="a check that takes longer fails"),
    Setting(
        "--health-retries",
        ("health", "retries"),
        int,
        "failures in a row that make a task unhealthy",
    ),
    Setting(
        "--health-start-period",
        ("health", "start_period"),
        help="failures in this time after a start do not count",
    ),
    Setting(
        "--restart-condition",
        ("restart", "condition"),
        choices=_choices("RestartPolicy", "condition"),
    ),
    Setting("--restart-delay", ("restart", "delay"), help="wait before restarting a task"),
    Setting("--restart-max-attempts", ("restart", "max_attempts"), int, "0 = unlimited"),
    Setting(
        "--restart-window",
        ("restart", "window"),
        help="count only failures of tasks that ran shorter than this (0s: all)",
    ),
    *_policy_settings("update"),
    Setting(
        "--update-canary",
        ("update", "canary"),
        int,
        "replace this many tasks first, then wait for `service promote` (or rollback)",
    ),
    Setting(
        "--update-auto-promote",
        ("update", "auto_promote"),
        help="promote the canaries by itself once they passed their monitor this long ago "
        "(0s: by hand only)",
    ),
    *_policy_settings("rollback"),
    Setting("--stop-grace-period", ("stop_grace_period",), help="e.g. 10s"),
    Setting(
        "--stop-delay",
        ("stop_delay",),
        help="keep a task with ports running this long after its endpoints are withdrawn, "
        "before stopping it, so no load balancer sends it new connections",
    ),
    Setting(
        "--rebalance",
        ("rebalance",),
        choices=_choices("ServiceSpec", "rebalance"),
        help="move tasks to restore the spread: whenever it drifts (auto), after `service "
        "rebalance` (manual), never (off)",
    ),
    Setting(
        "--max-unavailable",
        ("max_unavailable",),
        help="tasks moved at once when rebalancing or draining: a number or a percentage (25%%)",
    ),
    Setting(
        "--volume-affinity",
        ("volume_affinity",),
        choices=_choices("ServiceSpec", "volume_affinity"),
        help="node: a slot that used a named volume stays on the node holding its data",
    ),
    *AUTOSCALE_SETTINGS,
)
UPDATE_ONLY: tuple[Setting, ...] = (
    Setting("--image", ("image",)),
    Setting("--args", ("args",), help="replace the command's arguments (one string)"),
)


class ListEdit(NamedTuple):
    """A repeatable flag adding items to a spec list; `--STEM-rm` in `service update` removes
    the items whose `key(item)` equals `rm_key(argument)`."""

    stem: str
    field: str
    type: Callable[[str], Any]
    key: Callable[[dict], str]
    rm_key: Callable[[str], str] = str
    short: str = ""
    help: str = ""


LIST_EDITS: tuple[ListEdit, ...] = (
    ListEdit(
        "constraint",
        "constraints",
        str,
        lambda c: f"{c['key']}{c['op']}{c['value']}",
        lambda text: text.replace(" ", ""),
        help="e.g. node.labels.zone==a",
    ),
    ListEdit(
        "placement-pref",
        "preferences",
        str,
        lambda p: p["spread"],
        lambda text: text.removeprefix("spread="),
        help="spread=node.labels.KEY",
    ),
    ListEdit(
        "publish",
        "ports",
        _port,
        lambda p: str(p["target"]),
        short="-p",
        help="PUBLISHED:TARGET[/udp] or mode=host,published=P,target=T; proxy-protocol[=v1|v2] and "
        "idle-timeout=DURATION for the routing mesh (remove by target)",
    ),
    ListEdit(
        "secret",
        "secrets",
        _file_ref,
        lambda s: s["source"],
        help="NAME[,target=T][,mode=0400] (target default /run/secrets/NAME)",
    ),
    ListEdit(
        "config",
        "configs",
        _file_ref,
        lambda c: c["source"],
        help="NAME[,target=T][,mode=0444] (target default /NAME)",
    ),
    ListEdit(
        "mount",
        "volumes",
        _mount,
        lambda v: v["target"],
        help="type=volume|bind|tmpfs,source=S,target=T[,readonly] (remove by target)",
    ),
)
# Flags that add KEY=VALUE pairs to a spec mapping; `--STEM-rm KEY` removes one.
MAP_EDITS: tuple[tuple[str, str, str], ...] = (("env", "env", "-e"), ("label", "labels", "-l"))


def _duration(seconds: float) -> str:
    """Seconds as the spec's shorthand: 30s, 2m, 1.5s."""
    if seconds and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def spec_default(path: tuple[str, ...]) -> str | None:
    """The spec's own default for the value at `path`, as a flag takes it (`30s`, `1`,
    `stop-first`), or None where the field has no plain default (a list, a required value)."""
    import dataclasses

    from consensus.services import ServiceSpec

    owner: Any = ServiceSpec
    for key in path:
        hints = typing.get_type_hints(owner)
        if key not in hints:
            return None
        kind = hints[key]
        kind = next((a for a in typing.get_args(kind) if dataclasses.is_dataclass(a)), kind)
        spec_field = next(f for f in dataclasses.fields(owner) if f.name == key)
        if dataclasses.is_dataclass(kind):
            owner = kind
            continue
        value = spec_field.default
        if value is dataclasses.MISSING or isinstance(value, (tuple, dict)) or value in ("", None):
            return None
        if isinstance(value, float) and kind is float and key not in _PLAIN_FLOATS:
            return _duration(value)
        return f"{value:g}" if isinstance(value, float) else str(value)
    return None


# Float spec fields that are not durations in seconds.
_PLAIN_FLOATS = frozenset({"max_failure_ratio", "tolerance", "target"})


class _DefaultHelp(LazyHelp):
    """A flag's help that ends with the spec's default for its field: the state machine's
    modules cost a command more to import than everything else it does."""

    def __init__(self, text: str, path: tuple[str, ...], suffix: str = "") -> None:
        super().__init__(self._with_default)
        self._text, self._path, self._suffix = text, path, suffix

    def _with_default(self) -> str:
        default = spec_default(self._path)
        text = f"{self._text} (default {default})".lstrip() if default is not None else self._text
        return text + self._suffix

    def __add__(self, more: str) -> _DefaultHelp:
        return _DefaultHelp(self._text, self._path, self._suffix + more)


def _help(s: Setting, defaults: bool) -> Any:
    if defaults and s.type is not None and s.show_default:
        return _DefaultHelp(s.help, s.path)
    return s.help


def _add_settings(
    parser: argparse.ArgumentParser, settings: tuple[Setting, ...], *, defaults: bool
) -> None:
    """The flags of `settings`; with `defaults`, each one's help names the spec's default
    (not for `update`, where a flag left out keeps the current value)."""
    groups: dict[str, Any] = {}
    for s in settings:
        if s.group and s.group not in groups:
            groups[s.group] = parser.add_mutually_exclusive_group()
        target = groups[s.group] if s.group else parser
        if s.type is None:
            target.add_argument(s.flag, dest=s.dest, action="store_true", help=s.help)
        elif s.choices is not None:
            _add_choice(
                target, s.flag, dest=s.dest, type=s.type, choices=s.choices, help=_help(s, defaults)
            )
        else:
            target.add_argument(s.flag, dest=s.dest, type=s.type, help=_help(s, defaults))


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def settings_body(args: argparse.Namespace, settings: tuple[Setting, ...]) -> dict:
    """The nested spec fragment that the given flags set."""
    body: dict = {}
    for s in settings:
        value = getattr(args, s.dest, None)
        if value is None or value is False:
            continue
        if s.type is not None:
            _set(body, s.path, value)
        for key, implied in s.implies.items():
            _set(body, (*s.path[:-1], key), implied)
    return body


def create_body(args: argparse.Namespace) -> dict:
    """The plain spec that `shoal service create` sends."""
    body: dict = {"name": args.name, "image": args.image, **settings_body(args, SETTINGS)}
    if args.command_args:
        body["args"] = args.command_args
    if args.mode:
        body["mode"] = args.mode
    for stem, spec_field, _short in MAP_EDITS:
        if getattr(args, stem):
            body[spec_field] = dict(getattr(args, stem))
    for edit in LIST_EDITS:
        if getattr(args, _dest(edit.stem)):
            body[edit.field] = getattr(args, _dest(edit.stem))
    return body


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over


def update_patch(current: dict, args: argparse.Namespace) -> dict:
    """The PATCH body for `shoal service update`: whole top-level fields, each the current
    value with the flags' changes applied (PATCH replaces top-level fields)."""
    patch = {
        key: _merge(current.get(key), value)
        for key, value in settings_body(args, SETTINGS + UPDATE_ONLY).items()
    }
    for stem, spec_field, _short in MAP_EDITS:
        added, removed = getattr(args, f"{stem}_add"), getattr(args, f"{stem}_rm")
        if added or removed:
            mapping = {k: v for k, v in current.get(spec_field, {}).items() if k not in removed}
            patch[spec_field] = {**mapping, **dict(added)}
    for edit in LIST_EDITS:
        added, removed = (
            getattr(args, f"{_dest(edit.stem)}_add"),
            getattr(args, f"{_dest(edit.stem)}_rm"),
        )
        if added or removed:
            gone = {edit.rm_key(r) for r in removed}
            kept = [item for item in current.get(edit.field, []) if edit.key(item) not in gone]
            patch[edit.field] = kept + added
    if args.no_autoscale:
        patch["autoscale"] = None
    return patch


def _dest(stem: str) -> str:
    return stem.replace("-", "_")


# -- the parsers ---------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    service = sub.add_parser("service", help="create, list, scale, update and remove services")
    ssub = service.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = ssub.add_parser("create", parents=[common], help="create a service")
    create.add_argument("--name", required=True, help="service name (a DNS label)")
    _add_choice(
        create, "--mode", choices=_choices("ServiceSpec", "mode"), help=_DefaultHelp("", ("mode",))
    )
    for stem, _field, short in MAP_EDITS:
        create.add_argument(short, f"--{stem}", type=kv, action="append", default=[], metavar="K=V")
    for edit in LIST_EDITS:
        flags = (edit.short, f"--{edit.stem}") if edit.short else (f"--{edit.stem}",)
        create.add_argument(
            *flags,
            dest=_dest(edit.stem),
            type=edit.type,
            action="append",
            default=[],
            help=edit.help,
        )
    _add_settings(create, SETTINGS, defaults=True)
    create.add_argument("image", metavar="IMAGE")
    create.add_argument(
        "command_args",
        nargs=argparse.REMAINDER,
        metavar="COMMAND",
        help="the command and its arguments (replace the image's default)",
    )
    create.set_defaults(handler=_create)

    ls = ssub.add_parser("ls", parents=[common], help="list services")
    add_follow_flag(ls, "the services")
    ls.set_defaults(handler=_ls)
    ps = ssub.add_parser("ps", parents=[common], help="a service's tasks, and why any is pending")
    ps.add_argument("name", metavar="SERVICE")
    tasks.add_listing_flags(ps)
    ps.set_defaults(handler=_ps)
    inspect = ssub.add_parser("inspect", parents=[common], help="a service's spec and status")
    inspect.add_argument("name", metavar="SERVICE")
    inspect.set_defaults(handler=_inspect)
    scale = ssub.add_parser("scale", parents=[common], help="set replica counts")
    scale.add_argument("targets", nargs="+", type=_scale_arg, metavar="SERVICE=REPLICAS")
    scale.set_defaults(handler=_scale)

    update = ssub.add_parser("update", parents=[common], help="change a service")
    update.add_argument("name", metavar="SERVICE")
    _add_settings(update, SETTINGS + UPDATE_ONLY, defaults=False)
    update.add_argument(
        "--no-autoscale",
        action="store_true",
        help="stop autoscaling (the replica count stays where it is)",
    )
    for stem, _field, _short in MAP_EDITS:
        update.add_argument(f"--{stem}-add", type=kv, action="append", default=[], metavar="K=V")
        update.add_argument(f"--{stem}-rm", action="append", default=[], metavar="K")
    for edit in LIST_EDITS:
        update.add_argument(
            f"--{edit.stem}-add", type=edit.type, action="append", default=[], help=edit.help
        )
        update.add_argument(f"--{edit.stem}-rm", action="append", default=[])
    update.set_defaults(handler=_update)

    logs = ssub.add_parser("logs", parents=[common], help="the output of a service's tasks")
    logs.add_argument("name", metavar="SERVICE")
    logs.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="follow the service: stream new output, and the tasks that start "
        "later, until the service is removed",
    )
    logs.add_argument("--tail", default="all", help="lines per task from the end (default all)")
    logs.set_defaults(handler=service_logs)

    cli_rollout.register(ssub, common)

    rm = ssub.add_parser("rm", parents=[common], help="remove services")
    rm.add_argument("names", nargs="+", metavar="SERVICE")
    rm.set_defaults(handler=_rm)


# -- handlers --------------------------------------------------------------------------


async def _create(args, client: ShoalClient) -> int:
    service = await client.post("/v1/services", create_body(args))
    return emit(args, service, lambda s: print(s["id"]))


def _ports(spec: dict) -> str:
    return ",".join(
        f"*:{p['published']}->{p['target']}/{p['protocol']}"
        for p in spec["ports"]
        if p["published"]
    )


def _render_services(rows: list[dict]) -> None:
    output.table(
        ("ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"),
        (
            (
                s["id"],
                s["name"],
                s["spec"]["mode"],
                replica_counts(s["replicas"]),
                s["spec"]["image"],
                _ports(s["spec"]),
            )
            for s in rows
        ),
    )


def replica_counts(counts: dict) -> str:
    """`3/3`, and `+1 canary` beside them in an update's canary phase."""
    canaries = f" +{counts['canaries']} canary" if counts["canaries"] else ""
    return f"{counts['running']}/{counts['desired']}{canaries}"


async def _ls(args, client: ShoalClient) -> int:
    if args.follow:
        return await follow(args, client, "/v1/services", _render_services)
    return emit(args, await client.get("/v1/services"), _render_services)


async def _ps(args, client: ShoalClient) -> int:
    return tasks.print_listing(args, await client.get("/v1/tasks", service=args.name))


async def _inspect(args, client: ShoalClient) -> int:
    return emit(args, await client.get(f"/v1/services/{args.name}"), output.detail)


def scale_problems(
    services: list[dict], targets: list[tuple[str, int]]
) -> tuple[list[str], list[str]]:
    """Why `targets` cannot all be scaled, given the services there are (by name or id):
    (services not there, targets that are wrong in themselves)."""
    from consensus.services import SpecError, merge_spec, parse_service_spec

    known = {ref: s for s in services for ref in (s["name"], s["id"])}
    seen: set[str] = set()
    unknown, wrong = [], []
    for ref, replicas in targets:
        service = known.get(ref)
        if service is None:
            unknown.append(f"no such service {ref!r}")
            continue
        if service["spec"]["mode"] == "global":
            wrong.append(
                f"{service['name']} is a global service: it runs one task per node "
                "and has no replica count"
            )
        elif service["name"] in seen:
            wrong.append(f"{service['name']} is named twice")
        else:
            try:  # the spec's own checks, as the API will make them
                merge_spec(parse_service_spec(service["spec"]), {"replicas": replicas})
            except SpecError as exc:
                wrong.append(f"{service['name']}: {exc.field}: {exc.reason}")
        seen.add(service["name"])
    return unknown, wrong


async def _scale(args, client: ShoalClient) -> int:
    """All or nothing: every target is checked before any changes, so a typo in one name
    scales none (exit 1 for a service not there, as the API's 404; 2 for a bad target, as its
    400). A change that fails after others were made says which were."""
    unknown, wrong = scale_problems(await client.get("/v1/services"), args.targets)
    if unknown or wrong:
        message = "; ".join(unknown + wrong) + ": nothing was scaled"
        raise Refused(message) if unknown else UsageError(message)
    done: list[dict] = []
    for name, replicas in args.targets:
        try:
            done.append(await client.patch(f"/v1/services/{name}", {"replicas": replicas}))
        except ApiError:
            if done:
                print(
                    "already scaled: "
                    + ", ".join(f"{s['name']} to {s['spec']['replicas']}" for s in done),
                    file=sys.stderr,
                )
            raise
    return emit(
        args,
        done,
        lambda rows: print(
            "\n".join(f"{s['name']} scaled to {s['spec']['replicas']}" for s in rows)
        ),
    )


async def _update(args, client: ShoalClient) -> int:
    current = await client.get(f"/v1/services/{args.name}")
    patch = update_patch(current["spec"], args)
    if not patch:
        raise UsageError("nothing to update: give at least one flag (see --help)")
    # The version read above: a concurrent change makes this fail (409) instead of being lost.
    service = await client.request(
        "PATCH",
        f"/v1/services/{args.name}",
        json_body=patch,
        params={"version": str(current["version"])},
    )
    return emit(args, service, lambda s: print(f"{s['name']} is at version {s['version']}"))


# Task states with no output to show yet: the task has not been started anywhere.
_UNSTARTED = ("pending", "assigned", "rejected")


@needs_loop
async def service_logs(args, client: ShoalClient) -> int:
    """Every task's lines, prefixed `TASK.ID@NODE |` (TASK as `service ps` names it), as
    `docker service logs` does; tasks are read concurrently through the node the CLI talks
    to, which fetches them where they run. With -f it follows the service, not the tasks: a
    task that ends leaves the others going, one that starts later (a rollout, a restart, a
    scale-up) is followed as it starts, and only the service's removal (or Ctrl-C) ends it."""
    await client.get(f"/v1/services/{args.name}")  # 404 with a clear message if unknown
    params = {"tail": args.tail, **({"follow": "1"} if args.follow else {})}

    async def stream(task: dict) -> None:
        prefix = tasks.log_prefix(task)
        try:
            async for line in client.stream_lines(f"/v1/tasks/{task['id']}/logs", **params):
                print(prefix, line, flush=True)
        except ApiError as exc:  # a task removed meanwhile: say so and go on with the rest
            print(f"{prefix} (no logs: {exc.message})", file=sys.stderr)

    import asyncio

    async with asyncio.TaskGroup() as group:
        followed: set[str] = set()
        streams: list[asyncio.Task] = []

        async def follow_new_tasks() -> set[str]:
            """Start streaming each task not streamed yet that has started; -> the ids listed."""
            listed = await client.get("/v1/tasks", service=args.name)
            for task in listed:
                if (
                    task["id"] not in followed
                    and task.get("node_id")
                    and task["state"] not in _UNSTARTED
                ):
                    followed.add(task["id"])
                    streams.append(group.create_task(stream(task)))
            return {task["id"] for task in listed}

        await follow_new_tasks()
        if args.follow:
            await _until_removed(client, args.name, followed, follow_new_tasks)
            for task in streams:
                task.cancel()
    return 0


async def _until_removed(
    client: ShoalClient, name: str, followed: set[str], follow_new_tasks: Callable[[], Any]
) -> None:
    """Watch the service's events until it is removed; a task that started and is not yet
    followed makes `follow_new_tasks` look again. The event history is replayed first, so
    nothing that happened since the tasks were listed is missed."""
    gone: set[str] = set()  # tasks an event named that a later listing no longer held
    since = 0
    while True:
        async for event in cli_rollout.service_events(client, name, since=since, follow=True):
            since = event["seq"]
            if event["type"] == "service.removed" and not await _exists(client, name):
                return  # (a removal replayed from the history may be of an earlier namesake)
            task_id = event.get("task_id")
            if (
                task_id
                and task_id not in followed
                and task_id not in gone
                and event.get("state") not in _UNSTARTED
            ):
                listed = await follow_new_tasks()
                if task_id not in listed:
                    gone.add(task_id)
        # The node ended the stream (it dropped a slow reader): go on from the last event,
        # unless the service went away meanwhile.
        if not await _exists(client, name):
            return


async def _exists(client: ShoalClient, name: str) -> bool:
    try:
        await client.get(f"/v1/services/{name}")
        return True
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise


async def _rm(args, client: ShoalClient) -> int:
    done = [await client.delete(f"/v1/services/{name}") for name in args.names]
    return emit(args, done, lambda rows: print("\n".join(r["deleted"] for r in rows)))
