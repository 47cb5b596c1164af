"""`facesim bench serve`: predictor latency and throughput, and gallery search time.

Serving: a real predictor process (or `--url`), C concurrent clients sending V1 requests back to
back; p50/p99 latency and images/s per image and concurrency. Search: `facesim bench gallery` at
each gallery size (face-like synthetic embeddings, no model needed): exact against the FAISS index.
`--in-process`: the request path without HTTP, on one core, beside face_recognition, with each
stage's cost and the network's FLOPs (inference.bench_inprocess). `--startup N`: seconds from
starting `facesim serve` to ready, N times.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import requests
from PIL import Image
from tqdm import tqdm

from facesim.benchmarks.gallery import GalleryBenchResult, measure
from facesim.contract.client import PredictorClient, PredictorError, Timeouts, v1_request
from facesim.faces.detect import add_yunet_argument
from facesim.inference.local_server import ServerStartError, local_predictor


@dataclass(frozen=True)
class LatencyResult:
    image: str
    pixels: str
    concurrency: int
    requests: int
    p50_ms: float
    p99_ms: float
    images_per_s: float


def measure_latency(url: str, image: Path, concurrency: int, total: int) -> LatencyResult:
    body = json.dumps(v1_request(image.read_bytes(), top_k=3)).encode()
    clients = [PredictorClient(url, Timeouts(read_s=120), session=requests.Session()) for _ in range(concurrency)]
    for client in clients:  # warm-up: connections open, first-call costs paid
        client.predict_body(body)

    def run_client(index: int) -> list[float]:
        client, latencies = clients[index], []
        for _ in range(index, total, concurrency):
            start = time.perf_counter()
            client.predict_body(body)
            latencies.append(time.perf_counter() - start)
        return latencies

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = np.concatenate([np.array(part) for part in pool.map(run_client, range(concurrency))])
    wall = time.perf_counter() - start
    with Image.open(image) as opened:
        pixels = f"{opened.width}x{opened.height}"
    return LatencyResult(
        image.name,
        pixels,
        concurrency,
        len(latencies),
        float(np.percentile(latencies, 50) * 1000),
        float(np.percentile(latencies, 99) * 1000),
        len(latencies) / wall,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facesim bench serve", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="model artifact (default: the latest registered)")
    parser.add_argument("--gallery", type=Path, help="gallery (default: the latest registered)")
    parser.add_argument("--url", help="benchmark this running predictor instead of starting one")
    parser.add_argument("--image", type=Path, action="append", default=[], help="request image (repeatable)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=100, help="requests per image and concurrency")
    parser.add_argument("--workers", type=int, default=1, help="predictor worker processes (when started here)")
    add_yunet_argument(parser)  # for the predictor started here
    parser.add_argument("--search-sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--search-cache", type=Path, help="keep built indexes here (as `bench gallery --cache`)")
    parser.add_argument("--dim", type=int, default=128, help="embedding size for the search benchmark")
    parser.add_argument("--search-queries", type=int, default=200)
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON")
    parser.add_argument(
        "--face-recognition",
        action="store_true",
        help="also time face_recognition's load + detect + encode of each --image in this process, interleaved "
        "request by request with V1 requests at concurrency 1, for a side-by-side ratio (needs the optional "
        "face_recognition install)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="time the request path of each --image in this process on one core (no HTTP), interleaved with "
        "face_recognition when --face-recognition, with each stage's cost; needs --model and --gallery",
    )
    parser.add_argument("--runtime", choices=("onnx", "tensorflow"), default="onnx", help="the predictor's runtime")
    parser.add_argument("--startup", type=int, default=0, help="also time N starts of `facesim serve` to ready")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    missing = [str(path) for path in args.image if not path.is_file()]
    if missing:
        print(f"facesim bench serve: no such image: {', '.join(missing)}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    if args.in_process or args.startup:
        lines = _in_process(args)
        print("\n".join([f"command: facesim bench serve {shlex.join(argv)}", *lines]))
        print(f"load average (1/5/15 min) before {_load(load_before)}, after {_load(os.getloadavg())}")
        return 0
    latency: list[LatencyResult] = []
    versus: list[str] = []
    if args.image:
        try:
            latency, versus = _serving(args)
        except (FileNotFoundError, ServerStartError, PredictorError) as error:
            print(f"facesim bench serve: {error}", file=sys.stderr)
            return 1
    search = [
        measure(size, args.search_queries, args.search_cache, args.dim)
        for size in tqdm(args.search_sizes, desc="search", unit="size")
    ]
    print("\n".join([_report(argv, load_before, os.getloadavg(), latency, search), *versus]))
    if args.json_out:
        args.json_out.write_text(
            json.dumps(
                {"command": argv, "latency": [asdict(r) for r in latency], "search": [asdict(r) for r in search]},
                indent=2,
            )
        )
    return 0


def versus_face_recognition(url: str, images: list[Path], total: int) -> list[str]:
    """Each image's V1 request at concurrency 1 interleaved, request by request, with face_recognition's
    load + detect (HOG) + encode of the same photo in this process (as `--in-process` does): both
    see the same machine, however loaded. This process (face_recognition, whose BLAS threads would
    otherwise spread over every core) is pinned to one core: give the predictor another one
    (`taskset -c 0 facesim serve ...`) for each side on its own core."""
    from facesim.benchmarks.serve_inprocess import face_recognition_path, pin_to_one_core

    cpu = pin_to_one_core()
    lines = [f"face_recognition and this client on CPU {cpu}"]
    for image in images:
        body = json.dumps(v1_request(image.read_bytes(), top_k=3)).encode()
        client = PredictorClient(url, Timeouts(read_s=120), session=requests.Session())
        theirs = face_recognition_path(image)
        client.predict_body(body)  # warm-up, both
        theirs()
        our_times, their_times = [], []
        for _ in range(total):
            start = time.perf_counter()
            client.predict_body(body)
            our_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            theirs()
            their_times.append(time.perf_counter() - start)
        ours, theirs_ms = float(np.median(our_times) * 1000), float(np.median(their_times) * 1000)
        lines.append(
            f"interleaved, {total} each: facesim V1 p50 {ours:.1f} ms (concurrency 1) against face_recognition "
            f"load+detect+encode {image.name}: p50 {theirs_ms:.1f} ms: {theirs_ms / ours:.1f}x faster"
        )
    return lines


def _in_process(args: argparse.Namespace) -> list[str]:
    from facesim.benchmarks import serve_inprocess as bench
    from facesim.storage.model_artifact import QUANTIZATION

    if args.model is None or args.gallery is None:
        raise SystemExit("facesim bench serve: --in-process and --startup need --model and --gallery")
    lines = []
    if args.startup:
        from facesim.inference.local_server import free_port

        times = [
            bench.startup_seconds(args.model, args.gallery, args.yunet_path, args.runtime, free_port())
            for _ in range(args.startup)
        ]
        lines.append(
            f"facesim serve --runtime {args.runtime} ready after {', '.join(f'{t:.2f}' for t in times)} s "
            f"(median {np.median(times):.2f} s) from process start"
        )
    if args.in_process:
        cpu = bench.pin_to_one_core()
        predictor = bench.load_predictor(args.model, args.gallery, args.yunet_path, args.runtime)
        timings = bench.measure_photos(predictor, args.image, args.requests, args.face_recognition)
        size = predictor.model_info.image_size
        crop = np.zeros((1, size, size, 3), np.uint8)
        pass_times = [bench.p50_ms(lambda: predictor.embedder.embed(crop), 1) for _ in range(args.requests)]
        pass_ms = (float(np.median(pass_times)), min(pass_times))
        passes = 2 if predictor.model_info.card.extra.get("flip_average") else 1
        flops = bench.onnx_flops(args.model / "model.onnx")
        int8 = QUANTIZATION in predictor.model_info.card.extra
        lines += bench.report(timings, args.runtime, cpu, flops, passes, pass_ms, bench.measured_peak_gflops(), int8)
    return lines


def _serving(args: argparse.Namespace) -> tuple[list[LatencyResult], list[str]]:
    """The latency table, and with --face-recognition the interleaved comparison (same server)."""
    with ExitStack() as stack:
        url = args.url
        if url is None:
            from facesim.storage.paths import latest_gallery, latest_model

            model, gallery = args.model or latest_model(), args.gallery or latest_gallery()
            if model is None or gallery is None:
                raise FileNotFoundError("give --model and --gallery (or --url): nothing is registered")
            log = Path(tempfile.mkdtemp(prefix="facesim-bench-")) / "predictor.log"
            extra = ("--workers", str(args.workers), "--enable_latency_logging", "false")
            extra += ("--yunet", args.yunet_path) if args.yunet_path else ()
            url = stack.enter_context(local_predictor(model, gallery, extra, log_path=log))
        runs = [(image, c) for image in args.image for c in args.concurrency]
        latency = [measure_latency(url, image, c, args.requests) for image, c in tqdm(runs, desc="serving", unit="run")]
        versus = versus_face_recognition(url, args.image, args.requests) if args.face_recognition else []
        return latency, versus


def _report(
    argv: list[str], load_before, load_after, latency: list[LatencyResult], search: list[GalleryBenchResult]
) -> str:
    lines = [
        f"command: facesim bench serve {shlex.join(argv)}",
        f"load average (1/5/15 min) before {_load(load_before)}, after {_load(load_after)}; {os.cpu_count()} CPUs",
        "",
    ]
    if latency:
        lines += [
            "| image | pixels | concurrency | requests | p50 ms | p99 ms | images/s |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.image} | {r.pixels} | {r.concurrency} | {r.requests} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
            f"{r.images_per_s:.1f} |"
            for r in latency
        ]
        lines.append("")
    lines += [
        "| gallery size | exact ms/query | index ms/query | recall@1 | index build s | index load s | index MB |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.size:,} | {r.exact_ms:.2f} | {r.index_ms:.3f} | {r.recall_at_1:.3f} | {r.build_s:.1f} | "
        f"{r.load_s:.2f} | {r.index_mb:.0f} |"
        for r in search
    ]
    return "\n".join(lines)


def _load(values) -> str:
    return "/".join(f"{v:.2f}" for v in values)
