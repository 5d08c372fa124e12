"""Several hosts on one machine: network namespaces on a private Linux bridge.

    bed = NetBed.create(3)              # h0, h1, h2 at 10.213.X.1..3, the bridge at 10.213.X.254
    proc = bed.hosts[0].spawn([sys.executable, "server.py"])
    ...
    bed.close()                         # processes, namespaces, veths, bridge, rules, files

Each host is a network namespace with loopback up and one veth on the bridge; the subnet
10.213.X.0/24 exists only on this bed's bridge (X is picked free at creation), and the
namespaces get no default route, so hosts reach each other and the test process, nothing
else. A bed is closed by its owner, by atexit if the owner forgot, and by the next run's sweep
if the owner was killed.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import secrets
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.netbed.names import BedName
from tests.netbed.process import HostProcess, spawn
from tests.netbed.shell import netns_argv, run
from tests.netbed.teardown import remove_bed, sweep_stale_beds

SUBNET_PREFIX = "10.213"
BRIDGE_HOST_OCTET = 254
_LOCK_PATH = "/run/lock/shoal-netbed.lock"


class Host:
    """One simulated machine: a network namespace with its own address on the bed's bridge."""

    def __init__(self, bed: NetBed, index: int, address: str) -> None:
        self.bed = bed
        self.index = index
        self.name = f"h{index}"
        self.netns = bed.name.netns(index)
        self.veth = bed.name.veth(index)  # the bridge-side end; faults act on it
        self.address = address

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
        notify: bool = False,
    ) -> HostProcess:
        """Start `argv` inside this host; `env` is added on top of the test's environment.

        stdout and stderr go to `log_path` (default: a file in the bed's work directory).
        With `notify`, the process gets $NOTIFY_SOCKET and `wait_ready()` blocks until it
        sends READY=1. The bed stops the process when it closes.
        """
        merged = {**os.environ, **(env or {})}
        path = log_path or self.bed.next_log_path(self.name, argv)
        process = spawn(argv, merged, path, cwd, notify, launcher=netns_argv(self.netns, []))
        self.bed.adopt(process)
        return process

    def run(
        self, argv: Sequence[str], *, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command inside this host and return its output."""
        return run(netns_argv(self.netns, argv), timeout=timeout, check=check)

    def start_dockerd(self, timeout: float = 60.0):
        """A private Docker Engine inside this host; see tests.netbed.dockerd."""
        from tests.netbed.dockerd import PrivateDockerd

        return PrivateDockerd.start(self, timeout=timeout)

    def __repr__(self) -> str:
        return f"Host({self.name}, {self.address}, netns={self.netns})"


def _used_third_octets() -> set[int]:
    done = run(["ip", "-4", "-o", "addr", "show"], check=False)
    used = set()
    for token in done.stdout.split():
        if token.startswith(SUBNET_PREFIX + "."):
            used.add(int(token.split(".")[2]))
    return used


class NetBed:
    """A bridge, N namespaces on it, and the rules that let them talk (and fail on demand)."""

    _open: set[NetBed] = set()
    _open_lock = threading.Lock()

    def __init__(self, name: BedName, subnet_octet: int, workdir: Path) -> None:
        self.name = name
        self.subnet = f"{SUBNET_PREFIX}.{subnet_octet}.0/24"
        self.gateway = f"{SUBNET_PREFIX}.{subnet_octet}.{BRIDGE_HOST_OCTET}"
        self.workdir = workdir
        self.hosts: tuple[Host, ...] = ()
        self._processes: list[HostProcess] = []
        self._closers: list[Callable[[], None]] = []
        self._log_count = 0
        self._lock = threading.Lock()
        self._closed = False

    @property
    def bridge(self) -> str:
        return self.name.bridge

    @property
    def nft_table(self) -> str:
        return self.name.nft_table

    @classmethod
    def create(cls, hosts: int, workdir: Path | None = None) -> NetBed:
        """Sweep beds left by dead runs, then build a bed of `hosts` namespaces."""
        if not 1 <= hosts < BRIDGE_HOST_OCTET:
            raise ValueError(f"hosts: must be between 1 and {BRIDGE_HOST_OCTET - 1}, got {hosts}")
        sweep_stale_beds()
        name = BedName(secrets.token_hex(3), os.getpid())
        path = Path(tempfile.mkdtemp(prefix=f"{name.tag}-")) if workdir is None else Path(workdir)
        # The subnet choice and the bridge address must be one step, or two beds built at
        # the same time could pick the same /24.
        with open(_LOCK_PATH, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            free = sorted(set(range(1, 255)) - _used_third_octets())
            if not free:
                raise RuntimeError(f"no free {SUBNET_PREFIX}.X.0/24 subnet left for a bed")
            bed = cls(name, free[0], path)
            with cls._open_lock:
                cls._open.add(bed)
            try:
                bed._build_bridge()
            except BaseException:
                bed.close()
                raise
        try:
            bed._build_hosts(hosts)
        except BaseException:
            bed.close()
            raise
        return bed

    def _build_bridge(self) -> None:
        run(
            ["ip", "-batch", "-"],
            input_text="\n".join(
                [
                    f"link add name {self.bridge} type bridge",
                    f"link set {self.bridge} alias {self.name.tag}",
                    f"addr add {self.gateway}/24 dev {self.bridge}",
                    f"link set {self.bridge} up",
                ]
            )
            + "\n",
        )
        # Docker sets the FORWARD policy to DROP; bridged frames pass through it when
        # br_netfilter is loaded.
        run(
            [
                "iptables",
                "-w",
                "-I",
                "FORWARD",
                "-i",
                self.bridge,
                "-o",
                self.bridge,
                "-m",
                "comment",
                "--comment",
                self.name.tag,
                "-j",
                "ACCEPT",
            ]
        )
        # Faults add rules to this chain; frames between two hosts cross it, frames between a
        # host and the test process (the bridge's own address) do not.
        run(
            ["nft", "-f", "-"],
            input_text=(
                f"table bridge {self.nft_table} {{\n"
                "  chain forward { type filter hook forward priority 0; policy accept; }\n"
                "}\n"
            ),
        )

    def _build_hosts(self, count: int) -> None:
        prefix = self.gateway.rsplit(".", 1)[0]
        hosts = tuple(Host(self, index, f"{prefix}.{index + 1}") for index in range(count))
        lines = []
        for host in hosts:
            lines += [
                f"netns add {host.netns}",
                f"link add {host.veth} type veth peer name eth0 netns {host.netns}",
                f"link set {host.veth} master {self.bridge} up",
            ]
        self.hosts = hosts
        run(["ip", "-batch", "-"], input_text="\n".join(lines) + "\n")
        for host in hosts:
            run(
                ["ip", "-n", host.netns, "-batch", "-"],
                input_text=(
                    f"link set lo up\naddr add {host.address}/24 dev eth0\nlink set eth0 up\n"
                ),
            )

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"host: no host named {name!r} in this bed ({[h.name for h in self.hosts]})")

    def adopt(self, process: HostProcess) -> None:
        with self._lock:
            if self._closed:
                process.kill()
                raise RuntimeError("spawn: the bed is already closed")
            self._processes.append(process)

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run `closer` when the bed closes, before its processes are stopped (last added, first run)."""
        with self._lock:
            self._closers.append(closer)

    def next_log_path(self, host_name: str, argv: Sequence[str]) -> Path:
        with self._lock:
            self._log_count += 1
            count = self._log_count
        program = Path(argv[0]).name if argv else "process"
        return self.workdir / f"{host_name}-{count:03d}-{program}.log"

    def close(self, grace: float = 5.0) -> None:
        """Stop every process and remove every object of the bed; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            processes = list(self._processes)
            closers = list(reversed(self._closers))
        for closer in closers:
            try:
                closer()
            except Exception as exc:  # one failing closer must not leave the rest of the bed behind
                print(f"netbed: closing {self.name.tag}: {closer!r} failed: {exc}", file=sys.stderr)
        for process in processes:
            process.stop(grace)
        # Also stops whatever those processes left in the namespaces, and deletes the work
        # directory only if the bed made it (a caller's tmp_path keeps the logs to inspect).
        remove_bed(self.name, grace)
        with NetBed._open_lock:
            NetBed._open.discard(self)

    def __enter__(self) -> NetBed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NetBed({self.name.tag}, {self.subnet}, hosts={[h.name for h in self.hosts]})"


@atexit.register
def _close_forgotten_beds() -> None:
    with NetBed._open_lock:
        beds = list(NetBed._open)
    for bed in beds:
        bed.close()
