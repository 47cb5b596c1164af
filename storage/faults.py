"""A test hook that stops a process at a named point, so that a crash test can SIGKILL it exactly there.

Off unless the environment sets `FACESIM_TEST_PAUSE=POINT:N:MARKER`: then the N-th time this
process reaches `pause_point(POINT)`, it writes its pid to the file MARKER and sleeps until killed.
The points:
- `gallery-commit`: a gallery write transaction has run its statements; COMMIT has not run.
- `gallery-postgres-commit`: a PostgreSQL enrolment has written its identity and rows; COMMIT has not run.
- `checkpoint-save`: a training checkpoint's files are written; the `checkpoint` index file does
  not name it yet.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

PAUSE_VARIABLE = "FACESIM_TEST_PAUSE"
_reached: Counter[str] = Counter()


def pause_point(name: str) -> None:
    spec = os.environ.get(PAUSE_VARIABLE)
    if not spec:
        return
    point, count, marker = spec.split(":", 2)
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(count):
        Path(marker).write_text(str(os.getpid()))
        while True:  # until the test's SIGKILL
            time.sleep(60)
