"""Shared test helpers: skipping end-to-end tests where the machine cannot run them.

Tests that need Docker or network namespaces skip with a reason on a laptop without them, and
fail instead when SHOAL_REQUIRE_E2E=1 (CI sets it), so a broken CI machine cannot hide them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def e2e_required() -> bool:
    return os.environ.get("SHOAL_REQUIRE_E2E") == "1"


def unavailable(reason: str) -> None:
    """Skip the current test, or fail it when end-to-end tests are required."""
    if e2e_required():
        pytest.fail(f"SHOAL_REQUIRE_E2E=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def docker_available() -> str | None:
    """None when a Docker Engine answers, otherwise why not."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure to reach the engine means: no Docker here
        return f"no Docker Engine reachable ({exc.__class__.__name__}: {exc})"
    return None


def require_docker() -> None:
    reason = docker_available()
    if reason:
        unavailable(reason)


def require_root_netns() -> None:
    """Network namespaces, bridges and nftables need root and iproute2/nsenter."""
    if os.geteuid() != 0:
        unavailable("network namespaces need root")
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed")
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        unavailable(f"ip netns does not work here: {probe.stderr.strip()}")


def require_netbed() -> None:
    """Skip (or fail under SHOAL_REQUIRE_E2E=1) where a multi-host bed cannot be built."""
    require_root_netns()
    for tool in ("nft", "iptables"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (the bed's faults and forwarding rule need it)")


def fixture_text(name: str) -> str:
    """A file from tests/fixtures (documents several tests read, such as the seed manifest)."""
    return (Path(__file__).parent / "fixtures" / name).read_text()


def python_probe(code: str, env: dict[str, str] | None = None) -> object:
    """Run `code` in a fresh interpreter (what a new node process would import and hold) and
    return the JSON it printed last."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def processes_working_under(root: os.PathLike | str) -> list[int]:
    """Pids of processes whose working directory is under `root`: the process runtime's
    tasks of clusters kept there, which outlive their nodes by design."""
    root, found = str(root), []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/cwd").startswith(root):
                found.append(int(entry))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser_missing() -> str | None:
    """None when a headless Chromium can be driven here (Debian's chromium and
    chromium-driver, and selenium), otherwise what is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if shutil.which(path) is None:
            return f"{path} is missing (Debian package `{package}`)"
    return None


def headless_chromium(width: int = 1400, height: int = 1000):
    """A selenium driver of a headless Chromium with a window of that size."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    # The pages come over TLS from the cluster's own CA, which a throwaway browser profile
    # does not hold (an operator imports DATA_DIR/tls/ca.pem once).
    options.accept_insecure_certs = True
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


NOBODY = 65534


def as_nobody(argv: list[str]) -> list[str]:
    """`argv` run as the unprivileged user nobody: what any local user (or task) could do.
    Needs root to switch users; skips (or fails, see `unavailable`) without it."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        unavailable("switching to the user nobody needs root and setpriv")
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
