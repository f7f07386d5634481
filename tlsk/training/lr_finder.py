"""The learning-rate range test (Smith, 2015; fastai's ``lr_find``).

Train for a few batches while the learning rate grows exponentially from
``start`` to ``stop``, record the loss of each batch, stop when it diverges,
and put every weight back. The loss falls while the rate is useful and
explodes once it is too high; the suggested rate is the one at the lowest
(smoothed) loss divided by 10, fastai's "minimum / 10" rule: comfortably on
the falling side of the curve.

:func:`lr_find` runs the test for one training phase of a Keras classifier
(the phases before it train first, as ``fit`` would train them);
``learning_rate="auto"`` on :class:`tlsk.KerasFineTuneClassifier` runs it
as each phase starts. :func:`tlsk.evaluation.plots.plot_lr_find` draws the curve.

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

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

__all__ = ["LRFinderResult", "lr_find", "range_test"]

SMOOTHING = 0.98  # of the exponential moving average of the loss
DIVERGENCE = 4.0  # stop once the smoothed loss exceeds this times its minimum


@dataclass
class LRFinderResult:
    """The curve of a range test: one point per batch trained."""

    phase: str
    learning_rates: np.ndarray
    losses: np.ndarray  # smoothed (bias-corrected moving average)
    raw_losses: np.ndarray

    @property
    def lr_min(self):
        """The rate at the lowest smoothed loss."""
        return float(self.learning_rates[int(np.nanargmin(self.losses))])

    @property
    def lr_steep(self):
        """The rate where the smoothed loss falls fastest (per log of rate)."""
        if len(self.losses) < 3:
            return self.lr_min
        slope = np.gradient(self.losses, np.log(self.learning_rates))
        return float(self.learning_rates[int(np.nanargmin(slope))])

    @property
    def suggestion(self):
        """The suggested learning rate: ``lr_min / 10``."""
        return self.lr_min / 10

    def plot(self, path=None):
        """The curve as a figure (:func:`tlsk.evaluation.plots.plot_lr_find`)."""
        from tlsk.evaluation.plots import plot_lr_find

        return plot_lr_find(self, path)


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
    from tlsk.networks.precision import resolve_precision
    from tlsk.training.keras_classifier import _seed

    model_estimator = clone(estimator)
    model_estimator._validate_params()
    model_estimator._check_parameters()
    inputs, encoded = model_estimator._check_training_data(X, y)
    seed = _seed(model_estimator.random_state)
    train, valid = model_estimator._split(encoded, seed)
    model_estimator.precision_ = resolve_precision(model_estimator.precision)
    model_estimator.history_, model_estimator.learning_rates_ = {}, {}
    model = model_estimator._initialize_model(seed)
    data = model_estimator._training_batches(inputs, encoded, train, valid, seed)
    phases = [p for p in model_estimator._phases(model) if p.epochs]
    names = [p.name for p in phases]
    chosen = names[0] if phase is None else phase
    if chosen not in names:
        raise ValueError(
            f"phase must be one of {names} (the phases with epochs); received {phase!r}"
        )
    for current in phases:
        if current.name == chosen:
            if current.prepare is not None:
                current.prepare(model)
            return range_test(
                model,
                current,
                data.train,
                class_weight=data.class_weight,
                start=start,
                stop=stop,
                num_steps=num_steps,
            )
        model_estimator._train_phase(model, current, data)


def range_test(
    model, phase, batches, *, class_weight=None, start=1e-7, stop=10.0, num_steps=100
):
    """The range test on ``model`` as it is (layers already opened for ``phase``).

    Trains with ``phase``'s optimizer (its per-layer rate scales included,
    its schedule not: the test sets the rate of each batch), then restores
    every weight of ``model``. Returns an :class:`LRFinderResult`.
    """
    if not isinstance(phase.optimizer, str):
        raise ValueError(
            f"a range test needs the phase's optimizer by name; phase "
            f"{phase.name!r} has a ready {type(phase.optimizer).__name__}"
        )
    from tlsk.training.optimizers import make_optimizer

    saved = model.get_weights()
    optimizer = make_optimizer(
        phase.optimizer,
        start,
        phase.momentum,
        rate_scales=phase.rate_scales(model) if phase.rate_scales else None,
    )
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    rates = np.geomspace(start, stop, num_steps)
    raw, smoothed, average, best = [], [], 0.0, np.inf
    try:
        for step, rate in enumerate(rates):
            index = step % len(batches)
            if step and index == 0:
                batches.on_epoch_end()  # a new order for the next pass
            x, y = batches[index]
            optimizer.learning_rate = float(rate)
            logs = model.train_on_batch(
                x, y, class_weight=class_weight, return_dict=True
            )
            loss = float(logs["loss"])
            average = SMOOTHING * average + (1 - SMOOTHING) * loss
            value = average / (1 - SMOOTHING ** (step + 1))
            raw.append(loss)
            smoothed.append(value)
            best = min(best, value)
            if not np.isfinite(value) or value > DIVERGENCE * best:
                break
    finally:
        model.set_weights(saved)
    count = len(smoothed)
    return LRFinderResult(
        phase=phase.name,
        learning_rates=rates[:count],
        losses=np.asarray(smoothed),
        raw_losses=np.asarray(raw),
    )
