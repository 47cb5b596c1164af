"""Pictures for the model card: the ROC curve and a 2-D map of test identities' embeddings."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from facesim.contract.metrics import Roc

ZOOM_TAR = (0.9, 1.0)  # where a good face model's curves differ


def plot_roc(curves: dict[str, Roc], path: Path) -> Path:
    figure = roc_figure(curves)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def roc_figure(curves: dict[str, Roc]) -> Figure:
    """ROC curves on a log FAR axis (where FaceNet's VAL@FAR lives), one per named pair set: the
    whole curve, and beside it the region that matters, TAR 0.9-1.0."""
    figure, panels = plt.subplots(1, 2, figsize=(9, 4.2), sharex=True)
    for axes, tar_range, title in zip(panels, ((0.0, 1.01), ZOOM_TAR), ("whole curve", "TAR 0.9-1.0"), strict=True):
        for name, roc in curves.items():
            far = np.clip(roc.false_accept, 1e-4, 1.0)
            axes.step(far, roc.true_accept, where="post", label=name)
        axes.axvline(1e-3, color="grey", linestyle=":", label="FAR = 1e-3")
        axes.set_xscale("log")
        axes.set_xlim(1e-4, 1.0)
        axes.set_ylim(*tar_range)
        axes.set_xlabel("false accept rate (different people called same)")
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
    panels[0].set_ylabel("true accept rate")
    panels[1].legend(loc="lower right")
    figure.suptitle("LFW verification ROC")
    figure.tight_layout()
    return figure


def plot_embedding_map(embeddings: np.ndarray, names: list[str], path: Path) -> Path:
    """The first two principal components of the embeddings, coloured by identity."""
    centred = embeddings - embeddings.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    points = centred @ components[:2].T
    figure, axes = plt.subplots(figsize=(7, 5.5))
    colours = plt.get_cmap("tab20")
    for i, name in enumerate(sorted(set(names))):
        mine = np.array([n == name for n in names])
        axes.scatter(points[mine, 0], points[mine, 1], s=28, color=colours(i % 20), label=name.replace("_", " "))
    axes.set_title("test identities' embeddings (PCA)")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
