"""The benchmark suite end to end at --quick sizes: every module it runs prints its RESULT
line and the report is written with its plots. Nothing here is asserted on time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.suite import STEPS

pytest.importorskip("matplotlib", reason="the bench extra (matplotlib) is not installed")

# The subset that finishes in well under a minute; reference systems that are not installed
# are skipped by the suite itself under --quick.
SMOKE = ("consensus", "etcd", "scheduler", "scale", "gossip")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_quick_suite_prints_every_result_and_writes_the_report(tmp_path):
    report = tmp_path / "REPORT.md"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "all",
            "--quick",
            "--report",
            str(report),
            "--only",
            ",".join(SMOKE),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    suite = json.loads((tmp_path / "results.json").read_text())
    assert list(suite["steps"]) == [s.name for s in STEPS if s.name in SMOKE]
    echoed = done.stdout.splitlines()
    for name, entry in suite["steps"].items():
        assert entry["status"] in ("ok", "skipped"), f"{name}: {entry}"
        if entry["status"] == "ok":
            assert any(line.startswith("   RESULT ") for line in echoed), name
            assert entry["result"], f"{name} printed an empty RESULT"
    assert suite["steps"]["consensus"]["status"] == "ok", "Shoal's own benchmarks always run"
    assert echoed[-1].startswith("RESULT ")
    summary = json.loads(echoed[-1][len("RESULT ") :])
    text = report.read_text()
    assert text.startswith("# Shoal benchmark report")
    for plot in summary["plots"]:
        assert (tmp_path / plot).stat().st_size > 0
        assert f"]({plot})" in text
    assert len(summary["plots"]) >= 3
