"""What every reference runner needs: Debian tools on demand and processes it owns.

ensure_debian({"etcd": "etcd-server"})     # apt-get install only what is missing
with Processes() as procs:
    proc = procs.start(["etcd", ...], log_path)
    proc.kill()                            # kill -9 by pid, as a crash would
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def tool_path(name: str) -> str | None:
    """Where a tool lives; daemons like haproxy install to /usr/sbin, off a plain user's PATH."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def missing_packages(tools: Mapping[str, str]) -> list[str]:
    """The Debian packages (values) whose tool (key) is not installed."""
    return sorted({package for tool, package in tools.items() if tool_path(tool) is None})


def ensure_debian(tools: Mapping[str, str]) -> None:
    """Install the Debian packages of the missing tools; a benchmark's tools, not Shoal's deps."""
    missing = missing_packages(tools)
    if not missing:
        return
    print(f"installing {' '.join(missing)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


class Processes:
    """Processes a runner started, each stopped by its own pid when the block ends."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []

    def start(
        self, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        self._procs.append(proc)
        return proc

    def stop_all(self, grace: float = 10.0) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()
