"""TrainConfig: the command line round trip the launchers rely on, and clear option errors."""

from __future__ import annotations

import pytest

from training.config import TrainConfig, parse_config


def test_to_args_round_trips_every_field():
    config = TrainConfig(
        data="/data/lfw", out="/models/m", run_dir="/runs/r", workers=2, epochs=3, steps_per_epoch=7,
        architecture="inception_resnet_v1", image_size=96, embedding_dim=64, margin=0.35, mining="batch_hard",
        identities_per_batch=8, images_per_identity=3, learning_rate=0.01, augment=False, max_identities=40,
        val_pairs=100, test_pairs=50, checkpoint_steps=2, threads=1, seed=5, metadata={"trial": "t-1"},
    )
    assert parse_config(config.to_args()) == config


def test_defaults_round_trip_and_native_sizes():
    config = TrainConfig(data="d", out="o")
    assert parse_config(config.to_args()) == config
    assert config.size == 112
    assert TrainConfig(data="d", out="o", architecture="inception_resnet_v1").size == 160
    assert str(config.resolved_run_dir()) == "o.run"


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"images_per_identity": 1}, "anchor and a positive"),
        ({"identities_per_batch": 3, "images_per_identity": 3, "workers": 2}, "divide evenly"),
        ({"margin": 0.0}, "margin"),
        ({"mining": "hardest"}, "mining"),
    ],
)
def test_bad_options_say_what_to_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(data="d", out="o", **changes)
