"""Images whose label is probably wrong: confident learning on bottleneck features.

:func:`find_label_errors` computes the features of every image once (through
the extractor's feature cache when it has one), predicts each image's class
probabilities with a classifier that never saw it (out-of-fold
:func:`~sklearn.model_selection.cross_val_predict`), and hands them to
cleanlab's :func:`cleanlab.filter.find_label_issues`, confident learning
(Northcutt, Jiang and Chuang, "Confident learning: estimating uncertainty in
dataset labels", JAIR 70, 2021). The suspects come ranked by cleanlab's
label quality score (the out-of-fold probability of the given label), most
doubtful first. Nothing is moved or changed.

cleanlab is an optional extra: ``pip install "tlsk[labels]"``.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.r_[rng.normal(0, 1, (40, 5)), rng.normal(4, 1, (40, 5))]
>>> y = np.array(["cat"] * 40 + ["dog"] * 40)
>>> y[[3, 50]] = ["dog", "cat"]                   # two labels flipped
>>> errors = find_label_errors(X, y, extractor="precomputed")
>>> sorted(errors.indices.tolist())
[3, 50]
>>> errors.ranking()[:2].tolist() == errors.indices.tolist()
True
>>> first = errors.suspects()[0]
>>> first.given != first.likely, 0 <= first.quality < 0.5
(True, True)
"""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

import numpy as np

__all__ = ["LabelErrors", "Suspect", "find_label_errors"]

INSTALL = 'finding label errors needs cleanlab: pip install "tlsk[labels]"'


class Suspect(NamedTuple):
    """One image whose label is probably wrong."""

    index: int  # position in the X and y given
    given: str  # its label
    likely: str  # the class the out-of-fold classifier finds most likely
    p_given: float  # out-of-fold probability of the given label
    p_likely: float  # ... and of the likely one
    quality: float  # cleanlab's label quality score, 0 (surely wrong) to 1
    image: str | None  # its file, when X held file paths


@dataclasses.dataclass
class LabelErrors:
    """What :func:`find_label_errors` found.

    ``indices`` are the suspects' positions, most doubtful first;
    ``pred_probs`` the out-of-fold probabilities of every image (columns in
    the order of ``classes``); ``quality`` every image's label quality score;
    ``images`` the file of each image of X (None for arrays and features).
    """

    indices: np.ndarray
    classes: np.ndarray
    labels: np.ndarray
    pred_probs: np.ndarray
    quality: np.ndarray
    folds: int
    images: list | None = None

    def ranking(self):
        """Every image's index, lowest label quality first (suspect or not).

        Confident learning decides *which* images are suspects (and so how
        many labels are probably wrong); when you will look at a fixed number
        k of images anyway, the k first of this ranking are the surest bet
        (see the label-error benchmark in benchmarks/README.md).
        """
        return np.argsort(self.quality, kind="stable")

    def suspects(self):
        """The suspects as :class:`Suspect` rows, most doubtful first."""
        column = {label: i for i, label in enumerate(self.classes.tolist())}
        rows = []
        for index in self.indices.tolist():
            proba = self.pred_probs[index]
            likely = int(proba.argmax())
            given = str(self.labels[index])
            rows.append(
                Suspect(
                    index=index,
                    given=given,
                    likely=str(self.classes[likely]),
                    p_given=float(proba[column[given]]),
                    p_likely=float(proba[likely]),
                    quality=float(self.quality[index]),
                    image=None if self.images is None else self.images[index],
                )
            )
        return rows


def find_label_errors(
    X,
    y,
    *,
    extractor=None,
    classifier="logreg",
    cv=5,
    random_state=0,
    filter_by="prune_by_noise_rate",
):
    """Rank the images of ``X`` whose label in ``y`` is probably wrong.

    Parameters
    ----------
    X : list of image paths or arrays, or an array of features
        The images, as :class:`~tlsk.ImageFeatureExtractor` takes them; or,
        with ``extractor="precomputed"``, one feature vector per row.
    y : array-like of labels
        The labels given (the folder names); at least 2 classes, and at least
        2 images in each.
    extractor : transformer, "precomputed" or None, default=None
        Turns ``X`` into features (a clone of it is fitted on ``X``). None:
        ``ImageFeatureExtractor()``, VGG16 with ImageNet weights. Give one
        with ``cache=`` to compute each image's features only once across
        runs.
    classifier : str, default="logreg"
        One of :data:`tlsk.evaluation.classifiers.CLASSIFIERS`, trained once per fold.
    cv : int, default=5
        Folds of the out-of-fold prediction, at most the smallest class's
        size (fewer are used when a class is smaller).
    random_state : int, default=0
        Of the folds and the classifier.
    filter_by : str, default="prune_by_noise_rate"
        cleanlab's ``find_label_issues`` method (see its documentation).

    Returns
    -------
    LabelErrors
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from tlsk.evaluation.classifiers import bottleneck_classifier, smallest_class

    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError as err:
        raise ImportError(INSTALL) from err

    y = np.asarray(y).astype(str)
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} images but y has {len(y)} labels")
    classes, encoded = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"finding label errors needs at least 2 classes; got {classes.tolist()}"
        )
    folds = min(int(cv), smallest_class(y))
    if folds < 2:
        counts = dict(zip(*np.unique(y, return_counts=True), strict=True))
        lonely = sorted(str(c) for c, n in counts.items() if n < 2)
        raise ValueError(
            "every class needs at least 2 images for out-of-fold predictions; "
            f"these have 1: {lonely}"
        )
    images = None
    if isinstance(extractor, str) and extractor == "precomputed":
        features = np.asarray(X, dtype=np.float32)
    else:
        images = [
            os.fspath(x) if isinstance(x, (str, os.PathLike)) else None for x in X
        ]
        if extractor is None:
            from tlsk.features.extractor import ImageFeatureExtractor

            extractor = ImageFeatureExtractor()
        features = clone(extractor).fit_transform(X)
    model = bottleneck_classifier(classifier, y, random_state=random_state)
    splits = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    pred_probs = cross_val_predict(
        model, features, encoded, cv=splits, method="predict_proba"
    )
    indices = find_label_issues(
        encoded,
        pred_probs,
        filter_by=filter_by,
        return_indices_ranked_by="self_confidence",
        n_jobs=1,  # no worker processes forked from a process running TensorFlow
    )
    quality = get_label_quality_scores(encoded, pred_probs, method="self_confidence")
    return LabelErrors(
        indices=np.asarray(indices, dtype=np.int64),
        classes=classes,
        labels=y,
        pred_probs=pred_probs,
        quality=quality,
        folds=folds,
        images=images,
    )
