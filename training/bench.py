"""`facesim bench train`: throughput of the real training step for 1..N local workers at one global batch.

Each worker count runs `python -m facesim.training.bench` workers (TF_CONFIG from the local launcher) on
synthetic P x K batches through `training.loop.make_train_step`, so the figures include the
augmentation, the global-batch mining all-gather and the gradient all-reduce. They are set
against this machine's measured float32 matmul peak and the model's FLOPs per image
(training ~ 3 x forward: forward, and a backward pass twice as costly).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from facesim.training.config import ARCHITECTURES, TrainConfig, architecture_help
from facesim.training.launcher import launch_workers, threads_per_worker

TRAIN_FLOPS_PER_FORWARD = 3.0


@dataclass
class WorkerResult:
    workers: int
    images_per_s_per_worker: float
    step_s: float


def _bench_config(args: argparse.Namespace, workers: int) -> TrainConfig:
    return TrainConfig(
        data="-",
        out="-",
        workers=workers,
        architecture=args.architecture,
        image_size=args.image_size,
        embedding_dim=args.embedding_dim,
        identities_per_batch=args.identities_per_batch,
        images_per_identity=args.images_per_identity,
    )


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--architecture", choices=ARCHITECTURES, default="mobilefacenet", help=architecture_help())
    parser.add_argument("--image-size", type=int, help="(default: the architecture's native size)")
    parser.add_argument("--embedding-dim", type=int, default=128, help="(default: %(default)s)")
    parser.add_argument("--identities-per-batch", type=int, default=16, help="P (default: %(default)s)")
    parser.add_argument("--images-per-identity", type=int, default=4, help="K (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps (tracing) (default: %(default)s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="facesim bench train",
        description="Training throughput (images/s per worker) of the real train step for 1..N local workers at "
        "the same global batch, the share of this machine's measured matmul peak it reaches, and the "
        "model's GFLOPs per image. Prints metric lines; --out writes them as JSON.",
    )
    _add_model_arguments(parser)
    parser.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    try:
        counts = [int(n) for n in args.workers.split(",")]
        for count in counts:
            _bench_config(args, count)  # validates the batch against each worker count
        if min(counts) < 1 or args.steps < 1 or args.warmup < 0:
            raise ValueError("--workers counts and --steps must be at least 1, --warmup at least 0")
    except ValueError as error:
        parser.error(str(error))

    from facesim.training.model import build_embedding_model

    config = _bench_config(args, 1)
    peak = matmul_peak_gflops()
    forward = forward_gflops(config.architecture, config.size, config.embedding_dim)
    parameters = build_embedding_model(config.architecture, config.size, config.embedding_dim).count_params()
    report = {
        "architecture": config.architecture,
        "image_size": config.size,
        "global_batch": config.global_batch,
        "cpu_cores": os.cpu_count(),
        "matmul_peak_gflops": peak,
        "forward_gflops_per_image": forward,
        "parameters": parameters,
        "runs": [],
    }
    print(f"matmul_peak_gflops={peak:.4g}\nforward_gflops_per_image={forward:.4g}\nparameters={parameters}", flush=True)
    for count in counts:
        result = run_workers(args, count)
        if result is None:
            print(f"facesim bench train: the {count}-worker run failed (its output is above)", file=sys.stderr)
            return 1
        achieved = result.images_per_s_per_worker * count * forward * TRAIN_FLOPS_PER_FORWARD
        run = {
            **asdict(result),
            "images_per_s": result.images_per_s_per_worker * count,
            "achieved_gflops": achieved,
            "fraction_of_peak": achieved / peak,
        }
        report["runs"].append(run)
        for name in ("images_per_s_per_worker", "images_per_s", "step_s", "fraction_of_peak"):
            print(f"workers_{count}_{name}={run[name]:.4g}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def run_workers(args: argparse.Namespace, count: int) -> WorkerResult | None:
    with tempfile.TemporaryDirectory(prefix="facesim-bench-") as work:
        result_path = Path(work) / "result.json"
        model_args = [
            "--architecture",
            args.architecture,
            "--embedding-dim",
            str(args.embedding_dim),
            "--identities-per-batch",
            str(args.identities_per_batch),
            "--images-per-identity",
            str(args.images_per_identity),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
        ] + (["--image-size", str(args.image_size)] if args.image_size else [])
        command = [
            sys.executable,
            "-m",
            "facesim.training.bench",
            *model_args,
            "--result",
            str(result_path),
            "--threads",
            str(threads_per_worker(count)),
        ]
        if launch_workers(command, count) != 0 or not result_path.exists():
            return None
        return WorkerResult(**json.loads(result_path.read_text()))


def matmul_peak_gflops(size: int = 2048, repeats: int = 8) -> float:
    """Best float32 matmul rate over every core, GFLOP/s (2 n^3 per product)."""
    import tensorflow as tf

    a = tf.random.uniform([size, size])
    b = tf.random.uniform([size, size])
    product = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    product().numpy()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        product().numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def forward_gflops(architecture: str, image_size: int, embedding_dim: int) -> float:
    """Forward-pass GFLOPs for one image, counted by TensorFlow's graph profiler."""
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    from facesim.training.model import build_embedding_model

    model = build_embedding_model(architecture, image_size, embedding_dim)
    spec = tf.TensorSpec([1, image_size, image_size, 3], tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    builder = option_builder.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    return model_analyzer.profile(graph=graph, options=options).total_float_ops / 1e9


def worker_main(argv: list[str] | None = None) -> int:
    """One benchmark worker (TF_CONFIG from the launcher); the chief writes --result."""
    parser = argparse.ArgumentParser(
        prog="python -m facesim.training.bench", description="One `facesim bench train` worker."
    )
    _add_model_arguments(parser)
    parser.add_argument("--result", type=Path, required=True, help="JSON file the chief writes")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (default: TensorFlow's)")
    args = parser.parse_args(argv)

    from facesim.training.distributed import barrier, configure_threads, make_strategy, worker_info

    configure_threads(args.threads)
    strategy = make_strategy()
    info = worker_info()

    import numpy as np
    import tensorflow as tf

    from facesim.training.loop import create_state, make_train_step
    from facesim.training.sampler import Batch

    config = _bench_config(args, info.workers)
    with tempfile.TemporaryDirectory(prefix="facesim-bench-ckpt-") as checkpoints:
        state = create_state(config, strategy, info, Path(checkpoints))
    train_step = make_train_step(config, strategy, state)
    rng = np.random.default_rng(info.index)
    labels = np.repeat(np.arange(config.identities_per_batch), config.images_per_identity).astype(np.int32)
    share = Batch(np.arange(config.global_batch), labels).share(info.index, info.workers)
    images = tf.constant(rng.uniform(0, 255, (len(share.indices), config.size, config.size, 3)), tf.float32)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            started = time.perf_counter()
        float(train_step(images, tf.constant(share.labels), tf.constant([0, step], tf.int32)))
    elapsed = time.perf_counter() - started
    result = WorkerResult(info.workers, args.steps * len(share.indices) / elapsed, elapsed / args.steps)
    if info.is_chief:
        args.result.write_text(json.dumps(asdict(result)))
    barrier(strategy)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
