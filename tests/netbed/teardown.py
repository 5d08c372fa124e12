"""Removing a bed's kernel objects, and sweeping beds left behind by runs that died.

Teardown is best effort and never raises for an object that is already gone: it runs from
finalizers, atexit and the start-of-run sweep, where one missing object must not leave the
others behind.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import select
import shutil
import signal
import tempfile
from pathlib import Path

from tests.netbed.dockerd import remove_containers_of
from tests.netbed.names import BRIDGE_PREFIX, PREFIX, BedName, stale_beds
from tests.netbed.shell import run

_CGROUP_ROOT = "/sys/fs/cgroup"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _wait_exit(pids: list[int], timeout: float) -> None:
    """Block until every pid has exited or `timeout` passes; pidfds wake us at each exit."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            continue
    try:
        pending = list(fds)
        while pending:
            ready, _, _ = select.select(pending, [], [], timeout)
            if not ready:
                return
            pending = [fd for fd in pending if fd not in ready]
    finally:
        for fd in fds:
            os.close(fd)


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def netns_pids(netns: str) -> list[int]:
    done = run(["ip", "netns", "pids", netns], check=False)
    return [int(token) for token in done.stdout.split()] if done.returncode == 0 else []


def stop_netns_processes(netns: str, grace: float) -> None:
    """Stop every process still inside a bed namespace: SIGTERM (after SIGCONT), then SIGKILL.

    These are all descendants of processes the bed started (a private dockerd's containerd,
    a node's helpers): nothing else lives in a namespace the bed created.
    """
    pids = netns_pids(netns)
    if not pids:
        return
    # Containers of a private dockerd live in namespaces of their own, out of reach of the
    # signals below: remove them through their daemon first.
    remove_containers_of(pids)
    _signal_all(pids, signal.SIGCONT)
    _signal_all(pids, signal.SIGTERM)
    _wait_exit(pids, grace)
    survivors = netns_pids(netns)
    _signal_all(survivors, signal.SIGKILL)
    _wait_exit(survivors, grace)


def _bed_netns(bed: BedName) -> list[str]:
    done = run(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    return [name for name in names if name.startswith(bed.tag + "-")]


def _links() -> list[dict]:
    done = run(["ip", "-j", "link", "show"], check=False)
    return json.loads(done.stdout or "[]")


def _forward_rules_tagged(tag: str) -> list[list[str]]:
    done = run(["iptables", "-w", "-S", "FORWARD"], check=False)
    return [line.split() for line in done.stdout.splitlines() if tag in line]


def _unmount_under(tag: str) -> None:
    """Unmount what a private dockerd left mounted in the bed's directories (it bind-mounts its
    data root onto itself and leaves that behind when it dies), deepest first."""
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    points = [line.split()[4] for line in mountinfo if tag in line.split()[4]]
    for point in sorted(points, key=len, reverse=True):
        run(["umount", point], check=False)


def remove_bed(bed: BedName, grace: float = 5.0) -> None:
    """Remove everything named after `bed`: processes, namespaces, veths, bridge, rules, files."""
    namespaces = _bed_netns(bed)
    for netns in namespaces:
        stop_netns_processes(netns, grace)
    for link in _links():
        name = link.get("ifname", "")
        if name.startswith(bed.veth(0)[:-1]):  # shb<id>v*: deleting one end removes the pair
            run(["ip", "link", "del", name], check=False)
    for netns in namespaces:
        run(["ip", "netns", "del", netns], check=False)
    run(["ip", "link", "del", bed.bridge], check=False)
    run(["nft", "delete", "table", "bridge", bed.nft_table], check=False)
    for rule in _forward_rules_tagged(bed.tag):
        run(
            ["iptables", "-w", "-D", *rule[1:]], check=False
        )  # "-A FORWARD ..." -> "-D FORWARD ..."
    _unmount_under(bed.tag)
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{bed.tag}-*")):
        shutil.rmtree(path, ignore_errors=True)
    for path in glob.glob(f"{_CGROUP_ROOT}/*/{bed.tag}-*"):  # a private dockerd's cgroup parent
        with contextlib.suppress(OSError):
            os.rmdir(path)  # empty cgroup directories are removed with rmdir, not unlink


def _all_bed_object_names() -> list[str]:
    names = []
    done = run(["ip", "netns", "list"], check=False)
    names += [line.split()[0] for line in done.stdout.splitlines() if line.startswith(PREFIX)]
    names += [
        link.get("ifalias", "")
        for link in _links()
        if link.get("ifname", "").startswith(BRIDGE_PREFIX)
    ]
    done = run(["nft", "-j", "list", "tables", "bridge"], check=False)
    if done.returncode == 0:
        tables = json.loads(done.stdout).get("nftables", [])
        names += [entry["table"]["name"] for entry in tables if "table" in entry]
    names += [" ".join(rule) for rule in _forward_rules_tagged(PREFIX)]
    names += [
        Path(path).name for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{PREFIX}-*"))
    ]
    names += [Path(path).name for path in glob.glob(f"{_CGROUP_ROOT}/*/{PREFIX}-*")]
    return names


def sweep_stale_beds() -> set[BedName]:
    """Remove beds whose owner process died (a killed or crashed earlier run); return them."""
    stale = stale_beds(_all_bed_object_names(), pid_alive)
    for bed in stale:
        remove_bed(bed)
    return stale
