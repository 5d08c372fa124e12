"""Declarative files into service specs: a YAML or JSON list of Shoal specs, Compose files (as
`docker stack deploy` reads them) and Kubernetes documents (as kubectl applies them), in one
multi-document YAML.

`load_manifest(text, origin=...)` returns the specs and a warning for every field Shoal does
not act on (with `strict=True` those warnings are an error): nothing is dropped silently.
Errors name the field in the file, e.g. `services.web.deploy.resources.limits.memory`, and
quote at most a few hundred bytes of any value.

The `Origin` is what only the user's side knows: the variables Compose interpolates (the
shell's environment over the `.env` file beside the file), the file's directory (relative
bind paths) and home (`~`), the `env_file:` files' text, and the stack the file is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from consensus.crons import CronSpec
from consensus.services import ServiceSpec, SpecError, parse_service_spec
from consensus.wire import WireError
from node.manifests import compose, kube
from node.manifests.interpolation import Interpolator
from node.manifests.kube import Attachment
from node.manifests.networks import NetworkDef
from node.manifests.reader import ManifestError, Reader, load_documents
from node.manifests.refs import FileSource

__all__ = [
    "Attachment",
    "FileSource",
    "Manifest",
    "ManifestError",
    "Origin",
    "STACK_LABEL",
    "load_manifest",
    "stack_name_problem",
]

# Docker's label for the stack a service belongs to (`docker stack deploy`).
STACK_LABEL = "com.docker.stack.namespace"
_STACK = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def stack_name_problem(name: str) -> str | None:
    if _STACK.fullmatch(name):
        return None
    return "a stack name is 1-63 lowercase letters, digits, '_' or '-', starting with a letter or digit"


@dataclass(frozen=True, slots=True)
class Origin:
    variables: Mapping[str, str] = field(default_factory=dict)
    directory: str = ""  # absolute; "" when unknown (relative bind paths are then refused)
    home: str = ""
    env_files: Mapping[str, str] = field(default_factory=dict)  # env_file as written -> text
    stack: str = ""  # "" -> the Compose file's `name:`, else none


@dataclass(frozen=True, slots=True)
class Manifest:
    specs: tuple[ServiceSpec, ...]
    warnings: tuple[str, ...]
    # The secrets and configs the file defines (Compose: those its services use): the CLI
    # creates them before it applies the services.
    files: tuple[FileSource, ...] = ()
    # Kubernetes Services that selected no workload of the file.
    attachments: tuple[Attachment, ...] = ()
    stack: str = ""
    variables: tuple[str, ...] = ()  # the names interpolation looked up
    env_files: tuple[str, ...] = ()  # the env_file paths it read
    # The overlay networks a Compose file defines or uses, and Kubernetes workloads' one:
    # made before its services.
    networks: tuple[NetworkDef, ...] = ()
    # (service, target, protocol) of Compose ports with a target only: as in Swarm, each is
    # published on the mesh on a port the cluster picks (consensus.mesh_ports).
    mesh_ports: tuple[tuple[str, int, str], ...] = ()
    # Kubernetes CronJobs: applied after the services.
    crons: tuple[CronSpec, ...] = ()


def load_manifest(text: str, *, strict: bool = False, origin: Origin = Origin()) -> Manifest:
    """Specs from a list of Shoal specs, a Compose file or Kubernetes documents (YAML or JSON,
    several documents allowed). Raises ManifestError on anything it cannot translate, and
    with `strict` on any field it would ignore."""
    docs = load_documents(text)
    if len(docs) == 1 and isinstance(docs[0], list):
        return _shoal_specs(docs[0], origin.stack)
    try:
        return _translate(docs, strict, origin)
    except ManifestError:
        raise
    except WireError as exc:  # the unit parsers name the file's field already
        raise ManifestError(exc.field, exc.reason) from None
    except RecursionError:  # a value nested deeper than any spec field goes
        raise ManifestError("", "nested too deeply") from None


def _shoal_specs(plains: list, stack: str) -> Manifest:
    specs = []
    for i, plain in enumerate(plains):
        try:
            specs.append(parse_service_spec(plain))
        except SpecError as exc:
            raise ManifestError(
                f"[{i}].{exc.field}" if exc.field != "<root>" else f"[{i}]", exc.reason
            ) from None
    _refuse_duplicates(specs)
    return Manifest(_labelled(specs, stack), (), stack=stack)


def _labelled(specs: list[ServiceSpec], stack: str) -> tuple[ServiceSpec, ...]:
    if not stack:
        return tuple(specs)
    problem = stack_name_problem(stack)
    if problem:
        raise ManifestError("stack", f"{stack[:100]!r}: {problem}")
    return tuple(replace(s, labels={**s.labels, STACK_LABEL: stack}) for s in specs)


def _refuse_duplicates(specs: list[ServiceSpec], kind: str = "service") -> None:
    names = [s.name for s in specs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ManifestError("", f"{kind} {duplicate!r} is defined twice")


def _translate(docs: list, strict: bool, origin: Origin) -> Manifest:
    r = Reader()
    compose_docs = [d for d in docs if isinstance(d, dict) and "services" in d and "kind" not in d]
    kube_docs = [d for d in docs if isinstance(d, dict) and "kind" in d]
    if len(compose_docs) + len(kube_docs) != len(docs) or not docs:
        raise ManifestError(
            "", "expected a Compose file (with services:) or Kubernetes documents (with kind:)"
        )
    interpolator = Interpolator(origin.variables)
    read_files: list[str] = []

    def env_file(path: str, where: str, required: bool) -> str:
        read_files.append(path)
        if path in origin.env_files:
            return origin.env_files[path]
        if required:
            raise ManifestError(
                where,
                f"cannot read {path[:200]!r}: env_file is read by the CLI "
                "(shoal apply -f FILE), relative to the Compose file",
            )
        return ""

    specs, files, nets = [], [], []
    stack = origin.stack
    for doc in compose_docs:
        stack = stack or compose.project_name(doc) or ""
        doc_specs, doc_files, doc_nets = compose.translate(
            r, doc, interpolator, origin.directory, origin.home, env_file
        )
        specs += doc_specs
        files += doc_files
        nets += doc_nets
    mesh_ports = compose.mesh_ports(specs)
    kube_specs, kube_files, attachments, kube_nets, crons = kube.translate(r, kube_docs)
    specs += kube_specs
    files += kube_files
    nets += [n for n in kube_nets if n.name not in {m.name for m in nets}]
    _refuse_duplicates(specs)
    _refuse_duplicates([c.template for c in crons], "cron job")
    warnings = interpolator.warnings() + r.finish()
    if strict and warnings:
        raise ManifestError("", "unsupported fields (strict mode): " + "; ".join(warnings))
    templates = _labelled([c.template for c in crons], stack)
    return Manifest(
        _labelled(specs, stack),
        tuple(warnings),
        tuple(files),
        attachments,
        stack,
        tuple(sorted(interpolator.looked_up)),
        tuple(dict.fromkeys(read_files)),
        tuple(nets),
        mesh_ports,
        tuple(replace(c, template=t) for c, t in zip(crons, templates, strict=False)),
    )
