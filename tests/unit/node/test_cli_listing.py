"""The pure parts of the listing and watching commands: task and event filters, the times
`shoal events` reads, and the JSON lines a node logs with `--log-format json`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

import pytest

from node.cli import events, tasks
from node.log_format import JsonFormatter


def _task(id_: str, slot: int, node: str, desired: str) -> dict:
    return {
        "id": id_,
        "service": "web",
        "slot": slot,
        "node_name": node,
        "node_id": "id-" + node,
        "desired": desired,
    }


TASKS = [
    _task("aaa1", 1, "n1", "running"),
    _task("bbb2", 2, "n2", "running"),
    _task("ccc3", 2, "n1", "shutdown"),
]


@pytest.mark.parametrize(
    "filters, ids",
    [
        ([], ["aaa1", "bbb2", "ccc3"]),
        ([("desired-state", "running")], ["aaa1", "bbb2"]),
        ([("node", "n1")], ["aaa1", "ccc3"]),
        ([("node", "id-n2")], ["bbb2"]),
        ([("name", "web.2"), ("desired-state", "running")], ["bbb2"]),  # keys ANDed
        ([("id", "aa"), ("id", "cc")], ["aaa1", "ccc3"]),  # a key's values ORed
        ([("name", "web")], ["aaa1", "bbb2", "ccc3"]),
    ],
)
def test_task_filters(filters, ids):
    assert [t["id"] for t in tasks.select(TASKS, filters)] == ids


@pytest.mark.parametrize("text", ["colour=red", "node", "desired-state=done", "name="])
def test_a_bad_task_filter_says_what_is_allowed(text):
    with pytest.raises(argparse.ArgumentTypeError):
        tasks.filter_arg(text)


def _event(type_: str, service: str = "", node: str = "") -> dict:
    return {"type": type_, "service": service, "node": node}


def test_event_filters_by_kind_type_and_name():
    created, moved = _event("service.created", "web"), _event("task.state", "web", "n1")
    joined, rollout = _event("node.joined", node="n2"), _event("rollout", "api")
    every = [created, moved, joined, rollout]

    def kept(*filters):
        return [e for e in every if events.selected(e, list(filters))]

    assert kept(("type", "service")) == [created, rollout]
    assert kept(("type", "task"), ("type", "node")) == [moved, joined]
    assert kept(("name", "n1")) == [moved]
    assert kept(("name", "web"), ("event", "task.state")) == [moved]
    assert kept(("service", "api")) == [rollout]


def test_times_as_docker_reads_them():
    now = 1_800_000_000.0
    assert events.point_in_time("1733551200", now) == 1733551200
    assert events.point_in_time("2026-12-07T06:00:00Z", now) == 1796623200
    assert events.point_in_time("2026-12-07T06:00:00", now) == 1796623200  # UTC
    assert events.point_in_time("2026-12-07T07:00:00+01:00", now) == 1796623200
    assert events.point_in_time("1h30m", now) == now - 5400
    with pytest.raises(argparse.ArgumentTypeError, match="RFC 3339"):
        events.point_in_time("last tuesday", now)


def test_an_event_line_is_readable_or_one_json_object():
    event = {
        "type": "node.status",
        "at": 1796623200.5,
        "message": "node n2 is down",
        "seq": 7,
        "node": "n2",
        "service": "",
    }
    assert events.line(event, False) == "2026-12-07T06:00:00.500Z node.status node n2 is down"
    assert json.loads(events.line(event, True)) == event


def test_a_json_log_line_carries_the_exception():
    logger = logging.getLogger("shoal.test")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logger.makeRecord(
            "shoal.test", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "error",
        "shoal.test",
        "failed x",
    )
    assert entry["exc"].startswith("Traceback") and "ValueError: bad\nthing" in entry["exc"]
    assert entry["time"].endswith("Z")
