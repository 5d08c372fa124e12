"""Is a data dir safe to start on? The checks a node makes before it starts, and
`shoal node doctor`'s, which also looks at permissions and kept snapshots.

A node must never join with wrong state: a data dir of another cluster, of a newer Shoal, or
with a Raft log or snapshot it cannot read (pysyncobj would log the error and start from an
EMPTY state) is refused with the reason and what to do.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import msgpack

from consensus import raft_files
from consensus.snapshot import SnapshotError
from node import backup
from node import config as cfg
from node.pki import store as pki_store
from node.pki.authority import fingerprint, split_bundle
from node.pki.cluster_ca import NoAuthority, current_token
from node.security import JoinToken, TokenError

_WHAT_TO_DO = (
    "move the data dir aside and start on an empty one (--join a live node, or "
    "--restore a snapshot); `shoal node doctor --data-dir {dir}` checks the rest"
)


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    what: str
    detail: str


def _raft_problem(data_dir: str, role: str) -> str | None:
    raft_dir = os.path.join(data_dir, "raft")
    try:
        journal = raft_files.journal_path(raft_dir, role)
        if os.path.exists(journal):
            raft_files.read_journal(journal)
        dump = raft_files.dump_path(raft_dir, role)
        if os.path.exists(dump):
            state, _last = raft_files.read_dump(dump)
            msgpack.unpackb(state, raw=False, strict_map_key=False)
    except raft_files.RaftFileError as exc:
        return str(exc)
    except (OSError, ValueError) as exc:  # msgpack's errors are ValueErrors
        return f"{raft_dir}: {exc}"
    return None


def _trusted_digests(data_dir: str) -> set[str]:
    """The digests of the CAs in this data dir's trust bundle (what join tokens pin)."""
    try:
        with open(pki_store.ca_path(data_dir), "rb") as f:
            bundle = f.read()
    except OSError:
        return set()
    return {fingerprint(cert.encode()) for cert in split_bundle(bundle)}


def _token_check(data_dir: str, identity: cfg.Identity) -> Check:
    """Does the join-token file hold the cluster's current token, as this node's Raft files
    have the state? A running node rewrites it when the token changes
    (node.loops.join_token); a file left stale says which rotation it missed."""
    path = os.path.join(data_dir, cfg.TOKEN_FILE)
    with open(path) as f:
        try:
            token = JoinToken.parse(f.read())
        except TokenError:
            token = None
    if token is None or token.ca_digest not in _trusted_digests(data_dir):
        return Check(False, "join token", f"{path} holds another cluster's token or is damaged")
    try:
        info = raft_files.replay(os.path.join(data_dir, "raft"), identity.role).cluster
        current = current_token(info, identity.keys)
    except (OSError, ValueError, NoAuthority):  # the raft log check says what is wrong
        return Check(True, "join token", "pins a CA this node trusts")
    if token == current:
        return Check(True, "join token", "the cluster's current token")
    missed = (
        "`shoal cluster rotate-ca` (it names the root CA before it)"
        if token.ca_digest != current.ca_digest
        else f"`shoal cluster rotate-token` (the cluster is at generation {info.join_generation})"
    )
    return Check(
        False,
        "join token",
        f"{path} is stale: it was made before {missed}; the node rewrites it when it runs, "
        "and `shoal cluster token` prints the current one",
    )


def start_problem(data_dir: str, join_token: str | None) -> str | None:
    """Why a node must not start on `data_dir` (one line), or None."""
    try:
        stored = cfg.load(data_dir)
    except cfg.DataDirError as exc:
        return str(exc)
    if stored is None or stored.identity is None:
        return None
    identity = stored.identity
    if join_token:
        try:
            joining = JoinToken.parse(join_token).ca_digest
        except TokenError as exc:
            return str(exc)
        if joining not in _trusted_digests(data_dir):
            return (
                f"{data_dir} belongs to cluster {identity.cluster_id}, and --token pins a CA "
                f"this node does not trust (another cluster's, or a CA rotated while this "
                f"node was away): start without --join to run in cluster "
                f"{identity.cluster_id}, or give an empty --data-dir to join with that token"
            )
    problem = _raft_problem(data_dir, identity.role)
    if problem:
        return f"the Raft log does not read: {problem}; " + _WHAT_TO_DO.format(dir=data_dir)
    return None


def _mode_check(path: str, allowed: tuple[int, ...]) -> Check:
    info = os.stat(path)
    mode = stat.S_IMODE(info.st_mode)
    shown = " or ".join(f"{m:04o}" for m in allowed)
    if info.st_uid != os.geteuid():
        return Check(
            False, f"owner of {path}", f"uid {info.st_uid}, not this user ({os.geteuid()})"
        )
    return Check(
        mode in allowed,
        f"mode of {path}",
        f"{mode:04o}"
        + (
            "" if mode in allowed else f", should be {shown} (it holds the cluster's keys or state)"
        ),
    )


def doctor(data_dir: str) -> list[Check]:
    """Every check of a data dir, offline (no node may be running on it for a sure answer)."""
    if not os.path.isdir(data_dir):
        return [Check(False, "data dir", f"{data_dir} is not a directory")]
    checks = [_mode_check(data_dir, (0o700, 0o711))]
    try:
        stored = cfg.load(data_dir)
    except cfg.DataDirError as exc:
        return checks + [Check(False, "identity", str(exc))]
    if stored is None or stored.identity is None:
        return checks + [Check(False, "identity", f"no {cfg.CONFIG_FILE}: no node was made here")]
    identity = stored.identity
    checks.append(
        Check(
            True,
            "identity",
            f"node {stored.config.name} ({identity.node_id}), "
            f"{identity.role} of cluster {identity.cluster_id}",
        )
    )
    for name in (cfg.CONFIG_FILE, cfg.TOKEN_FILE):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            checks.append(_mode_check(path, (0o600,)))
    if os.path.exists(os.path.join(data_dir, cfg.TOKEN_FILE)):
        checks.append(_token_check(data_dir, identity))
    problem = _raft_problem(data_dir, identity.role)
    raft_dir = os.path.join(data_dir, "raft")
    checks.append(
        Check(problem is None, "raft log", problem or f"{raft_dir}: journal and snapshot read")
    )
    for path in backup.kept(data_dir):
        try:
            header, _payload = backup.read(path)
            checks.append(
                Check(
                    True,
                    f"snapshot {os.path.basename(path)}",
                    f"index {header.index}, sha256 matches",
                )
            )
        except (OSError, SnapshotError) as exc:
            checks.append(Check(False, f"snapshot {os.path.basename(path)}", str(exc)))
        checks.append(_mode_check(path, (0o600,)))
    return checks
