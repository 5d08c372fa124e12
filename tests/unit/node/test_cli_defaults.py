"""What the CLI's help and the README say matches the code: the defaults `shoal service create
--help` and the README name are the spec's own (a flag given its shown default makes the same
spec as the flag left out), and the process runtime's working directory is where it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from consensus.services import parse_service_spec
from node.cli import build_parser
from node.cli_service import SETTINGS, create_body, spec_default
from node.runtime.process_records import WORK_DIR

README = Path(__file__).resolve().parents[3] / "README.md"
SHOWN = [s for s in SETTINGS if s.type is not None and s.show_default and spec_default(s.path)]


def test_the_defaults_operators_ask_about_are_shown_as_they_are():
    shown = {s.flag: spec_default(s.path) for s in SHOWN}
    assert {
        flag: shown[flag]
        for flag in (
            "--replicas",
            "--health-interval",
            "--health-timeout",
            "--health-start-period",
            "--restart-delay",
        )
    } == {
        "--replicas": "1",
        "--health-interval": "30s",
        "--health-timeout": "30s",
        "--health-start-period": "0s",
        "--restart-delay": "5s",
    }


@pytest.mark.parametrize("setting", SHOWN, ids=lambda s: s.flag)
def test_giving_a_flag_its_shown_default_changes_nothing(setting):
    argv = ["service", "create", "--name", "web"]
    if setting.path[0] == "autoscale":  # a policy needs its required fields
        argv += ["--autoscale-max", "5", "--autoscale-cpu", "50"]
    plain = create_body(build_parser(argv).parse_args([*argv, "busybox"]))
    given = create_body(
        build_parser(argv).parse_args([*argv, setting.flag, spec_default(setting.path), "busybox"])
    )
    assert parse_service_spec(given) == parse_service_spec(plain)


def test_the_help_names_each_default(capsys):
    with pytest.raises(SystemExit):
        build_parser(["service"]).parse_args(["service", "create", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for setting in SHOWN:
        assert f"(default {spec_default(setting.path)})" in help_text, setting.flag


def test_the_readme_marks_the_same_defaults():
    create = "\n".join(
        line
        for line in README.read_text().splitlines()
        if line.startswith("| `shoal service create")
    )
    for setting in SHOWN:
        found = list(re.finditer(rf"\[{re.escape(setting.flag)} ([^\]]*)\]", create))
        assert found or setting.path[0] in ("update", "rollback"), f"README omits {setting.flag}"
        for match in found:
            shown = re.search(r"\(default ([^);:]+)", match[1])
            assert shown, f"README shows {match[0]} without marking its default"
            assert shown[1] == spec_default(setting.path), match[0]


def test_the_readme_names_the_process_runtimes_working_directory():
    assert f"runs in `DATA_DIR/tasks/<task id>/{WORK_DIR}`" in " ".join(README.read_text().split())
