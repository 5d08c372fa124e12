"""`shoal completion bash`: real bash completes commands, flags, choices, and the names of a
live cluster's services and nodes, also after global options."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from node.devcluster.localcluster import started_cluster

pytestmark = pytest.mark.timeout(120)

COMPLETE = """
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
_shtab_shoal
printf '%s\\n' "${COMPREPLY[@]}"
"""


async def test_bash_completes_commands_flags_and_live_names(tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shoal = bin_dir / "shoal"
    shoal.write_text(f'#!/bin/sh\nexec {sys.executable} -m node "$@"\n')
    shoal.chmod(0o755)
    script = tmp_path / "shoal.bash"
    script.write_text(
        subprocess.run(
            [str(shoal), "completion", "bash"], capture_output=True, text=True, check=True
        ).stdout
    )
    async with started_cluster(str(tmp_path), 1) as cluster:
        addr = f"https://{cluster.nodes[0].api}"
        async with cluster.nodes[0].client() as client:
            await client.post(
                "/v1/services",
                {"name": "web", "image": "process", "replicas": 0, "command": ["sleep", "60"]},
            )
        # Live names come from the node the CLI reaches, with the token TCP needs.
        env = dict(
            os.environ,
            PATH=f"{bin_dir}:{os.environ['PATH']}",
            SHOAL_ADDR=addr,
            SHOAL_TOKEN=cluster.nodes[0].api_token,
            SHOAL_CA=cluster.nodes[0].ca_file,
        )

        def complete(*words: str) -> list[str]:
            run = subprocess.run(
                ["bash", "-c", COMPLETE, "complete", str(script), *words],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
            )
            assert run.returncode == 0, run.stderr
            return run.stdout.split()

        assert complete("shoal", "serv") == ["service"]
        assert complete("shoal", "service", "create", "--mode", "") == ["replicated", "global"]
        assert "--reserve-memory" in complete("shoal", "service", "create", "--res")
        assert complete("shoal", "service", "ps", "") == ["web"]
        assert complete("shoal", "--addr", addr, "service", "logs", "w") == ["web"]
        assert complete("shoal", "-o", "json", "node", "inspect", "") == ["n1"]
