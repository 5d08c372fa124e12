"""Kubernetes documents into service specs, as kubectl would apply them.

Deployments, StatefulSets and bare Pods are replicated services, DaemonSets global ones
(their pod: kube_pod.py), Jobs jobs, and CronJobs cron jobs whose template is their Job. Every workload joins one overlay network, `default`, as every pod
joins the cluster's pod network, so Services reach each other by name. A `v1` Service gives
the workloads its selector matches in the same file its ports and its name on that network,
where it answers at the workload's VIP with `port` → `targetPort` (`clusterIP: None`: at
its tasks' addresses, no VIP); one that matches none is an attachment, which the apply plan
keeps as a port selector. ConfigMaps and Secrets become configs and secrets (`NAME.KEY`, one
per key). Any other kind is a warning.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass
from typing import Any

from consensus.crons import CronSpec, parse_cron_spec
from consensus.services import ServiceSpec, SpecError
from consensus.wire import to_plain
from node.manifests.fields import labels, to_spec
from node.manifests.kube_pod import NOT_CARRIED, POD_KEYS, PodData, port_number, read_container
from node.manifests.networks import NetworkDef
from node.manifests.reader import ManifestError, Reader, shown
from node.manifests.refs import FileSource
from scheduler.crons import schedule_problem

_WORKLOADS = {
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("v1", "Pod"),
    ("batch/v1", "Job"),
}
# A Job's spec fields and the job config fields they are.
_JOB_FIELDS = {
    "completions": "completions",
    "parallelism": "parallelism",
    "backoffLimit": "backoff_limit",
    "activeDeadlineSeconds": "deadline",
    "ttlSecondsAfterFinished": "ttl_after_finished",
}
_CRON_KEYS = {
    "schedule",
    "timeZone",
    "concurrencyPolicy",
    "startingDeadlineSeconds",
    "successfulJobsHistoryLimit",
    "jobTemplate",
}
# A Pod's restartPolicy as a restart condition (a workload's pods always restart).
_POD_RESTART = {"Always": "any", "OnFailure": "on-failure", "Never": "none"}
# The overlay network every workload joins (Kubernetes' one pod network).
NETWORK = NetworkDef("default", "Kubernetes workloads")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A Service whose selector matched no workload in its file: its ports and its name on
    `NETWORK` go to the services in the cluster whose labels hold the selector, when they
    exist (with `headless`, `clusterIP: None`, they get no VIP)."""

    name: str
    where: str
    selector: dict[str, str]
    ports: tuple[dict, ...]
    headless: bool = False


def _where(doc: dict) -> str:
    meta = doc.get("metadata")
    name = meta.get("name", "?") if isinstance(meta, dict) else "?"
    return f"{shown(doc.get('kind'))[1:-1] if isinstance(doc.get('kind'), str) else '?'}/{name}"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _update(r: Reader, strategy: dict, replicas: int, where: str) -> dict | None:
    r.unsupported(strategy, {"type", "rollingUpdate"}, where)
    if strategy.get("type") in ("Recreate", "OnDelete"):
        return {"parallelism": 0, "order": "stop-first"}
    rolling = r.mapping(strategy.get("rollingUpdate"), f"{where}.rollingUpdate")
    if not rolling:
        return None
    r.unsupported(rolling, {"maxSurge", "maxUnavailable", "partition"}, f"{where}.rollingUpdate")

    def count(key: str) -> int:
        value = rolling.get(key, "25%")
        if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
            return max(1, replicas * int(value[:-1]) // 100)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise ManifestError(
            f"{where}.rollingUpdate.{key}", f"must be a count or a percentage, not {shown(value)}"
        )

    surge, unavailable = count("maxSurge"), count("maxUnavailable")
    # Shoal replaces `parallelism` tasks at a time: start-first when only surge is allowed.
    return {
        "parallelism": max(surge, unavailable, 1),
        "order": "start-first" if surge and not unavailable else "stop-first",
    }


def _as_workload(doc: dict) -> dict:
    """A bare Pod as a workload of one replica whose template is the pod."""
    if doc.get("kind") != "Pod":
        return doc
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return {
        **doc,
        "metadata": meta,
        "spec": {"template": {"metadata": {"labels": meta.get("labels")}, "spec": doc.get("spec")}},
    }


def _workload(
    r: Reader, doc: dict, data: PodData, where: str, services: list[tuple[dict, str]]
) -> ServiceSpec:
    kind = doc.get("kind")
    if kind == "Pod":
        r.warnings.append(
            f"{where}: a Pod runs as a service of one replica, started again "
            "elsewhere if its node fails"
        )
    doc = _as_workload(doc)
    r.unsupported(doc, {"apiVersion", "kind", "metadata", "spec"}, where)
    meta = r.mapping(doc.get("metadata"), f"{where}.metadata")
    r.unsupported(meta, {"name", "labels", "annotations", "namespace"}, f"{where}.metadata")
    spec = r.mapping(doc.get("spec"), f"{where}.spec")
    known = {"selector", "template", "minReadySeconds", "revisionHistoryLimit"}
    if kind == "Job":
        known = {"selector", "template", "suspend", *_JOB_FIELDS}
    else:
        known |= {"updateStrategy"} if kind == "DaemonSet" else {"replicas", "strategy"}
    if kind == "StatefulSet":
        known |= {"serviceName", "volumeClaimTemplates", "podManagementPolicy", "updateStrategy"}
        r.warnings.append(
            f"{where}: a StatefulSet runs as a replicated service: replicas get no "
            "stable names or ordered start"
        )
    r.unsupported(spec, known, f"{where}.spec")
    template = r.mapping(spec.get("template"), f"{where}.spec.template")
    r.unsupported(template, {"metadata", "spec"}, f"{where}.spec.template")
    pod_meta = r.mapping(template.get("metadata"), f"{where}.spec.template.metadata")
    r.unsupported(pod_meta, {"labels", "annotations"}, f"{where}.spec.template.metadata")
    pod_where = f"{where}.spec.template.spec"
    pod = r.mapping(template.get("spec"), pod_where)
    for key in pod:
        if key in NOT_CARRIED:
            r.once(key, f"{pod_where}.{key}", NOT_CARRIED[key])
    r.unsupported(pod, POD_KEYS, pod_where)
    pod_labels = labels(pod_meta.get("labels"), f"{where}.spec.template.metadata.labels")
    replicas = spec.get("replicas", 1)
    plain: dict[str, Any] = {
        "name": meta.get("name"),
        "labels": {**labels(meta.get("labels"), f"{where}.metadata.labels"), **pod_labels},
    }
    if kind == "DaemonSet":
        plain["mode"] = "global"
    elif kind == "Job":
        plain["job"] = _job(r, spec, pod, where)
        plain["restart"] = {"condition": "on-failure"}
    else:
        plain["replicas"] = replicas
    containers = r.listing(pod.get("containers"), f"{pod_where}.containers")
    if not containers:
        raise ManifestError(f"{pod_where}.containers", "needs one container")
    for i in range(1, len(containers)):
        r.warnings.append(f"{pod_where}.containers[{i}]: only the first container runs")
    at = f"{pod_where}.containers[0]"
    if kind == "StatefulSet":
        templates = r.listing(
            spec.get("volumeClaimTemplates"), f"{where}.spec.volumeClaimTemplates"
        )
        pod = {
            **pod,
            "volumes": r.listing(pod.get("volumes"), f"{pod_where}.volumes")
            + [
                {
                    "name": (t.get("metadata") or {}).get("name"),
                    "persistentVolumeClaim": {"claimName": (t.get("metadata") or {}).get("name")},
                }
                for t in (r.mapping(t, f"{where}.spec.volumeClaimTemplates") for t in templates)
            ],
        }
        if templates:
            r.warnings.append(
                f"{where}.spec.volumeClaimTemplates: each claim is a named volume "
                "on the node a replica runs on, shared by the replicas there"
            )
    named = read_container(r, r.mapping(containers[0], at), pod, data, at, pod_where, plain)
    selector = pod.get("nodeSelector")
    if selector:
        plain["constraints"] = [
            f"node.labels.{k}=={v}"
            for k, v in r.mapping(selector, f"{pod_where}.nodeSelector").items()
        ]
    if "terminationGracePeriodSeconds" in pod:
        plain["stop_grace_period"] = pod["terminationGracePeriodSeconds"]
    if kind == "Pod" and pod.get("restartPolicy", "Always") in _POD_RESTART:
        plain["restart"] = {"condition": _POD_RESTART[pod.get("restartPolicy", "Always")]}
    elif kind != "Job" and pod.get("restartPolicy", "Always") != "Always":
        r.warnings.append(f"{pod_where}.restartPolicy: a {kind} always restarts")
    strategy_key = "strategy" if kind == "Deployment" else "updateStrategy"
    update = (
        None
        if kind == "Job"
        else _update(
            r,
            r.mapping(spec.get(strategy_key), f"{where}.spec.{strategy_key}"),
            replicas if isinstance(replicas, int) else 1,
            f"{where}.spec.{strategy_key}",
        )
    )
    if "minReadySeconds" in spec:  # a new task counts once it stayed ready this long
        update = {**(update or {}), "monitor": spec["minReadySeconds"]}
    if update:
        plain["update"] = update
    plain["networks"] = [{"name": NETWORK.name, "aliases": []}]
    for service, service_where in services:
        if _selects(service, pod_labels):
            _publish(r, service, service_where, plain, named)
    return to_spec(
        plain,
        where,
        {
            "name": "metadata.name",
            "replicas": "spec.replicas",
            **{f"job.{v}": f"spec.{k}" for k, v in _JOB_FIELDS.items()},
            "image": "spec.template.spec.containers[0].image",
            "update": f"spec.{strategy_key}",
            "container": "spec.template.spec.containers[0]",
            "container.user": "spec.template.spec.containers[0].securityContext.runAsUser",
            "container.read_only": "spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem",
        },
    )


def _job(r: Reader, spec: dict, pod: dict, where: str) -> dict:
    """A Job's counts and times as a job config. Its pods must not restart forever: with
    `Never` a failed pod is replaced, with `OnFailure` restarted; both count towards
    `backoffLimit`, and Shoal retries a failed task either way."""
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        raise ManifestError(
            f"{where}.spec.template.spec.restartPolicy",
            "a Job's pods need "
            f"restartPolicy Never or OnFailure, not {shown(pod.get('restartPolicy', 'Always'))}",
        )
    _refuse_suspended(spec, where)
    if "completions" not in spec and spec.get("parallelism", 1) != 1:
        r.warnings.append(
            f"{where}.spec.completions: without it Kubernetes runs a work queue (done "
            "when one pod succeeds); Shoal needs one success, with parallelism as given"
        )
    return {target: spec[source] for source, target in _JOB_FIELDS.items() if source in spec}


def _cron(
    r: Reader, doc: dict, data: PodData, where: str, services: list[tuple[dict, str]]
) -> CronSpec:
    """A CronJob: its job template is translated as a Job named after it."""
    r.unsupported(doc, {"apiVersion", "kind", "metadata", "spec"}, where)
    meta = r.mapping(doc.get("metadata"), f"{where}.metadata")
    spec = r.mapping(doc.get("spec"), f"{where}.spec")
    r.unsupported(spec, _CRON_KEYS | {"suspend"}, f"{where}.spec")
    _refuse_suspended(spec, where)
    template = r.mapping(spec.get("jobTemplate"), f"{where}.spec.jobTemplate")
    r.unsupported(template, {"metadata", "spec"}, f"{where}.spec.jobTemplate")
    job_meta = r.mapping(template.get("metadata"), f"{where}.spec.jobTemplate.metadata")
    job_doc = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": meta.get("name"),
            "labels": {
                **r.mapping(meta.get("labels"), f"{where}.metadata.labels"),
                **r.mapping(job_meta.get("labels"), f"{where}.spec.jobTemplate.metadata.labels"),
            },
        },
        "spec": template.get("spec"),
    }
    try:
        job = to_plain(_workload(r, job_doc, data, f"{where}.spec.jobTemplate", services))
    except ManifestError as exc:  # the run's name is the CronJob's
        if exc.field != f"{where}.spec.jobTemplate.metadata.name":
            raise
        raise ManifestError(f"{where}.metadata.name", exc.reason) from None
    del job["name"]
    policy = spec.get("concurrencyPolicy", "Allow")
    if policy not in ("Allow", "Forbid", "Replace"):
        raise ManifestError(
            f"{where}.spec.concurrencyPolicy",
            f"must be Allow, Forbid or Replace, not {shown(policy)}",
        )
    plain = {
        "name": meta.get("name"),
        "schedule": spec.get("schedule"),
        "template": job,
        "timezone": spec.get("timeZone", "UTC"),
        "concurrency": policy.lower(),
        "starting_deadline": spec.get("startingDeadlineSeconds", 0),
        "history": spec.get("successfulJobsHistoryLimit", 3),
    }
    try:
        cron = parse_cron_spec(plain)
    except SpecError as exc:
        raise ManifestError(
            f"{where}.{_CRON_FIELDS.get(exc.field, exc.field)}", exc.reason
        ) from None
    problem = schedule_problem(cron.schedule, cron.timezone, time.time())
    if problem:
        field, _, reason = problem.partition(": ")
        raise ManifestError(f"{where}.{_CRON_FIELDS[field]}", reason)
    return cron


def _refuse_suspended(spec: dict, where: str) -> None:
    """A suspended Job or CronJob must not run, and Shoal cannot hold one: refused, never run."""
    if spec.get("suspend") not in (None, False):
        raise ManifestError(
            f"{where}.spec.suspend",
            "Shoal cannot hold a suspended job or cron "
            "job: leave it out of the file until it should run",
        )


# CronSpec fields and the CronJob's fields they come from, for errors.
_CRON_FIELDS = {
    "name": "metadata.name",
    "schedule": "spec.schedule",
    "timezone": "spec.timeZone",
    "concurrency": "spec.concurrencyPolicy",
    "starting_deadline": "spec.startingDeadlineSeconds",
    "history": "spec.successfulJobsHistoryLimit",
    "template": "spec.jobTemplate",
}


def _selector(service: dict) -> dict[str, str]:
    selector = (
        (service.get("spec") or {}).get("selector")
        if isinstance(service.get("spec"), dict)
        else None
    )
    return {str(k): str(v) for k, v in selector.items()} if isinstance(selector, dict) else {}


def _selects(service: dict, pod_labels: dict[str, str]) -> bool:
    selector = _selector(service)
    return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())


PROXY_PROTOCOL_ANNOTATION = "shoal.io/proxy-protocol"


def _service_ports(r: Reader, service: dict, where: str, named: dict[str, int]) -> list[dict]:
    """NodePort and LoadBalancer ports are published (on every node, by the routing mesh);
    every port is the VIP's `port` in front of the tasks' `targetPort` on the network. The
    annotation `shoal.io/proxy-protocol: v1|v2` has the mesh send a PROXY protocol header
    first on each published TCP port."""
    spec = r.mapping(service.get("spec"), f"{where}.spec")
    published = spec.get("type", "ClusterIP") in ("NodePort", "LoadBalancer")
    metadata = service.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    proxy_protocol = (
        annotations.get(PROXY_PROTOCOL_ANNOTATION) if isinstance(annotations, dict) else None
    )
    out = []
    for i, port in enumerate(r.listing(spec.get("ports"), f"{where}.spec.ports")):
        at = f"{where}.spec.ports[{i}]"
        port = r.mapping(port, at)
        r.unsupported(
            port, {"port", "targetPort", "nodePort", "protocol", "name", "appProtocol"}, at
        )
        target_value = port.get("targetPort", port.get("port"))
        if (
            isinstance(target_value, str)
            and not target_value.isdigit()
            and target_value not in named
        ):
            r.warnings.append(
                f"{at}.targetPort: port name {shown(target_value)} is not known here; "
                "the port number is used"
            )
            target_value = port.get("port")
        target = port_number(target_value, named, f"{at}.targetPort")
        entry = {"target": target, "protocol": str(port.get("protocol", "TCP")).lower()}
        if published:
            entry["published"] = port.get("nodePort") or port.get("port")
            if proxy_protocol is not None and entry["protocol"] == "tcp":
                entry["proxy_protocol"] = proxy_protocol
        service_port = (
            target if port.get("port") is None else port_number(port["port"], {}, f"{at}.port")
        )
        if not 1 <= service_port <= 65535:
            raise ManifestError(f"{at}.port", f"must be 1-65535, not {service_port}")
        if service_port != target:
            entry["vip_port"] = service_port
        out.append(entry)
    return out


def _headless(service: dict) -> bool:
    spec = service.get("spec")
    return isinstance(spec, dict) and spec.get("clusterIP") == "None"


def _service_name(service: dict, where: str) -> str:
    """A Service's name, which answers on the network: a DNS label, as Kubernetes has it."""
    meta = service.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where}.metadata.name", "a Service needs a name")
    if not _DNS_LABEL.fullmatch(name):
        raise ManifestError(
            f"{where}.metadata.name",
            f"{shown(name)} is not a DNS label: 1-63 "
            "lowercase letters, digits or '-', starting and ending with a letter or digit",
        )
    return name


def _publish(r: Reader, service: dict, where: str, plain: dict, named: dict[str, int]) -> None:
    """A v1 Service's ports become ports of the workload it selects, and its name one of the
    workload's names on the network."""
    plain["ports"] = merge_ports(plain.get("ports", []), _service_ports(r, service, where, named))
    plain["networks"] = [
        add_alias(plain["networks"][0], _service_name(service, where), plain["name"])
    ]
    if _headless(service):
        plain["endpoint_mode"] = "dnsrr"


def add_alias(attachment: dict, alias: str, service: str) -> dict:
    """A plain network attachment that also answers to `alias` (a Service's name), unless
    the service is named so already."""
    aliases = list(attachment.get("aliases") or [])
    if alias != service and alias not in aliases:
        aliases.append(alias)
    return {**attachment, "aliases": aliases}


def merge_ports(ports: list[dict], new: list[dict]) -> list[dict]:
    """`new` ports over `ports`. A published port replaces the unpublished ones of its target
    that map no other VIP port. An unpublished port is kept once per target and VIP port: a
    VIP port goes to a port of its target that maps none (a container's port), and another
    one is a port of its own (two Services on one workload, each on its port). A port
    already there (two Services naming the same) is kept once."""
    out = list(ports)

    def key(p: dict) -> tuple:
        return p.get("target"), p.get("protocol", "tcp")

    def published(p: dict) -> int:
        return p.get("published") or 0

    def vip(p: dict) -> int:
        return p.get("vip_port") or 0

    for port in new:
        twins = [p for p in out if key(p) == key(port)]
        if published(port):
            if any(published(p) == published(port) for p in twins):
                continue
            out = [
                p
                for p in out
                if not (key(p) == key(port) and not published(p) and vip(p) in (0, vip(port)))
            ]
            out.append(port)
        elif vip(port) and not any(vip(p) == vip(port) for p in twins):
            blank = next((p for p in twins if not vip(p)), None)
            out = (
                [{**p, "vip_port": vip(port)} if p is blank else p for p in out]
                if blank
                else [*out, port]
            )
        elif not twins:
            out.append(port)
    return out


def _data(r: Reader, doc: dict, where: str) -> dict[str, bytes]:
    r.unsupported(
        doc,
        {"apiVersion", "kind", "metadata", "data", "stringData", "binaryData", "type", "immutable"},
        where,
    )
    out: dict[str, bytes] = {}
    binary = doc.get("kind") == "Secret"
    for key in ("data", "binaryData"):
        for name, value in r.mapping(doc.get(key), f"{where}.{key}").items():
            if binary or key == "binaryData":
                try:
                    out[str(name)] = base64.b64decode(str(value), validate=True)
                except (binascii.Error, ValueError):
                    raise ManifestError(f"{where}.{key}.{name}", "must be base64") from None
            else:
                out[str(name)] = str(value).encode()
    for name, value in r.mapping(doc.get("stringData"), f"{where}.stringData").items():
        out[str(name)] = str(value).encode()
    return out


def translate(
    r: Reader, docs: list[dict]
) -> tuple[
    list[ServiceSpec],
    tuple[FileSource, ...],
    tuple[Attachment, ...],
    tuple[NetworkDef, ...],
    tuple[CronSpec, ...],
]:
    """The workloads as specs, the ConfigMaps' and Secrets' files, the Services kept without
    their workload, the network they all join (when there is any of them) and the CronJobs."""
    services, workloads, files, cron_docs = [], [], [], []
    data = PodData({}, {})
    for doc in docs:
        api, kind, where = _text(doc.get("apiVersion")), _text(doc.get("kind")), _where(doc)
        if (api, kind) in _WORKLOADS:
            workloads.append((doc, where))
        elif (api, kind) == ("v1", "Service"):
            r.unsupported(doc, {"apiVersion", "kind", "metadata", "spec"}, where)
            spec = r.mapping(doc.get("spec"), f"{where}.spec")
            r.unsupported(spec, {"type", "selector", "ports", "clusterIP"}, f"{where}.spec")
            if spec.get("clusterIP") not in (None, "", "None"):
                r.warnings.append(
                    f"{where}.spec.clusterIP: the cluster gives the Service's VIP "
                    "from its network's range"
                )
            services.append((doc, where))
        elif (api, kind) in (("v1", "ConfigMap"), ("v1", "Secret")):
            name = r.mapping(doc.get("metadata"), f"{where}.metadata").get("name")
            content = _data(r, doc, where)
            (data.configs if kind == "ConfigMap" else data.secrets)[name] = content
            files += [
                FileSource(
                    "config" if kind == "ConfigMap" else "secret",
                    f"{name}.{key}",
                    f"{where}.data.{key}",
                    content=value,
                )
                for key, value in content.items()
            ]
        elif (api, kind) == ("batch/v1", "CronJob"):
            cron_docs.append((doc, where))
        elif (api, kind) == ("v1", "PersistentVolumeClaim"):
            r.warnings.append(
                f"{where}: a claim is the local named volume of that name on each "
                "node that runs a task mounting it; its size and class are not enforced"
            )
        else:
            r.warnings.append(f"{where}: {shown(api)} {shown(kind)} is not supported, skipped")
    specs = [_workload(r, doc, data, where, services) for doc, where in workloads]
    crons = tuple(_cron(r, doc, data, where, services) for doc, where in cron_docs)
    attachments = []
    for service, where in services:
        pods = [
            (((_as_workload(d).get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
                "labels"
            )
            or {}
            for d, _ in workloads
        ]
        selected = [
            p
            for p in pods
            if isinstance(p, dict) and _selects(service, {str(k): str(v) for k, v in p.items()})
        ]
        if len(selected) > 1:
            r.warnings.append(
                f"{where}: selects {len(selected)} workloads: each gets its ports, and its "
                "name answers one of them only (the first by name)"
            )
        if selected:
            continue
        selector = _selector(service)
        if not selector:
            r.warnings.append(
                f"{where}.spec.selector: a Service without a selector is not supported, skipped"
            )
            continue
        attachments.append(
            Attachment(
                _service_name(service, where),
                where,
                selector,
                tuple(_service_ports(r, service, where, {})),
                _headless(service),
            )
        )
    return (
        specs,
        tuple(files),
        tuple(attachments),
        (NETWORK,) if specs or attachments or crons else (),
        crons,
    )
