"""Runtime drivers: how a node runs its tasks (Docker containers or plain processes)."""

from node.runtime.docker_driver import DockerDriver
from node.runtime.driver import Driver
from node.runtime.model import (Endpoint, NodeFingerprint, PortSpec, RunSpec, TaskObservation,
                                TaskState, TaskStats)
from node.runtime.process_driver import ProcessDriver
from node.runtime.select import RuntimeChoice, select_driver

__all__ = ["Driver", "DockerDriver", "ProcessDriver", "select_driver", "RuntimeChoice", "RunSpec",
           "PortSpec", "Endpoint", "TaskObservation", "TaskState", "TaskStats", "NodeFingerprint"]
