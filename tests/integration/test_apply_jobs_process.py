"""Jobs and cron jobs from files on a real cluster of `shoal node` processes: `shoal apply`
of a Kubernetes Job and CronJob and of a Compose replicated-job; the jobs complete, the cron
job is listed and fires, a second apply changes nothing, a changed schedule updates the cron
job, and `shoal stack rm` removes it."""

from __future__ import annotations

import json

import pytest

from node.localcluster import wait_for
from tests.integration.cluster_support import SETTLE, must, shoal

pytestmark = pytest.mark.timeout(150)

KUBE = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: report
spec:
  completions: 2
  parallelism: 2
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: report
        image: process
        command: ["sh", "-c", "echo report done"]
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: beat
spec:
  schedule: "* * * * * */5"
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 2
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: beat
            image: process
            command: ["true"]
"""

COMPOSE = """\
services:
  migrate:
    image: process
    command: ["sh", "-c", "echo migrated"]
    deploy:
      mode: replicated-job
      replicas: 3
"""


def apply(addr: str, path, *flags: str) -> dict:
    return json.loads(must(shoal("apply", f"--file={path}", "-o", "json", *flags, addr=addr)))


async def test_files_apply_jobs_and_cron_jobs(fresh, tmp_path):
    cluster = fresh(1)
    await cluster.start()
    addr = cluster.nodes[0].api
    kube, compose = tmp_path / "jobs.yaml", tmp_path / "compose.yaml"
    kube.write_text(KUBE)
    compose.write_text(COMPOSE)

    dry = apply(addr, kube, "--stack", "ops", "--dry-run")
    assert (dry["services"][0]["name"], dry["services"][0]["action"]) == ("report", "created")
    assert dry["crons"] == [{"name": "beat", "action": "created"}] and dry["dry_run"]
    assert await cluster.get(0, "/v1/crons") == []

    done = apply(addr, kube, "--stack", "ops")
    assert [(s["name"], s["action"]) for s in done["services"]] == [("report", "created")]
    assert done["crons"] == [{"name": "beat", "action": "created"}]

    async def finished(name: str) -> dict | None:
        job = await cluster.get(0, f"/v1/jobs/{name}")
        return job if job["status"] != "running" else None

    report = await wait_for(lambda: finished("report"), timeout=SETTLE, what="the Job to finish")
    assert (report["status"], report["succeeded"], report["completions"]) == ("complete", 2, 2)
    (beat,) = await cluster.get(0, "/v1/crons")
    assert (beat["name"], beat["schedule"], beat["concurrency"], beat["history"]) == (
        "beat",
        "* * * * * */5",
        "forbid",
        2,
    )

    async def a_finished_run() -> list | None:
        runs = (await cluster.get(0, "/v1/crons/beat"))["runs"]
        return [r for r in runs if r["status"] == "complete"] or None

    await wait_for(a_finished_run, timeout=SETTLE, what="a run of the CronJob to complete")

    again = apply(addr, kube, "--stack", "ops")
    assert [s["action"] for s in again["services"]] == ["unchanged"]
    assert again["crons"] == [{"name": "beat", "action": "unchanged"}]
    kube.write_text(KUBE.replace("*/5", "*/7"))
    changed = apply(addr, kube, "--stack", "ops")
    assert changed["crons"] == [{"name": "beat", "action": "updated"}]
    assert (await cluster.get(0, "/v1/crons/beat"))["schedule"] == "* * * * * */7"

    migrated = apply(addr, compose, "--stack", "db")
    assert [(s["name"], s["action"]) for s in migrated["services"]] == [("migrate", "created")]
    migrate = await wait_for(lambda: finished("migrate"), timeout=SETTLE, what="the Compose job")
    assert (migrate["status"], migrate["succeeded"], migrate["completions"]) == ("complete", 3, 3)

    removed = must(shoal("stack", "rm", "ops", addr=addr))
    assert "Removing cron job beat" in removed
    assert await cluster.get(0, "/v1/crons") == []
