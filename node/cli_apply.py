"""`shoal apply -f FILE`: create or update the services a Compose file, Kubernetes documents
or a list of Shoal specs define.

The nodes translate the file (POST /v1/apply); the CLI first makes what only it can reach:
the secrets and configs a Compose file reads from `file:` paths, relative to the file's own
directory (standard input's are relative to the working directory). One that exists with
other content stops the apply with an error, as secrets and configs cannot change.
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
from node.client import ApiError, ShoalClient

if TYPE_CHECKING:  # the translator loads only when a file is applied
    from node.manifests.refs import FileSource


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


async def _ensure(client: ShoalClient, source: FileSource, base: Path, existing: set[tuple[str, str]]) -> dict:
    """Make one secret or config exist with the file's content -> {kind, name, action};
    `existing` holds the (kind, name) of those there before."""
    row = {"kind": source.kind, "name": source.name}
    path = f"/v1/{source.kind}s"
    if source.external:
        try:
            await client.get(f"{path}/{source.name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            raise UsageError(f"{source.where}: external, but the cluster has no {source.kind} "
                             f"{source.name!r}: create it first (shoal {source.kind} create "
                             f"{source.name} FILE)") from None
        return {**row, "action": "external"}
    data = source.content if source.content is not None else \
        await asyncio.to_thread(_read_content, source, base)
    body = {"name": source.name, "data": base64.b64encode(data).decode(), "exist_ok": True}
    try:
        answer = await client.post(path, body)  # 200 for the same content already there
    except ApiError as exc:
        raise ApiError(exc.status, exc.message, f"{source.where} ({exc.field})" if exc.field
                       else source.where) from None
    return {**row, "action": "unchanged" if (source.kind, answer["name"]) in existing else "created"}


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
    kinds = {source.kind for source in manifest.files if not source.external}
    existing = {(kind, row["name"]) for kind in sorted(kinds) for row in await client.get(f"/v1/{kind}s")}
    files = [await _ensure(client, source, base, existing) for source in manifest.files]
    answer = await client.request("POST", "/v1/apply", data=document,
                                  params={"strict": "1"} if args.strict else None,
                                  content_type="application/yaml")
    return emit(args, {**answer, "files": files} if files else answer, _render)
