"""The custom training loop under MultiWorkerMirroredStrategy (Keras 3 `fit` fails there, docs/protocol.md).

Mining sees the whole global batch: each replica all-gathers every replica's embeddings and
labels, and computes the loss of the global batch. Its own embeddings are spliced back in
un-gathered, so its gradient holds exactly its own samples' share of d(loss)/d(weights); the
optimizer's SUM all-reduce then yields the gradient of the global-batch loss.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from facesim.contract.metrics_lines import format_metric
from facesim.storage.faults import pause_point
from facesim.training.augment import augment_batch
from facesim.training.config import PRETRAINED_INIT, SCRATCH_INIT, TrainConfig
from facesim.training.distributed import WorkerInfo, replica_device, worker_dir
from facesim.training.losses import MINING_LOSSES, TripletLoss, distillation_loss
from facesim.training.model import build_embedding_model, freeze_stages, with_flip_average
from facesim.training.sampler import PKSampler


def global_triplet_loss(embeddings: tf.Tensor, labels: tf.Tensor, loss_fn: TripletLoss, margin: float) -> tf.Tensor:
    """In a replica context: the triplet loss mined over every replica's samples."""
    context = tf.distribute.get_replica_context()
    with tf.device(replica_device(context)):
        gathered = context.all_gather(tf.identity(tf.stop_gradient(embeddings)), axis=0)
        all_labels = context.all_gather(tf.identity(labels), axis=0)
    local = tf.shape(embeddings)[0]
    start = tf.cast(context.replica_id_in_sync_group, tf.int32) * local
    spliced = tf.concat([gathered[:start], embeddings, gathered[start + local :]], axis=0)
    return loss_fn(all_labels, spliced, margin)


@dataclass
class TrainingState:
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    step: tf.Variable
    manager: tf.train.CheckpointManager  # saves model, optimizer and step
    resumed_from: int
    is_chief: bool
    serving: keras.Model  # what is evaluated and exported: the model, or its flip average
    teacher: keras.Model | None = None  # the frozen starting network (--distill-weight), else None

    def save(self, step: int) -> None:
        """The manager writes the files first, then the `checkpoint` index that names them: a crash in
        between leaves the previous checkpoint current. The chief's saves pause in between under the
        test hook (storage/faults.py: FACESIM_TEST_PAUSE=checkpoint-save:...)."""
        callbacks = [lambda: pause_point("checkpoint-save")] if self.is_chief else None
        self.manager.save(step, options=tf.train.CheckpointOptions(experimental_write_callbacks=callbacks))


def make_learning_rate(config: TrainConfig) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The configured rate: constant, or linear warm-up then cosine decay to 0 at the run's last step."""
    assert config.learning_rate is not None and config.warmup_steps is not None  # TrainConfig filled them
    if config.lr_schedule == "constant":
        return config.learning_rate
    warmup = max(0, min(config.warmup_steps, config.total_steps - 1))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.learning_rate,
        decay_steps=max(config.total_steps - warmup, 1),
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam (AdamW with --weight-decay). The schedule keys on the optimizer's own iteration counter,
    which the checkpoint restores on resume."""
    rate = make_learning_rate(config)
    if config.weight_decay:
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(rate)


def create_state(config: TrainConfig, strategy, info: WorkerInfo, checkpoint_dir: Path) -> TrainingState:
    """Model, optimizer and step counter: the --init weights, or the chief's latest checkpoint when there is one."""
    with strategy.scope():
        model = build_embedding_model(config.architecture, config.size, config.embedding_dim, config.seed)
        initialise_weights(model, config)
        if config.freeze_stages:
            freeze_stages(model, config.freeze_stages)
        optimizer = make_optimizer(config)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, str(worker_dir(checkpoint_dir, info)), max_to_keep=2)
    # Every worker restores the chief's checkpoint: the others' dirs are throwaway copies.
    latest = tf.train.latest_checkpoint(str(checkpoint_dir))
    if latest:
        try:
            checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            raise ValueError(
                f"the checkpoint {latest} does not fit this run's model ({str(error)[:300]}): it comes from other "
                f"options; give a new --run-dir, or delete {checkpoint_dir} to start over"
            ) from None
    serving = with_flip_average(model) if config.flips else model
    teacher = build_teacher(config, strategy) if config.distill_weight else None
    return TrainingState(model, optimizer, step, manager, int(step.numpy()), info.is_chief, serving, teacher)


def build_teacher(config: TrainConfig, strategy) -> keras.Model:
    """The --init network, frozen: rebuilt from the init on resume too, so it never needs a checkpoint."""
    with strategy.scope():
        teacher = build_embedding_model(config.architecture, config.size, config.embedding_dim, config.seed)
        initialise_weights(teacher, config)
        teacher.trainable = False
    return teacher


def initialise_weights(model: keras.Model, config: TrainConfig) -> None:
    """--init: dlib's pretrained weights, or an exported model's (the same network: its SavedModel tracks
    the Keras model's variables in order); scratch keeps the random initialisation."""
    if config.init == PRETRAINED_INIT:
        from facesim.training.pretrained import assign_weights, load_weights, locate_weights

        assign_weights(model, load_weights(locate_weights(config.init_weights)))
    elif config.init != SCRATCH_INIT:
        saved = tf.saved_model.load(config.init).variables
        shapes = [tuple(v.shape) for v in saved]
        if shapes != [tuple(v.shape) for v in model.variables]:
            raise ValueError(f"--init {config.init}: its variables do not fit a {config.architecture} network")
        for target, source in zip(model.variables, saved, strict=True):
            target.assign(source)


def make_train_step(config: TrainConfig, strategy, state: TrainingState) -> Callable:
    loss_fn = MINING_LOSSES[config.mining]
    model, optimizer, teacher = state.model, state.optimizer, state.teacher
    margin = config.margin
    assert margin is not None  # TrainConfig filled it

    def replica_step(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        if config.augment:
            images = augment_batch(images, seed)
        pull = tf.constant(0.0)
        with tf.GradientTape() as tape:
            embeddings = model(images, training=True)
            loss = global_triplet_loss(embeddings, labels, loss_fn, margin)
            if teacher is not None:
                taught = teacher(images, training=False)
                pull = config.distill_weight * distillation_loss(embeddings, taught, config.global_batch)
                loss += pull
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        # Each replica holds only its share of the pull, and train_step averages the replicas'
        # losses: report the whole pull once.
        return loss + (tf.distribute.get_replica_context().num_replicas_in_sync - 1) * pull

    @tf.function
    def train_step(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        losses = strategy.run(replica_step, args=(images, labels, seed))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

    return train_step


@dataclass
class EpochReport:
    epoch: int
    loss: float
    images_per_s: float  # this worker's share


def run_training(
    config: TrainConfig,
    strategy,
    info: WorkerInfo,
    state: TrainingState,
    images: np.ndarray,
    sampler: PKSampler,
    on_epoch_end: Callable[[EpochReport], None],
    on_step: Callable[[int, float], None] = lambda step, loss: None,
) -> None:
    """Steps from the restored step to the end; checkpoints every `checkpoint_steps` and each epoch end."""
    train_step = make_train_step(config, strategy, state)
    step = int(state.step.numpy())
    while step < config.total_steps:
        epoch = step // config.steps_per_epoch
        epoch_end = (epoch + 1) * config.steps_per_epoch
        losses: list[float] = []
        started = time.perf_counter()
        progress = tqdm(
            total=config.steps_per_epoch,
            initial=step - epoch * config.steps_per_epoch,
            desc=f"epoch {epoch + 1}",
            unit="step",
            file=sys.stderr,
            mininterval=0.5 if sys.stderr.isatty() else 5.0,
            disable=not info.is_chief,
        )
        for step in range(step, epoch_end):  # noqa: B020 - resumes mid-epoch; set to epoch_end below
            share = sampler.batch(step).share(info.index, info.workers)
            seed = tf.constant([config.seed, step * info.workers + info.index], dtype=tf.int32)
            loss = train_step(tf.constant(images[share.indices], tf.float32), tf.constant(share.labels), seed)
            losses.append(float(loss))
            state.step.assign(step + 1)
            on_step(step + 1, losses[-1])
            progress.update(1)
            progress.set_postfix_str(f"loss {losses[-1]:.4f}")  # no "=": Katib would read it as a metric
            if config.checkpoint_steps and (step + 1) % config.checkpoint_steps == 0 and step + 1 < epoch_end:
                state.save(step + 1)
        progress.close()
        step = epoch_end
        state.save(step)
        elapsed = time.perf_counter() - started
        seen = len(losses) * config.global_batch // info.workers
        on_epoch_end(EpochReport(epoch + 1, float(np.mean(losses)), seen / max(elapsed, 1e-9)))


def print_metric(name: str, value: float) -> None:
    line = format_metric(name, value)
    if line is not None:
        print(line, flush=True)
