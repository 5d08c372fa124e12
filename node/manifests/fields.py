"""Translation helpers both file formats use: words, labels, and the final spec check that
names the file's field."""

from __future__ import annotations

import shlex
from typing import Any

from consensus.services import ServiceSpec, SpecError, parse_service_spec
from node.manifests.reader import ManifestError, shown

# Commands longer than this are refused before they are split: splitting is quadratic in
# shlex, and no real command line comes near it.
MAX_COMMAND = 64 * 1024


def words(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        if len(value) > MAX_COMMAND:
            raise ManifestError(where, f"longer than {MAX_COMMAND} characters")
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ManifestError(where, f"cannot split {shown(value)}: {exc}") from None
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    raise ManifestError(where, f"must be a string or a list of strings, not {shown(value)}")


def labels(value: Any, where: str) -> dict[str, str]:
    if isinstance(value, list):
        return {k: v for k, _, v in (str(item).partition("=") for item in value)}
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if value is None:
        return {}
    raise ManifestError(where, f"must be a mapping or a list of KEY=VALUE, not {shown(value)}")


def to_spec(plain: dict, where: str, fields: dict[str, str]) -> ServiceSpec:
    """parse_service_spec, with errors pointing at the file's field (`fields` maps spec
    fields, or dotted paths in them, to file paths where they differ; "" drops the prefix)."""
    try:
        return parse_service_spec(plain)
    except SpecError as exc:
        raise ManifestError(f"{where}.{file_field(exc.field, fields)}", exc.reason) from None


def file_field(field: str, fields: dict[str, str]) -> str:
    """The file's path for a spec field, by the longest prefix `fields` maps."""
    prefixes = [p for p in fields if field == p or field.startswith((p + ".", p + "["))]
    if not prefixes:
        return field
    prefix = max(prefixes, key=len)
    rest = field[len(prefix):]
    return fields[prefix] + rest if fields[prefix] else rest.lstrip(".")
