"""Where the agent probes a task: its published endpoint, its overlay address for a port it
does not publish, else the port as is on the advertise address."""

from __future__ import annotations

import pytest

from node.agent.health_watch import probe_target
from node.health import HealthCheck
from node.runtime.model import Endpoint, RunSpec, TaskObservation

RUN = RunSpec("t1", "web", 1, "img", advertise_address="10.1.0.2")
ON_NET = RunSpec("t1", "web", 1, "img", advertise_address="10.1.0.2", networks=("shoal-appnet",))
PUBLISHED = TaskObservation(
    "t1",
    "running",
    endpoints=(Endpoint(80, "tcp", "0.0.0.0", 32768),),
    networks={"shoal-appnet": "10.200.0.66"},
)
UNPUBLISHED = TaskObservation("t1", "running", networks={"shoal-appnet": "10.200.0.66"})


@pytest.mark.parametrize(
    "run, seen, expected",
    [
        (RUN, PUBLISHED, ("10.1.0.2", 32768)),
        (
            ON_NET,
            PUBLISHED,
            ("10.1.0.2", 32768),
        ),  # a published port is probed where it is published
        (ON_NET, UNPUBLISHED, ("10.200.0.66", 80)),
        (RUN, TaskObservation("t1", "running"), ("10.1.0.2", 80)),
    ],
)
def test_probe_target(run, seen, expected):
    target = probe_target(HealthCheck("http", port=80), run, seen)
    assert (target.host, target.port) == expected
