"""`facesim bench soak`: a long run of real photos against a predictor started here, watching its memory.

C clients (threads, loopback only) send V1 requests back to back, cycling through the photos of
`--images`, until `--duration` seconds or `--max-requests` requests. Every answer is checked by
the API client; the predictor's resident memory (VmRSS) is sampled throughout. It passes when no
request failed and RSS after the warm-up stays within `--rss-tolerance` of its first value.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from facesim.contract.client import PredictorClient, PredictorError, Timeouts, v1_request
from facesim.faces.detect import add_yunet_argument
from facesim.inference.local_server import ServerStartError, start_predictor

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class SoakConfig:
    images: list[Path]
    duration_s: float = 600.0
    concurrency: int = 16
    max_requests: int = 1_000_000
    warmup_s: float = 60.0
    sample_s: float = 2.0
    rss_tolerance: float = 0.10


@dataclass
class SoakResult:
    requests: int = 0
    errors: int = 0
    first_error: str = ""
    latencies_s: list[float] = field(default_factory=list)
    rss_samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, kB)
    duration_s: float = 0.0

    def rss_after_warmup(self, warmup_s: float) -> list[int]:
        return [kb for t, kb in self.rss_samples if t >= warmup_s]


def find_photos(roots: list[Path], limit: int = 200) -> list[Path]:
    photos = sorted(
        p
        for root in roots
        for p in (root.rglob("*") if root.is_dir() else [root])
        if p.suffix.lower() in PHOTO_SUFFIXES
    )
    return photos[:limit]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def run_soak(url: str, pid: int, config: SoakConfig) -> SoakResult:
    bodies = [json.dumps(v1_request(path.read_bytes(), top_k=3)).encode() for path in config.images]
    result, lock = SoakResult(), threading.Lock()
    start = time.monotonic()
    stop = threading.Event()

    def client(index: int) -> None:
        api = PredictorClient(url, Timeouts(connect_s=3.0, read_s=120.0), session=requests.Session())
        sent = index
        while not stop.is_set():
            with lock:
                if result.requests >= config.max_requests:
                    return
                result.requests += 1
            began = time.monotonic()
            try:
                api.predict_body(bodies[sent % len(bodies)])
            except PredictorError as error:
                with lock:
                    result.errors += 1
                    result.first_error = result.first_error or str(error)
            with lock:
                result.latencies_s.append(time.monotonic() - began)
            sent += config.concurrency

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(config.concurrency)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads) and time.monotonic() - start < config.duration_s:
        result.rss_samples.append((time.monotonic() - start, rss_kb(pid)))
        time.sleep(config.sample_s)
    stop.set()
    for thread in threads:
        thread.join()
    result.rss_samples.append((time.monotonic() - start, rss_kb(pid)))
    result.duration_s = time.monotonic() - start
    return result


@dataclass(frozen=True)
class SoakVerdict:
    ok: bool
    lines: list[str]


def judge(result: SoakResult, config: SoakConfig) -> SoakVerdict:
    """The metric lines, and whether the run passed: no errors, and RSS after the warm-up flat within
    tolerance. Flat compares levels, not moments: the median of the last fifth of the samples after
    the warm-up against the median of the first fifth (each request in flight holds its decoded
    images, so RSS swings with what the clients happen to send; a leak moves the level)."""
    latencies = np.array(result.latencies_s or [0.0]) * 1000
    warm = result.rss_after_warmup(config.warmup_s) or [kb for _, kb in result.rss_samples[-1:]]
    window = max(1, len(warm) // 5)
    first, last = float(np.median(warm[:window])), float(np.median(warm[-window:]))
    growth = last / first - 1
    per_minute = [kb for t, kb in result.rss_samples if t // 60 != (t - config.sample_s) // 60]
    lines = [
        f"duration_s={result.duration_s:.1f}",
        f"requests={result.requests}",
        f"errors={result.errors}",
        f"p50_ms={np.percentile(latencies, 50):.1f}",
        f"p99_ms={np.percentile(latencies, 99):.1f}",
        f"rss_start_mb={result.rss_samples[0][1] / 1024:.0f}",
        f"rss_first_fifth_after_warmup_mb={first / 1024:.0f}",
        f"rss_last_fifth_mb={last / 1024:.0f}",
        f"rss_max_after_warmup_mb={max(warm) / 1024:.0f}",
        f"rss_growth_after_warmup_pct={growth * 100:.1f}",
        f"rss per minute (MB): {' '.join(f'{kb / 1024:.0f}' for kb in per_minute)}",
    ]
    if result.first_error:
        lines.append(f"first error: {result.first_error}")
    return SoakVerdict(result.errors == 0 and growth <= config.rss_tolerance, lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facesim bench soak", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="model artifact (default: the latest registered)")
    parser.add_argument("--gallery", type=Path, help="gallery (default: the latest registered)")
    parser.add_argument(
        "--images",
        type=Path,
        action="append",
        required=True,
        help="photo or folder of photos (JPEG/PNG, searched recursively; repeatable)",
    )
    parser.add_argument("--max-images", type=int, default=200, help="use at most this many photos")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds to run")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many requests")
    parser.add_argument("--concurrency", type=int, default=16, help="clients sending back to back")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS must stay flat")
    parser.add_argument("--rss-tolerance", type=float, default=0.10, help="allowed RSS growth after the warm-up")
    add_yunet_argument(parser)  # for the predictor started here
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for the predictor to load")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    photos = find_photos(args.images, args.max_images)
    if not photos:
        print("facesim bench soak: no JPEG/PNG photos under --images", file=sys.stderr)
        return 2
    if args.duration <= 0 or args.concurrency < 1 or args.max_requests < 1:
        print("facesim bench soak: --duration, --concurrency and --max-requests must be positive", file=sys.stderr)
        return 2
    config = SoakConfig(
        photos, args.duration, args.concurrency, args.max_requests, args.warmup, rss_tolerance=args.rss_tolerance
    )
    print(f"command: facesim bench soak {shlex.join(argv)}")
    print(f"photos={len(photos)} load_average_before={'/'.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    try:
        verdict = _soak(args, config)
    except (FileNotFoundError, ServerStartError) as error:
        print(f"facesim bench soak: {error}", file=sys.stderr)
        return 1
    print("\n".join(verdict.lines))
    print(f"load_average_after={'/'.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("soak: PASS" if verdict.ok else "soak: FAIL (errors, or RSS grew after the warm-up)")
    return 0 if verdict.ok else 1


def _soak(args: argparse.Namespace, config: SoakConfig) -> SoakVerdict:
    """The predictor runs here, on loopback only: its memory is what the soak watches."""
    from facesim.storage.paths import latest_gallery, latest_model

    model, gallery = args.model or latest_model(), args.gallery or latest_gallery()
    if model is None or gallery is None:
        raise FileNotFoundError("give --model and --gallery: nothing is registered")
    log = Path(tempfile.mkdtemp(prefix="facesim-soak-")) / "predictor.log"
    extra = ("--yunet", args.yunet_path) if args.yunet_path else ()
    server = start_predictor(model, gallery, extra, log_path=log, ready_timeout_s=args.ready_timeout)
    try:
        return judge(run_soak(server.url, server.process.pid, config), config)
    finally:
        server.stop()
