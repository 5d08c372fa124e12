"""The node agent: converges the tasks assigned to this node into running containers or
processes through a runtime driver, and reports what it observes back in batches."""

from node.agent.agent import Agent

__all__ = ["Agent"]
