"""The README's pictures, made again: a 3-node local cluster (process runtime) with the dev
cluster's demo service and a second service, its dashboard in headless Chromium.

    python -m deploy.screenshots [--out docs/img]

Needs Debian's chromium and chromium-driver and selenium, as the dashboard's browser test
does. Writes dashboard.png (1200x750, reduced to a 256-colour palette to stay small).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time

from node.devcluster.dev import demo_service
from node.devcluster.localcluster import LocalCluster, wait_for
from tests.support import browser_missing, headless_chromium, processes_working_under

WIDTH, HEIGHT = 1200, 750
DEMO_PORT = 18080


async def _populate(cluster: LocalCluster) -> None:
    async with cluster.nodes[0].client() as client:
        await client.post("/v1/services", demo_service(DEMO_PORT))
        await client.post(
            "/v1/services",
            {"name": "worker", "image": "process", "replicas": 2, "command": ["sleep", "3600"]},
        )

        async def all_running() -> bool:
            services = await client.get("/v1/services")
            return all(s["replicas"]["running"] == s["replicas"]["desired"] for s in services)

        await wait_for(all_running, timeout=60, what="every replica running")
        await client.patch("/v1/services/worker", {"replicas": 3})  # an event or two to show
        await wait_for(all_running, timeout=60, what="the scaled service running")


def _shoot(url: str, path: str) -> None:
    from PIL import Image

    driver = headless_chromium(WIDTH, HEIGHT)
    try:
        # The page's own size, whatever the browser's frame takes.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )
        driver.get(url)
        rows = (
            "return document.querySelectorAll('#services tbody tr').length >= 2 && "
            "document.querySelectorAll('#nodes tbody tr').length == 3"
        )
        deadline = time.monotonic() + 20
        while not driver.execute_script(rows):
            if time.monotonic() > deadline:
                raise RuntimeError("the dashboard did not list the cluster within 20 s")
            time.sleep(0.2)
        from selenium.webdriver.common.by import By

        # The demo service's tasks, where they run and their state.
        driver.find_element(By.CSS_SELECTOR, '#services tr[data-name="hello"] button.tasks').click()
        time.sleep(1.0)  # its tasks, and the event stream's first lines
        driver.save_screenshot(path)
    finally:
        driver.quit()
    image = Image.open(path).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


async def make(out: str) -> str:
    path = os.path.join(os.path.abspath(out), "dashboard.png")
    with tempfile.TemporaryDirectory(prefix="shoal-screenshots-") as base:
        cluster = LocalCluster(base, 3, ["--runtime", "process"])
        try:
            await cluster.start()
            await _populate(cluster)
            node = cluster.nodes[0]
            await asyncio.to_thread(_shoot, f"https://{node.api}/ui#token={node.api_token}", path)
        finally:
            cluster.stop()
            for pid in processes_working_under(base):  # tasks outlive their nodes by design
                os.kill(pid, signal.SIGKILL)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.screenshots")
    parser.add_argument("--out", default="docs/img", help="directory (default docs/img)")
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        raise SystemExit(f"cannot take screenshots: {missing}")
    path = asyncio.run(make(args.out))
    print(f"{path}: {os.path.getsize(path) // 1024} KiB")


if __name__ == "__main__":
    main()
