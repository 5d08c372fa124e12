"""`shoal apply -f FILE`: create or update the services a Compose file, Kubernetes documents
or a list of Shoal specs define.

The nodes translate the file (POST /v1/apply); the CLI first makes what only it can reach:
the secrets and configs a Compose file reads from `file:` paths, relative to the file's own
directory (standard input's are relative to the working directory). One that exists with
other content stops the apply with an error, as secrets and configs cannot change.
Everything is checked before anything is made (the nodes' `dry_run`), so an apply that fails
leaves the cluster as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from node.cli import output
from node.cli.common import UsageError, emit, needs_loop, read_file
from node.cli.lean_client import ApiError

if TYPE_CHECKING:  # the translator loads only when a file is applied
    from node.client import ShoalClient
    from node.manifests.refs import FileSource


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    apply = sub.add_parser(
        "apply",
        parents=[common],
        help="create or update services from a Compose or Kubernetes file",
    )
    apply.add_argument("-f", "--file", required=True, help="the file ('-' reads standard input)")
    apply.add_argument("--strict", action="store_true", help="unsupported fields are errors")
    apply.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would change, with the warnings, and change nothing",
    )
    apply.add_argument(
        "--prune",
        action="store_true",
        help="remove the stack's services that the file no longer holds",
    )
    apply.add_argument(
        "--stack",
        default="",
        help="the stack the file's services form "
        "(default: a Compose file's name:, else the file's directory name)",
    )
    apply.set_defaults(handler=_apply)


def _read_content(source: FileSource, base: Path) -> bytes:
    """A `file:` source's content."""
    path = base / os.path.expanduser(source.file)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"{source.where}.file: cannot read {path}: {exc.strerror or exc}"
        ) from None


async def _content(source: FileSource, base: Path) -> bytes:
    return (
        source.content
        if source.content is not None
        else await asyncio.to_thread(_read_content, source, base)
    )


async def _post_file(
    client: ShoalClient, source: FileSource, data: bytes, *, dry_run: bool
) -> dict:
    """Create one secret or config unless it holds `data` already (with `dry_run`, only check
    that it could be); an error names the file's field."""
    body = {"name": source.name, "data": base64.b64encode(data).decode(), "exist_ok": True}
    try:
        return await client.request(
            "POST",
            f"/v1/{source.kind}s",
            json_body=body,
            params={"dry_run": "1"} if dry_run else None,
        )
    except ApiError as exc:
        raise ApiError(
            exc.status, exc.message, f"{source.where} ({exc.field})" if exc.field else source.where
        ) from None


def _render(answer: dict) -> None:
    would = "WOULD BE " if answer.get("dry_run") else ""
    if answer.get("files"):
        output.table(
            ("KIND", "NAME", f"{would}ACTION"),
            ((f["kind"], f["name"], f["action"]) for f in answer["files"]),
        )
    changes = any(s.get("changes") for s in answer["services"])
    output.table(
        ("SERVICE", f"{would}ACTION", "VERSION") + (("CHANGES",) if changes else ()),
        (
            (s["name"], s["action"], s["version"] or "")
            + ((",".join(s.get("changes", ())),) if changes else ())
            for s in answer["services"]
        ),
    )
    if answer.get("crons"):
        output.table(
            ("CRON JOB", f"{would}ACTION"), ((c["name"], c["action"]) for c in answer["crons"])
        )
    if answer.get("selectors"):  # Kubernetes Services kept without their workload
        output.table(
            ("KUBERNETES SERVICE", "ACTION"),
            ((s["name"], s["action"]) for s in answer["selectors"]),
        )
    for warning in answer["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)


@needs_loop
async def _apply(args: argparse.Namespace, client: ShoalClient) -> int:
    from node.manifests import Manifest, ManifestError, Origin, load_manifest
    from node.manifests.local import local_origin

    document = await read_file(args.file)
    base = Path.cwd() if args.file == "-" else Path(args.file).resolve().parent

    def translate() -> tuple[Origin, Manifest]:
        origin = local_origin(None if args.file == "-" else Path(args.file), os.environ, args.stack)
        return origin, load_manifest(document.decode(), strict=args.strict, origin=origin)

    try:
        origin, manifest = await asyncio.to_thread(translate)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{args.file} is not UTF-8 text: {exc}") from None
    except ManifestError as exc:
        where = "" if exc.field == "<root>" else f"{exc.field}: "
        raise UsageError(f"{args.file}: {where}{exc.reason}") from None
    # Check everything first, then change: each file's content (readable, not too large, the
    # same as what a secret or config of that name holds), then every service against the
    # cluster's state (external secrets and configs there, no conflicts). Only then create.
    made = {
        source: await _content(source, base) for source in manifest.files if not source.external
    }
    for source, data in made.items():
        await _post_file(client, source, data, dry_run=True)
    # The cluster reads the file itself, with what only this side knows: the variables the
    # file uses, its directory and the user's home, the env_file files it reads.
    envelope = {
        "document": document.decode(),
        "stack": manifest.stack,
        "directory": origin.directory,
        "home": origin.home,
        "variables": {n: origin.variables[n] for n in manifest.variables if n in origin.variables},
        "env_files": {p: origin.env_files[p] for p in manifest.env_files if p in origin.env_files},
    }
    flags = {"strict": args.strict, "prune": args.prune}
    params = {k: "1" for k, on in flags.items() if on}
    checked = await client.request(
        "POST", "/v1/apply", json_body=envelope, params={**params, "dry_run": "1"}
    )
    existing = {
        (kind, row["name"])
        for kind in sorted({s.kind for s in made})
        for row in await client.get(f"/v1/{kind}s")
    }
    files = []
    for source in manifest.files:
        if source in made and not args.dry_run:
            await _post_file(client, source, made[source], dry_run=False)
        action = (
            "external"
            if source.external
            else "unchanged"
            if (source.kind, source.name) in existing
            else "created"
        )
        files.append({"kind": source.kind, "name": source.name, "action": action})
    answer = (
        checked
        if args.dry_run
        else await client.request("POST", "/v1/apply", json_body=envelope, params=params or None)
    )
    return emit(args, {**answer, "files": files} if files else answer, _render)
