"""Runtime drivers: how a node runs its tasks (Docker containers or plain processes).

The Docker driver is imported from node.runtime.docker_driver where it is wanted: the Docker SDK
is the largest import a node could make, and a node running plain processes never needs it.
"""

from node.runtime.driver import Driver
from node.runtime.model import (
    NodeFingerprint,
    PortToPublish,
    PublishedPort,
    RunSpec,
    RuntimeState,
    TaskObservation,
    TaskStats,
)
from node.runtime.process_driver import ProcessDriver
from node.runtime.select import RuntimeChoice, RuntimeUnavailable, select_driver

__all__ = [
    "Driver",
    "ProcessDriver",
    "select_driver",
    "RuntimeChoice",
    "RuntimeUnavailable",
    "RunSpec",
    "PortToPublish",
    "PublishedPort",
    "TaskObservation",
    "RuntimeState",
    "TaskStats",
    "NodeFingerprint",
]
