"""Compose networks: the top-level `networks:` of a file and each service's `networks:`,
as Shoal overlay networks (`docker stack deploy` makes overlay networks of them too).

A file that uses networks at all gives every service that names none the file's default
network (`NAME_default` for a file with a top-level `name:`, else `default`), as Compose
does. A file that names no network keeps its services off the overlay: they are reached
through published ports only, as before. `expose:` needs nothing: on a network every port
of a task is reachable by the network's other tasks, and by nothing outside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consensus.networks import network_name_problem
from node.manifests.reader import ManifestError, Reader

_NETWORK_KEYS = {
    "driver",
    "external",
    "internal",
    "attachable",
    "labels",
    "name",
    "ipam",
    "driver_opts",
}


@dataclass(frozen=True, slots=True)
class NetworkDef:
    """A network a file defines (made when missing) or uses as `external` (must exist)."""

    name: str
    where: str
    external: bool = False
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    subnet: str = ""
    encrypted: bool = False


def _checked_name(name: Any, where: str) -> str:
    if not isinstance(name, str):
        raise ManifestError(where, f"a network name must be a string, not {name!r}")
    problem = network_name_problem(name)
    if problem:
        raise ManifestError(where, problem)
    return name


def _subnet(r: Reader, ipam: Any, where: str) -> str:
    ipam = r.mapping(ipam, where)
    r.unsupported(ipam, {"config", "driver"}, where)
    configs = r.listing(ipam.get("config"), f"{where}.config")
    if not configs:
        return ""
    first = r.mapping(configs[0], f"{where}.config[0]")
    r.unsupported(first, {"subnet"}, f"{where}.config[0]")
    if len(configs) > 1:
        r.warnings.append(f"{where}.config: only the first subnet is used")
    subnet = first.get("subnet", "")
    if not isinstance(subnet, str):
        raise ManifestError(f"{where}.config[0].subnet", f"must be a CIDR string, not {subnet!r}")
    return subnet


def read_networks(r: Reader, doc: dict) -> dict[str, NetworkDef]:
    """The file's networks by their key in the file."""
    found = {}
    for key, body in r.mapping(doc.get("networks"), "networks").items():
        where = f"networks.{key}"
        body = r.mapping(body, where)
        r.unsupported(body, _NETWORK_KEYS, where)
        if body.get("driver", "overlay") != "overlay":
            r.warnings.append(f"{where}.driver: {body['driver']!r} is made an overlay network")
        options = r.mapping(body.get("driver_opts"), f"{where}.driver_opts")
        # As Swarm's overlay driver reads it: the option's presence turns encryption on.
        encrypted = "encrypted" in options
        for option in sorted(set(options) - {"encrypted"}, key=str):
            r.warnings.append(f"{where}.driver_opts.{option}: not supported, ignored")
        external = body.get("external", False)
        if isinstance(external, dict):  # the old `external: {name: X}` form
            body = {**body, "name": external.get("name", body.get("name"))}
            external = True
        name = _checked_name(body.get("name", key), f"{where}.name" if "name" in body else where)
        labels = body.get("labels") or {}
        if isinstance(labels, list):
            labels = dict(str(item).partition("=")[::2] for item in labels)
        flags = {}
        for flag in ("internal", "attachable"):
            value = body.get(flag, False)
            if not isinstance(value, bool):
                raise ManifestError(f"{where}.{flag}", f"must be true or false, not {value!r}")
            flags[flag] = value
        found[key] = NetworkDef(
            name,
            where,
            bool(external),
            labels={str(k): str(v) for k, v in labels.items()},
            subnet=_subnet(r, body.get("ipam"), f"{where}.ipam"),
            encrypted=encrypted,
            **flags,
        )
    return found


def default_network(doc: dict) -> NetworkDef:
    project = doc.get("name")
    name = f"{project}_default" if isinstance(project, str) and project else "default"
    return NetworkDef(_checked_name(name, "name"), "networks.default")


def uses_networks(doc: dict) -> bool:
    services = doc.get("services")
    return bool(doc.get("networks")) or (
        isinstance(services, dict)
        and any(isinstance(s, dict) and s.get("networks") for s in services.values())
    )


def service_networks(r: Reader, defs: dict[str, NetworkDef], value: Any, where: str) -> list[dict]:
    """A service's `networks:` (a list of keys, or keys mapped to `aliases`) as spec plain."""
    if isinstance(value, list):
        entries: dict[Any, Any] = {key: None for key in value}
    else:
        entries = r.mapping(value, where)
    out = []
    for key, body in entries.items():
        at = f"{where}.{key}"
        network = defs.get(key)
        if network is None:
            raise ManifestError(at, f"network {key!r} is not defined under the top-level networks:")
        body = r.mapping(body, at)
        r.unsupported(body, {"aliases"}, at)
        aliases = [str(a) for a in r.listing(body.get("aliases"), f"{at}.aliases")]
        out.append({"name": network.name, "aliases": aliases})
    return out


def expose(r: Reader, value: Any, where: str) -> None:
    """`expose:` is checked, and needs nothing more (see the module's docstring)."""
    for i, port in enumerate(r.listing(value, where)):
        text = str(port).split("/")[0]
        if not (text.isdigit() and 1 <= int(text) <= 65535) and "-" not in text:
            raise ManifestError(f"{where}[{i}]", f"must be a port 1-65535, not {port!r}")
