"""`facesim bench train`: real workers, JSON figures; the FLOP count agrees with the paper."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from facesim.contract.metrics_lines import parse_metrics


@pytest.mark.slow
def test_bench_train_runs_two_workers_and_writes_figures(tmp_path):
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        "-m",
        "facesim",
        "bench",
        "train",
        "--architecture",
        "tiny",
        "--image-size",
        "32",
        "--identities-per-batch",
        "4",
        "--images-per-identity",
        "2",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--workers",
        "2",
        "--out",
        str(out),
    ]
    result = subprocess.run(
        command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert run["workers"] == 2 and report["global_batch"] == 8
    # Independent of how the code combines its workers' figures: the global batch of 8 images passes
    # once per measured step, and training costs ~3 forward passes (forward, then backward ~2x).
    assert run["images_per_s"] == pytest.approx(report["global_batch"] / run["step_s"], rel=1e-6)
    assert run["achieved_gflops"] == pytest.approx(run["images_per_s"] * 3 * report["forward_gflops_per_image"])
    assert 0 < run["fraction_of_peak"] < 1 and report["matmul_peak_gflops"] > 0
    printed = dict(parse_metrics(result.stdout.splitlines()))
    assert printed["workers_2_images_per_s"] == pytest.approx(run["images_per_s"], rel=1e-3)
    assert printed["parameters"] == report["parameters"] > 1000


@pytest.mark.integration  # builds the full MobileFaceNet
def test_mobilefacenet_forward_flops_match_the_paper():
    from facesim.training.bench import forward_gflops

    # Chen et al. 2018: 221 M multiply-adds at 112 px = 0.44 GFLOPs (+ BN, PReLU, the embedding head).
    assert forward_gflops("mobilefacenet", 112, 128) == pytest.approx(0.44, rel=0.08)


def test_bench_rejects_a_batch_that_workers_cannot_share():
    from facesim.training.bench import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--identities-per-batch", "3", "--images-per-identity", "3", "--workers", "1,2"])
    assert exit_info.value.code == 2
