"""What every declarative-file translator shares: the error that names the file's field,
and a reader that checks shapes and collects a warning for each field it skips."""

from __future__ import annotations

from typing import Any

from consensus.services import SpecError


class ManifestError(SpecError):
    """A file cannot be applied: `field` is the path in the file, `reason` says why."""


class Reader:
    """Walks one document, collecting warnings for fields it does not understand."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def unsupported(self, value: dict, known: set[str], where: str) -> None:
        for key in value:
            if key not in known:
                self.warnings.append(f"{where}.{key}: not supported, ignored")

    def mapping(self, value: Any, where: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ManifestError(where, f"must be a mapping, not {type(value).__name__}")
        return value

    def listing(self, value: Any, where: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ManifestError(where, f"must be a list, not {type(value).__name__}")
        return value
