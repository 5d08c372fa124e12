"""The node's unix socket, `DATA_DIR/shoal.sock`: local administration without a token.

Only the node's own user (and root) can open it (mode 0600 inside a 0700 data dir), and the
server checks the caller's uid again, so no other local user or task reaches the API there.
A unix socket path is limited to 107 bytes; a longer one is reached through the directory's
open file descriptor (`/proc/self/fd/N/shoal.sock`), by the server and the client alike.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
from collections.abc import Iterator

SOCKET_FILE = "shoal.sock"
_MAX_PATH = 107


def socket_path(data_dir: str) -> str:
    return os.path.join(data_dir, SOCKET_FILE)


@contextlib.contextmanager
def reachable(path: str) -> Iterator[str]:
    """`path`, or while the block runs a short alias of it when it is too long to use."""
    if len(os.fsencode(path)) <= _MAX_PATH:
        yield path
        return
    directory, name = os.path.split(os.path.abspath(path))
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


def bind_socket(path: str) -> socket.socket:
    """A listening-ready unix socket at `path`, mode 0600, replacing a stale one."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with reachable(path) as short:
            # Created 0600 from the start: no moment in which another user could connect.
            old = os.umask(0o177)
            try:
                sock.bind(short)
            finally:
                os.umask(old)
        os.chmod(path, 0o600)
    except BaseException:
        sock.close()
        raise
    return sock


def peer_uid(sock: socket.socket | None) -> int | None:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]
