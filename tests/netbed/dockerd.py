"""A private Docker Engine inside one bed host, so containers publish ports on that host's address.

Each one costs about 110 MB and a few seconds to start; use it in the few tests that need a
multi-host Docker picture. The daemon gets its own data root, exec root, socket, pidfile and
cgroup parent, and runs with only the network namespace switched (nsenter --net): its iptables
rules and docker0 bridge live inside the host's namespace, not on the machine.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from tests.netbed.process import HostProcess
from tests.netbed.shell import BedCommandError, run

_HOST_DOCKER_SOCKET = "unix:///var/run/docker.sock"


class PrivateDockerd:
    """A dockerd inside one host; the bed stops it (and removes its containers) when it closes."""

    def __init__(self, host, process: HostProcess, root: Path) -> None:
        self.host = host
        self.process = process
        self.root = root
        self.url = f"unix://{root / 'docker.sock'}"

    @classmethod
    def start(cls, host, timeout: float = 60.0) -> PrivateDockerd:
        """Start dockerd inside `host` and return once it is ready (it reports READY=1 via
        sd_notify after its API socket is listening)."""
        # Its own short directory: containerd's socket path must fit in 108 bytes, which a
        # pytest tmp_path does not leave room for. Named after the bed, so teardown finds it.
        root = Path(tempfile.mkdtemp(prefix=f"{host.bed.name.tag}-dockerd-{host.name}-"))
        argv = [
            "dockerd",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--host=unix://{root / 'docker.sock'}",
            f"--pidfile={root / 'docker.pid'}",
            f"--cgroup-parent={host.bed.name.tag}-{host.name}",
            "--shutdown-timeout=2",
        ]
        process = host.spawn(
            argv, log_path=host.bed.workdir / f"dockerd-{host.name}.log", notify=True
        )
        process.wait_ready(timeout)
        daemon = cls(host, process, root)
        host.bed.on_close(daemon.stop)
        return daemon

    def docker(self, *args: str, timeout: float = 60.0) -> str:
        """Run the docker CLI against this daemon; returns stdout, raises BedCommandError."""
        return run(["docker", "-H", self.url, *args], timeout=timeout).stdout

    def import_rootfs(self, tar_path: Path, image: str, cmd: str = '["/bin/sh"]') -> None:
        """`docker import` a root filesystem tarball (no registry needed)."""
        self.docker("import", "-c", f"CMD {cmd}", str(tar_path), image)

    def load_from(
        self, image: str, source_url: str = _HOST_DOCKER_SOCKET, timeout: float = 120.0
    ) -> None:
        """Copy `image` from another daemon (the machine's by default): docker save | docker load."""
        save = subprocess.Popen(
            ["docker", "-H", source_url, "save", image],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        load = subprocess.run(
            ["docker", "-H", self.url, "load"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        save.stdout.close()
        save_err = save.stderr.read().decode(errors="replace")
        save.stderr.close()
        if save.wait(timeout) != 0:
            raise BedCommandError(
                ["docker", "-H", source_url, "save", image], save.returncode, save_err
            )
        if load.returncode != 0:
            raise BedCommandError(["docker", "-H", self.url, "load"], load.returncode, load.stderr)

    def stop(self, grace: float = 15.0) -> None:
        """Remove its containers (a container whose PID 1 ignores SIGTERM would hold dockerd's
        shutdown for 10 s), then SIGTERM so dockerd unmounts and exits cleanly."""
        if self.process.alive:
            remove_containers_of([self.process.pid])
        self.process.stop(grace)


def _dockerd_socket(pid: int) -> str | None:
    """The API socket of a dockerd process, read from its command line."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if not argv or Path(argv[0]).name != "dockerd":
        return None
    for arg in argv:
        if arg.startswith("--host=unix://"):
            return arg.removeprefix("--host=")
    return None


def remove_containers_of(pids: list[int]) -> None:
    """Force-remove every container of the dockerds among `pids` (best effort: teardown)."""
    for url in filter(None, map(_dockerd_socket, pids)):
        listed = run(["docker", "-H", url, "ps", "-aq"], check=False, timeout=30)
        ids = listed.stdout.split()
        if ids:
            run(["docker", "-H", url, "rm", "-f", *ids], check=False, timeout=60)
