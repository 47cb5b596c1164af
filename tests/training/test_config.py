"""TrainConfig: the command line round trip the launchers rely on, and clear option errors."""

from __future__ import annotations

import dataclasses

import pytest

from facesim.training.config import TrainConfig, parse_config

# Two configs that between them give every TrainConfig field a value other than its default
# (--init faceapi-resnet fixes the architecture and the embedding size, so those need a second one).
SCRATCH = TrainConfig(
    data="/data/lfw",
    out="/models/m",
    run_dir="/runs/r",
    cache_dir="/cache",
    workers=2,
    epochs=3,
    steps_per_epoch=7,
    architecture="inception_resnet_v1",
    image_size=96,
    embedding_dim=64,
    margin=0.35,
    mining="batch_hard",
    identities_per_batch=8,
    images_per_identity=3,
    learning_rate=0.01,
    lr_schedule="constant",
    warmup_steps=4,
    weight_decay=1e-4,
    augment=False,
    max_identities=40,
    val_pairs=100,
    test_pairs=50,
    map_identities=5,
    checkpoint_steps=2,
    detector="haar",
    yunet_path="/models/yunet.onnx",
    prepare_workers=1,
    threads=1,
    seed=5,
    template="dlib-chip-5pt",
    flip_average=True,
    metadata={"trial": "t-1", "note": "a=b"},
)
PRETRAINED = TrainConfig(
    data="/data/lfw",
    out="/models/m",
    init="faceapi-resnet",
    init_weights="/weights",
    freeze_stages=1,
    distill_weight=2.0,
    flip_average=False,
)


def test_every_train_config_field_round_trips_through_its_command_line() -> None:
    defaults = TrainConfig(data="d", out="o")
    changed = {
        f.name
        for config in (SCRATCH, PRETRAINED)
        for f in dataclasses.fields(TrainConfig)
        if getattr(config, f.name) != getattr(defaults, f.name)
    }
    assert changed == {f.name for f in dataclasses.fields(TrainConfig)}  # a new field: give it a value above
    for config in (SCRATCH, PRETRAINED, defaults):
        assert parse_config(config.to_args()) == config
    assert "--yunet" in SCRATCH.to_args()  # the shared option's own name, not an old spelling


def test_defaults_round_trip_and_native_sizes():
    config = TrainConfig(data="d", out="o")
    assert parse_config(config.to_args()) == config
    assert config.size == 112
    assert TrainConfig(data="d", out="o", architecture="inception_resnet_v1").size == 160
    assert str(config.resolved_run_dir()) == "o.run"
    assert config.distill_weight == 0.0 and TrainConfig(data="d", out="o", init="faceapi-resnet").distill_weight > 0


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"images_per_identity": 1}, "anchor and a positive"),
        ({"identities_per_batch": 3, "images_per_identity": 3, "workers": 2}, "divide evenly"),
        ({"margin": 0.0}, "margin"),
        ({"mining": "hardest"}, "mining"),
        ({"lr_schedule": "step"}, "lr-schedule"),
        ({"weight_decay": -1.0}, "weight-decay"),
        ({"distill_weight": -0.5, "init": "faceapi-resnet"}, "distill-weight must not be negative"),
        ({"distill_weight": 1.0}, "needs an --init to distil from"),
        ({"distill_weight": float("nan"), "init": "faceapi-resnet"}, "distill-weight must be a finite number"),
        ({"margin": float("nan")}, "margin must be a finite number"),
        ({"learning_rate": float("inf")}, "learning-rate must be a finite number"),
    ],
)
def test_bad_options_say_what_to_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(data="d", out="o", **changes)


def test_cosine_schedule_warms_up_to_the_peak_then_decays_to_zero():
    from facesim.training.loop import make_learning_rate

    config = TrainConfig(data="d", out="o", epochs=2, steps_per_epoch=50, learning_rate=0.01, warmup_steps=10)
    schedule = make_learning_rate(config)
    rates = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert rates[0] == pytest.approx(0.0, abs=1e-9)
    assert rates[1] == pytest.approx(0.005, rel=1e-3)  # half-way up the warm-up
    assert rates[2] == pytest.approx(0.01, rel=1e-3)  # the peak
    assert rates[3] == pytest.approx(0.005, rel=1e-2)  # half-way down the cosine
    assert rates[4] == pytest.approx(0.0, abs=1e-6)  # the end of the run


def test_weight_decay_selects_adamw_and_constant_keeps_the_rate():
    import keras

    from facesim.training.loop import make_optimizer

    decayed = make_optimizer(TrainConfig(data="d", out="o", weight_decay=5e-4, lr_schedule="constant"))
    assert isinstance(decayed, keras.optimizers.AdamW) and decayed.weight_decay == pytest.approx(5e-4)
    assert float(decayed.learning_rate) == pytest.approx(1e-3)
