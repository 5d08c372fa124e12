"""What every declarative-file translator shares: bounded YAML loading, the error that names
the file's field, and a reader that checks shapes and collects a warning for each field it
skips."""

from __future__ import annotations

import reprlib
from typing import Any

from consensus.services import SpecError

# Once its aliases are expanded, a document may weigh (values + characters of its scalars) at
# most this much more than its own text: real files with anchors stay far below, while
# "billion laughs" (a few hundred bytes of nested aliases) would reach billions. Everything
# that walks the document afterwards (interpolation, error messages) is bounded by it.
MAX_EXPANSION = 2_000_000
# An error or warning quotes at most this much of a value from the file.
MAX_QUOTE = 200
_REASON_LIMIT = 1_000

_quote = reprlib.Repr()
_quote.maxstring = MAX_QUOTE
_quote.maxother = MAX_QUOTE
_quote.maxlist = _quote.maxdict = _quote.maxtuple = _quote.maxset = 8
_quote.maxlevel = 3


def shown(value: Any) -> str:
    """A value quoted for a message: bounded in length and depth, however large the value
    (an alias-expanded structure is never walked whole)."""
    text = _quote.repr(value)
    return text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE] + "..."


class ManifestError(SpecError):
    """A file cannot be applied: `field` is the path in the file, `reason` says why."""

    def __init__(self, field: str, reason: str) -> None:
        if len(reason) > _REASON_LIMIT:  # a reason built from a parser's own message
            reason = reason[:_REASON_LIMIT] + "..."
        super().__init__(field[:_REASON_LIMIT], reason)


def load_documents(text: str) -> list:
    """Every non-empty document of a YAML (or JSON) text, refusing aliases that would expand
    it past MAX_EXPANSION and aliases that refer to themselves."""
    import yaml  # loaded on first use: most nodes never parse a file, and stay smaller

    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        budget = MAX_EXPANSION + len(text)
        sizes: dict[int, int] = {}
        if sum(_expanded_size(node, sizes, set(), budget) for node in nodes) > budget:
            raise _too_big()
        loader = yaml.SafeLoader("")
        try:
            docs = [loader.construct_document(node) for node in nodes if node is not None]
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ManifestError("", f"not valid YAML or JSON: {exc}") from None
    except RecursionError:
        raise ManifestError("", "nested too deeply") from None
    return [d for d in docs if d is not None]


def _too_big() -> ManifestError:
    return ManifestError(
        "",
        f"its aliases expand it by more than {MAX_EXPANSION:,} values and "
        "characters; refused (write the values out)",
    )


def _expanded_size(node: Any, sizes: dict[int, int], open_nodes: set[int], budget: int) -> int:
    """What the tree weighs once every alias is replaced by its value: one per value plus
    the characters of its scalars. A shared node counts once per use but is weighed once."""
    import yaml

    if node is None:
        return 0
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise ManifestError("", "an alias refers to the value that holds it; refused")
    open_nodes.add(key)
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, sizes, open_nodes, budget) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(
            _expanded_size(k, sizes, open_nodes, budget)
            + _expanded_size(v, sizes, open_nodes, budget)
            for k, v in node.value
        )
    else:
        size = 1 + len(node.value)
    open_nodes.discard(key)
    sizes[key] = size
    if size > budget:
        raise _too_big()
    return size


class Reader:
    """Walks one document, collecting warnings for fields it does not understand."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self._once: dict[str, tuple[int, str, list[str]]] = {}

    def unsupported(self, value: dict, known: set[str], where: str) -> None:
        for key in value:
            if key not in known and not str(key).startswith("x-"):  # extensions are legal
                self.warnings.append(f"{where}.{key}: not supported, ignored")

    def once(self, key: str, where: str, reason: str) -> None:
        """One warning for a kind of field however many places use it, naming them."""
        entry = self._once.get(key)
        if entry is None:
            self._once[key] = entry = (len(self.warnings), reason, [])
            self.warnings.append(reason)  # its place; finish() names where
        entry[2].append(where)

    def finish(self) -> list[str]:
        """Every warning, in the order first met."""
        out = list(self.warnings)
        for index, reason, places in self._once.values():
            more = f" (and {len(places) - 1} more)" if len(places) > 1 else ""
            out[index] = f"{places[0]}{more}: {reason}"
        return out

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
