"""`shoal cron create` flags into a plain cron spec, checked by the real parser."""

from __future__ import annotations

from consensus.crons import parse_cron_spec
from node.cli import build_parser
from node.cli_cron import create_body


def cron_spec(*argv: str):
    return parse_cron_spec(create_body(build_parser().parse_args(["cron", "create", *argv])))


def test_cron_flags_make_the_cron_they_say():
    spec = cron_spec(
        "--name",
        "nightly",
        "--schedule",
        "*/5 * * * *",
        "--timezone",
        "Europe/Paris",
        "--concurrency",
        "forbid",
        "--starting-deadline",
        "2m",
        "--history",
        "5",
        "--completions",
        "2",
        "-e",
        "A=1",
        "busybox",
        "echo",
        "hi",
    )
    assert (spec.name, spec.schedule, spec.timezone) == ("nightly", "*/5 * * * *", "Europe/Paris")
    assert (spec.concurrency, spec.starting_deadline, spec.history) == ("forbid", 120.0, 5)
    template = spec.template
    assert template.name == "nightly" and template.job.completions == 2
    assert template.args == ("echo", "hi") and template.env == {"A": "1"}


def test_a_cron_without_flags_has_the_defaults_the_help_names():
    spec = cron_spec("--name", "n", "--schedule", "@hourly", "busybox")
    assert (spec.timezone, spec.concurrency, spec.starting_deadline, spec.history) == (
        "UTC",
        "allow",
        0.0,
        3,
    )
