"""CLI flags for secrets and configs: `--secret NAME[,target=T][,mode=0400]` becomes a spec
item the API accepts, and `shoal secret|config` parse to their requests."""

from __future__ import annotations

import argparse
import base64

import pytest

from consensus.services import parse_service_spec
from node.cli import build_parser
from node.cli_secret import create_body
from node.cli_service import _file_ref


@pytest.mark.parametrize(
    "text, path, mode",
    [
        ("db", "/run/secrets/db", 0o444),
        ("db,target=pw", "/run/secrets/pw", 0o444),
        ("db,target=/etc/pw,mode=0400", "/etc/pw", 0o400),
        ("source=db,mode=600", "/run/secrets/db", 0o600),
    ],
)
def test_secret_flags_become_spec_items(text, path, mode):
    spec = parse_service_spec({"name": "web", "image": "x", "secrets": [_file_ref(text)]})
    (ref,) = spec.secrets
    assert (ref.source, ref.path("/run/secrets"), ref.mode) == ("db", path, mode)


@pytest.mark.parametrize("text", ["db,mode=9", "db,owner=x", "db,target"])
def test_bad_flags_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        _file_ref(text)


def test_commands_parse_for_both_kinds():
    parser = build_parser()
    for kind in ("secret", "config"):
        args = parser.parse_args([kind, "create", "db", "-"])
        assert (args.kind, args.name, args.file) == (kind, "db", "-")
        assert parser.parse_args([kind, "rm", "a", "b"]).names == ["a", "b"]
    assert base64.b64decode(create_body("db", b"\x00pw")["data"]) == b"\x00pw"
