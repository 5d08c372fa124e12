"""Secrets and configs in the replicated state: named payloads that tasks get as files.

A secret's `data` is ciphertext: the API node seals it (node.secret_box) before proposing,
so the Raft log, snapshots and every data dir only ever hold ciphertext, and `apply` never
sees a plaintext or a key. A config's `data` is its plain content (configs are not
confidential; Swarm shows them too). Both are immutable once created. A service may only
name ones that exist, and one that a service names cannot be removed (409 naming the services).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal

from consensus.codec import command
from consensus.crons import crons
from consensus.services import FileRef, ServiceSpec
from consensus.state import ClusterState, Result, handles, register_table
from consensus.tasks import SPEC_CHECKS, services, spec_of, tasks

Kind = Literal["secret", "config"]
KINDS: tuple[Kind, ...] = ("secret", "config")
TABLES: dict[Kind, str] = {"secret": "secrets", "config": "configs"}
# Plaintext sizes, as Docker Swarm limits them.
MAX_SIZE: dict[Kind, int] = {"secret": 500 * 1024, "config": 1000 * 1024}
# Sealing adds a version byte, a nonce and a tag; anything longer is not a sealed secret.
SEAL_OVERHEAD = 1 + 12 + 16
# Names become file names in tasks: Swarm's alphabet, which also rules out '.' and '..'.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class Blob:
    """A secret (data sealed) or a config (data plain). `size` is the plaintext's."""

    id: str
    name: str
    kind: Kind
    size: int
    data: bytes = field(repr=False)
    # sha256 of a config's content; empty for secrets (a short secret's hash can be guessed).
    digest: str = ""
    created_at: float = 0.0


for _kind in KINDS:
    register_table(TABLES[_kind], Blob)


def blobs(state: ClusterState, kind: Kind) -> dict[str, Blob]:
    """Secrets or configs by name."""
    return state.table(TABLES[kind])


def name_problem(name: object) -> str | None:
    if isinstance(name, str) and _NAME.fullmatch(name):
        return None
    return (
        f"{name!r} is not a valid name: 1-64 letters, digits, '_', '.' or '-', starting "
        "with a letter or digit"
    )


def size_problem(kind: Kind, size: int) -> str | None:
    if size > MAX_SIZE[kind]:
        return (
            f"a {kind} holds at most {MAX_SIZE[kind] // 1024} KiB, this one is "
            f"{size} bytes ({size / 1024:.1f} KiB)"
        )
    return None


def refs_of(spec: ServiceSpec, kind: Kind) -> tuple[FileRef, ...]:
    return spec.secrets if kind == "secret" else spec.configs


def users_of(state: ClusterState, kind: Kind, name: str) -> list[str]:
    """The services (and cron jobs, whose runs will) whose current spec names this secret
    or config, sorted."""
    specs = [
        *(s.spec for s in services(state).values()),
        *(c.spec.template for c in crons(state).values()),
    ]
    return sorted(
        {spec.name for spec in specs if any(ref.source == name for ref in refs_of(spec, kind))}
    )


def delivery_problem(
    state: ClusterState, kind: Kind, name: str, task_id: str, node_id: str
) -> str | None:
    """Why the agent of `node_id` may not have this content for `task_id`, or None: only a
    task assigned to that node, meant to run, whose spec version uses it, gets it."""
    task = tasks(state).get(task_id)
    if task is None or task.node_id != node_id:
        return f"task {task_id!r} is not assigned to node {node_id!r}"
    if task.desired != "running" or task.terminal:
        return f"task {task_id!r} is not meant to run"
    spec = spec_of(services(state), task)
    if spec is None or not any(ref.source == name for ref in refs_of(spec, kind)):
        return f"task {task_id!r} does not use {kind} {name!r}"
    return None


def missing_reference(state: ClusterState, spec: ServiceSpec) -> Result | None:
    """A 400 naming the first secret or config the spec names that does not exist."""
    for kind in KINDS:
        table = blobs(state, kind)
        for i, ref in enumerate(refs_of(spec, kind)):
            if ref.source not in table:
                return Result.fail(
                    f"{TABLES[kind]}[{i}].source: no such {kind} {ref.source!r}: "
                    f"create it first (shoal {kind} create)",
                    400,
                )
    return None


SPEC_CHECKS.append(missing_reference)


# -- commands ----------------------------------------------------------------------------


@command("blob.create")
@dataclass(frozen=True, slots=True)
class CreateBlob:
    kind: Kind
    id: str
    name: str
    size: int
    data: bytes = field(repr=False)
    at: float = 0.0


@command("blob.delete")
@dataclass(frozen=True, slots=True)
class DeleteBlob:
    kind: Kind
    name: str


@handles(CreateBlob)
def _create(state: ClusterState, cmd: CreateBlob) -> Result:
    problem = name_problem(cmd.name)
    if problem:
        return Result.fail(f"name: {problem}", 400)
    problem = size_problem(cmd.kind, cmd.size)
    if problem:
        return Result.fail(f"data: {problem}", 400)
    expected = cmd.size + SEAL_OVERHEAD if cmd.kind == "secret" else cmd.size
    if len(cmd.data) != expected:
        return Result.fail(
            f"data: {len(cmd.data)} bytes do not hold a {cmd.kind} of {cmd.size} bytes", 400
        )
    table = blobs(state, cmd.kind)
    if cmd.name in table:
        return Result.fail(f"name: {cmd.kind} {cmd.name!r} already exists", 409)
    digest = hashlib.sha256(cmd.data).hexdigest() if cmd.kind == "config" else ""
    table[cmd.name] = Blob(cmd.id, cmd.name, cmd.kind, cmd.size, cmd.data, digest, cmd.at)
    return Result(True, value={"id": cmd.id})


@handles(DeleteBlob)
def _delete(state: ClusterState, cmd: DeleteBlob) -> Result:
    table = blobs(state, cmd.kind)
    if cmd.name not in table:
        return Result.fail(f"no such {cmd.kind} {cmd.name!r}", 404)
    users = users_of(state, cmd.kind, cmd.name)
    if users:
        return Result.fail(
            f"{cmd.kind} {cmd.name!r} is in use by service(s) {', '.join(users)}: "
            f"remove it from them first",
            409,
        )
    return Result(True, value={"id": table.pop(cmd.name).id})
