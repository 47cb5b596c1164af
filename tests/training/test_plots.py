"""The model card's ROC picture shows the region that matters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from facesim.training.plots import plot_roc, roc_figure
from facesim.training.verification import Roc


def _roc() -> Roc:
    far = np.array([0.0, 1e-4, 1e-3, 1e-2, 1.0])
    return Roc(false_accept=far, true_accept=np.array([0.5, 0.93, 0.97, 0.99, 1.0]), thresholds=far)


def test_roc_has_a_log_far_axis_and_a_panel_zoomed_to_tar_0_9_to_1(tmp_path: Path) -> None:
    figure = roc_figure({"validation": _roc(), "test": _roc()})
    assert [axes.get_xscale() for axes in figure.axes] == ["log", "log"]
    assert [axes.get_ylim() for axes in figure.axes] == [(0.0, 1.01), (0.9, 1.0)]
    assert all(len(axes.lines) == 3 for axes in figure.axes)  # both curves and the FAR = 1e-3 line
    path = plot_roc({"test": _roc()}, tmp_path / "roc.png")
    assert Image.open(path).size == (900, 420)
