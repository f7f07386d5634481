"""What an evaluation report shows, computed from probabilities alone.

Nothing here reads an image or writes a file: :func:`evaluation_data` turns
predicted probabilities and true labels into the figures the page shows
(per-class scores, the confusion matrix, the most confident mistakes, the
most confused pairs, the calibration), so each can be tested on numbers.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

# Probabilities are clipped here before a log: a loss stays finite.
_EPSILON = 1e-12


@dataclasses.dataclass
class ImageRow:
    """One evaluated image."""

    index: int
    name: str
    true: str
    predicted: str
    p_predicted: float  # the probability of the predicted class
    p_true: float  # of the true class (0 for a class the model does not know)
    loss: float  # -log(p_true), the cross-entropy of this image

    @property
    def correct(self) -> bool:
        return self.true == self.predicted


@dataclasses.dataclass
class CalibrationBin:
    low: float
    high: float
    count: int
    confidence: float  # mean probability of the predicted class
    accuracy: float


@dataclasses.dataclass
class EvaluationData:
    labels: list[str]  # the model's classes, then true labels it does not know
    rows: list[ImageRow]
    matrix: np.ndarray  # confusion counts, rows: true, columns: predicted
    per_class: dict[str, dict[str, float]]
    averages: dict[str, dict[str, float]]  # "macro avg", "weighted avg"
    accuracy: float
    most_confused: list[tuple[str, str, int]]  # (true, predicted, count)
    calibration: list[CalibrationBin]
    ece: float  # expected calibration error

    def cell(self, true: int, predicted: int) -> list[ImageRow]:
        """The images counted in one cell of the confusion matrix."""
        return self._cells.get((self.labels[true], self.labels[predicted]), [])

    @functools.cached_property
    def _cells(self):
        # One pass over the rows serves every cell (50 classes: 2,500 cells).
        cells = {}
        for row in self.rows:
            cells.setdefault((row.true, row.predicted), []).append(row)
        return cells

    def top_losses(self, k: int) -> list[ImageRow]:
        """The ``k`` mistakes made with the most confidence, largest loss first."""
        mistakes = [r for r in self.rows if not r.correct]
        return sorted(mistakes, key=lambda r: (-r.loss, r.index))[:k]


def evaluation_data(proba, classes, y_true, names, n_bins=10) -> EvaluationData:
    """Figures of an evaluation, from ``proba`` (n, classes) and the true labels.

    Parameters
    ----------
    proba : array-like of shape (n_images, n_classes)
        Predicted probabilities, columns in the order of ``classes``.
    classes : array-like of shape (n_classes,)
        The model's classes (``model.classes_``).
    y_true : array-like of shape (n_images,)
        True labels; labels the model does not know count as errors.
    names : sequence of str
        A name for each image (its file name), for the page.
    n_bins : int, default=10
        Equal-width bins of confidence for the reliability diagram.

    Examples
    --------
    >>> import numpy as np
    >>> data = evaluation_data(
    ...     np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]),
    ...     ["cat", "dog"], ["cat", "dog", "dog"], ["a.jpg", "b.jpg", "c.jpg"],
    ... )
    >>> round(data.accuracy, 3), data.most_confused
    (0.667, [('dog', 'cat', 1)])
    >>> [(r.name, round(r.loss, 3)) for r in data.top_losses(5)]
    [('c.jpg', 1.204)]
    """
    from sklearn.metrics import classification_report, confusion_matrix

    proba = np.asarray(proba, dtype=np.float64)
    classes = [str(c) for c in classes]
    y_true = [str(y) for y in y_true]
    if proba.ndim != 2 or proba.shape != (len(y_true), len(classes)):
        raise ValueError(
            f"proba must have shape ({len(y_true)}, {len(classes)}) for "
            f"{len(y_true)} images and {len(classes)} classes; received {proba.shape}"
        )
    if len(names) != len(y_true):
        raise ValueError(
            f"names must name each of the {len(y_true)} images; received {len(names)}"
        )
    column = {c: i for i, c in enumerate(classes)}
    best = proba.argmax(axis=1)
    predicted = [classes[i] for i in best]
    rows = []
    for i, (name, true, pred) in enumerate(zip(names, y_true, predicted, strict=True)):
        p_true = float(proba[i, column[true]]) if true in column else 0.0
        rows.append(
            ImageRow(
                index=i,
                name=str(name),
                true=true,
                predicted=pred,
                p_predicted=float(proba[i, best[i]]),
                p_true=p_true,
                loss=float(-np.log(max(p_true, _EPSILON))),
            )
        )
    labels = classes + sorted(set(y_true) - set(classes))
    matrix = confusion_matrix(y_true, predicted, labels=labels)
    report = classification_report(
        y_true, predicted, labels=labels, output_dict=True, zero_division=0
    )
    per_class = {label: _scores(report[label]) for label in labels}
    averages = {name: _scores(report[name]) for name in ("macro avg", "weighted avg")}
    confused = [
        (labels[t], labels[p], int(matrix[t, p]))
        for t in range(len(labels))
        for p in range(len(labels))
        if t != p and matrix[t, p] > 0
    ]
    confused.sort(key=lambda item: (-item[2], item[0], item[1]))
    calibration, ece = _calibration(rows, n_bins)
    correct = sum(r.correct for r in rows)
    return EvaluationData(
        labels=labels,
        rows=rows,
        matrix=matrix,
        per_class=per_class,
        averages=averages,
        accuracy=correct / len(rows) if rows else 0.0,
        most_confused=confused,
        calibration=calibration,
        ece=ece,
    )


def _scores(entry):
    return {
        "precision": float(entry["precision"]),
        "recall": float(entry["recall"]),
        "f1": float(entry["f1-score"]),
        "support": int(entry["support"]),
    }


def _calibration(rows, n_bins):
    """Reliability bins of the predicted class's probability, and their ECE.

    ECE is the mean over images of |accuracy - confidence| of their bin
    (Guo et al., 2017, "On calibration of modern neural networks").
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    confidence = np.array([r.p_predicted for r in rows])
    correct = np.array([r.correct for r in rows], dtype=float)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        inside = which == b
        count = int(inside.sum())
        conf = float(confidence[inside].mean()) if count else 0.0
        acc = float(correct[inside].mean()) if count else 0.0
        bins.append(
            CalibrationBin(float(edges[b]), float(edges[b + 1]), count, conf, acc)
        )
        ece += count * abs(acc - conf)
    return bins, ece / len(rows) if rows else 0.0
