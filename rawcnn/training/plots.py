"""PNG plots of training curves and ROC curves (matplotlib's Agg canvas; no pyplot, no display).

The figures are built on matplotlib.figure.Figure with a FigureCanvasAgg, so nothing touches
pyplot's global state or needs a display, and they work the same under a headless server.
"""
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rawcnn.files.fileio import atomic_path


def _save(fig, path):
    """Write `fig` to `path` as PNG (the directory is created); returns the path."""
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"plots are written as PNG; give a path ending in .png, got {path!r}")
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def plot_curves(history, path, title=None):
    """Loss and accuracy per epoch, train and validation, with the learning-rate drops marked.

    history: list of dicts with keys epoch, train_loss, train_acc, val_loss, val_acc, lr
    (one per epoch, as train() records it). Writes a PNG to `path` and returns the path.
    """
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", ms=3, label="train")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "o-", ms=3, label="validation")
        for prev, h in zip(history, history[1:], strict=False):  # each epoch after the first, with the one before
            if h["lr"] < prev["lr"]:
                ax.axvline(h["epoch"] - 0.5, color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_acc.set_ylim(-0.02, 1.02)
    fig.suptitle(title or "training curves (dotted: learning-rate drop)")
    fig.tight_layout()
    return _save(fig, path)


def plot_roc(fpr, tpr, auc, path, title=None):
    """ROC curve with its AUC in the legend and the chance diagonal.

    fpr, tpr: float (T,) each, from rawcnn.training.metrics.roc_curve; auc: float.
    Writes a PNG to `path` and returns the path.
    """
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(fpr, tpr, "-", lw=2, label=f"ROC (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false-positive rate (1 - specificity)")
    ax.set_ylabel("true-positive rate (sensitivity)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "ROC, class 1 = abnormal")
    fig.tight_layout()
    return _save(fig, path)
