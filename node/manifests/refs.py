"""Compose's named things: the top-level `secrets:`, `configs:` and `volumes:`, and the
services' references to them, as ServiceSpec `secrets`, `configs` and `volumes`.

A top-level secret or config either names a `file:` (the CLI reads it, relative to the
Compose file, and creates it in the cluster before the services), holds a config's inline
`content:`, or is `external: true` (it must exist already). Only the ones some service uses
are created, as `docker stack deploy` does. A service may only refer to what the file
defines, by the key it is defined under; `name:` gives it another name in the cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consensus.secrets import Kind, name_problem
from consensus.services import VOLUME_NAME
from node.manifests.reader import ManifestError, Reader, shown

_SECTIONS: dict[Kind, str] = {"secret": "secrets", "config": "configs"}
# Docker's short-syntax volume options that change nothing Shoal does.
_IGNORED_OPTIONS = {"z", "Z", "nocopy", "cached", "delegated", "consistent"}


@dataclass(frozen=True, slots=True)
class FileSource:
    """A secret or config a Compose file defines and a service uses: its name in the cluster
    and where its content comes from (exactly one of `file`, `content`, `external`)."""

    kind: Kind
    name: str
    where: str  # the field in the file, e.g. "secrets.db_password"
    file: str = ""  # as written: relative paths are relative to the Compose file's directory
    content: bytes | None = None
    external: bool = False


@dataclass(frozen=True, slots=True)
class Definitions:
    """A Compose file's top-level definitions, by the key services refer to them with."""

    files: dict[tuple[Kind, str], FileSource]
    volumes: dict[str, str]  # key -> the volume's name on the nodes


def _external(value: Any, where: str) -> tuple[bool, str | None]:
    """`external: true`, or the old `external: {name: N}` form -> (external, name)."""
    if isinstance(value, bool):
        return value, None
    if isinstance(value, dict) and set(value) <= {"name"}:
        return True, value.get("name")
    raise ManifestError(where, f"must be true or false, not {shown(value)}")


def _named(name: Any, where: str) -> str:
    problem = name_problem(name)
    if problem:
        raise ManifestError(where, problem)
    return name


def _file_source(r: Reader, kind: Kind, key: str, value: Any, where: str) -> FileSource:
    value = r.mapping(value, where)
    known = {"file", "external", "name"} | ({"content"} if kind == "config" else set())
    r.unsupported(value, known | {"template_driver"}, where)
    if "template_driver" in value:
        r.warnings.append(
            f"{where}.template_driver: Shoal does not render templates; the "
            "content is used as it is"
        )
    external, old_name = _external(value.get("external", False), f"{where}.external")
    name = _named(value.get("name", old_name or key), f"{where}.name" if "name" in value else where)
    given = [k for k in ("file", "content") if k in value] + (["external"] if external else [])
    if len(given) != 1:
        choices = (
            "file:, content: or external: true" if kind == "config" else "file: or external: true"
        )
        raise ManifestError(
            where,
            f"needs exactly one of {choices}" + (f", not {' and '.join(given)}" if given else ""),
        )
    if "file" in value:
        if not isinstance(value["file"], str) or not value["file"]:
            raise ManifestError(f"{where}.file", f"must be a file path, not {shown(value['file'])}")
        return FileSource(kind, name, where, file=value["file"])
    if "content" in value:
        if not isinstance(value["content"], str):
            raise ManifestError(
                f"{where}.content", f"must be text, not {type(value['content']).__name__}"
            )
        try:
            content = value["content"].encode()
        except UnicodeEncodeError:  # a lone surrogate (JSON can carry one as an escape)
            raise ManifestError(f"{where}.content", "must be valid Unicode text") from None
        return FileSource(kind, name, where, content=content)
    return FileSource(kind, name, where, external=True)


def _volume(r: Reader, key: str, value: Any, where: str) -> str:
    value = r.mapping(value, where)
    r.unsupported(value, {"driver", "external", "name"}, where)
    driver = value.get("driver", "local")
    if driver != "local":
        r.warnings.append(
            f"{where}.driver: {shown(driver)} is not supported; Shoal keeps {shown(key)} as a "
            "local named volume on each node that uses it"
        )
    _external(
        value.get("external", False), f"{where}.external"
    )  # checked; nodes make volumes on first use
    name = value.get("name", key)
    if not isinstance(name, str) or not VOLUME_NAME.fullmatch(name):
        raise ManifestError(
            f"{where}.name" if "name" in value else where,
            f"{shown(name)} is not a volume name: letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
        )
    return name


def read_definitions(r: Reader, doc: dict) -> Definitions:
    files = {
        (kind, str(key)): _file_source(r, kind, str(key), value, f"{section}.{key}")
        for kind, section in _SECTIONS.items()
        for key, value in r.mapping(doc.get(section), section).items()
    }
    volumes = {
        str(key): _volume(r, str(key), value, f"volumes.{key}")
        for key, value in r.mapping(doc.get("volumes"), "volumes").items()
    }
    return Definitions(files, volumes)


def used_sources(
    r: Reader, defs: Definitions, used: set[tuple[Kind, str]]
) -> tuple[FileSource, ...]:
    """The definitions some service uses; a warning for each that none does."""
    for (kind, key), source in defs.files.items():
        if (kind, key) not in used:
            r.warnings.append(f"{source.where}: no service uses it, not created")
    return tuple(source for ref, source in defs.files.items() if ref in used)


def _mode(value: Any, where: str) -> int:
    """A file mode: a YAML number (0440 is octal in YAML 1.1) or an octal string "0440"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 8)
        except ValueError:
            pass
    raise ManifestError(where, f"must be an octal file mode like 0440, not {shown(value)}")


def service_files(
    r: Reader, defs: Definitions, kind: Kind, refs: list, where: str, used: set[tuple[Kind, str]]
) -> list[dict]:
    """A service's `secrets:` or `configs:` (`- key` or `- {source, target, mode}`) as plain
    FileRefs; adds the keys it uses to `used`."""
    out = []
    for i, ref in enumerate(refs):
        at = f"{where}[{i}]"
        long = r.mapping(ref, at) if not isinstance(ref, str) else {"source": ref}
        r.unsupported(long, {"source", "target", "mode"}, at)
        key = long.get("source")
        source = defs.files.get((kind, key)) if isinstance(key, str) else None
        if source is None:
            raise ManifestError(
                f"{at}.source" if isinstance(ref, dict) else at,
                f"{kind} {shown(key)} is not defined in the file's top-level {_SECTIONS[kind]}",
            )
        used.add((kind, key))
        plain: dict[str, Any] = {"source": source.name}
        if "target" in long or source.name != key:
            # Compose mounts a renamed secret under its key, not its cluster name.
            plain["target"] = long.get("target", key)
        if "mode" in long:
            plain["mode"] = _mode(long["mode"], f"{at}.mode")
        out.append(plain)
    return out


# (host path as written, field) -> the absolute host path
BindResolver = Callable[[str, str], str]


def _short_volume(r: Reader, defs: Definitions, text: str, at: str, resolve: BindResolver) -> dict:
    """`TARGET`, `SOURCE:TARGET` or `SOURCE:TARGET:OPTIONS` (ro, rw, z, nocopy, ...)."""
    parts = text.split(":")
    if len(parts) > 3:
        raise ManifestError(
            at, f"cannot read volume {shown(text)}: expected [SOURCE:]TARGET[:OPTIONS]"
        )
    options = parts[2].split(",") if len(parts) == 3 else []
    unknown = [o for o in options if o not in {"ro", "rw"} | _IGNORED_OPTIONS]
    if unknown:
        raise ManifestError(at, f"unknown volume option {shown(unknown[0])} in {shown(text)}")
    for option in options:
        if option in _IGNORED_OPTIONS:
            r.warnings.append(f"{at}: option {shown(option)} not supported, ignored")
    plain = {"target": parts[-1] if len(parts) < 3 else parts[1], "read_only": "ro" in options}
    if len(parts) > 1:
        plain.update(
            _volume_source(
                r,
                defs,
                "volume" if not parts[0].startswith(("/", ".", "~")) else "bind",
                parts[0],
                at,
                resolve,
            )
        )
    return plain


def _volume_source(
    r: Reader, defs: Definitions, kind: str, source: Any, at: str, resolve: BindResolver
) -> dict:
    if not isinstance(source, str):
        raise ManifestError(at, f"must be a volume's name or a host path, not {shown(source)}")
    if kind == "bind" and source and not source.startswith("/"):
        resolved = resolve(source, at)
        r.warnings.append(
            f"{at}: host path {shown(source)} is {resolved}; it must exist on "
            "every node that runs the service's tasks"
        )
        source = resolved
    if kind == "volume" and source:
        if source not in defs.volumes:
            raise ManifestError(
                at, f"volume {shown(source)} is not defined in the file's top-level volumes"
            )
        source = defs.volumes[source]
    return {"type": kind, "source": source}


def _long_volume(r: Reader, defs: Definitions, value: dict, at: str, resolve: BindResolver) -> dict:
    r.unsupported(
        value,
        {"type", "source", "target", "read_only", "volume", "bind", "tmpfs", "consistency"},
        at,
    )
    for nested in ("volume", "bind", "tmpfs", "consistency"):
        if nested in value:
            r.warnings.append(f"{at}.{nested}: not supported, ignored")
    kind = value.get("type", "volume")
    if kind not in ("volume", "bind", "tmpfs"):
        raise ManifestError(f"{at}.type", f"must be volume, bind or tmpfs, not {shown(kind)}")
    plain = {"target": value.get("target"), "read_only": value.get("read_only", False)}
    if kind == "tmpfs":
        return {**plain, "type": "tmpfs", "source": value.get("source", "")}
    return {
        **plain,
        **_volume_source(r, defs, kind, value.get("source", ""), f"{at}.source", resolve),
    }


def service_volumes(
    r: Reader, defs: Definitions, volumes: list, where: str, resolve: BindResolver
) -> list[dict]:
    """A service's `volumes:` in Compose's short or long syntax, as plain VolumeRefs."""
    return [
        _short_volume(r, defs, v, f"{where}[{i}]", resolve)
        if isinstance(v, str)
        else _long_volume(r, defs, r.mapping(v, f"{where}[{i}]"), f"{where}[{i}]", resolve)
        for i, v in enumerate(volumes)
    ]
