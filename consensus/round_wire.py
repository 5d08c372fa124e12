"""The compact payload of a scheduling round (`tasks.assign`, schema version 2).

A round creates and assigns up to 10,000 tasks, and every node decodes it on its Raft
thread. As one object per task field by field, its payload cost each node more than the
scheduler spent placing the tasks. Here consecutive tasks of a round that share the rest
(service, spec version, reservations, timestamps...) form a group whose shared fields are
written and checked once, and each task is a row of the five fields that differ; assignments are
`[task_id, node_id]` pairs. Decoding checks every value as strictly as `wire.from_plain`
and names the offending field (`create[0].rows[17][2]`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from consensus import codec
from consensus.tasks import Assignment, AssignTasks, Explanation, StopTask, Task
from consensus.wire import WireError, from_plain, to_plain

VERSION = 2
# The fields that differ between the tasks of one round's group, in row order.
ROW = ("id", "slot", "node_id", "restarts", "message")
_ROW_TYPES = (str, int, str, int, str)
SHARED = tuple(f.name for f in dataclasses.fields(Task) if f.name not in ROW)
_KEYS = frozenset({"at", "stop", "remove", "create", "assign", "explain"})


def round_to_payload(cmd: AssignTasks) -> dict[str, object]:
    # Runs of consecutive tasks that share the rest, so the order of `create` is kept (the
    # scheduler makes a service's tasks together: a round has about one run per service).
    runs: list[tuple[tuple[object, ...], list[list[Any]]]] = []
    for task in cmd.create:
        shared = tuple(getattr(task, name) for name in SHARED)
        if not runs or runs[-1][0] != shared:
            runs.append((shared, []))
        runs[-1][1].append([getattr(task, name) for name in ROW])
    return {
        "at": cmd.at,
        "stop": to_plain(cmd.stop),
        "remove": list(cmd.remove),
        "create": [
            {"shared": dict(zip(SHARED, map(to_plain, shared), strict=True)), "rows": rows}
            for shared, rows in runs
        ],
        "assign": [[a.task_id, a.node_id] for a in cmd.assign],
        "explain": to_plain(cmd.explain),
    }


def round_from_payload(payload: Any) -> AssignTasks:
    if not isinstance(payload, dict):
        raise WireError("", f"must be an object, not {type(payload).__name__}")
    unknown = sorted(str(k) for k in payload if k not in _KEYS)
    if unknown:
        raise WireError(unknown[0], "unknown field")
    if "at" not in payload:
        raise WireError("at", "is required")
    return AssignTasks(
        at=from_plain(float, payload["at"], "at"),
        stop=from_plain(tuple[StopTask, ...], payload.get("stop", []), "stop"),
        remove=from_plain(tuple[str, ...], payload.get("remove", []), "remove"),
        create=tuple(_created(_list(payload.get("create", []), "create"))),
        assign=tuple(
            Assignment(*pair) for pair in _rows(payload.get("assign", []), "assign", (str, str))
        ),
        explain=from_plain(tuple[Explanation, ...], payload.get("explain", []), "explain"),
    )


def _created(groups: list[Any]) -> list[Task]:
    made: list[Task] = []
    for g, group in enumerate(groups):
        path = f"create[{g}]"
        if not isinstance(group, dict) or set(group) != {"shared", "rows"}:
            raise WireError(path, "must be an object with exactly 'shared' and 'rows'")
        shared = group["shared"]
        if not isinstance(shared, dict):
            raise WireError(f"{path}.shared", f"must be an object, not {type(shared).__name__}")
        clash = sorted(k for k in shared if k in ROW)
        if clash:
            raise WireError(f"{path}.shared.{clash[0]}", "belongs in the rows")
        # Checked once for the whole group; the placeholders are replaced row by row.
        template = from_plain(Task, {**shared, "id": "", "slot": 0}, f"{path}.shared")
        base = {name: getattr(template, name) for name in SHARED}
        made.extend(
            Task(**base, **dict(zip(ROW, row, strict=True)))
            for row in _rows(group["rows"], f"{path}.rows", _ROW_TYPES)
        )
    return made


def _rows(value: Any, path: str, types: tuple[type, ...]) -> list[list[Any]]:
    rows = _list(value, path)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(types):
            raise WireError(f"{path}[{i}]", f"must be a list of {len(types)} values")
        for k, (item, expected) in enumerate(zip(row, types, strict=True)):
            if not isinstance(item, expected) or isinstance(item, bool):
                raise WireError(
                    f"{path}[{i}][{k}]", f"must be {expected.__name__}, not {type(item).__name__}"
                )
    return rows


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise WireError(path, f"must be a list, not {type(value).__name__}")
    return value


codec.compact_form(AssignTasks, VERSION, round_to_payload, round_from_payload)
