"""MultiWorkerMirroredStrategy from TF_CONFIG, the chief, and per-worker directories (docs/protocol.md).

TF_CONFIG is the TFJob's (or the local launcher's) cluster description. Without it the same
strategy runs as a single local worker, so there is one code path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WorkerInfo:
    task_type: str
    index: int
    workers: int

    @property
    def is_chief(self) -> bool:
        # A TFJob without a Chief replica makes worker 0 the chief (docs/protocol.md).
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0)

    @property
    def name(self) -> str:
        return f"{self.task_type}-{self.index}"


def worker_info(tf_config: str | None = None) -> WorkerInfo:
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not text.strip():
        return WorkerInfo("worker", 0, 1)
    try:
        config = json.loads(text)
        cluster = config["cluster"]
        task = config["task"]
        workers = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
        return WorkerInfo(task["type"], int(task["index"]), workers)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG is not a valid cluster description ({error}): {text[:200]}") from error


def tf_config_for(ports: list[int], index: int, host: str = "localhost") -> str:
    """The TF_CONFIG of local worker `index` in a cluster of localhost workers."""
    cluster = {"worker": [f"{host}:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def configure_threads(threads: int) -> None:
    """Must run before TensorFlow executes anything; 0 leaves TensorFlow's default."""
    import tensorflow as tf

    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))


def make_strategy():
    """Created first thing, before other TensorFlow work, so that it reads TF_CONFIG (tensorflow#31154)."""
    import tensorflow as tf

    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def worker_dir(base: Path, info: WorkerInfo) -> Path:
    """The chief writes to `base`; the others must write too (saving is collective) but to throwaway dirs."""
    return base if info.is_chief else base / "workers" / info.name


def replica_device(context) -> str:
    """This replica's device. Inside tf.function a tensor has none yet, and a collective
    (all_gather, all_reduce) needs one to know where its result goes."""
    import tensorflow as tf

    devices = context.strategy.extended.worker_devices
    return devices[int(tf.get_static_value(context.replica_id_in_sync_group)) % len(devices)]


def barrier(strategy) -> None:
    """Return once every worker has called it: keeps a finished worker from leaving while the
    chief still works (its departure reads as a crash to the others' coordination service)."""
    import tensorflow as tf

    def replica_fn() -> tf.Tensor:
        context = tf.distribute.get_replica_context()
        with tf.device(replica_device(context)):
            return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.ones([1]))

    tf.function(lambda: strategy.run(replica_fn))()
