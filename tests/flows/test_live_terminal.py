"""The live progress line of `flows run recipe` on a real terminal (a pty): it fits the terminal's width, shortened
by whole parts and words, never cut mid-word or wrapped; log lines (Prefect's console handler, plain stream
handlers) print above it instead of over it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.live import LiveView

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import logging, sys, time
from prefect.logging.handlers import PrefectConsoleHandler
from flows.live import LiveView

plain = logging.getLogger("demo.plain")
plain.addHandler(logging.StreamHandler(sys.stderr))
pref = logging.getLogger("demo.prefect")
pref.addHandler(PrefectConsoleHandler(stream=sys.stderr))
for lg in (plain, pref):
    lg.setLevel(logging.INFO)
    lg.propagate = False
view = LiveView()
assert not view.plain
with view.shown():
    view("run_start", {"stages": ["a", "b", "c", "regularize", "e", "f"], "budget_s": None})
    view("stage_start", {"stage": "regularize", "index": 4, "total": 6, "runs": 12})
    view("run_done", {})
    time.sleep(0.6)
    plain.info("PLAIN-LOG-LINE one two three")
    time.sleep(0.4)
    pref.info("PREFECT-LOG-LINE four five six")
    time.sleep(0.6)
print("CHILD-DONE", file=sys.stderr)
"""


def _screen_rows(raw: str, width: int) -> list[str]:
    """Every row a terminal of ``width`` columns showed while ``raw`` was written: the rows as they were when
    erased (``ESC[K``), then the final screen. A small VT100 subset: CR, LF, autowrap, erase in line, cursor up and
    column; other escape sequences (colours, cursor visibility) are skipped."""
    rows, r, c, seen = [""], 0, 0, []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\x1b":
            m = re.match(r"\x1b\[([0-9;?]*)([A-Za-z])", raw[i:])
            if m:
                args, cmd = m.groups()
                if cmd == "K":
                    seen.append(rows[r])
                    rows[r] = "" if args == "2" else rows[r][:c]
                elif cmd == "A":
                    r = max(0, r - int(args or 1))
                elif cmd == "G":
                    c = int(args or 1) - 1
                i += m.end()
                continue
            i += 2
            continue
        if ch == "\r":
            c = 0
        elif ch == "\n":
            r += 1
            c = 0
        elif ch >= " ":
            if c >= width:  # autowrap
                r, c = r + 1, 0
            while r >= len(rows):
                rows.append("")
            line = rows[r].ljust(c)
            rows[r] = line[:c] + ch + line[c + 1 :]
            c += 1
        while r >= len(rows):
            rows.append("")
        i += 1
    return seen + rows


def _run_in_pty(width: int) -> str:
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, width, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "TERM", "FORCE_COLOR")}
    env.update(PYTHONPATH=str(REPO), TERM="xterm-256color")
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.skipif(sys.platform == "win32", reason="pty")
def test_on_a_narrow_terminal_the_line_fits_and_log_lines_go_above_it():
    width = 60
    raw = _run_in_pty(width)
    assert "CHILD-DONE" in raw, raw[-2000:]
    assert "Traceback" not in raw, raw[-3000:]
    rows = [row.rstrip() for row in _screen_rows(raw, width)]
    live = [row for row in rows if "regularize" in row]
    assert live, rows
    for row in live:  # one row, whole parts: "<spinner> [4/6] regularize | 1/12 runs | ..."
        assert re.fullmatch(r"\S \[4/6\] regularize( \| [^|]+)*", row), row
        assert len(row) <= width and "…" not in row, row
    for message in ("PLAIN-LOG-LINE one two three", "PREFECT-LOG-LINE four five six"):
        shown = [row for row in rows if message.split()[0] in row]
        assert shown and all(message in row and "regularize" not in row for row in shown), shown
    assert all(len(row) <= width for row in rows)


def test_the_line_keeps_every_clock_when_it_fits_and_drops_parts_then_words_when_not(monkeypatch):
    import flows.live

    now = [1000.0]
    monkeypatch.setattr(flows.live.time, "perf_counter", lambda: now[0])
    view = LiveView(plain=True)
    view("run_start", {"stages": ["inspect", "baselines", "overfit"], "budget_s": None})
    now[0] += 200
    view("stage_start", {"stage": "overfit", "index": 3, "total": 3, "runs": 4})
    now[0] += 30
    view("run_done", {})
    full = view.describe()
    assert full == (
        "stage 3 of 3: overfit | 1 of 4 runs done, 3 left | stage 0:30 elapsed, recipe 3:50 elapsed, "
        "about 1:30 left in the stage"
    )
    assert view.describe(200) == full
    assert view.describe(80) == "[3/3] overfit | 1/4 runs | stage 0:30, recipe 3:50, ~1:30 left"
    assert view.describe(40) == "[3/3] overfit | 1/4 runs | ~1:30 left"
    assert view.describe(25) == "[3/3] overfit | 1/4 runs"
    assert view.describe(14) == "[3/3] overfit"
    assert view.describe(10) == "[3/3]"  # a word boundary, never "[3/3] ove"
    for width in range(5, 130):
        text = view.describe(width)
        assert len(text) <= width and text, width
