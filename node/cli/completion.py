"""`shoal completion bash|zsh`: a shell completion script for every command and flag (shtab),
completing service and node names from the cluster the CLI reaches (SHOAL_ADDR)."""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh")
# Positional arguments, by metavar, whose values are names read from the cluster: the NAME
# column of the listing (the leader's mark follows the name in a separate column).
NAME_SOURCES = {
    "SERVICE": "shoal service ls 2>/dev/null | awk 'NR > 1 {print $2}'",
    "NODE": "shoal node ls 2>/dev/null | awk 'NR > 1 {print $2}'",
}


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="bash: source <(shoal completion bash); zsh: shoal completion zsh > "
        '"${fpath[1]}/_shoal"',
    )
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(local=_print_script)


def _positionals(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _positionals(sub)
        elif not action.option_strings:
            yield action


def script(shell: str) -> str:
    import shtab

    from node.cli.main import build_parser

    parser = build_parser([])
    for action in _positionals(parser):
        if action.metavar in NAME_SOURCES:
            action.complete = shtab.cmd(NAME_SOURCES[action.metavar])  # type: ignore[attr-defined]
    return shtab.complete(parser, shell)


def _print_script(args: argparse.Namespace) -> int:
    print(script(args.shell))
    return 0
