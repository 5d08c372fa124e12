"""Run the benchmark suite and write the report.

    python -m bench all --report bench/REPORT.md [--quick] [--only a,b] [--skip c]
    python -m bench NAME [ARGS...]          # one module, e.g. `python -m bench etcd --quick`
    python -m bench report --results bench/results.json --report bench/REPORT.md

`all` runs every module of bench.suite as its own process (a crash or leak in one cannot
touch the next), echoes its output, keeps its `RESULT {json}` line, saves them all to
results.json beside the report, and renders the report with its plots from that file. A step
that fails or cannot run here is recorded with the reason, and the suite carries on. The last
line is `RESULT {json}` with each step's status.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.refs.hosts import unavailable_reason as hosts_unavailable
from bench.refs.support import ensure_debian, missing_packages
from bench.suite import STEPS, Step, select, step_named
from tests.support import docker_available

FULL_TIMEOUT_S = 3600
QUICK_TIMEOUT_S = 300


def machine() -> dict:
    """The machine line at the top of the report."""
    meminfo = Path("/proc/meminfo").read_text().split()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "uname": " ".join(platform.uname()[:3]),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1),
        "python": platform.python_version(),
        "load_at_start": os.getloadavg(),
    }


def why_not(step: Step, quick: bool) -> str | None:
    """None when the step can run here, otherwise the reason it is skipped."""
    tools = dict(step.reference_tools)
    if tools and quick and (missing := missing_packages(tools)):
        return f"reference system not installed ({', '.join(missing)}); --quick installs nothing"
    if step.needs == "docker":
        return docker_available()
    if step.needs == "docker-hosts":
        return hosts_unavailable()
    return None


def run_step(step: Step, quick: bool) -> dict:
    """Run one module in its own process, echoing its output; its RESULT or why it has none."""
    reason = why_not(step, quick)
    if reason:
        print(f"== {step.name}: skipped ({reason})", flush=True)
        return {"status": "skipped", "reason": reason}
    if step.reference_tools and not quick:
        ensure_debian(dict(step.reference_tools))
    argv = [sys.executable, "-m", step.module, *(step.quick if quick else step.full)]
    print(f"== {step.name}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    # A hung module must not hang the suite: kill it (by its pid) when its time is up.
    watchdog = threading.Timer(QUICK_TIMEOUT_S if quick else FULL_TIMEOUT_S, proc.kill)
    watchdog.start()
    result, tail = None, []
    try:
        for line in proc.stdout:
            print(f"   {line}", end="", flush=True)
            if not line.lstrip().startswith('File "'):  # traceback paths name this machine
                tail = (tail + [line.rstrip()])[-20:]
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT ") :])
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = round(time.monotonic() - started, 1)
    if proc.returncode != 0 or result is None:
        return {
            "status": "failed",
            "seconds": elapsed,
            "returncode": proc.returncode,
            "reason": "\n".join(tail),
        }
    return {"status": "ok", "seconds": elapsed, "argv": argv[2:], "result": result}


def run_all(args: argparse.Namespace) -> None:
    from bench.report import write_report

    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    results_path = report.with_name("results.json")
    suite = {"quick": args.quick, "machine": machine(), "steps": {}}
    if suite["machine"]["load_at_start"][0] >= 2:
        print(
            f"note: load average {suite['machine']['load_at_start'][0]:.1f} at start; "
            "figures from a busy machine drift",
            flush=True,
        )
    for step in select(args.only, args.skip):
        suite["steps"][step.name] = run_step(step, args.quick)
        results_path.write_text(json.dumps(suite, indent=1))  # a crash later keeps what ran
    written = write_report(suite, report)
    print(f"report: {report} ({len(written)} plots)")
    print(
        "RESULT "
        + json.dumps(
            {
                "report": str(report),
                "results": str(results_path),
                "plots": [p.name for p in written],
                "steps": {k: v["status"] for k, v in suite["steps"].items()},
            }
        )
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] not in ("all", "report", "-h", "--help"):
        step = step_named(sys.argv[1])
        argv = [sys.executable, "-m", step.module, *(sys.argv[2:] or step.full)]
        raise SystemExit(subprocess.call(argv))
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        epilog=f"benchmarks: {', '.join(s.name for s in STEPS)}",
    )
    parser.add_argument("command", choices=("all", "report"))
    parser.add_argument("--report", default="bench/REPORT.md", help="the Markdown report to write")
    parser.add_argument("--results", help="report: the results.json of an earlier run")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--only", default="", help="comma-separated benchmarks to run")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    args = parser.parse_args()
    if args.command == "report":
        from bench.report import write_report

        results = Path(args.results or Path(args.report).with_name("results.json"))
        write_report(json.loads(results.read_text()), Path(args.report))
        print(f"report: {args.report}")
        return
    run_all(args)


if __name__ == "__main__":
    main()
