"""Compose variable interpolation, as the Compose specification defines it.

`$VAR` and `${VAR}` take the variable's value; `${VAR:-default}` / `${VAR-default}` a default
when it is unset or empty / unset; `${VAR:?err}` / `${VAR?err}` fail with `err`;
`${VAR:+alt}` / `${VAR+alt}` give `alt` when it is set and non-empty / set. Operands nest
(`${A:-${B:-x}}`). `$$` is a literal `$`, and a `$` that starts no valid name stays as it is.
An unset variable with no default becomes "" with a warning. Values are interpolated,
never keys. Variables come from the caller (the CLI's environment over the `.env` file
beside the Compose file), never from the node's own environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from node.manifests.reader import ManifestError, shown

_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
# Operands nest (`${A:-${B:-x}}`); real files nest two or three deep, and each level scans
# the rest of its text once, so a bound keeps a hostile value linear.
MAX_NESTING = 8
_OPERATORS = (":-", "-", ":?", "?", ":+", "+")


@dataclass
class Interpolator:
    """Interpolates with `variables`, recording the names it looked up and one warning per
    unset name."""

    variables: Mapping[str, str]
    looked_up: set[str] = field(default_factory=set)
    unset: dict[str, str] = field(default_factory=dict)  # name -> first field that used it

    def value(self, value: Any, where: str) -> Any:
        """Every string in `value` (lists and mappings walked; keys left alone)."""
        if isinstance(value, str):
            return self.text(value, where) if "$" in value else value
        if isinstance(value, list):
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.value(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        return value

    def text(self, text: str, where: str, depth: int = 0) -> str:
        if depth > MAX_NESTING:
            raise ManifestError(where, f"interpolation nested more than {MAX_NESTING} deep")
        out, i = [], 0
        while i < len(text):
            dollar = text.find("$", i)
            if dollar < 0:
                out.append(text[i:])
                break
            out.append(text[i:dollar])
            i = dollar + 1
            if text.startswith("$", i):  # $$ -> $
                out.append("$")
                i += 1
            elif text.startswith("{", i):
                end = _closing_brace(text, i + 1, where)
                out.append(self._braced(text[i + 1 : end], where, depth))
                i = end + 1
            elif match := _NAME.match(text, i):
                out.append(self._lookup(match.group(), where))
                i = match.end()
            else:  # not a variable: kept as written
                out.append("$")
        return "".join(out)

    def _lookup(self, name: str, where: str) -> str:
        self.looked_up.add(name)
        if name in self.variables:
            return self.variables[name]
        self.unset.setdefault(name, where)
        return ""

    def _braced(self, body: str, where: str, depth: int) -> str:
        match = _NAME.match(body)
        if not match:
            raise ManifestError(where, f"invalid interpolation format ${{{shown(body)[1:-1]}}}")
        name, rest = match.group(), body[match.end() :]
        if not rest:
            return self._lookup(name, where)
        operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
        if operator is None:
            raise ManifestError(
                where,
                f"invalid interpolation format ${{{shown(body)[1:-1]}}}: "
                "Compose supports only :-, -, :?, ?, :+ and + after a name",
            )
        operand = rest[len(operator) :]
        self.looked_up.add(name)
        is_set = name in self.variables
        value = self.variables.get(name, "")
        present = is_set and (value != "" or not operator.startswith(":"))
        kind = operator[-1]
        if kind == "-":
            return value if present else self.text(operand, where, depth + 1)
        if kind == "+":
            return self.text(operand, where, depth + 1) if present else ""
        if not present:  # ?
            message = self.text(operand, where, depth + 1) or f"variable {name} is required"
            raise ManifestError(where, f"required variable {name} is missing a value: {message}")
        return value

    def warnings(self) -> list[str]:
        return [
            f"{where}: variable {name} is not set; substituted with an empty string"
            for name, where in self.unset.items()
        ]


def _closing_brace(text: str, start: int, where: str) -> int:
    """The index of the `}` that closes a `${` whose body starts at `start`."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ManifestError(where, f"unclosed ${{ in {shown(text)}")


def parse_env_file(text: str, where: str) -> dict[str, str]:
    """A `.env` or `env_file` file: `NAME=VALUE` lines; blank lines and `#` comments skipped;
    a value in single quotes is literal, in double quotes takes `\\n` escapes, unquoted ends
    before ` #`; `export ` before a name is allowed. A line with a name alone sets nothing."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not _NAME.fullmatch(name):
            raise ManifestError(f"{where}:{number}", f"expected NAME=VALUE, not {shown(line)}")
        if not sep:
            continue
        out[name] = _env_value(value.strip())
    return out


def _env_value(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace("\\n", "\n").replace('\\"', '"')
    comment = value.find(" #")
    return (value[:comment] if comment >= 0 else value).rstrip()
