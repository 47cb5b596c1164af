"""Start a multi-worker training run and SIGKILL one worker once the first checkpoint exists."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KilledRun:
    output: str  # everything the launcher printed
    pids: dict[int, int]  # worker index -> pid
    returncode: int


def kill_worker_after_checkpoint(
    command: list[str], env: dict[str, str], checkpoint_index: Path, worker: int = 1, timeout_s: float = 120
) -> KilledRun:
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    drain = threading.Thread(target=lambda: lines.extend(launcher.stdout), daemon=True)  # a full pipe would stall it
    drain.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not checkpoint_index.exists():
            assert time.monotonic() < deadline and launcher.poll() is None, "no checkpoint:\n" + "".join(lines[-40:])
            time.sleep(0.05)
        pids = {int(m[1]): int(m[2]) for m in re.finditer(r"launched worker (\d) \(pid (\d+)\)", "".join(lines))}
        os.kill(pids[worker], signal.SIGKILL)
        launcher.wait(timeout=60)
        drain.join(timeout=10)
    finally:
        launcher.kill()
    return KilledRun("".join(lines), pids, launcher.returncode)
