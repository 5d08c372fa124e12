"""Task files on the node: laid out at their paths in the task, with their modes, removed
whole; Docker mounts them read-only, /run/secrets as one directory."""

from __future__ import annotations

import os
import stat

import pytest

from node.runtime.model import TaskFile
from node.runtime.task_files import docker_mounts, host_path, remove_files, tmpfs_root, write_files

FILES = (
    TaskFile("secret", "db", "/run/secrets/db", 0o400, b"pw"),
    TaskFile("secret", "key", "/run/secrets/tls/key", 0o444, b"k"),
    TaskFile("config", "app", "/etc/app.conf", 0o444, b"port=80"),
)


def test_files_land_at_their_paths_with_their_modes(tmp_path):
    directory = str(tmp_path / "task1")
    write_files(directory, FILES)
    for item in FILES:
        path = host_path(directory, item.target)
        with open(path, "rb") as f:
            assert f.read() == item.data
        assert stat.S_IMODE(os.stat(path).st_mode) == item.mode
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    write_files(directory, FILES[:1])  # a restart writes afresh
    assert not os.path.exists(host_path(directory, "/etc/app.conf"))
    remove_files(directory)
    assert not os.path.exists(directory)


def test_docker_mounts_bind_secrets_dir_once_and_other_files_each():
    mounts = docker_mounts("/shm/t1", FILES)
    assert mounts == [
        {
            "Type": "bind",
            "Source": "/shm/t1/run/secrets",
            "Target": "/run/secrets",
            "ReadOnly": True,
        },
        {
            "Type": "bind",
            "Source": "/shm/t1/etc/app.conf",
            "Target": "/etc/app.conf",
            "ReadOnly": True,
        },
    ]
    assert docker_mounts("/shm/t1", FILES[2:]) == mounts[1:]


def test_tmpfs_root_prefers_dev_shm_and_is_one_per_node():
    if not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm here")
    assert tmpfs_root("n1").startswith("/dev/shm/")
    assert tmpfs_root("n1") == tmpfs_root("n1") != tmpfs_root("n2")


@pytest.mark.parametrize("target", ["run/secrets/x", "/a/../b", "/a//b", "/"])
def test_targets_must_be_absolute_file_paths(target):
    with pytest.raises(ValueError, match="files: target"):
        TaskFile("secret", "x", target)


def test_content_never_shows_in_repr():
    assert "pw" not in repr(FILES[0])
