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

from node import output
from node.cli import UsageError, emit
from node.cli_service import _read_file as read_source
from node.lean_client import ApiError

if TYPE_CHECKING:  # the translator loads only when a file is applied
    from node.client import ShoalClient
    from node.compose_refs import FileSource


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    apply = sub.add_parser("apply", parents=[common],
                           help="create or update services from a Compose or Kubernetes file")
    apply.add_argument("-f", "--file", required=True, help="the file ('-' reads standard input)")
    apply.add_argument("--strict", action="store_true", help="unsupported fields are errors")
    apply.set_defaults(handler=_apply)


def _read_content(source: FileSource, base: Path) -> bytes:
    """A `file:` source's content."""
    path = base / os.path.expanduser(source.file)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{source.where}.file: cannot read {path}: {exc.strerror or exc}") from None


async def _content(source: FileSource, base: Path) -> bytes:
    return source.content if source.content is not None else \
        await asyncio.to_thread(_read_content, source, base)


async def _post_file(client: ShoalClient, source: FileSource, data: bytes, *, dry_run: bool) -> dict:
    """Create one secret or config unless it holds `data` already (with `dry_run`, only check
    that it could be); an error names the file's field."""
    body = {"name": source.name, "data": base64.b64encode(data).decode(), "exist_ok": True}
    try:
        return await client.request("POST", f"/v1/{source.kind}s", json_body=body,
                                    params={"dry_run": "1"} if dry_run else None)
    except ApiError as exc:
        raise ApiError(exc.status, exc.message, f"{source.where} ({exc.field})" if exc.field
                       else source.where) from None


def _render(answer: dict) -> None:
    if answer.get("files"):
        output.table(("KIND", "NAME", "ACTION"), ((f["kind"], f["name"], f["action"]) for f in answer["files"]))
    output.table(("SERVICE", "ACTION", "VERSION"),
                 ((s["name"], s["action"], s["version"]) for s in answer["services"]))
    for warning in answer["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)


async def _apply(args: argparse.Namespace, client: ShoalClient) -> int:
    from node.manifests import ManifestError, load_manifest

    document = await read_source(args.file)
    base = Path.cwd() if args.file == "-" else Path(args.file).resolve().parent
    try:
        manifest = await asyncio.to_thread(load_manifest, document.decode(), strict=args.strict)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{args.file} is not UTF-8 text: {exc}") from None
    except ManifestError as exc:
        where = "" if exc.field == "<root>" else f"{exc.field}: "
        raise UsageError(f"{args.file}: {where}{exc.reason}") from None
    params = {"strict": "1"} if args.strict else {}
    # Check everything first, then change: each file's content (readable, not too large, the
    # same as what a secret or config of that name holds), then every service against the
    # cluster's state (external secrets and configs there, no conflicts). Only then create.
    made = {source: await _content(source, base) for source in manifest.files if not source.external}
    for source, data in made.items():
        await _post_file(client, source, data, dry_run=True)
    await client.request("POST", "/v1/apply", data=document, params={**params, "dry_run": "1"},
                         content_type="application/yaml")
    existing = {(kind, row["name"]) for kind in sorted({s.kind for s in made})
                for row in await client.get(f"/v1/{kind}s")}
    files = []
    for source in manifest.files:
        if source in made:
            await _post_file(client, source, made[source], dry_run=False)
        action = ("external" if source.external else
                  "unchanged" if (source.kind, source.name) in existing else "created")
        files.append({"kind": source.kind, "name": source.name, "action": action})
    answer = await client.request("POST", "/v1/apply", data=document, params=params or None,
                                  content_type="application/yaml")
    return emit(args, {**answer, "files": files} if files else answer, _render)
