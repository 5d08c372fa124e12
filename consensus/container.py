"""How a service's container runs, beyond its command: the options `docker run` and Compose
have (user, working directory, hostname, stop signal, terminal, read-only root, sysctls,
extra hosts, ulimits, logging). The Docker runtime honours each; the process runtime runs
plain processes and honours only the stop signal (an apply says so where a node runs it).

Options that give a task power over its node (privileged, capabilities) are not here: they
need an authorisation that Shoal does not have yet.
"""

from __future__ import annotations

import ipaddress
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass, field, fields

# A service may not ask for more of any one option than this.
MAX_ENTRIES = 64
MAX_TEXT = 256
_MAX_LIMIT = 2**62  # what the replicated state's encoding holds with room
_SYSCTL = re.compile(r"[a-z0-9_]+(\.[a-z0-9_/-]+)+")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?")
_ULIMIT = re.compile(r"[a-z]+")
_LOG_DRIVER = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class Ulimit:
    soft: int
    hard: int


@dataclass(frozen=True, slots=True)
class ContainerOptions:
    user: str = ""  # NAME, UID or UID:GID in the image
    working_dir: str = ""
    hostname: str = ""
    stop_signal: str = ""  # SIGTERM when empty
    tty: bool = False
    read_only: bool = False  # the root file system
    sysctls: dict[str, str] = field(default_factory=dict)
    extra_hosts: dict[str, str] = field(default_factory=dict)  # host name -> address
    ulimits: dict[str, Ulimit] = field(default_factory=dict)
    log_driver: str = ""
    log_options: dict[str, str] = field(default_factory=dict)

    def used(self) -> tuple[str, ...]:
        """The options set to something other than their default."""
        default = ContainerOptions()
        return tuple(
            f.name for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)
        )


def stop_signal_number(name: str) -> int:
    """SIGQUIT, QUIT or 3 -> 3; ValueError when it names no signal."""
    text = name.upper()
    if text.isdigit():
        return signal.Signals(int(text)).value
    return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"].value


def check_container(options: ContainerOptions, check: Callable[[bool, str, str], None]) -> None:
    at = "container"
    check(
        not options.user or bool(_USER.fullmatch(options.user)),
        f"{at}.user",
        "must be a user name or uid, optionally :group or :gid",
    )
    check(
        not options.working_dir
        or (options.working_dir.startswith("/") and len(options.working_dir) <= MAX_TEXT),
        f"{at}.working_dir",
        "must be an absolute path",
    )
    check(
        not options.hostname or bool(_HOSTNAME.fullmatch(options.hostname)),
        f"{at}.hostname",
        "must be a host name: 1-63 letters, digits or '-'",
    )
    if options.stop_signal:
        try:
            stop_signal_number(options.stop_signal)
        except (KeyError, ValueError):
            check(False, f"{at}.stop_signal", "must name a signal, like SIGQUIT")
    for name in ("sysctls", "extra_hosts", "ulimits", "log_options"):
        check(
            len(getattr(options, name)) <= MAX_ENTRIES,
            f"{at}.{name}",
            f"holds at most {MAX_ENTRIES} entries",
        )
    for key, value in options.sysctls.items():
        check(
            bool(_SYSCTL.fullmatch(key)) and len(key) + len(value) <= MAX_TEXT,
            f"{at}.sysctls.{key[:64]}",
            "must be a kernel parameter like net.core.somaxconn",
        )
    for host, address in options.extra_hosts.items():
        check(
            bool(_HOSTNAME.fullmatch(host.split(".")[0])) and len(host) <= MAX_TEXT,
            f"{at}.extra_hosts",
            f"{host[:64]!r} is not a host name",
        )
        try:
            ipaddress.ip_address(address)
        except ValueError:
            check(False, f"{at}.extra_hosts.{host[:64]}", f"{address[:64]!r} is not an IP address")
    for name, limit in options.ulimits.items():
        check(
            bool(_ULIMIT.fullmatch(name)) and len(name) <= 32,
            f"{at}.ulimits",
            f"{name[:32]!r} is not a ulimit",
        )
        in_range = all(-1 <= v <= _MAX_LIMIT for v in (limit.soft, limit.hard))
        check(
            in_range and (limit.hard == -1 or limit.soft != -1 and limit.soft <= limit.hard),
            f"{at}.ulimits.{name[:32]}",
            f"soft must be at most hard, each -1 (unlimited) to {_MAX_LIMIT}",
        )
    check(
        not options.log_driver or bool(_LOG_DRIVER.fullmatch(options.log_driver)),
        f"{at}.log_driver",
        "must be a logging driver's name",
    )
    check(
        all(len(k) + len(v) <= MAX_TEXT for k, v in options.log_options.items()),
        f"{at}.log_options",
        f"each option holds at most {MAX_TEXT} characters",
    )
