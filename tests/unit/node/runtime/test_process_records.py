"""Task state files and host ports of the process driver."""

from __future__ import annotations

import os
import socket

from node.runtime.model import Endpoint, PortSpec
from node.runtime.process_records import (
    STATE_FILE,
    TaskRecord,
    allocate_port,
    load_record,
    load_records,
    port_environment,
    publish,
    save_record,
    task_dir,
)


def record(task_id: str = "t1") -> TaskRecord:
    return TaskRecord(
        task_id,
        "web",
        1,
        pid=4242,
        start_ticks=99,
        started_at=1.5,
        endpoints=(Endpoint(80, "tcp", "127.0.0.1", 40000),),
        labels={"shoal.task": task_id},
        memory_limit_bytes=1 << 20,
    )


def test_records_round_trip_and_damaged_ones_are_skipped(tmp_path):
    data = str(tmp_path)
    for task_id in ("t1", "t2", "broken", "foreign"):
        os.makedirs(task_dir(data, task_id))
    save_record(data, record("t1"))
    save_record(data, record("t2"))
    with open(os.path.join(task_dir(data, "broken"), STATE_FILE), "w") as f:
        f.write("{not json")
    with open(os.path.join(task_dir(data, "foreign"), STATE_FILE), "w") as f:
        f.write('{"task_id": 5}')
    assert load_record(data, "t1") == record("t1")
    assert load_record(data, "nope") is None
    assert load_record(data, "broken") is None
    assert [r.task_id for r in load_records(data)] == ["t1", "t2"]
    assert load_records(str(tmp_path / "empty")) == []


def test_allocated_ports_are_free_to_bind():
    for protocol, kind in (("tcp", socket.SOCK_STREAM), ("udp", socket.SOCK_DGRAM)):
        port = allocate_port("127.0.0.1", protocol)
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", port))


def test_publish_keeps_fixed_ports_and_picks_the_others():
    endpoints = publish("127.0.0.1", (PortSpec(80), PortSpec(53, "udp", published=5353)))
    assert endpoints[0].target == 80 and endpoints[0].port > 0
    assert endpoints[1] == Endpoint(53, "udp", "127.0.0.1", 5353)


def test_port_environment():
    endpoints = (
        Endpoint(80, "tcp", "h", 1001),
        Endpoint(53, "udp", "h", 1002),
        Endpoint(53, "tcp", "h", 1003),
    )
    assert port_environment(endpoints) == {
        "PORT": "1001",
        "SHOAL_PORT_80": "1001",
        "SHOAL_PORT_80_TCP": "1001",
        "SHOAL_PORT_53": "1002",
        "SHOAL_PORT_53_UDP": "1002",
        "SHOAL_PORT_53_TCP": "1003",
    }
    assert port_environment(()) == {}
