"""Jobs and cron jobs from files: Compose `deploy.mode: replicated-job|global-job` (as
`docker stack deploy` reads them), Kubernetes `Job` and `CronJob`, and the apply plan that
creates, updates, leaves or prunes cron jobs after the services."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import consensus  # noqa: F401
from consensus.crons import CreateCron, DeleteCron, FireCron, UpdateCron, crons
from consensus.jobs import JobConfig
from consensus.networks import CreateNetwork
from consensus.services import parse_service_spec
from consensus.state import ClusterState
from consensus.wire import to_plain
from node.apply_check import apply_problems
from node.manifests import STACK_LABEL, ManifestError, Origin, load_manifest
from node.manifests.plan import PlanConflict, plan_manifest
from tests.unit.node.test_manifests import _paths, _replace, yaml_values

COMPOSE = """\
services:
  migrate:
    image: example/migrate:2.1
    command: ["./migrate", "--to", "latest"]
    deploy:
      mode: replicated-job
      replicas: 4
      restart_policy: {condition: on-failure, max_attempts: 2, delay: 3s}
  warm-cache:
    image: example/warm:1
    deploy:
      mode: global-job
  seed:
    image: example/seed:1
    deploy:
      mode: replicated-job
"""

JOB = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: report
  labels: {team: data}
spec:
  completions: 5
  parallelism: 2
  backoffLimit: 3
  activeDeadlineSeconds: 600
  ttlSecondsAfterFinished: 3600
  podFailurePolicy:
    rules: [{action: FailJob, onExitCodes: {operator: In, values: [42]}}]
  template:
    metadata:
      labels: {app: report}
    spec:
      restartPolicy: Never
      containers:
      - name: report
        image: python:3.12-slim
        command: ["python", "-c", "print('done')"]
        resources:
          requests: {cpu: 100m, memory: 64Mi}
"""

CRONJOB = """\
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly-backup
spec:
  schedule: "30 2 * * *"
  timeZone: Europe/Paris
  concurrencyPolicy: Forbid
  startingDeadlineSeconds: 300
  successfulJobsHistoryLimit: 5
  failedJobsHistoryLimit: 1
  jobTemplate:
    metadata:
      labels: {app: backup}
    spec:
      backoffLimit: 1
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: backup
            image: busybox:1.36
            command: ["/bin/sh", "-c", "date; echo backing up"]
"""


def test_compose_job_modes_are_jobs_as_swarm_runs_them():
    specs = {s.name: s for s in load_manifest(COMPOSE).specs}
    migrate, warm, seed = specs["migrate"], specs["warm-cache"], specs["seed"]
    # replicated-job: replicas are the completions, all run at once (Swarm's MaxConcurrent);
    # the restart policy's attempts and delay are the job's retries.
    assert migrate.mode == "replicated"
    assert migrate.job == JobConfig(
        completions=4, parallelism=4, backoff_limit=2, backoff_delay=3.0
    )
    assert migrate.restart.condition == "on-failure"
    assert (warm.mode, warm.job.parallelism) == ("global", 0)
    assert warm.restart.condition == "on-failure"  # a job never restarts a task that succeeded
    assert (seed.mode, seed.job.completions, seed.job.parallelism) == ("replicated", 1, 1)


def test_a_compose_job_that_never_retries_or_restarts_always():
    text = COMPOSE.replace("condition: on-failure, max_attempts: 2, delay: 3s", "condition: none")
    assert load_manifest(text).specs[0].job.backoff_limit == 0
    manifest = load_manifest(COMPOSE.replace("condition: on-failure, ", "condition: any, "))
    assert manifest.specs[0].restart.condition == "on-failure"
    assert manifest.warnings == (
        (
            "services.migrate.deploy.restart_policy: a job's task that "
            "succeeded is done; its tasks restart on failure only"
        ),
    )
    always = load_manifest(
        COMPOSE.replace("      restart_policy:", "      x-restart_policy:").replace(
            "  migrate:\n", "  migrate:\n    restart: always\n"
        )
    )
    assert always.warnings[0].startswith("services.migrate.restart: a job's task that succeeded")
    assert always.specs[0].restart.condition == "on-failure"


@pytest.mark.parametrize(
    "old, new, field",
    [
        ("replicas: 4", "replicas: many", "services.migrate.deploy.replicas"),
        ("replicas: 4", "replicas: 0", "services.migrate.deploy.replicas"),
    ],
)
def test_compose_job_errors_name_the_field(old, new, field):
    with pytest.raises(ManifestError) as info:
        load_manifest(COMPOSE.replace(old, new))
    assert info.value.field == field


def test_a_kubernetes_job_is_a_job():
    manifest = load_manifest(JOB)
    (spec,) = manifest.specs
    assert (spec.name, spec.mode, spec.image, spec.command) == (
        "report",
        "replicated",
        "python:3.12-slim",
        ("python", "-c", "print('done')"),
    )
    assert spec.job == JobConfig(
        completions=5, parallelism=2, backoff_limit=3, deadline=600.0, ttl_after_finished=3600.0
    )
    assert spec.labels == {"team": "data", "app": "report"}
    assert spec.resources.reservations.cpu_millis == 100
    assert manifest.warnings == ("Job/report.spec.podFailurePolicy: not supported, ignored",)
    queue = load_manifest(JOB.replace("  completions: 5\n", ""))
    assert (queue.specs[0].job.completions, queue.specs[0].job.parallelism) == (1, 2)
    assert any(
        w.startswith("Job/report.spec.completions: without it Kubernetes runs a work queue")
        for w in queue.warnings
    )
    # OnFailure is a job too; the pod's restart policy never makes it restart forever.
    assert load_manifest(JOB.replace("Never", "OnFailure")).specs[0].job.completions == 5


@pytest.mark.parametrize(
    "old, new, field, reason",
    [
        (
            "restartPolicy: Never",
            "restartPolicy: Always",
            "Job/report.spec.template.spec.restartPolicy",
            "Never or OnFailure",
        ),
        (
            "      restartPolicy: Never\n",
            "",
            "Job/report.spec.template.spec.restartPolicy",
            "Never or OnFailure",
        ),
        ("completions: 5", "completions: 0", "Job/report.spec.completions", "between 1"),
        ("backoffLimit: 3", "backoffLimit: -1", "Job/report.spec.backoffLimit", "between 0"),
        (
            "activeDeadlineSeconds: 600",
            "activeDeadlineSeconds: soon",
            "Job/report.spec.activeDeadlineSeconds",
            "",
        ),
        (
            "  completions: 5\n",
            "  completions: 5\n  suspend: true\n",
            "Job/report.spec.suspend",
            "suspended",
        ),
    ],
)
def test_kubernetes_job_errors_name_the_field(old, new, field, reason):
    with pytest.raises(ManifestError) as info:
        load_manifest(JOB.replace(old, new))
    assert info.value.field == field
    assert reason in info.value.reason


def test_a_kubernetes_cronjob_is_a_cron_spec():
    manifest = load_manifest(CRONJOB, origin=Origin(stack="ops"))
    assert manifest.specs == ()
    (cron,) = manifest.crons
    assert (
        cron.name,
        cron.schedule,
        cron.timezone,
        cron.concurrency,
        cron.starting_deadline,
        cron.history,
    ) == ("nightly-backup", "30 2 * * *", "Europe/Paris", "forbid", 300.0, 5)
    template = cron.template
    assert (template.name, template.image, template.job.backoff_limit) == (
        "nightly-backup",
        "busybox:1.36",
        1,
    )
    assert template.labels == {"app": "backup", STACK_LABEL: "ops"}
    assert [n.name for n in manifest.networks] == ["default"]  # its runs join the pod network
    assert manifest.warnings == (
        "CronJob/nightly-backup.spec.failedJobsHistoryLimit: not supported, ignored",
    )
    defaults = load_manifest(
        CRONJOB.replace("  timeZone: Europe/Paris\n", "").replace(
            "  concurrencyPolicy: Forbid\n", ""
        )
    ).crons[0]
    assert (defaults.timezone, defaults.concurrency) == ("UTC", "allow")


@pytest.mark.parametrize(
    "old, new, field, reason",
    [
        (
            '"30 2 * * *"',
            '"every night"',
            "CronJob/nightly-backup.spec.schedule",
            "not a cron schedule",
        ),
        (
            "Europe/Paris",
            "Mars/Olympus",
            "CronJob/nightly-backup.spec.timeZone",
            "unknown time zone",
        ),
        (
            "Forbid",
            "Sometimes",
            "CronJob/nightly-backup.spec.concurrencyPolicy",
            "Allow, Forbid or Replace",
        ),
        (
            "successfulJobsHistoryLimit: 5",
            "successfulJobsHistoryLimit: 1000",
            "CronJob/nightly-backup.spec.successfulJobsHistoryLimit",
            "between 0",
        ),
        (
            "restartPolicy: OnFailure",
            "restartPolicy: Always",
            "CronJob/nightly-backup.spec.jobTemplate.spec.template.spec.restartPolicy",
            "Never or OnFailure",
        ),
        (
            "  schedule:",
            "  suspend: true\n  schedule:",
            "CronJob/nightly-backup.spec.suspend",
            "suspended",
        ),
        (
            "name: nightly-backup",
            "name: Nightly_Backup",
            "CronJob/Nightly_Backup.metadata.name",
            "not a DNS label",
        ),
        (
            "name: nightly-backup",
            "name: " + "n" * 53,
            f"CronJob/{'n' * 53}.metadata.name",
            "not a cron name",
        ),
    ],
)
def test_cronjob_errors_name_the_field(old, new, field, reason):
    with pytest.raises(ManifestError) as info:
        load_manifest(CRONJOB.replace(old, new))
    assert info.value.field == field
    assert reason in info.value.reason


def test_a_cronjob_defined_twice_is_an_error():
    with pytest.raises(ManifestError, match="cron job 'nightly-backup' is defined twice"):
        load_manifest(CRONJOB + "---\n" + CRONJOB)


def _state_with_network() -> ClusterState:
    state = ClusterState()
    assert state.apply(CreateNetwork("net-default", "default", 0.0)).ok
    return state


def _apply_crons(state: ClusterState, text: str, stack: str = "ops", prune: bool = False) -> dict:
    """Plan the file's cron jobs and commit them as the API does; returns {name: action}."""
    plan = plan_manifest(
        {}, load_manifest(text, origin=Origin(stack=stack)), prune=prune, crons=dict(crons(state))
    )
    assert apply_problems(state, [], (), files_to_come=False, cron_steps=plan.crons) == []
    for step in plan.crons:
        if step.action == "create":
            assert state.apply(CreateCron(f"id-{step.spec.name}", step.spec, 1.0)).ok
        elif step.action == "update":
            assert state.apply(UpdateCron(step.spec, 2.0)).ok
        elif step.action == "remove":
            assert state.apply(DeleteCron(step.spec.name, 3.0)).ok
    return {step.spec.name: step.action for step in plan.crons}


def test_applying_a_cronjob_creates_then_leaves_then_updates_it_keeping_its_runs():
    state = _state_with_network()
    assert _apply_crons(state, CRONJOB) == {"nightly-backup": "create"}
    assert _apply_crons(state, CRONJOB) == {"nightly-backup": "unchanged"}
    assert state.apply(FireCron("nightly-backup", "id-nightly-backup", 100.0, "run-1", 100.0)).ok
    assert _apply_crons(state, CRONJOB.replace("30 2", "45 3")) == {"nightly-backup": "update"}
    cron = crons(state)["nightly-backup"]
    assert (cron.id, cron.spec.schedule, cron.last_scheduled) == (
        "id-nightly-backup",
        "45 3 * * *",
        100.0,
    )
    # The time already started is never started again after the update.
    assert not state.apply(
        FireCron("nightly-backup", "id-nightly-backup", 100.0, "run-2", 101.0)
    ).ok


def test_prune_removes_the_stacks_cron_jobs_only_and_another_stacks_is_never_taken():
    state = _state_with_network()
    _apply_crons(state, CRONJOB, stack="ops")
    with pytest.raises(PlanConflict, match="belongs to stack 'ops'"):
        _apply_crons(state, CRONJOB, stack="other")
    assert _apply_crons(state, "[]", stack="other", prune=True) == {}
    assert _apply_crons(state, "[]", stack="ops", prune=True) == {"nightly-backup": "remove"}
    assert crons(state) == {}


def test_a_cron_template_that_cannot_run_fails_the_apply_before_anything_changes():
    state = _state_with_network()
    (cron,) = load_manifest(CRONJOB).crons
    template = parse_service_spec({**to_plain(cron.template), "secrets": ["missing-key"]})
    plan = plan_manifest(
        {}, replace(load_manifest(CRONJOB), crons=(replace(cron, template=template),)), crons={}
    )
    (problem,) = apply_problems(state, [], (), files_to_come=False, cron_steps=plan.crons)
    assert problem.field == "crons.nightly-backup.template.secrets[0].source"
    assert "missing-key" in problem.error


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([JOB, CRONJOB, COMPOSE]), st.data(), yaml_values)
def test_a_job_file_with_one_field_garbled_never_crashes(text, data, garbage):
    doc = yaml.safe_load(text)
    path = data.draw(st.sampled_from(list(_paths(doc))))
    try:
        load_manifest(json.dumps(_replace(doc, path, garbage)))
    except ManifestError as exc:
        assert exc.field and exc.reason
