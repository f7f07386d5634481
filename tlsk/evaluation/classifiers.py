"""The scikit-learn classifiers offered for bottleneck features, ready to fit.

``tlsk train --method bottleneck``, ``tlsk demo`` and the label-error search
(:mod:`tlsk.evaluation.label_errors`) build their classifier here: a
:class:`~sklearn.pipeline.Pipeline` (a scaler where the classifier needs one)
whose last step is named ``"classifier"``. The SVMs are wrapped in
:class:`~sklearn.calibration.CalibratedClassifierCV` (sigmoid,
``ensemble=False``) so that their probabilities agree with their labels;
scikit-learn deprecates ``SVC(probability=True)``.

>>> import numpy as np
>>> X = np.r_[np.zeros((6, 2)), np.ones((6, 2))] + np.arange(12)[:, None] / 100
>>> y = np.array(["a"] * 6 + ["b"] * 6)
>>> model = bottleneck_classifier("svm", y).fit(X, y)
>>> model.predict([[0, 0], [1, 1]]).tolist()
['a', 'b']
>>> model, grid = tune(bottleneck_classifier("logreg", y), "logreg", X, y)
>>> grid["parameter"], grid["folds"]
('C', 5)
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLASSIFIERS", "GRIDS", "bottleneck_classifier", "cv_folds", "tune"]

CLASSIFIERS = ("logreg", "linear-svm", "svm", "random-forest")
# The classifier's main parameter (as a parameter of the "classifier" step)
# and the values tune() tries.
GRIDS = {
    "logreg": ("C", [0.01, 0.1, 1.0, 10.0, 100.0]),
    "linear-svm": ("estimator__C", [0.01, 0.1, 1.0, 10.0, 100.0]),
    "svm": ("estimator__C", [0.1, 1.0, 10.0, 100.0]),
    "random-forest": ("n_estimators", [50, 100, 200, 400]),
}
MAX_FOLDS = 5


def cv_folds(y):
    """Stratified folds ``y`` allows: its smallest class's size, at most 5."""
    return min(MAX_FOLDS, smallest_class(y))


def smallest_class(y):
    return int(np.unique(np.asarray(y), return_counts=True)[1].min())


def bottleneck_classifier(name, y, random_state=0, grid=False):
    """The scaler and classifier ``name`` (one of :data:`CLASSIFIERS`) for labels ``y``.

    ``y`` decides the calibration folds of the SVMs; ``grid=True`` leaves room
    for the grid search's own folds (see :func:`tune`). Too few images per
    class to calibrate is a ValueError that says how many are needed.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; choose one of {CLASSIFIERS}")
    if name == "random-forest":
        forest = RandomForestClassifier(n_estimators=200, random_state=random_state)
        return Pipeline([("classifier", forest)])
    if name == "logreg":
        classifier = LogisticRegression(max_iter=5000)
    else:
        smallest = smallest_class(y)
        if grid:  # calibration then splits each grid fold's training part
            smallest -= -(-smallest // min(MAX_FOLDS, smallest))
        folds = min(MAX_FOLDS, smallest)
        if folds < 2:
            raise ValueError(
                f"classifier {name!r} calibrates its probabilities by "
                f"cross-validation and needs at least {3 if grid else 2} training "
                f"images per class{' with a grid search' if grid else ''}; the "
                f"smallest class has {smallest_class(y)}"
            )
        base = (
            LinearSVC(max_iter=20_000, random_state=random_state)
            if name == "linear-svm"
            else SVC(kernel="rbf", random_state=random_state)
        )
        classifier = CalibratedClassifierCV(base, cv=folds, ensemble=False)
    return Pipeline([("scale", StandardScaler()), ("classifier", classifier)])


def tune(pipeline, name, X, y, random_state=0):
    """Choose the main parameter of classifier ``name`` by cross-validated accuracy.

    Returns ``(best pipeline refitted on all of X, grid)``; ``grid`` describes
    the search (parameter, folds, best value and score, every value's score)
    in plain types, for a model's metadata.
    """
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    parameter, values = GRIDS[name]
    folds = cv_folds(y)
    if folds < 2:
        raise ValueError(
            "a grid search needs at least 2 training images per class; the "
            f"smallest class has {smallest_class(y)}"
        )
    key = f"classifier__{parameter}"
    search = GridSearchCV(
        pipeline,
        {key: values},
        cv=StratifiedKFold(folds, shuffle=True, random_state=random_state),
        scoring="accuracy",
    ).fit(X, y)
    grid = {
        "parameter": parameter.split("__")[-1],
        "folds": folds,
        "best": search.best_params_[key],
        "best_score": float(search.best_score_),
        "results": [
            {"value": params[key], "mean_accuracy": float(score)}
            for params, score in zip(
                search.cv_results_["params"],
                search.cv_results_["mean_test_score"],
                strict=True,
            )
        ],
    }
    return search.best_estimator_, grid
