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
    fields to file paths where they differ)."""
    try:
        return parse_service_spec(plain)
    except SpecError as exc:
        top = exc.field.split(".")[0].split("[")[0]
        field = fields.get(top, top) + exc.field[len(top):] if top in fields else exc.field
        raise ManifestError(f"{where}.{field}", exc.reason) from None
