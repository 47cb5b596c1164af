"""`facesim bench serve`: predictor latency and throughput, and gallery search time.

Serving: a real predictor process (or `--url`), C concurrent clients sending V1 requests back to
back; p50/p99 latency and images/s per image and concurrency. Search: synthetic unit embeddings
(no model needed) at each gallery size, exact and FAISS HNSW, with HNSW's recall@1 against exact.
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

from facesim.inference.client import predict_url, v1_request
from facesim.inference.local_server import ServerStartError, local_predictor
from facesim.inference.search import EmbeddingIndex


@dataclass(frozen=True)
class LatencyResult:
    image: str
    pixels: str
    concurrency: int
    requests: int
    p50_ms: float
    p99_ms: float
    images_per_s: float


@dataclass(frozen=True)
class SearchResult:
    gallery_size: int
    dim: int
    exact_ms_per_query: float
    hnsw_build_s: float | None
    hnsw_ms_per_query: float | None
    hnsw_recall_at_1: float | None


def measure_latency(url: str, image: Path, concurrency: int, total: int) -> LatencyResult:
    body = json.dumps(v1_request(image.read_bytes(), top_k=3))
    endpoint = predict_url(url)
    sessions = [requests.Session() for _ in range(concurrency)]
    headers = {"content-type": "application/json"}
    for session in sessions:  # warm-up: connections open, first-call costs paid
        session.post(endpoint, data=body, headers=headers, timeout=120).raise_for_status()

    def client(index: int) -> list[float]:
        session, latencies = sessions[index], []
        for _ in range(index, total, concurrency):
            start = time.perf_counter()
            session.post(endpoint, data=body, headers=headers, timeout=120).raise_for_status()
            latencies.append(time.perf_counter() - start)
        return latencies

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = np.concatenate([np.array(part) for part in pool.map(client, range(concurrency))])
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


def measure_search(size: int, dim: int, queries: int, hnsw: bool, seed: int = 0) -> SearchResult:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((size, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = [f"person {i}" for i in range(size)]
    probes = vectors[rng.integers(0, size, queries)] + 0.05 * rng.standard_normal((queries, dim), dtype=np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    exact = EmbeddingIndex(dim, approximate_threshold=size + 1)
    exact.add(vectors, names)
    exact_ms, exact_top = _time_queries(exact, probes)
    if not hnsw:
        return SearchResult(size, dim, exact_ms, None, None, None)
    start = time.perf_counter()
    approximate = EmbeddingIndex(dim, approximate_threshold=1)
    approximate.add(vectors, names)
    build_s = time.perf_counter() - start
    hnsw_ms, hnsw_top = _time_queries(approximate, probes)
    recall = float(np.mean([a == e for a, e in zip(hnsw_top, exact_top)]))
    return SearchResult(size, dim, exact_ms, build_s, hnsw_ms, recall)


def _time_queries(index: EmbeddingIndex, probes: np.ndarray) -> tuple[float, list[str]]:
    """One query at a time, as a request with one face searches."""
    top, start = [], time.perf_counter()
    for probe in probes:
        top.append(index.search(probe[None], 3)[0][0].identity)
    return (time.perf_counter() - start) * 1000 / len(probes), top


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
    parser.add_argument(
        "--yunet", help="YuNet ONNX weights for the predictor started here (default: as in faces.detect)"
    )
    parser.add_argument("--search-sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--hnsw-max", type=int, default=1_000_000, help="skip HNSW builds above this size")
    parser.add_argument("--dim", type=int, default=128, help="embedding size for the search benchmark")
    parser.add_argument("--search-queries", type=int, default=200)
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON")
    parser.add_argument(
        "--face-recognition",
        action="store_true",
        help="also time face_recognition's detect + encode of each --image (one core, in this process), "
        "for a side-by-side ratio (needs the optional face_recognition install)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    missing = [str(path) for path in args.image if not path.is_file()]
    if missing:
        print(f"facesim bench serve: no such image: {', '.join(missing)}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    latency: list[LatencyResult] = []
    if args.image:
        try:
            latency = _serving(args)
        except (FileNotFoundError, ServerStartError, requests.RequestException) as error:
            print(f"facesim bench serve: {error}", file=sys.stderr)
            return 1
    search = [
        measure_search(size, args.dim, args.search_queries, size <= args.hnsw_max)
        for size in tqdm(args.search_sizes, desc="search", unit="size")
    ]
    report = _report(argv, load_before, os.getloadavg(), latency, search)
    if args.face_recognition:
        report += "\n" + "\n".join(_versus_face_recognition(args.image, latency, args.requests))
    print(report)
    if args.json_out:
        args.json_out.write_text(
            json.dumps(
                {"command": argv, "latency": [asdict(r) for r in latency], "search": [asdict(r) for r in search]},
                indent=2,
            )
        )
    return 0


def face_recognition_p50_ms(image: Path, total: int) -> float:
    """face_recognition's detect (HOG) + 5-point landmarks + descriptor of every face, decoded image in hand."""
    import face_recognition

    rgb = face_recognition.load_image_file(str(image))
    face_recognition.face_encodings(rgb)  # warm-up
    times = []
    for _ in range(total):
        start = time.perf_counter()
        face_recognition.face_encodings(rgb, face_recognition.face_locations(rgb))
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1000)


def _versus_face_recognition(images: list[Path], latency: list[LatencyResult], total: int) -> list[str]:
    lines = []
    for image in images:
        ours = next((r.p50_ms for r in latency if r.image == image.name and r.concurrency == 1), None)
        theirs = face_recognition_p50_ms(image, total)
        ratio = f": facesim V1 p50 {ours:.1f} ms at concurrency 1, {theirs / ours:.1f}x faster" if ours else ""
        lines.append(f"face_recognition detect+encode {image.name}: p50 {theirs:.1f} ms{ratio}")
    return lines


def _serving(args: argparse.Namespace) -> list[LatencyResult]:
    with ExitStack() as stack:
        url = args.url
        if url is None:
            from facesim.storage.paths import latest_gallery, latest_model

            model, gallery = args.model or latest_model(), args.gallery or latest_gallery()
            if model is None or gallery is None:
                raise FileNotFoundError("give --model and --gallery (or --url): nothing is registered")
            log = Path(tempfile.mkdtemp(prefix="facesim-bench-")) / "predictor.log"
            extra = ("--workers", str(args.workers), "--enable_latency_logging", "false")
            extra += ("--yunet", args.yunet) if args.yunet else ()
            url = stack.enter_context(local_predictor(model, gallery, extra, log_path=log))
        runs = [(image, c) for image in args.image for c in args.concurrency]
        return [measure_latency(url, image, c, args.requests) for image, c in tqdm(runs, desc="serving", unit="run")]


def _report(argv: list[str], load_before, load_after, latency: list[LatencyResult], search: list[SearchResult]) -> str:
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
        "| gallery size | dim | exact ms/query | HNSW build s | HNSW ms/query | HNSW recall@1 |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.gallery_size:,} | {r.dim} | {r.exact_ms_per_query:.2f} | {_opt(r.hnsw_build_s, '.1f')} | "
        f"{_opt(r.hnsw_ms_per_query, '.3f')} | {_opt(r.hnsw_recall_at_1, '.3f')} |"
        for r in search
    ]
    return "\n".join(lines)


def _load(values) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _opt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
