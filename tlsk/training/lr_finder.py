"""The learning-rate range test of one phase of a Keras classifier: :func:`lr_find`.

The test itself (Smith, 2015; fastai's ``lr_find``) is
:func:`tlsk.training.lr_range_test.range_test`: a few batches of training at
an exponentially growing rate, the loss of each recorded, every weight then
put back; the suggested rate is fastai's "minimum / 10". :func:`lr_find`
prepares a fit of a clone of the classifier as ``fit`` would, trains the
phases before the one tested, and runs the test as that phase starts;
``learning_rate="auto"`` on :class:`tlsk.KerasFineTuneClassifier` runs it
inside ``fit``. :func:`tlsk.evaluation.plots.plot_lr_find` draws the curve.

Examples
--------
>>> import numpy as np
>>> from tlsk import SmallCNNClassifier
>>> from tlsk.training.lr_finder import lr_find
>>> rng = np.random.default_rng(0)
>>> X = np.concatenate([rng.integers(0, 80, (16, 32, 32, 3)),
...                     rng.integers(170, 256, (16, 32, 32, 3))])
>>> y = ["dark"] * 16 + ["light"] * 16
>>> model = SmallCNNClassifier(input_size=32, filters=(4, 8, 8), batch_size=8,
...                            validation_fraction=0, random_state=0)
>>> result = lr_find(model, X, y, num_steps=20)
>>> len(result.learning_rates) == len(result.losses) <= 20
True
>>> 1e-7 <= result.suggestion <= 1.0
True
"""

from __future__ import annotations

from sklearn.base import clone

from tlsk.training.lr_range_test import LRFinderResult, range_test

__all__ = ["LRFinderResult", "lr_find", "range_test"]


def lr_find(estimator, X, y, *, phase=None, start=1e-7, stop=10.0, num_steps=100):
    """Run the range test for one phase of a Keras classifier on ``X, y``.

    Parameters
    ----------
    estimator : SmallCNNClassifier or KerasFineTuneClassifier
        Not changed: the test trains a clone.
    X, y : images and labels, as for ``fit``
    phase : str, optional
        The phase to test (``"train"``; ``"head"`` or ``"finetune"``); by
        default the first with epochs. Earlier phases train first.
    start, stop : float
        The first and the last learning rate tried.
    num_steps : int
        Batches trained, at most (the test stops once the loss diverges);
        the training images are cycled through as often as needed.

    Returns
    -------
    LRFinderResult
    """
    if not 0 < start < stop:
        raise ValueError(f"need 0 < start < stop; received start={start}, stop={stop}")
    if num_steps < 2:
        raise ValueError(f"num_steps must be at least 2; received {num_steps}")
    prepared = clone(estimator)._prepare_fit(X, y)
    phases = [p for p in prepared.phases if p.epochs]
    tested = _phase_index(phases, phase)
    for earlier in phases[:tested]:
        prepared.train_phase(earlier)
    current = phases[tested]
    if current.prepare is not None:
        current.prepare(prepared.model)
    return range_test(
        prepared.model,
        current,
        prepared.batches.train,
        class_weight=prepared.batches.class_weight,
        start=start,
        stop=stop,
        num_steps=num_steps,
    )


def _phase_index(phases, phase):
    """The index in ``phases`` of the one named ``phase``; None: the first."""
    names = [p.name for p in phases]
    if not names:
        raise ValueError(
            "every phase of the estimator has 0 epochs: give one phase epochs "
            "to test its learning rates"
        )
    chosen = names[0] if phase is None else phase
    if chosen not in names:
        raise ValueError(
            f"phase must be one of {names} (the phases with epochs); received {phase!r}"
        )
    return names.index(chosen)
