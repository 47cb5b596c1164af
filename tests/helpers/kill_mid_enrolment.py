"""kill -9 in the middle of enrolments, for both gallery backends: a writer process, or a predictor."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from subprocess import PIPE, Popen

import requests

from facesim.inference.local_server import RunningPredictor
from tests.helpers.admin import AUTH
from tests.helpers.crash import pause_env

ROWS_PER_ENROLMENT = 50
ENROL_FOREVER = textwrap.dedent(
    """
    import sys, numpy as np
    from facesim.gallery.api import gallery_location
    from facesim.gallery.backends import open_gallery
    gallery = open_gallery(gallery_location(sys.argv[1]))
    vectors = np.ones((int(sys.argv[3]), int(sys.argv[2])), np.float32)
    i = 0
    while True:
        gallery.add(f"person {i}", vectors)
        print(i, flush=True)  # printed only after the commit
        i += 1
    """
)


def start_writer_pausing_in_enrolment(location: str, dim: int, point: str, enrolment: int, marker: Path) -> Popen:
    """A process enrolling `person 0`, `person 1`, ... (ROWS_PER_ENROLMENT rows each) that stops at the
    pause point `point` (storage/faults.py) in its `enrolment`-th enrolment (counting from 1) and waits
    there to be killed. It prints each i once committed."""
    command = [sys.executable, "-c", ENROL_FOREVER, location, str(dim), str(ROWS_PER_ENROLMENT)]
    return Popen(command, stdout=PIPE, text=True, env={**os.environ, **pause_env(point, enrolment, marker)})


def kill_predictor_mid_enrolment(server: RunningPredictor, photo_b64: str, clients: int, at_least: int) -> list[str]:
    """`clients` threads enrol new names through a predictor's HTTP API; SIGKILL the predictor once
    `at_least` are acknowledged (others are in flight). Returns the acknowledged names."""
    acknowledged: list[str] = []

    def enrol_until_killed(client: int) -> None:
        for i in range(1000):
            name = f"client {client} enrolment {i}"
            body = {"identity": name, "images": [{"b64": photo_b64}]}
            try:
                answer = requests.post(server.url + "/v1/models/facenet/gallery", json=body, headers=AUTH, timeout=30)
            except requests.RequestException:
                return  # the server is gone
            if answer.status_code == 200:
                acknowledged.append(name)

    try:
        with ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(enrol_until_killed, client) for client in range(clients)]
            deadline = time.monotonic() + 90
            while len(acknowledged) < at_least and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait()
            for future in futures:
                future.result()
    finally:
        server.stop()
    return acknowledged
