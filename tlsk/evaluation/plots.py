"""Training curves and confusion matrices, as PNG files (needs matplotlib).

Install with ``pip install "tlsk[plots]"``. Figures are built with
matplotlib's object API (``matplotlib.figure.Figure``), never ``pyplot``, so
plotting changes no global state: no backend switch, no open windows.
"""

from __future__ import annotations

import os

import numpy as np

from tlsk._util.files import write_atomically
from tlsk.images.folders import printable

__all__ = ["plot_confusion_matrix", "plot_history", "plot_lr_find"]


def _figure(**kwargs):
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - exercised without matplotlib
        raise ImportError(
            "tlsk's plots need matplotlib; install it with: pip install 'tlsk[plots]'"
        ) from err
    return Figure(**kwargs)


def plot_history(history, path=None):
    """Loss and accuracy per epoch, training and validation, phase after phase.

    Parameters
    ----------
    history : dict or fitted Keras classifier
        ``{phase: {"loss": [...], "accuracy": [...], "val_loss": [...], ...}}``
        as in ``history_`` of :class:`tlsk.KerasFineTuneClassifier` and
        :class:`tlsk.SmallCNNClassifier`, or the estimator itself.
    path : str or path, optional
        Where to save the figure as PNG.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from tlsk.evaluation.plots import plot_history
    >>> history = {"head": {"loss": [1.0, 0.7], "accuracy": [0.4, 0.6]},
    ...            "finetune": {"loss": [0.6, 0.5], "accuracy": [0.7, 0.8]}}
    >>> [ax.get_title() for ax in plot_history(history).axes]
    ['loss', 'accuracy']
    """
    history = getattr(history, "history_", history)
    if not isinstance(history, dict) or not history:
        raise ValueError(
            "history must be a fitted Keras classifier or its non-empty history_ "
            f"dict; received {history!r}"
        )
    figure = _figure(figsize=(10, 4), layout="constrained")
    for ax, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        start = 0
        for phase, curves in history.items():
            epochs = np.arange(start + 1, start + 1 + len(curves.get(metric, [])))
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                if key in curves:
                    ax.plot(
                        epochs, curves[key], style, marker=".", label=f"{phase} {key}"
                    )
            if start:
                ax.axvline(start + 0.5, color="grey", linewidth=0.8)
            start += len(curves.get(metric, []))
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.legend(fontsize="small")
    _save(figure, path)
    return figure


def plot_confusion_matrix(y_true, y_pred, labels=None, path=None, normalize=None):
    """A confusion matrix with counts (or rates with ``normalize="true"``).

    Parameters
    ----------
    y_true, y_pred : array-like
    labels : array-like, optional
        The classes, in display order; by default the sorted union.
    path : str or path, optional
        Where to save the figure as PNG.
    normalize : {None, "true", "pred", "all"}, default=None
        As for :func:`sklearn.metrics.confusion_matrix`.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from tlsk.evaluation.plots import plot_confusion_matrix
    >>> figure = plot_confusion_matrix(["cat", "dog", "dog"], ["cat", "dog", "cat"])
    >>> figure.axes[0].get_xlabel()
    'Predicted label'
    """
    from sklearn.metrics import confusion_matrix

    if labels is None:
        labels = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))
    matrix = confusion_matrix(y_true, y_pred, labels=labels, normalize=normalize)
    size = 2.5 + 0.6 * len(labels)
    figure = _figure(figsize=(size, size), layout="constrained")
    ax = figure.subplots()
    # Drawn here rather than with ConfusionMatrixDisplay, which imports pyplot.
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    threshold = (matrix.max() + matrix.min()) / 2
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(
            col,
            row,
            f"{value:.2f}" if normalize else f"{value:d}",
            ha="center",
            va="center",
            color=image.cmap(0.0 if value > threshold else 1.0),
        )
    ticks = np.arange(len(labels))
    names = [printable(label) for label in labels]  # class names from the data
    ax.set_xticks(ticks, names)
    ax.set_yticks(ticks, names)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    _save(figure, path)
    return figure


def plot_lr_find(result, path=None):
    """The loss of a learning-rate range test against the rate (log scale).

    Parameters
    ----------
    result : tlsk.training.lr_finder.LRFinderResult
    path : str or path, optional
        Where to save the figure as PNG.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from tlsk.training.lr_finder import LRFinderResult
    >>> from tlsk.evaluation.plots import plot_lr_find
    >>> rates = np.geomspace(1e-5, 1, 6)
    >>> losses = np.array([2.0, 1.9, 1.2, 0.8, 1.5, 9.0])
    >>> figure = plot_lr_find(LRFinderResult("head", rates, losses, losses))
    >>> figure.axes[0].get_xscale(), figure.axes[0].get_xlabel()
    ('log', 'learning rate')
    """
    figure = _figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    ax.plot(result.learning_rates, result.raw_losses, alpha=0.3, label="loss")
    ax.plot(result.learning_rates, result.losses, label="smoothed loss")
    ax.axvline(
        result.suggestion,
        color="tab:red",
        linestyle="--",
        label=f"suggested {result.suggestion:.2g} (minimum / 10)",
    )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title(f"learning-rate range test: {result.phase}")
    ax.legend(fontsize="small")
    _save(figure, path)
    return figure


def _save(figure, path):
    if path is not None:
        path = os.fspath(path)
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            raise ValueError(f"path must be in an existing folder; received {path!r}")
        # Atomically, and a link named ``path`` is replaced, never written through.
        write_atomically(path, lambda file: figure.savefig(file, format="png", dpi=100))
