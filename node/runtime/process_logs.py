"""Reading a process task's log file: all of it, its last lines, or following it.

Following hands the file to `tail -f --pid`, which sleeps on inotify and exits once the task
has ended, so no loop here polls the file for growth.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator
from typing import BinaryIO

CHUNK = 64 * 1024


def tail_offset(f: BinaryIO, lines: int) -> int:
    """The offset where the last `lines` lines of `f` begin (a final newline ends a line,
    it does not start an empty one)."""
    end = f.seek(0, os.SEEK_END)
    if lines <= 0:
        return end
    position, newlines = end, 0
    while position > 0:
        size = min(CHUNK, position)
        position -= size
        f.seek(position)
        block = f.read(size)
        if position + size == end and block.endswith(b"\n"):
            block = block[:-1]
        index = len(block)
        while (index := block.rfind(b"\n", 0, index)) != -1:
            newlines += 1
            if newlines == lines:
                return position + index + 1
    return 0


async def read_log(path: str, tail: int | None) -> AsyncIterator[bytes]:
    try:
        f = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        return
    try:
        if tail is not None:
            await asyncio.to_thread(lambda: f.seek(tail_offset(f, tail)))
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk
    finally:
        f.close()


async def follow_log(path: str, pid: int, tail: int | None) -> AsyncIterator[bytes]:
    """The log from its start (or its last `tail` lines) and then whatever the task writes,
    until the process `pid` has ended."""
    tail_bin = shutil.which("tail")
    if tail_bin is None:
        raise RuntimeError("following a process task's log needs tail(1) from coreutils")
    start = ["-c", "+1"] if tail is None else ["-n", str(tail)]
    proc = await asyncio.create_subprocess_exec(
        tail_bin,
        *start,
        "-f",
        f"--pid={pid}",
        path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        while chunk := await proc.stdout.read(CHUNK):  # type: ignore[union-attr]
            yield chunk
    finally:
        # The consumer left early (or was cancelled): tail(1) must not outlive the stream.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        await proc.wait()
