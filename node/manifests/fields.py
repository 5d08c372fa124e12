"""Translation helpers both file formats use: words, labels, and the final spec check that
names the file's field."""

from __future__ import annotations

from typing import Any

from consensus.services import ServiceSpec, SpecError, parse_service_spec
from consensus.shell_words import WordsError, split_words
from node.manifests.reader import ManifestError, shown


def words(value: Any, where: str) -> list[str]:
    """A command as words: a string is split as a POSIX shell would (in linear time, with
    the same length cap as a spec's command line)."""
    if isinstance(value, str):
        try:
            return split_words(value)
        except WordsError as exc:
            raise ManifestError(where, f"the command line {exc}") from None
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
    rest = field[len(prefix) :]
    return fields[prefix] + rest if fields[prefix] else rest.lstrip(".")
