"""One training worker, start to end: what `python -m facesim.training` (and so every TFJob pod) runs.

The strategy is created first (it reads TF_CONFIG). Every worker trains; only the chief
evaluates, prints metric lines, writes TensorBoard logs and exports the model artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf

from facesim.training.card_writer import write_model_card
from facesim.training.config import TrainConfig
from facesim.training.data import PairSet, RunData, load_run_data, plan_run, prepare_run
from facesim.training.distributed import WorkerInfo, barrier, configure_threads, make_strategy, worker_info
from facesim.training.export import embed_with, export_model
from facesim.training.loop import EpochReport, TrainingState, create_state, print_metric, run_training
from facesim.training.plots import plot_embedding_map, plot_roc
from facesim.training.verification import Scores


def evaluate_pairs(model, pairs: PairSet, calibration: Scores | None = None) -> Scores:
    """Validation (calibration None: thresholds set on these images) or test (at the validation's)."""
    if calibration is None:
        return pairs.score(embed_with(model, pairs.images))
    if calibration.images is None:
        raise ValueError("the calibration scores lack their image-pair figures (score them with image_pairs)")
    return pairs.score(embed_with(model, pairs.images), calibration.threshold, calibration.images.thresholds())


@dataclass
class ChiefReporter:
    """The chief's per-epoch validation, metric lines and TensorBoard scalars."""

    state: TrainingState
    data: RunData
    log_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)
    last_validation: Scores | None = None

    def __post_init__(self) -> None:
        self.writer = tf.summary.create_file_writer(str(self.log_dir))

    def on_epoch_end(self, report: EpochReport) -> None:
        self.last_validation = evaluate_pairs(self.state.serving, self.data.val)
        metrics = {
            "epoch": report.epoch,
            "loss": report.loss,
            **self.last_validation.metrics("val"),
            "images_per_s_per_worker": report.images_per_s,
        }
        self.report(metrics, step=report.epoch)
        self.history.append(metrics)

    def on_step(self, step: int, loss: float) -> None:
        with self.writer.as_default():
            tf.summary.scalar("step_loss", loss, step=step)

    def report(self, metrics: dict[str, float], step: int) -> None:
        with self.writer.as_default():
            for name, value in metrics.items():
                print_metric(name, value)
                if name != "epoch":
                    tf.summary.scalar(name, value, step=step)
        self.writer.flush()


def run_worker(config: TrainConfig) -> Path | None:
    """Train (resuming from the run dir's checkpoint); the chief returns the exported model dir."""
    configure_threads(config.threads)
    strategy = make_strategy()
    info = worker_info()
    if config.global_batch % info.workers:
        raise ValueError(
            f"the global batch ({config.global_batch}) must divide evenly among the {info.workers} workers"
        )
    plan = plan_run(config)
    if info.is_chief:
        # One preparer: workers sharing a cache (a PVC in a TFJob) must not write it at once.
        prepare_run(config, plan)
    barrier(strategy)
    data = load_run_data(config, plan)
    run_dir = config.resolved_run_dir()
    state = create_state(config, strategy, info, run_dir / "checkpoints")
    if state.resumed_from:
        print(f"resumed from the checkpoint at step {state.resumed_from} of {config.total_steps}", flush=True)
    reporter = ChiefReporter(state, data, run_dir / "logs" / "train") if info.is_chief else None
    if reporter:
        run_training(
            config, strategy, info, state, data.train_images, data.sampler, reporter.on_epoch_end, reporter.on_step
        )
    else:
        run_training(config, strategy, info, state, data.train_images, data.sampler, lambda report: None)
    exported = finish(config, info, state, data, reporter) if reporter else None
    barrier(strategy)
    return exported


def finish(config: TrainConfig, info: WorkerInfo, state: TrainingState, data: RunData, reporter: ChiefReporter) -> Path:
    """Chief only: test figures at the validation threshold, pictures, SavedModel, model.onnx and model.json."""
    validation = reporter.last_validation
    if validation is None:  # resumed after the last epoch: nothing validated in this process yet
        validation = evaluate_pairs(state.serving, data.val)
        reporter.report(validation.metrics("val"), step=config.epochs)
    test = evaluate_pairs(state.serving, data.test, calibration=validation)
    test_metrics = {k: v for k, v in test.metrics("test").items() if not k.startswith("test_threshold")}
    reporter.report(test_metrics, step=config.epochs)
    out = Path(config.out)
    onnx = export_model(state.serving, out, config.size)
    plot_roc({"validation (fold 9)": validation.pairs.roc, "test (fold 10)": test.pairs.roc}, out / "roc.png")
    plot_embedding_map(embed_with(state.serving, data.map_images), data.map_names, out / "embedding_map.png")
    metrics = {**validation.metrics("val"), **test_metrics}
    if reporter.history:
        metrics["loss"] = reporter.history[-1]["loss"]
    write_model_card(out, config, data, validation.threshold, metrics, workers=info.workers, onnx=onnx)
    print(f"model exported to {out}", flush=True)
    return out
