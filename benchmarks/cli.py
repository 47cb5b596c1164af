"""`facesim bench train|serve|gallery|accuracy|soak|faults`: the benchmarks (each lives with its component)."""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "accuracy": (
        "facesim.benchmarks.accuracy",
        "LFW fold-10 accuracy / AUC / TAR of models and face_recognition, side by side",
    ),
    "train": ("facesim.training.bench", "training throughput (steps/s, images/s) for 1..N local workers"),
    "gallery": ("facesim.benchmarks.gallery", "exact search vs the persisted FAISS index on a face-like gallery"),
    "serve": (
        "facesim.benchmarks.serve",
        "predictor latency/throughput at several concurrencies, and gallery search time",
    ),
    "soak": ("facesim.benchmarks.soak", "a long run of real photos at concurrency C: errors and predictor memory"),
    "faults": (
        "facesim.benchmarks.faults",
        "database outage, replica kill -9 and SQLite kill -9 under load: lost, duplicated, 5xx, recovery",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="facesim bench", description="Benchmarks. Run `facesim bench NAME --help`.")
    parser.add_argument(
        "benchmark", choices=sorted(BENCHMARKS), help="; ".join(f"{k}: {v[1]}" for k, v in BENCHMARKS.items())
    )
    if not argv or argv[0] not in BENCHMARKS:
        parser.parse_args(argv or ["--help"])
        return 2
    module = importlib.import_module(BENCHMARKS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)
