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
    loaded = modules_after("import node.cli, node.cli_node, node.server, node.runtime")
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
    loaded = modules_after("import node.cli\nnode.cli.build_parser(['node', 'start', '--help'])")
    assert "node.cli_node" in loaded
    assert not {"node.cli_service", "node.cli_apply", "node.cli_secret", "node.cli_volume"} & set(
        loaded
    )
    everything = modules_after("import node.cli\nnode.cli.build_parser(['--help'])")
    assert {"node.cli_service", "node.cli_apply", "node.cli_secret", "node.cli_volume"} <= set(
        everything
    )


def test_a_node_uses_frozenlist_without_its_c_extension():
    loaded = modules_after("import node.cli, node.server")
    assert loaded.get("frozenlist") and not loaded.get("frozenlist._frozenlist")
