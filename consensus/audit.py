"""The audit trail of API writes: who did what, when, and how it ended.

Nodes commit the writes their API served in batches (`RecordAudit`); every node derives an
`audit` event from each row added (node.loops.events), so the trail is part of the cluster's
event stream with the same numbers everywhere. Only the last AUDIT_KEPT rows stay in the state:
the event stream, not the state, is the trail's record. A row holds names, never a body.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.codec import command
from consensus.state import ClusterState, Result, handles, register_table

AUDIT = "audit"
AUDIT_KEPT = 1000
MAX_BATCH = 256
# Longest text kept in a field: a path or a name is short, and a row must stay small.
_FIELD_LIMIT = 256


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float
    who: str  # `local` (the unix socket), `cluster-token`, or `token NAME (ID)`
    role: str
    method: str
    path: str
    status: int  # the HTTP status the request was answered with
    resource: str = ""  # the object the write named: a service, secret, node, token
    service: str = ""  # the service, when the resource is one


register_table(AUDIT, AuditEntry)


@command("audit.record")
@dataclass(frozen=True, slots=True)
class RecordAudit:
    entries: tuple[AuditEntry, ...]


def _bounded(entry: AuditEntry) -> AuditEntry:
    def cut(text: str) -> str:
        return text[:_FIELD_LIMIT]

    return AuditEntry(
        entry.at,
        cut(entry.who),
        cut(entry.role),
        cut(entry.method),
        cut(entry.path),
        entry.status,
        cut(entry.resource),
        cut(entry.service),
    )


@handles(RecordAudit)
def _record(state: ClusterState, cmd: RecordAudit) -> Result:
    if len(cmd.entries) > MAX_BATCH:
        return Result.fail(f"entries: at most {MAX_BATCH} in one batch", 400)
    table = state.table(AUDIT)
    # Keyed by the command's index and place: increasing, so the dict's order is their age.
    for position, entry in enumerate(cmd.entries):
        table[f"{state.applied:012d}.{position:03d}"] = _bounded(entry)
    while len(table) > AUDIT_KEPT:
        del table[next(iter(table))]
    return Result(True)
