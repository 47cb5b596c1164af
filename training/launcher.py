"""`facesim train --backend local --workers N`: N `python -m facesim.training` processes on localhost.

Each worker gets a TF_CONFIG naming free localhost ports (as a TFJob's pods get one), its output
is prefixed with its name, and when one worker fails every other one is stopped, so a crash
never leaves a peer waiting forever on a collective.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from facesim.training.config import TrainConfig
from facesim.training.distributed import tf_config_for


def free_ports(count: int) -> list[int]:
    """Ports the OS reports free (held open together so that they differ)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("localhost", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    relay: threading.Thread


def _relay(stream, prefix: str, sink) -> None:
    """Copy a worker's output line by line with its prefix; tqdm's carriage returns end a line too."""
    buffer = b""
    while chunk := stream.read1(4096):
        buffer += chunk
        *lines, buffer = buffer.replace(b"\r", b"\n").split(b"\n")
        for line in lines:
            if line.strip():
                sink.write(f"{prefix}{line.decode(errors='replace')}\n")
                sink.flush()
    if buffer.strip():
        sink.write(f"{prefix}{buffer.decode(errors='replace')}\n")
        sink.flush()


def worker_environment(ports: list[int], index: int) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    if len(ports) > 1:
        env["TF_CONFIG"] = tf_config_for(ports, index)
    else:
        env.pop("TF_CONFIG", None)
    return env


def threads_per_worker(workers: int) -> int:
    """Share this machine's cores among the workers."""
    return max(1, (os.cpu_count() or 1) // workers)


def launch_local(config: TrainConfig) -> int:
    """Run `python -m facesim.training` workers to completion; the first failure stops the rest and is returned."""
    worker_config = TrainConfig(**{**config.__dict__, "threads": config.threads or threads_per_worker(config.workers)})
    return launch_workers([sys.executable, "-m", "facesim.training", *worker_config.to_args()], config.workers)


def launch_workers(command: list[str], count: int, poll_s: float = 0.2) -> int:
    """Run `count` copies of `command`, each with its TF_CONFIG, to completion (0), or until one fails
    (its exit code; the others are stopped)."""
    ports = free_ports(count)
    workers: list[Worker] = []
    try:
        for index in range(count):
            process = subprocess.Popen(
                command, env=worker_environment(ports, index), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            relay = threading.Thread(
                target=_relay, args=(process.stdout, f"[worker {index}] ", sys.stdout), daemon=True
            )
            relay.start()
            workers.append(Worker(index, process, relay))
            print(f"launched worker {index} (pid {process.pid})", flush=True)
        return _wait(workers, poll_s)
    except KeyboardInterrupt:
        print("interrupted: stopping every worker", file=sys.stderr)
        return 130
    finally:
        _stop(workers)
        for worker in workers:
            worker.relay.join(timeout=5)


def _wait(workers: list[Worker], poll_s: float) -> int:
    while True:
        codes = [w.process.poll() for w in workers]
        failed = [(w, c) for w, c in zip(workers, codes, strict=True) if c not in (None, 0)]
        if failed:
            worker, code = failed[0]
            worker.relay.join(timeout=5)
            print(f"worker {worker.index} exited with code {code}: stopping the others", file=sys.stderr, flush=True)
            return code if code > 0 else 128 - code  # a signal -s reads as 128+s, like a shell
        if all(code == 0 for code in codes):
            return 0
        time.sleep(poll_s)


def _stop(workers: list[Worker], grace_s: float = 5.0) -> None:
    running = [w.process for w in workers if w.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in running:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
