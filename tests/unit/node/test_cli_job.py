"""`shoal job run` flags into plain job specs, checked by the real spec parser."""

from __future__ import annotations

import re
from pathlib import Path

from consensus.services import parse_service_spec
from node.cli import build_parser
from node.cli_job import JOB_SETTINGS, template_body
from node.cli_service import spec_default


def job_spec(*argv: str):
    args = build_parser().parse_args(["job", "run", "--name", "j", *argv])
    return parse_service_spec(template_body(args, args.name))


def test_job_flags_make_the_job_they_say():
    spec = job_spec(
        "--completions",
        "5",
        "--parallelism",
        "2",
        "--backoff-limit",
        "1",
        "--backoff-delay",
        "2s",
        "--deadline",
        "10m",
        "--ttl-after-finished",
        "1h",
        "-e",
        "A=1",
        "--constraint",
        "node.labels.zone==a",
        "--reserve-memory",
        "64M",
        "busybox",
        "sh",
        "-c",
        "exit 0",
    )
    job = spec.job
    assert (job.completions, job.parallelism, job.backoff_limit) == (5, 2, 1)
    assert (job.backoff_delay, job.deadline, job.ttl_after_finished) == (2.0, 600.0, 3600.0)
    assert spec.args == ("sh", "-c", "exit 0") and spec.env == {"A": "1"}
    assert spec.resources.reservations.memory_bytes == 64 << 20
    assert [str(c) for c in spec.constraints] == ["node.labels.zone==a"]


def test_a_job_without_flags_has_kubernetes_defaults_and_a_global_one_runs_everywhere_at_once():
    job = job_spec("busybox").job
    assert (job.completions, job.parallelism, job.backoff_limit, job.backoff_delay) == (
        1,
        1,
        6,
        10.0,
    )
    spec = job_spec("--mode", "global", "busybox")
    assert spec.mode == "global" and spec.job.parallelism == 0
    assert job_spec("--mode", "global", "--parallelism", "1", "busybox").job.parallelism == 1


def test_the_readme_marks_the_job_defaults_as_they_are():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `shoal job run"))
    for setting in JOB_SETTINGS:
        match = re.search(rf"\[{re.escape(setting.flag)} [^\]]*\(default ([^);:]+)", row)
        assert match and match[1] == spec_default(setting.path), setting.flag
