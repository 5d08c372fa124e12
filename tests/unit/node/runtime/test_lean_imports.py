"""What a node imports decides most of its idle memory (its budget is 60 MB): the Docker SDK
only when the node runs Docker, and never requests' character-set detector."""

from __future__ import annotations

import subprocess
import sys

from tests.support import python_probe


def modules_after(code: str) -> dict:
    return python_probe(
        code + "\nimport json, sys\n"
        "print(json.dumps({m: sys.modules[m] is not None for m in sys.modules}))"
    )


def test_a_node_running_processes_never_imports_the_docker_sdk():
    loaded = modules_after("import node.cli.main, node.cli.node, node.server, node.runtime")
    assert "node.server" in loaded
    assert not any(m == "docker" or m.startswith("docker.") or m == "requests" for m in loaded)


def test_the_docker_driver_loads_requests_without_a_charset_detector():
    loaded = modules_after("import node.runtime.docker_driver")
    assert loaded.get("docker") and loaded.get("requests")
    assert not loaded.get("charset_normalizer") and not loaded.get("chardet")


def test_requests_without_a_detector_reads_undeclared_text_as_utf8():
    code = (
        "import node.runtime.docker_sdk, requests\n"
        "r = requests.models.Response(); r._content = 'Zürich'.encode(); r.encoding = None\n"
        "print(r.apparent_encoding, r.text)"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["utf-8", "Zürich"]


def test_a_node_process_holds_no_other_command_groups():
    loaded = modules_after(
        "import node.cli.main\nnode.cli.main.build_parser(['node', 'start', '--help'])"
    )
    assert "node.cli.node" in loaded
    assert not {"node.cli.service", "node.cli.apply", "node.cli.secret", "node.cli.volume"} & set(
        loaded
    )
    everything = modules_after("import node.cli.main\nnode.cli.main.build_parser(['--help'])")
    assert {"node.cli.service", "node.cli.apply", "node.cli.secret", "node.cli.volume"} <= set(
        everything
    )


# What the node's entry point (`shoal node start`) runs before it imports the node.
NODE_ENTRY = "import node.cli.main, node\nnode.import_aiohttp_for_a_node()\nimport node.server"


def test_a_node_uses_frozenlist_without_its_c_extension():
    loaded = modules_after(NODE_ENTRY)
    assert loaded.get("frozenlist") and not loaded.get("frozenlist._frozenlist")


def test_importing_the_node_changes_nothing_process_wide():
    """Only the entry point makes the node's choices; a program importing the node's
    modules (a test, a tool) keeps its environment and its imports as they were."""
    code = (
        "import os, sys, json\nbefore = dict(os.environ)\n"
        "import node.server, node.runtime.docker_sdk\n"
        "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))\n"
        "import charset_normalizer\n"
        "print(json.dumps({'changed': changed, 'blocked': sorted(m for m, v in sys.modules.items() if v is None),\n"
        "                  'detector': charset_normalizer.__name__}))"
    )
    seen = python_probe(code)
    assert seen == {"changed": [], "blocked": [], "detector": "charset_normalizer"}
