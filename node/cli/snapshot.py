"""`shoal cluster snapshot save|inspect`, `shoal node doctor`, and what `shoal node start
--restore|--force-new-cluster` does before the node starts."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from typing import TYPE_CHECKING

from node.cli import output
from node.cli.common import Refused, UsageError, default_data_dir, emit, needs_loop

if TYPE_CHECKING:
    from node.config import NodeConfig, Stored

# A snapshot larger than this is not one: the CLI stops reading instead of filling the disk.
MAX_SNAPSHOT = 8 << 30
# How long the node may take to serialise the state before the answer begins.
PREPARE_WAIT = 120.0


def register_cluster(csub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    snapshot = csub.add_parser("snapshot", help="save or inspect a snapshot of the cluster's state")
    ssub = snapshot.add_subparsers(dest="snapshot_command", required=True, metavar="COMMAND")
    save = ssub.add_parser(
        "save", parents=[common], help="save the replicated state at a committed index into FILE"
    )
    save.add_argument("file", metavar="FILE")
    save.set_defaults(handler=_save)
    inspect = ssub.add_parser(
        "inspect", parents=[common], help="check a snapshot file offline and show what it holds"
    )
    inspect.add_argument("file", metavar="FILE")
    inspect.set_defaults(local=_inspect)


def register_node(nsub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    doctor = nsub.add_parser(
        "doctor",
        parents=[common],
        help="check a data dir offline (permissions, identity, Raft log, snapshots)",
    )
    doctor.set_defaults(local=_doctor)


@needs_loop
async def _save(args: argparse.Namespace, client) -> int:
    from node import backup

    tmp = args.file + ".part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            await client.download("/v1/cluster/snapshot", f.write, MAX_SNAPSHOT, PREPARE_WAIT)
        header, _payload = backup.read(tmp)
        os.replace(tmp, args.file)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return emit(
        args,
        {"file": args.file, **_header_json(header)},
        lambda s: print(
            f"saved {s['file']}: cluster {s['cluster_id']}, index {s['index']}, term {s['term']}, "
            f"{output.size(s['size'])}, sha256 {s['sha256']}"
        ),
    )


def _header_json(header) -> dict:
    from dataclasses import asdict

    plain = asdict(header)
    del plain["seal"]
    plain["created"] = datetime.datetime.fromtimestamp(header.created_at, datetime.UTC).isoformat(
        timespec="seconds"
    )
    return plain


def _inspect(args: argparse.Namespace) -> int:
    from consensus.snapshot import SnapshotError, counts, decode_state
    from node import backup

    try:
        header, payload = backup.read(args.file)
        state = decode_state(payload)
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    except SnapshotError as exc:
        raise Refused(f"{args.file}: {exc}") from None
    found = {**_header_json(header), "checksum": "ok", "counts": counts(state)}

    def render(s: dict) -> None:
        output.table(
            ("FIELD", "VALUE"),
            [
                ("format", s["format"]),
                ("cluster", s["cluster_id"]),
                ("written by", f"Shoal {s['shoal_version']}"),
                ("index", s["index"]),
                ("term", s["term"]),
                ("created", s["created"]),
                ("size", output.size(s["size"])),
                ("sha256", f"{s['sha256']} (ok)"),
                *((name, count) for name, count in s["counts"].items()),
            ],
        )

    return emit(args, found, render)


def _doctor(args: argparse.Namespace) -> int:
    from node.datadir import doctor

    data_dir = os.path.abspath(
        args.data_dir or os.environ.get("SHOAL_DATA_DIR") or default_data_dir()
    )
    checks = doctor(data_dir)
    if args.output == "json":
        emit(
            args,
            [{"ok": c.ok, "check": c.what, "detail": c.detail} for c in checks],
            lambda _: None,
        )
    else:
        for check in checks:
            print(f"{'ok  ' if check.ok else 'FAIL'} {check.what}: {check.detail}")
    if all(c.ok for c in checks):
        return 0
    print(f"shoal: {data_dir} has problems (FAIL above)", file=sys.stderr)
    return 1


# -- node start --restore | --force-new-cluster ------------------------------------------
def check_recovery_flags(args: argparse.Namespace) -> None:
    if args.restore and args.force_new_cluster:
        raise UsageError("--restore and --force-new-cluster exclude each other")
    if (args.restore or args.force_new_cluster) and args.join:
        raise UsageError(
            "--join makes a node part of a live cluster: --restore and "
            "--force-new-cluster make a new one"
        )
    if args.restore and not args.recovery_key:
        raise UsageError(
            "--restore needs --recovery-key (or $SHOAL_RECOVERY_KEY): the recovery key "
            "of the cluster the snapshot was taken from, as `shoal cluster recovery-key` "
            "printed it (its secrets are sealed with that cluster's secret)"
        )


def recover(args: argparse.Namespace, stored: Stored | None, config: NodeConfig) -> Stored:
    """The data dir made ready by --restore or --force-new-cluster (a usage error if it cannot be)."""
    from node import backup
    from node.config import Stored

    try:
        if args.restore:
            made = backup.restore(config, os.path.abspath(args.restore), args.recovery_key)
            print(
                f"restored {args.restore} into a new cluster {made.identity.cluster_id}; "
                f"other nodes join it with the new token",
                file=sys.stderr,
            )
            return made
        if stored is None or stored.identity is None:
            raise backup.RecoveryError(
                f"--force-new-cluster needs the data dir of a surviving "
                f"voter, and {config.data_dir} holds no node"
            )
        import asyncio  # here only: the CLI's other commands start no event loop

        leading = asyncio.run(
            _leader_elsewhere(
                stored.identity.voter_apis, config.api_address, _ca_of(config.data_dir)
            )
        )
        if leading:
            raise backup.RecoveryError(
                f"--force-new-cluster is for a lost quorum, and the cluster has a leader "
                f"({leading}): start this node without the flag"
            )
        return backup.force_new_cluster(Stored(config, stored.identity))
    except backup.RecoveryError as exc:
        raise UsageError(str(exc)) from None


async def _leader_elsewhere(
    voter_apis: tuple[str, ...], own_api: str, ca_file: str | None
) -> str | None:
    """The leader another voter of the cluster follows, if one answers: forcing a new cluster
    beside a live one would split it in two. (`/healthz` is open; the voters' certificates are
    checked against the cluster's CA, which this data dir holds.)"""
    from node.cli.lean_client import ApiError, LeanClient, Unreachable

    for api in voter_apis:
        if api == own_api:
            continue
        try:
            async with LeanClient(api, timeout=2.0, ca_file=ca_file) as client:
                health = await client.get("/healthz")
        except (ApiError, Unreachable):
            continue
        if isinstance(health, dict) and health.get("leader"):
            return f"{health['leader']}, as {api} says"
    return None


def _ca_of(data_dir: str) -> str | None:
    from node.pki.store import ca_path

    path = ca_path(data_dir)
    return path if os.path.exists(path) else None
