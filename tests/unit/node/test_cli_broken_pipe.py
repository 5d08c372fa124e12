"""A reader that goes away (`shoal ... | head`) ends the CLI quietly, with no traceback."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_closed_pipe_ends_the_cli_quietly_with_sigpipes_status():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        done = subprocess.run(
            [sys.executable, "-m", "node", "completion", "bash"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr, done.stderr
