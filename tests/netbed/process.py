"""A process started inside a bed host: signals, pause/resume, wait, and its log."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


class HostProcess:
    """A handle on one spawned process.

    The process leads its own session, so signals go to its whole process group: a "kill -9
    of the host's process" also takes down the helpers it forked, like a machine crash would.
    """

    def __init__(
        self,
        popen: subprocess.Popen,
        argv: Sequence[str],
        log_path: Path,
        notify: socket.socket | None,
    ) -> None:
        self._popen = popen
        self._notify = notify
        self.argv = tuple(argv)
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    @property
    def alive(self) -> bool:
        return self._popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send `sig` to the process group; a group that already exited is not an error."""
        if self._popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, sig)

    def kill(self) -> None:
        """kill -9, then reap it so no zombie outlives the call."""
        self.signal(signal.SIGKILL)
        self._popen.wait()

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def wait(self, timeout: float | None = None) -> int:
        """The exit status; raises subprocess.TimeoutExpired if it is still running."""
        return self._popen.wait(timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the process reports READY=1 on $NOTIFY_SOCKET (the sd_notify protocol,
        which dockerd speaks too); raise if it exits first or `timeout` passes."""
        if self._notify is None:
            raise RuntimeError("wait_ready: spawn the process with notify=True")
        exited = os.pidfd_open(self.pid)
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([self._notify, exited], [], [], left)
                if self._notify in ready:
                    message = self._notify.recv(4096).decode(errors="replace")
                    if "READY=1" in message.splitlines():
                        return
                    continue  # other sd_notify news (STATUS=...), keep waiting
                tail = self.log()[-2000:]
                if exited in ready:
                    raise RuntimeError(f"{self!r} exited before it was ready; log tail:\n{tail}")
                raise TimeoutError(f"{self!r} not ready after {timeout}s; log tail:\n{tail}")
        finally:
            os.close(exited)

    def stop(self, grace: float = 5.0) -> int:
        """SIGTERM (after SIGCONT, since a stopped process cannot act on it), SIGKILL after `grace`."""
        self.resume()
        self.signal(signal.SIGTERM)
        try:
            return self._popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
            return self._popen.wait()
        finally:
            self.close_notify()

    def close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __repr__(self) -> str:
        return (
            f"HostProcess(pid={self.pid}, argv={list(self.argv)!r}, returncode={self.returncode})"
        )


def spawn(
    argv: Sequence[str],
    env: dict[str, str],
    log_path: Path,
    cwd: Path | None = None,
    notify: bool = False,
    launcher: Sequence[str] = (),
) -> HostProcess:
    """Start `argv` (behind `launcher`, e.g. an nsenter prefix) in a session of its own, output
    to `log_path`; with `notify`, give it a $NOTIFY_SOCKET to report readiness on."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    notify_socket = None
    if notify:
        # A path socket, not an abstract one: abstract sockets belong to a network namespace.
        path = log_path.with_suffix(".notify")
        path.unlink(missing_ok=True)
        notify_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify_socket.bind(str(path))
        env = {**env, "NOTIFY_SOCKET": str(path)}
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            [*launcher, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    return HostProcess(popen, argv, log_path, notify_socket)
