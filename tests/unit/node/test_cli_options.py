"""The CLI's global options go before or after the command, on every command that talks to
the API, and such a command imports only what it uses."""

from __future__ import annotations

import argparse

import pytest

from node.cli.main import api_address, build_parser, command_group
from node.cli.service import replica_counts
from node.cli.tasks import log_prefix, task_name
from tests.support import python_probe

ADDR, TOKEN = "http://10.9.8.7:7420", "s3cret"
GLOBALS = ["--addr", ADDR, "--token", TOKEN, "-o", "json"]


def _leaves(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _leaves(sub, (*words, name))
            return
    yield words, parser


def _filler(parser: argparse.ArgumentParser) -> list[str]:
    """Values for a command's required arguments (`web=1` parses as a name and as NAME=N;
    an option with choices gets its first)."""
    out: list[str] = []
    for action in parser._actions:
        if action.required and action.option_strings:
            out += [action.option_strings[-1], next(iter(action.choices or ["web=1"]))]
    for action in parser._actions:
        if not action.option_strings and action.nargs != argparse.REMAINDER:
            out.append("web=1")
    return out


def _where(args: argparse.Namespace) -> tuple:
    return args.addr, args.data_dir


API_COMMANDS = [
    words for words, leaf in _leaves(build_parser([])) if leaf.get_default("handler") is not None
]


def test_every_command_group_has_api_commands():
    assert {words[0] for words in API_COMMANDS} == {
        "node",
        "cluster",
        "service",
        "apply",
        "stack",
        "volume",
        "secret",
        "config",
        "network",
        "job",
        "cron",
        "token",
        "events",
    }


@pytest.mark.parametrize("words", API_COMMANDS, ids=" ".join)
def test_global_options_work_before_and_after_the_command(words):
    leaf = dict(_leaves(build_parser([])))[words]
    rest = _filler(leaf)
    for argv in ([*GLOBALS, *words, *rest], [*words, *GLOBALS, *rest]):
        args = build_parser(argv).parse_args(argv)
        assert (args.addr, args.token, args.output) == (ADDR, TOKEN, "json"), argv
    plain = [*words, *rest]
    args = build_parser(plain).parse_args(plain)
    # No address given: api_address picks the environment's, the local node's socket or
    # the default TCP address, in that order.
    assert (args.addr, args.data_dir, args.output) == (None, None, "table")
    # Given twice, the one nearer the command's arguments wins.
    late = ["--addr", "http://a:1", *words, "--addr", "http://b:2", *rest]
    assert build_parser(late).parse_args(late).addr == "http://b:2"
    by_dir = ["--data-dir", "/srv/n1", *words, *rest]
    assert (
        api_address(*_where(build_parser(by_dir).parse_args(by_dir))) == "unix:/srv/n1/shoal.sock"
    )


def test_the_command_group_is_found_past_the_global_options():
    assert command_group(["--addr", "http://x:1", "-o", "json", "node", "ls"]) == "node"
    assert command_group(["--token", "service", "cluster", "status"]) == "cluster"
    assert command_group(["--addr=http://x:1", "service", "ps", "web"]) == "service"
    assert command_group(["--help"]) is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--addr", "http://127.0.0.1:9", "node", "ls"],
        ["service", "ps", "web", "--addr", "http://127.0.0.1:9"],
    ],
)
def test_an_api_command_imports_neither_aiohttp_nor_the_state_machine_nor_rich_nor_asyncio(argv):
    loaded = python_probe(
        "import json, sys, contextlib, io\n"
        "import node.cli.main\n"
        f"with contextlib.redirect_stderr(io.StringIO()): code = node.cli.main.main({argv!r})\n"
        "print(json.dumps({'code': code, 'mods': sorted(sys.modules)}))"
    )
    assert loaded["code"] == 2  # nothing listens on port 9: unreachable, said on stderr
    heavy = [
        m
        for m in loaded["mods"]
        if m.split(".")[0] in ("aiohttp", "consensus", "rich", "cryptography", "yaml", "asyncio")
    ]
    assert heavy == []


def test_logs_name_a_task_as_service_ps_does():
    replicated = {"id": "a" * 20, "service": "web", "slot": 2, "node_name": "n1", "node_id": "x1"}
    global_ = {"id": "b" * 20, "service": "client", "slot": 0, "node_name": "n1", "node_id": "x1"}
    assert task_name(replicated) == "web.2" and task_name(global_) == "client.n1"
    assert log_prefix(replicated) == f"web.2.{'a' * 12}@n1 |"
    assert log_prefix(global_) == f"client.n1.{'b' * 12}@n1 |"


def test_an_abbreviated_flag_is_refused_not_taken_for_another():
    argv = ["service", "update", "web", "--imag", "x"]
    with pytest.raises(SystemExit) as refused:
        build_parser(argv).parse_args(argv)
    assert refused.value.code == 2


@pytest.mark.parametrize(
    "given, cpus, memory",
    [
        (["--cpus", "2", "--memory", str(8 << 30)], 2000, 8 << 30),
        (["--cpus", "0.5", "--memory", "8g"], 500, 8 << 30),
        (["--cpus", "500m", "--memory", "512Mi"], 500, 512 << 20),
    ],
)
def test_a_node_offers_capacity_in_the_units_a_reservation_takes(given, cpus, memory):
    argv = ["node", "start", *given]
    args = build_parser(argv).parse_args(argv)
    assert (args.cpus, args.memory) == (cpus, memory)


@pytest.mark.parametrize(
    "flag, value, words",
    [
        ("--memory", "lots", "cannot read 'lots' as memory"),
        ("--cpus", "-1", "cannot read '-1' as CPU"),
    ],
)
def test_a_capacity_that_does_not_read_is_a_usage_error(flag, value, words, capsys):
    argv = ["node", "start", flag, value]
    with pytest.raises(SystemExit) as exited:
        build_parser(argv).parse_args(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and f"argument {flag}: " in err and words in err


def test_service_ls_shows_canaries_beside_the_replicas():
    assert replica_counts({"running": 3, "desired": 3, "canaries": 0}) == "3/3"
    assert replica_counts({"running": 3, "desired": 3, "canaries": 1}) == "3/3 +1 canary"
