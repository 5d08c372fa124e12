"""The dashboard in a real headless browser (Debian's chromium, driven by selenium through
Debian's chromedriver): it shows a live cluster's nodes, a service created through the CLI
appears within 2 seconds, and scaling from the page changes the service's replicas."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from node.devcluster.localcluster import started_cluster, wait_for
from tests.support import browser_missing, headless_chromium, processes_working_under, unavailable

pytestmark = pytest.mark.timeout(180)


def browser():
    missing = browser_missing()
    if missing:
        unavailable(missing)
    return headless_chromium()


def _rows(driver, table: str) -> dict[str, list[str]]:
    """The table's rows by name, as the page shows them now."""
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll(`#${arguments[0]} tbody tr`)]"
        ".map((tr) => [tr.dataset.name, [...tr.children].map((td) => td.textContent)]))",
        table,
    )


def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:g} s: {what}")


async def test_the_dashboard_shows_a_live_cluster_and_scales_a_service(tmp_path):
    driver = browser()
    try:
        async with started_cluster(str(tmp_path), 2, ["--runtime", "process"]) as cluster:
            addr = f"https://{cluster.nodes[1].api}"
            # As `shoal dev` prints it: the page takes the API token from its address.
            driver.get(f"{addr}/ui#token={cluster.nodes[1].api_token}")
            await asyncio.to_thread(
                _until, lambda: set(_rows(driver, "nodes")) == {"n1", "n2"}, 15, "both nodes listed"
            )
            assert "ready" in _rows(driver, "nodes")["n1"]
            create = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "node",
                    "--addr",
                    addr,
                    "--token",
                    cluster.nodes[1].api_token,
                    "--ca",
                    cluster.nodes[1].ca_file,
                    "service",
                    "create",
                    "--name",
                    "web",
                    "--replicas",
                    "1",
                    "process",
                    "sleep",
                    "300",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert create.returncode == 0, create.stderr
            created = time.monotonic()
            await asyncio.to_thread(
                _until,
                lambda: "web" in _rows(driver, "services"),
                2.0,
                "the new service on the page",
            )
            assert time.monotonic() - created <= 2.0
            # The live event stream is what woke the page (its poll is every 5 s).
            events = "return document.getElementById('events').textContent"
            await asyncio.to_thread(
                _until,
                lambda: "service.created service web created" in driver.execute_script(events),
                2,
                "the event listed",
            )

            from selenium.webdriver.common.by import By

            row = driver.find_element(By.CSS_SELECTOR, '#services tr[data-name="web"]')
            field = row.find_element(By.CSS_SELECTOR, "input[type=number]")
            field.clear()
            field.send_keys("2")
            row.find_element(By.CSS_SELECTOR, "button.scale").click()

            async def scaled() -> bool:
                service = await cluster.get(0, "/v1/services/web")
                return service["spec"]["replicas"] == 2 and service["replicas"]["running"] == 2

            await wait_for(scaled, timeout=30, what="2 running replicas after scaling")
            await asyncio.to_thread(
                _until,
                lambda: _rows(driver, "services").get("web", [""] * 3)[2] == "2/2",
                10,
                "the page showing 2/2 replicas",
            )
            assert (
                driver.execute_script("return document.getElementById('problem').textContent") == ""
            )
    finally:
        driver.quit()
        for pid in processes_working_under(tmp_path):
            os.kill(pid, signal.SIGKILL)
