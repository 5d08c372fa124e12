"""Volumes at the runtime seam: the spec's volumes as mounts, Docker's mount config, and the
process runtime's directories, links and variables (on a real file system)."""

from __future__ import annotations

import dataclasses
import os

import pytest

from consensus.services import VolumeRef, parse_service_spec
from consensus.tasks import Task
from node.agent.translate import TranslateError, run_spec
from node.runtime.docker_config import container_kwargs
from node.runtime.model import RunSpec
from node.runtime.mounts import (
    Mount,
    MountError,
    ProcessMount,
    docker_mount,
    prepare_mounts,
    process_mounts,
)

TASK = Task("t1", "s1", "db", 1, 1, node_id="n1", state="assigned")


def mounts_of(*volumes) -> tuple[Mount, ...]:
    spec = parse_service_spec({"name": "db", "image": "busybox", "volumes": list(volumes)})
    return run_spec(TASK, spec, "127.0.0.1").mounts


def test_the_spec_volumes_become_mounts():
    assert mounts_of(
        "data:/var/lib/data",
        "/srv/www:/www:ro",
        "/scratch",
        {"type": "tmpfs", "target": "/tmp/fast"},
    ) == (
        Mount("/var/lib/data", "data", "volume"),
        Mount("/www", "/srv/www", "bind", read_only=True),
        Mount("/scratch", "", "volume"),
        Mount("/tmp/fast", "", "tmpfs"),
    )


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"target": "data"}, "target must be an absolute path"),
        ({"target": "/d", "source": "rel", "type": "bind"}, "needs an absolute host path"),
        ({"target": "/d", "source": "a/b"}, "is not a volume name"),
        ({"target": "/d", "source": "x", "type": "tmpfs"}, "has a source"),
        ({"target": "/d", "type": "nfs"}, "type must be volume, bind or tmpfs"),
    ],
)
def test_mounts_that_cannot_be_made_are_refused(fields, reason):
    with pytest.raises(ValueError, match=reason):
        Mount(**fields)


def test_a_refused_mount_is_a_translate_error():
    spec = parse_service_spec({"name": "db", "image": "busybox", "volumes": ["data:/d"]})
    bad = dataclasses.replace(spec, volumes=(VolumeRef("/d", "a/b"),))  # past the spec's check
    with pytest.raises(TranslateError, match="is not a volume name"):
        run_spec(TASK, bad, "127.0.0.1")


@pytest.mark.parametrize(
    "mount, expected",
    [
        (
            Mount("/data", "data"),
            {
                "Target": "/data",
                "Type": "volume",
                "ReadOnly": False,
                "Source": "data",
                "VolumeOptions": {"Labels": {"shoal.volume": "data"}},
            },
        ),
        (
            Mount("/data", "data", read_only=True),
            {
                "Target": "/data",
                "Type": "volume",
                "ReadOnly": True,
                "Source": "data",
                "VolumeOptions": {"Labels": {"shoal.volume": "data"}},
            },
        ),
        (Mount("/scratch"), {"Target": "/scratch", "Type": "volume", "ReadOnly": False}),
        (
            Mount("/www", "/srv", "bind", True),
            {"Target": "/www", "Type": "bind", "ReadOnly": True, "Source": "/srv"},
        ),
        (Mount("/t", type="tmpfs"), {"Target": "/t", "Type": "tmpfs", "ReadOnly": False}),
    ],
)
def test_docker_mounts(mount, expected):
    assert docker_mount(mount) == expected


def test_container_config_carries_the_mounts_only_when_there_are_some():
    base = RunSpec("t1", "db", 1, "busybox:1")
    assert "mounts" not in container_kwargs(base, "n1")
    with_mounts = RunSpec("t1", "db", 1, "busybox:1", mounts=(Mount("/data", "data"),))
    assert container_kwargs(with_mounts, "n1")["mounts"] == [docker_mount(Mount("/data", "data"))]


def test_process_mounts_are_host_directories_named_after_the_target():
    planned = process_mounts(
        (
            Mount("/var/lib/data", "data"),
            Mount("/www", "/srv/www", "bind"),
            Mount("/scratch/"),
            Mount("/tmp/fast-io", type="tmpfs"),
        ),
        "/d",
        "/d/tasks/t1",
    )
    assert planned == (
        ProcessMount("/d/volumes/data", "data", "SHOAL_VOLUME_DATA", True),
        ProcessMount("/srv/www", "www", "SHOAL_VOLUME_WWW", False),
        ProcessMount("/d/tasks/t1/mounts/scratch", "scratch", "SHOAL_VOLUME_SCRATCH", True),
        ProcessMount("/d/tasks/t1/mounts/fast-io", "fast-io", "SHOAL_VOLUME_FAST_IO", True),
    )


@pytest.mark.parametrize(
    "mounts, reason",
    [
        ((Mount("/a/data", "x"), Mount("/b/data", "y")), r"mounts\[1\].*share the link ./data"),
        ((Mount("/a/fast-io"), Mount("/b/fast_io")), r"mounts\[1\].*SHOAL_VOLUME_FAST_IO"),
        ((Mount("/"),), r"mounts\[0\]: target '/' has no last part"),
    ],
)
def test_process_mounts_that_would_collide_are_refused(mounts, reason):
    with pytest.raises(MountError, match=reason):
        process_mounts(mounts, "/d", "/d/tasks/t1")


def test_prepared_mounts_are_linked_and_a_named_volume_outlives_the_task(tmp_path):
    data_dir, work = tmp_path / "node", tmp_path / "node" / "tasks" / "t1" / "work"
    work.mkdir(parents=True)
    bound = tmp_path / "host"
    bound.mkdir()
    planned = process_mounts(
        (Mount("/var/lib/data", "data"), Mount("/in", str(bound), "bind")),
        str(data_dir),
        str(work.parent),
    )
    env = prepare_mounts(planned, str(work))
    assert env == {
        "SHOAL_VOLUME_DATA": str(data_dir / "volumes" / "data"),
        "SHOAL_VOLUME_IN": str(bound),
    }
    (work / "data" / "file").write_text("kept")
    assert (data_dir / "volumes" / "data" / "file").read_text() == "kept"
    assert os.readlink(work / "in") == str(bound)
    prepare_mounts(planned, str(work))  # the same task started again: the links are remade
    assert (work / "data" / "file").read_text() == "kept"


def test_a_missing_bind_source_is_refused(tmp_path):
    planned = process_mounts(
        (Mount("/in", str(tmp_path / "nope"), "bind"),), str(tmp_path), str(tmp_path)
    )
    with pytest.raises(MountError, match="is not a directory on this node"):
        prepare_mounts(planned, str(tmp_path))
