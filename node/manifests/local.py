"""What the user's side adds to a file before the cluster reads it (the CLI's part of
`shoal apply -f FILE`): the `.env` file beside it under the shell's environment, its
directory and the user's home, and the `env_file:` files it names, read from the disk."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from node.manifests import Origin
from node.manifests.interpolation import parse_env_file
from node.manifests.reader import ManifestError

# An env_file or .env larger than this is not one.
MAX_ENV_FILE = 1024 * 1024


class _EnvFiles(Mapping[str, str]):
    """env_file paths, relative to the Compose file's directory, read once when asked for."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._read: dict[str, str] = {}

    def __getitem__(self, path: str) -> str:
        if path not in self._read:
            self._read[path] = _read(self._base / os.path.expanduser(path), f"env_file {path}")
        return self._read[path]

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and (self._base / os.path.expanduser(path)).is_file()

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _read(path: Path, what: str) -> str:
    try:
        if path.stat().st_size > MAX_ENV_FILE:
            raise ManifestError(what, f"{path} is larger than {MAX_ENV_FILE} bytes")
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(what, f"cannot read {path}: {exc}") from None


def default_stack(file: Path | None) -> str:
    """Compose's project name: the file's directory name, lowercased, with only letters,
    digits, '_' and '-' kept ("" for standard input)."""
    if file is None:
        return ""
    name = re.sub(r"[^a-z0-9_-]", "", file.resolve().parent.name.lower()).lstrip("_-")
    return name[:63]


def local_origin(file: Path | None, environ: Mapping[str, str], stack: str = "") -> Origin:
    """The Origin of a file read from `file` (None: standard input, read in the working
    directory): variables are `.env` beside it under `environ`, as Compose takes them."""
    base = Path.cwd() if file is None else file.resolve().parent
    variables: dict[str, str] = {}
    dotenv = base / ".env"
    if dotenv.is_file():
        variables.update(parse_env_file(_read(dotenv, ".env"), ".env"))
    variables.update(environ)
    return Origin(
        variables=variables,
        directory=str(base),
        home=os.path.expanduser("~"),
        env_files=_EnvFiles(base),
        stack=stack or default_stack(file),
    )
