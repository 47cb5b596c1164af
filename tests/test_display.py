"""The one formatting module for names and model-card numbers (facesim.contract.display)."""

from __future__ import annotations

import pytest

from facesim.contract.display import (
    MISSING,
    MetricRow,
    card_text,
    display_name,
    format_number,
    format_value,
    metric_rows,
    precision,
)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (307011.0, "307,011"),  # model.json stores counts as floats
        (307011, "307,011"),
        (300, "300"),
        (2e-05, "2e-05"),
        (1.5e-05, "1.5e-05"),
        (-3e-04, "-3e-04"),
        (0.001, "0.0010"),
        (0.99333, "0.9933"),
        (0.0, "0.0000"),
        (1.0, "1.0000"),  # a perfect rate is not a count
        (float("nan"), "nan"),
    ],
)
def test_numbers_read_as_counts_rates_or_small_values(value: float, shown: str) -> None:
    assert format_number(value) == shown


def test_points_round_to_one_decimal_and_other_leaves_stay_readable() -> None:
    template = [[46.529998779296875, 44.41999816894531], [102.97000122070312, 45.38999938964844]]
    assert format_value(template) == "(46.5, 44.4), (103.0, 45.4)"
    assert format_value(["flip", 2e-05]) == "flip, 2e-05"
    assert format_value(True) == "True" and format_value("dlib-chip-5pt") == "dlib-chip-5pt"


def test_identity_keys_read_as_names() -> None:
    assert display_name("George_W_Bush") == "George W Bush"
    assert display_name("Ada Lovelace") == "Ada Lovelace"


def test_validation_and_test_metrics_side_by_side() -> None:
    metrics = {"val_accuracy": 0.995, "test_accuracy": 0.99333, "test_impostor_pairs": 307011.0, "loss": 0.0123}
    assert metric_rows(metrics) == [
        MetricRow("accuracy", "0.9950", "0.9933"),
        MetricRow("impostor_pairs", MISSING, "307,011"),
        MetricRow("loss", other="0.0123"),
    ]


def test_the_terminal_card_uses_the_same_formatting() -> None:
    card = {
        "threshold": 0.1789,
        "metrics": {"val_auc": 0.9999, "test_auc": 0.99987, "test_impostor_pairs": 307011.0},
        "training": {"params": {"learning_rate": 2e-05, "epochs": 2}, "notes": {}},
        "preprocessing": {"template_points": [[46.529998779296875, 44.41999816894531]]},
    }
    text = card_text(card, "v1")
    assert "Version: v1" in text and "Threshold (squared L2): 0.1789" in text
    assert [line.split() for line in text.splitlines() if line.startswith(("auc", "impostor_pairs"))] == [
        ["auc", "0.9999", "0.9999"],
        ["impostor_pairs", MISSING, "307,011"],
    ]
    assert "    learning_rate: 2e-05" in text and "  template_points: (46.5, 44.4)" in text
    assert "notes" not in text  # nothing to show


def test_the_card_says_its_precision() -> None:
    float_card = {"image_size": 150, "threshold": 0.18}
    assert precision(float_card) == "float32"
    check = {"float": {"fold10_correct_pairs": 596.0}, "int8": {"fold10_correct_pairs": 595.0}}
    int8_card = {**float_card, "quantization": {"method": "static QDQ", "check": check}}
    assert precision(int8_card) == "int8 (fold 10: 595 pairs right, the float model 596)"
    assert precision({"quantization": {"method": "static QDQ"}}) == "int8"
    text = card_text(int8_card)
    assert "Precision: int8 (fold 10: 595 pairs right" in text and "quantization:\n  method: static QDQ" in text
