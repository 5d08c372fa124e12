"""The benchmark suite: which modules run, with what sizes, and what each needs.

Pure data: bench.__main__ runs the steps, bench.report renders their figures.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Step:
    """One benchmark module of the suite, run as `python -m MODULE ARGS`."""

    name: str
    module: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    # "docker": the machine's engine; "docker-hosts": namespace hosts with a private dockerd
    needs: str | None = None
    # A reference system's tool (and Debian package): installed for a full run, and the step
    # is skipped under --quick when it is missing.
    reference_tools: tuple[tuple[str, str], ...] = ()


LB_TOOLS = (("wrk", "wrk"), ("haproxy", "haproxy"), ("nginx", "nginx-light"))

STEPS: tuple[Step, ...] = (
    Step("consensus", "bench.consensus", (), ("--quick",)),
    Step("etcd", "bench.refs.etcd", (), ("--quick",), reference_tools=(("etcd", "etcd-server"),)),
    Step("orchestration", "bench.orchestration", (), ("--quick",), needs="docker-hosts"),
    Step("swarm", "bench.refs.swarm", (), ("--quick",), needs="docker-hosts"),
    Step("agent", "bench.agent", (), ("--quick",), needs="docker"),
    Step(
        "scheduler",
        "bench.scheduler",
        ("--nodes", "5000", "--tasks", "100000", "--e2e"),
        ("--quick",),
    ),
    Step("scale", "bench.scale", (), ("--quick",)),
    Step("members", "bench.members", ("--members", "0,100,1000"), ("--quick",)),
    Step(
        "lb",
        "bench.lb",
        (),
        ("--runs", "1", "--duration", "1", "--variants", "keepalive"),
        reference_tools=LB_TOOLS,
    ),
    Step(
        "gossip",
        "bench.gossip",
        ("--nodes", "100,1000,5000", "--seeds", "3"),
        ("--nodes", "50,100", "--seeds", "1"),
    ),
    Step("liveness", "bench.liveness", (), ("--quick",)),
    Step("memory", "bench.memory", (), ("--quick",)),
    Step(
        "overlay",
        "bench.overlay",
        (),
        ("--runs", "1", "--duration", "2", "--host-deaths", "1"),
        needs="docker-hosts",
        reference_tools=(("wrk", "wrk"),),
    ),
)


def step_named(name: str) -> Step:
    for step in STEPS:
        if step.name == name:
            return step
    raise KeyError(f"no benchmark named {name!r}; choose from {', '.join(s.name for s in STEPS)}")


def select(only: str, skip: str) -> list[Step]:
    """The steps named in `only` (all when empty) minus those in `skip`, in suite order."""
    chosen = {step_named(n).name for n in only.split(",") if n} or {s.name for s in STEPS}
    dropped = {step_named(n).name for n in skip.split(",") if n}
    return [s for s in STEPS if s.name in chosen - dropped]
