"""Progress bars (runtime.progress): shown on a terminal, silent in logs and pipes."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

SCRIPT = ("import time\nfrom doracle.runtime import progress\n"
          "for _ in progress(range(3), 'epochs', mininterval=0):\n    time.sleep(0.01)\nprint('done')\n")


def test_progress_is_silent_when_stderr_is_not_a_terminal():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    assert proc.stdout == "done\n"
    assert proc.stderr == ""


def test_progress_shows_on_a_terminal():
    """stderr on a pseudo-terminal (stdout piped): the bar is drawn there, with its description and count."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty has 0 columns
    try:
        proc = subprocess.run([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=follower, text=True,
                              check=True, timeout=60)
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
    assert proc.stdout == "done\n"
    text = out.decode(errors="replace")
    assert "epochs" in text and "3/3" in text, text
