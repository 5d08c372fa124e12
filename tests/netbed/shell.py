"""Running the host's network tools (ip, nft, iptables, nsenter) with errors that say what failed."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


class BedCommandError(RuntimeError):
    """A network tool failed; carries the command line and its stderr so the test log shows why."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(
            f"`{' '.join(argv)}` exited {returncode}: {stderr.strip() or '(no stderr)'}"
        )
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


def run(
    argv: Sequence[str], *, check: bool = True, timeout: float = 30.0, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one command to completion; raise BedCommandError on a non-zero exit when `check`."""
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, input=input_text
    )
    if check and done.returncode != 0:
        raise BedCommandError(argv, done.returncode, done.stderr)
    return done


def netns_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """Prefix a command so it runs inside a named network namespace.

    nsenter only switches the network namespace; `ip netns exec` would also remount /sys,
    which breaks the devices cgroup that a private dockerd needs.
    """
    return ["nsenter", f"--net=/run/netns/{netns}", "--", *argv]
