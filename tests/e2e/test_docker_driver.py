"""The Docker runtime against a real engine, with the locally built busybox image."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.request
import uuid

import docker
import pytest

from node.health import HealthCheck
from node.runtime import PortSpec, RunSpec, select_driver
from node.runtime.docker_driver import DockerDriver
from node.runtime.model import LABEL_NODE
from tests.support import require_docker

pytestmark = pytest.mark.e2e

# busybox httpd serving one page; the page is written first, by the same shell.
HTTPD = (
    "sh",
    "-c",
    "mkdir -p /www && echo hello from $HOSTNAME > /www/index.html && "
    "echo httpd starting && exec httpd -f -p 80 -h /www",
)


@pytest.fixture
async def node_id() -> str:
    require_docker()
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def driver(node_id, busybox_image):
    driver = await DockerDriver.connect(node_id, pull=False)
    yield driver
    # Every container this test made carries its node label: remove them all.
    client = docker.from_env()
    try:
        for container in client.containers.list(
            all=True, filters={"label": f"{LABEL_NODE}={node_id}"}
        ):
            container.remove(force=True)
    finally:
        client.close()
    await driver.aclose()


def httpd(image: str, task_id: str = "web-1", **overrides) -> RunSpec:
    return RunSpec(
        **{
            "task_id": task_id,
            "service": "web",
            "slot": 1,
            "image": image,
            "args": HTTPD,
            "ports": (PortSpec(80),),
            "memory_bytes": 64 << 20,
            "stop_grace": 5,
            **overrides,
        }
    )


async def get(url: str) -> bytes:
    for _ in range(100):
        try:
            return await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered")


async def test_httpd_with_a_memory_limit_answers_on_its_published_port(driver, busybox_image):
    seen = await driver.start(httpd(busybox_image))
    assert seen.state == "running" and (seen.service, seen.slot) == ("web", 1)
    endpoint = seen.endpoint(80)
    assert endpoint.host == "127.0.0.1" and endpoint.port > 0
    assert (await get(f"http://{endpoint.host}:{endpoint.port}/")).startswith(b"hello from")
    client = docker.from_env()
    try:
        (container,) = client.containers.list(filters={"label": "shoal.task=web-1"})
        assert container.attrs["HostConfig"]["Memory"] == 64 << 20
        assert container.attrs["HostConfig"]["Init"] is True
        assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"
    finally:
        client.close()
    stats = await driver.stats("web-1")
    assert 0 < stats.memory_bytes < 64 << 20 and stats.memory_limit_bytes == 64 << 20


async def test_stop_ends_the_task_within_its_grace_and_wait_sees_it(driver, busybox_image):
    await driver.start(httpd(busybox_image))
    waiter = asyncio.ensure_future(driver.wait("web-1"))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    stopped = await driver.stop("web-1", 5)
    # The init forwards SIGTERM, so httpd ends on it (128 + 15) rather than being killed.
    assert (stopped.state, stopped.exit_code) == ("failed", 143)
    assert stopped.endpoints == ()
    assert (await asyncio.wait_for(waiter, 30)).exit_code == 143
    await driver.remove("web-1")
    assert (await driver.inspect("web-1")).state == "missing"


async def test_a_task_that_ignores_sigterm_is_killed_after_the_grace(driver, busybox_image):
    await driver.start(
        RunSpec(
            "stubborn-1",
            "job",
            0,
            busybox_image,
            args=("sh", "-c", "trap '' TERM; echo trapped; while true; do sleep 1; done"),
        )
    )
    async with contextlib.aclosing(driver.logs("stubborn-1", follow=True)) as stream:
        async for chunk in stream:
            if b"trapped" in chunk:
                break
    stopped = await driver.stop("stubborn-1", 1)
    assert (stopped.state, stopped.exit_code) == ("failed", 137)


async def test_a_port_that_cannot_be_published_fails_the_start(driver, busybox_image):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        seen = await driver.start(httpd(busybox_image, ports=(PortSpec(80, published=port),)))
    assert seen.state == "failed" and seen.error.startswith("cannot start the container:")
    assert str(port) in seen.error
    assert (await driver.inspect("web-1")).state == "failed"


async def test_exit_status_of_a_finished_task(driver, busybox_image):
    await driver.start(RunSpec("job-1", "job", 0, busybox_image, args=("sh", "-c", "exit 0")))
    await driver.start(RunSpec("job-2", "job", 1, busybox_image, args=("sh", "-c", "exit 7")))
    assert (await driver.wait("job-1")).state == "exited"
    failed = await driver.wait("job-2")
    assert (failed.state, failed.exit_code, failed.error) == ("failed", 7, "exited with status 7")


async def test_a_fresh_driver_adopts_its_own_containers_only(driver, node_id, busybox_image):
    first = await driver.start(httpd(busybox_image, "web-1"))
    await driver.start(httpd(busybox_image, "web-2", slot=2))
    other = await DockerDriver.connect(f"{node_id}-other", pull=False)
    try:
        assert await other.list_owned() == []  # another node on the same engine
    finally:
        await other.aclose()
    restarted = await DockerDriver.connect(node_id, pull=False)
    try:
        adopted = {o.task_id: o for o in await restarted.list_owned()}
        assert sorted(adopted) == ["web-1", "web-2"]
        assert adopted["web-1"].endpoints == first.endpoints and adopted["web-1"].state == "running"
        again = await restarted.start(httpd(busybox_image, "web-1"))  # no second container
        assert again.started_at == first.started_at
        assert len(await restarted.list_owned()) == 2
    finally:
        await restarted.aclose()


async def test_a_missing_image_is_a_failed_task_with_the_reason(driver):
    seen = await driver.start(RunSpec("bad-1", "web", 1, "no-such-image:404"))
    assert seen.state == "failed"
    assert "image 'no-such-image:404' is not on this node and cannot be pulled" in seen.error
    assert (await driver.inspect("bad-1")).error == seen.error
    assert (await driver.wait("bad-1")).state == "failed"
    await driver.remove("bad-1")
    assert (await driver.inspect("bad-1")).state == "missing"


async def test_a_command_that_cannot_run_fails_clearly(driver, busybox_image):
    await driver.start(RunSpec("bad-2", "web", 1, busybox_image, args=("/no/such/tool",)))
    # The init (PID 1) cannot exec it: the task ends with 127, and its log (stderr) says why.
    ended = await asyncio.wait_for(driver.wait("bad-2"), 30)
    assert (ended.state, ended.exit_code) == ("failed", 127)
    output = b"".join([chunk async for chunk in driver.logs("bad-2")])
    assert b"/no/such/tool" in output


async def test_logs_whole_tail_and_follow(driver, busybox_image):
    await driver.start(
        RunSpec(
            "log-1",
            "job",
            0,
            busybox_image,
            args=("sh", "-c", "echo one; echo two; echo three; exec sleep 30"),
        )
    )

    async def text(**kwargs) -> bytes:
        chunks = []
        async with contextlib.aclosing(driver.logs("log-1", **kwargs)) as stream:
            async for chunk in stream:
                chunks.append(chunk)
                if kwargs.get("follow") and b"three" in b"".join(chunks):
                    break
        return b"".join(chunks)

    for _ in range(100):
        if b"three" in await text():
            break
        await asyncio.sleep(0.05)
    assert await text() == b"one\ntwo\nthree\n"
    assert await text(tail=1) == b"three\n"
    # Following a running container, then leaving early, frees the stream.
    assert (await asyncio.wait_for(text(follow=True), 30)).endswith(b"three\n")


async def test_a_cmd_health_check_runs_in_docker(driver, busybox_image):
    check = HealthCheck(
        "cmd", command=("test", "-f", "/www/index.html"), interval=0.2, timeout=2, retries=2
    )
    await driver.start(httpd(busybox_image, healthcheck=check))
    for _ in range(200):
        seen = await driver.inspect("web-1")
        if seen.health == "healthy":
            break
        await asyncio.sleep(0.05)
    assert seen.health == "healthy"


async def test_select_driver_prefers_docker_when_it_answers(node_id, tmp_path):
    chosen = await select_driver("auto", str(tmp_path), node_id=node_id)
    try:
        assert isinstance(chosen, DockerDriver)
        assert (await chosen.fingerprint()).runtime == "docker"
    finally:
        await chosen.aclose()


async def test_container_options_run_in_docker(driver, busybox_image):
    """Compose's user, working_dir, hostname, extra_hosts, read_only and ulimits, as the task
    itself sees them."""
    from consensus.container import ContainerOptions, Ulimit

    options = ContainerOptions(
        user="1234:2345",
        working_dir="/tmp",
        hostname="web1",
        extra_hosts={"db.local": "10.9.8.7"},
        read_only=True,
        ulimits={"nofile": Ulimit(321, 654)},
        stop_signal="SIGUSR1",
    )
    script = (
        "id -u; id -g; pwd; hostname; grep db.local /etc/hosts; ulimit -n; "
        "touch /x 2>/dev/null && echo writable || echo read-only"
    )
    await driver.start(
        RunSpec("opt-1", "job", 0, busybox_image, args=("sh", "-c", script), options=options)
    )
    assert (await driver.wait("opt-1")).state == "exited"
    chunks = []
    async with contextlib.aclosing(driver.logs("opt-1")) as stream:
        async for chunk in stream:
            chunks.append(chunk)
    lines = b"".join(chunks).decode().split("\n")
    assert lines[:4] == ["1234", "2345", "/tmp", "web1"]
    assert lines[4].split() == ["10.9.8.7", "db.local"] and lines[5:7] == ["321", "read-only"]
