"""Two or more models on the same images: scores, where they differ, and whether
the difference is more than chance.

:func:`compare_models` takes the true labels and each model's answers
(predicted labels, or probabilities with the model's classes) and returns a
:class:`Comparison`: each model's accuracy with a Wilson confidence interval,
its per-class precision, recall and F1, the images on which the models
disagree (most informative first), and McNemar's test for each pair of
models. Nothing here reads an image or writes a file, so every figure can be
tested on numbers; ``tlsk evaluate M1 M2 DIR`` prints them and
:mod:`tlsk.evaluation.report` draws them.

McNemar's test (McNemar, 1947, "Note on the sampling error of the
difference between correlated proportions or percentages", Psychometrika
12) looks only at the images where exactly one of the two models is right:
``b`` where the first is right and the second wrong, ``c`` the other way.
If the two models were equally good, each of those ``b + c`` images would
be as likely to fall on either side. Dietterich (1998, "Approximate
statistical tests for comparing supervised classification learning
algorithms", Neural Computation 10(7)) found it the test of choice when
each model can be trained only once, as here: it has a low rate of false
differences, unlike a t-test on the accuracies.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

__all__ = [
    "Comparison",
    "Disagreement",
    "McNemarResult",
    "ModelScores",
    "compare_models",
    "mcnemar_test",
    "wilson_interval",
]

# Below this many discordant images (b + c), McNemar's p comes from the exact
# binomial distribution; from it on, from the chi-squared approximation with
# Edwards's continuity correction, which is close to exact there (the usual
# rule of thumb: the normal approximation needs b + c >= 25).
EXACT_BELOW = 25


@dataclasses.dataclass(frozen=True)
class McNemarResult:
    """McNemar's test of two models on the same images.

    ``b``: images the ``first`` model gets right and the ``second`` wrong;
    ``c``: the reverse. ``method`` is ``"exact"`` (two-sided binomial test of
    ``b`` in ``b + c`` draws at 1/2; ``statistic`` is None) or ``"chi2"``
    (``(|b - c| - 1)**2 / (b + c)``, one degree of freedom).
    """

    first: str
    second: str
    b: int
    c: int
    p_value: float
    method: str
    statistic: float | None

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether the difference is unlikely to be chance at level ``alpha``."""
        return self.p_value < alpha

    def sentence(self, alpha: float = 0.05) -> str:
        """The result in words, for a page or a terminal (plain text).

        The model that is right alone more often is named first.
        """
        a, b = self.first, self.second
        if self.b + self.c == 0:
            return (
                f"{a} and {b} are right and wrong on the same images: no "
                "difference to test (McNemar p = 1)"
            )
        test = "exact binomial" if self.method == "exact" else "chi-squared"
        verdict = (
            "the difference is unlikely to be chance"
            if self.significant(alpha)
            else "the difference could well be chance"
        )
        (win, wins), (lose, losses) = sorted(
            [(a, self.b), (b, self.c)], key=lambda item: -item[1]
        )
        return (
            f"{win} is right on {_images(wins)} where {lose} is wrong, {lose} on "
            f"{losses} where {win} is wrong; McNemar p = {_p_text(self.p_value)} "
            f"({test}): {verdict}"
        )

    def as_dict(self) -> dict:
        """The result as JSON-ready values (``first_right_second_wrong``...)."""
        return {
            "first": self.first,
            "second": self.second,
            "first_right_second_wrong": self.b,
            "second_right_first_wrong": self.c,
            "p_value": self.p_value,
            "test": self.method,
            "statistic": self.statistic,
        }


@dataclasses.dataclass
class ModelScores:
    """One model's figures on the compared images."""

    name: str
    predicted: list[str]
    correct: np.ndarray  # bool per image
    confidence: np.ndarray | None  # probability of the predicted class, if known
    classes: list[str]  # the classes the model can answer
    accuracy: float
    interval: tuple[float, float]  # Wilson confidence interval of the accuracy
    per_class: dict[str, dict[str, float]]  # label -> precision, recall, f1, support
    macro_f1: float  # over the classes of the images (``Comparison.labels``)

    @property
    def n_correct(self) -> int:
        return int(self.correct.sum())

    def as_dict(self) -> dict:
        """The scores as JSON-ready values."""
        return {
            "name": self.name,
            "n_images": len(self.predicted),
            "n_correct": self.n_correct,
            "accuracy": self.accuracy,
            "accuracy_interval": list(self.interval),
            "macro_f1": self.macro_f1,
            "per_class": self.per_class,
            "unknown_classes": sorted(
                {label for label in self.per_class if label not in self.classes}
            ),
        }


@dataclasses.dataclass
class Disagreement:
    """An image on which the models do not all give the same answer."""

    index: int
    true: str
    predicted: dict[str, str]  # model name -> its answer
    confidence: dict[str, float | None]  # probability of that answer, if known
    right: list[str]  # the models that are right, in the order given

    @property
    def informativeness(self) -> float:
        """How much the image says: a right model beside a confident wrong one.

        The largest confidence of a wrong answer when some model is right
        (between 1 and 2), else that confidence alone (between 0 and 1); an
        answer without a probability counts as confidence 0.
        """
        wrong = [
            self.confidence[name] or 0.0
            for name in self.predicted
            if name not in self.right
        ]
        return (1.0 if self.right else 0.0) + max(wrong, default=0.0)


@dataclasses.dataclass
class Comparison:
    """What :func:`compare_models` finds (see there)."""

    names: list[str]
    labels: list[str]  # every class a model knows, then true labels none knows
    n_images: int
    level: float  # the confidence level of the accuracies' intervals
    models: dict[str, ModelScores]
    pairs: list[McNemarResult]  # each pair of models, in the order given
    disagreements: list[Disagreement]  # most informative first

    def as_dict(self) -> dict:
        """Models and pairs as JSON-ready values (disagreements counted only)."""
        return {
            "n_images": self.n_images,
            "interval_level": self.level,
            "models": [self.models[name].as_dict() for name in self.names],
            "pairs": [pair.as_dict() for pair in self.pairs],
            "n_disagreements": len(self.disagreements),
        }


def wilson_interval(successes, n, *, confidence=0.95):
    """Wilson's score interval of a proportion ``successes / n``.

    Unlike the normal approximation it never leaves [0, 1] and stays
    sensible at 0 or ``n`` successes and for small ``n`` (Wilson, 1927,
    "Probable inference, the law of succession, and statistical inference",
    JASA 22). ``n = 0`` gives ``(0.0, 1.0)``: nothing is known.

    Examples
    --------
    >>> [round(v, 3) for v in wilson_interval(8, 10)]
    [0.49, 0.943]
    """
    from scipy.stats import norm

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); received {confidence!r}")
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(
            f"successes must lie in [0, n]; received successes={successes}, n={n}"
        )
    if n == 0:
        return (0.0, 1.0)
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    scale = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_test(first_correct, second_correct, *, names=("A", "B")):
    """McNemar's test on two models' right (True) and wrong answers, image by image.

    With fewer than 25 discordant images (``b + c``, the images exactly one
    model gets right), the p-value is exact: the two-sided binomial test of
    ``b`` successes in ``b + c`` trials at probability 1/2
    (:func:`scipy.stats.binomtest`). From 25 on, it comes from the
    chi-squared statistic with continuity correction,
    ``(|b - c| - 1)**2 / (b + c)``, on one degree of freedom, as in
    McNemar (1947) and Dietterich (1998). With ``b + c = 0`` there is
    nothing to test: p = 1.

    Parameters
    ----------
    first_correct, second_correct : array-like of bool, shape (n_images,)
        Whether each model is right on each image, the images in one order.
    names : pair of str, default=("A", "B")
        The models' names, kept in the result.

    Returns
    -------
    McNemarResult

    Examples
    --------
    >>> result = mcnemar_test([1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 1, 1])
    >>> result.b, result.c, result.method, round(result.p_value, 3)
    (3, 1, 'exact', 0.625)
    """
    from scipy.stats import binomtest, chi2

    first = np.asarray(first_correct, dtype=bool)
    second = np.asarray(second_correct, dtype=bool)
    if first.ndim != 1 or first.shape != second.shape:
        raise ValueError(
            "first_correct and second_correct must be 1-D and of one length; "
            f"received shapes {first.shape} and {second.shape}"
        )
    b = int((first & ~second).sum())
    c = int((~first & second).sum())
    if b + c == 0:
        p, method, statistic = 1.0, "exact", None
    elif b + c < EXACT_BELOW:
        p = float(binomtest(b, b + c, 0.5).pvalue)
        method, statistic = "exact", None
    else:
        statistic = (abs(b - c) - 1) ** 2 / (b + c)
        p, method = float(chi2.sf(statistic, 1)), "chi2"
    first_name, second_name = names
    return McNemarResult(
        str(first_name), str(second_name), b, c, min(p, 1.0), method, statistic
    )


def compare_models(y, predictions, *, classes=None, confidence=0.95):
    """Compare models on the same images: scores, disagreements, McNemar's test.

    Parameters
    ----------
    y : array-like of shape (n_images,)
        The true labels. A label a model does not know counts as an error of
        that model, as in the one-model report.
    predictions : dict
        Model name -> its answers on the images, in the order of ``y``:
        predicted labels of shape (n_images,), or probabilities of shape
        (n_images, n_classes) whose columns follow ``classes[name]`` (the
        answer is then the most probable class, and its probability ranks the
        disagreements). Two or more models.
    classes : dict, optional
        Model name -> its classes (``model.classes_``); needed for
        probabilities, and for labels it names what the model knows
        (default: the labels it predicted).
    confidence : float, default=0.95
        The level of the accuracies' Wilson intervals.

    Returns
    -------
    Comparison
        ``models`` (name -> :class:`ModelScores`), ``pairs`` (a
        :class:`McNemarResult` for each pair, in the order given: exact
        binomial below 25 discordant images, chi-squared with continuity
        correction from 25 on; p-values are per pair, not corrected for
        several pairs) and ``disagreements`` (the images on which the
        answers differ: first those where a model is right and another
        confidently wrong, by the wrong answer's probability, then those all
        get wrong).

    Examples
    --------
    >>> import numpy as np
    >>> y = ["cat", "cat", "dog", "dog", "dog"]
    >>> result = compare_models(
    ...     y,
    ...     {
    ...         "A": ["cat", "dog", "dog", "dog", "cat"],
    ...         "B": np.array([[.9, .1], [.8, .2], [.3, .7], [.4, .6], [.2, .8]]),
    ...     },
    ...     classes={"B": ["cat", "dog"]},
    ... )
    >>> result.models["A"].accuracy, result.models["B"].accuracy
    (0.6, 1.0)
    >>> [(d.index, d.predicted["A"], d.right) for d in result.disagreements]
    [(1, 'dog', ['B']), (4, 'cat', ['B'])]
    >>> print(result.pairs[0].sentence())  # doctest: +NORMALIZE_WHITESPACE
    B is right on 2 images where A is wrong, A on 0 where B is wrong;
    McNemar p = 0.5 (exact binomial): the difference could well be chance
    """
    if not isinstance(predictions, Mapping) or len(predictions) < 2:
        raise ValueError(
            "predictions must be a dict of two or more models (name -> answers); "
            f"received {type(predictions).__name__} of "
            f"{len(predictions) if isinstance(predictions, Mapping) else '?'}"
        )
    classes = dict(classes or {})
    unknown = sorted(map(str, set(classes) - set(predictions)))
    if unknown:
        raise ValueError(f"classes names models that predictions lacks: {unknown}")
    y = [str(label) for label in np.asarray(y, dtype=object).ravel()]
    names = [str(name) for name in predictions]
    if len(set(names)) != len(names):
        raise ValueError(f"two models have one name: {names}")
    answers = {
        str(name): _answers(str(name), value, classes.get(name), len(y))
        for name, value in predictions.items()
    }
    labels = []
    for predicted, _, known in answers.values():
        for label in [*known, *predicted]:
            if label not in labels:
                labels.append(label)
    labels += sorted(set(y) - set(labels))
    truth = np.array(y, dtype=object)
    models = {}
    for name, (predicted, probability, known) in answers.items():
        correct = np.array(predicted, dtype=object) == truth
        n_correct = int(correct.sum())
        per_class, macro_f1 = _per_class(y, predicted, labels)
        models[name] = ModelScores(
            name=name,
            predicted=predicted,
            correct=correct,
            confidence=probability,
            classes=known,
            accuracy=n_correct / len(y) if y else 0.0,
            interval=wilson_interval(n_correct, len(y), confidence=confidence),
            per_class=per_class,
            macro_f1=macro_f1,
        )
    pairs = [
        mcnemar_test(models[a].correct, models[b].correct, names=(a, b))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]
    return Comparison(
        names=names,
        labels=labels,
        n_images=len(y),
        level=confidence,
        models=models,
        pairs=pairs,
        disagreements=_disagreements(y, models),
    )


def _answers(name, value, known, n):
    """``(predicted labels, their probability or None, the classes known)``."""
    value = np.asarray(value)
    if value.ndim == 2:
        if known is None:
            raise ValueError(
                f"model {name!r} gives probabilities: classes[{name!r}] must name "
                "their columns"
            )
        known = [str(c) for c in known]
        if value.shape != (n, len(known)):
            raise ValueError(
                f"probabilities of model {name!r} must have shape ({n}, "
                f"{len(known)}) for {n} images and its {len(known)} classes; "
                f"received {value.shape}"
            )
        proba = value.astype(np.float64)
        best = proba.argmax(axis=1)
        return [known[i] for i in best], proba[np.arange(n), best], known
    if value.ndim != 1 or len(value) != n:
        raise ValueError(
            f"answers of model {name!r} must be {n} labels or an ({n}, n_classes) "
            f"array of probabilities; received shape {value.shape}"
        )
    predicted = [str(label) for label in value]
    if known is None:
        known = list(dict.fromkeys(sorted(predicted)))
    else:
        known = [str(c) for c in known]
        strange = sorted(set(predicted) - set(known))
        if strange:
            raise ValueError(
                f"model {name!r} predicts labels outside classes[{name!r}]: "
                f"{strange[:5]}"
            )
    return predicted, None, known


def _per_class(y, predicted, labels):
    from sklearn.metrics import classification_report

    report = classification_report(
        y, predicted, labels=labels, output_dict=True, zero_division=0
    )
    per_class = {
        label: {
            "precision": float(report[label]["precision"]),
            "recall": float(report[label]["recall"]),
            "f1": float(report[label]["f1-score"]),
            "support": int(report[label]["support"]),
        }
        for label in labels
    }
    # The macro F1 of the classes the images hold, so that a class one model
    # knows and no image is of does not pull its average down.
    present = [label for label in labels if per_class[label]["support"]]
    macro = float(np.mean([per_class[label]["f1"] for label in present] or [0.0]))
    return per_class, macro


def _disagreements(y, models):
    found = []
    names = list(models)
    for i, true in enumerate(y):
        answers = {name: models[name].predicted[i] for name in names}
        if len(set(answers.values())) == 1:
            continue
        confidence = {
            name: (
                None
                if models[name].confidence is None
                else float(models[name].confidence[i])
            )
            for name in names
        }
        right = [name for name in names if answers[name] == true]
        found.append(Disagreement(i, true, answers, confidence, right))
    found.sort(key=lambda d: (-d.informativeness, d.index))
    return found


def _images(n):
    return f"{n} image" if n == 1 else f"{n} images"


def _p_text(p):
    """A p-value as people read it: two significant digits, tiny ones bounded."""
    if p < 0.0001:
        return "< 0.0001"
    return f"{p:.2g}" if p < 0.01 else f"{p:.3g}"
