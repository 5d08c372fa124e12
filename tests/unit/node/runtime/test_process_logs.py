"""Reading, tailing and following log files."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from node.runtime import process_logs
from node.runtime.process_logs import follow_log, read_log, tail_offset

lines_strategy = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=30)


@given(lines_strategy, st.booleans(), st.integers(min_value=0, max_value=40))
def test_tail_offset_matches_the_last_lines(lines, final_newline, n):
    pieces = [line + b"\n" for line in lines]
    if lines and lines[-1] and not final_newline:  # (an empty unterminated line is no line)
        pieces[-1] = lines[-1]
    content = b"".join(pieces)
    expected = b"".join(pieces[-n:]) if n else b""
    assert content[tail_offset(io.BytesIO(content), n) :] == expected


def test_tail_offset_across_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(process_logs, "CHUNK", 7)
    content = b"".join(b"line %d\n" % i for i in range(50))
    f = io.BytesIO(content)
    assert content[tail_offset(f, 3) :] == b"line 47\nline 48\nline 49\n"


async def collect(chunks) -> bytes:
    return b"".join([c async for c in chunks])


async def test_read_log_whole_tail_and_missing(tmp_path):
    path = tmp_path / "output.log"
    path.write_bytes(b"a\nb\nc\n")
    assert await collect(read_log(str(path), None)) == b"a\nb\nc\n"
    assert await collect(read_log(str(path), 2)) == b"b\nc\n"
    assert await collect(read_log(str(tmp_path / "none.log"), None)) == b""


async def test_follow_log_streams_until_the_writer_ends(tmp_path):
    path = tmp_path / "output.log"
    path.write_bytes(b"old\n")
    with open(path, "ab") as log:  # the child keeps its own copy
        writer = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-c",
                "import sys\nfor line in sys.stdin: print(line.strip(), flush=True)",
            ],
            stdin=subprocess.PIPE,
            stdout=log,
            text=True,
        )
    chunks = follow_log(str(path), writer.pid, None)
    seen = b""
    while b"old\n" not in seen:
        seen += await asyncio.wait_for(chunks.__anext__(), 30)
    writer.stdin.write("new\n")
    writer.stdin.flush()
    while b"new\n" not in seen:
        seen += await asyncio.wait_for(chunks.__anext__(), 30)
    writer.stdin.close()
    writer.wait()
    seen += await asyncio.wait_for(collect(chunks), 30)  # ends once the writer has ended
    assert seen == b"old\nnew\n"


async def test_follow_log_closed_early_stops_tail(tmp_path):
    path = tmp_path / "output.log"
    path.write_bytes(b"x\n")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        chunks = follow_log(str(path), sleeper.pid, 1)
        assert await asyncio.wait_for(chunks.__anext__(), 30) == b"x\n"
        await chunks.aclose()
        tails = subprocess.run(["pgrep", "-f", f"tail .*pid={sleeper.pid}"], capture_output=True)
        assert tails.returncode == 1, tails  # 1: no such process
    finally:
        sleeper.kill()
        sleeper.wait()
