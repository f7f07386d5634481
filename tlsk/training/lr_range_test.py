"""The learning-rate range test on a network (Smith, 2015; fastai's ``lr_find``).

Train for a few batches while the learning rate grows exponentially from
``start`` to ``stop``, record the loss of each batch, stop when it diverges,
and put every weight back. The loss falls while the rate is useful and
explodes once it is too high; the suggested rate is the one at the lowest
(smoothed) loss divided by 10, fastai's "minimum / 10" rule: comfortably on
the falling side of the curve.

:func:`range_test` runs it on a network as it is; the Keras classifiers run
it for ``learning_rate="auto"`` as a phase starts, and
:func:`tlsk.training.lr_finder.lr_find` runs it for one phase of a
classifier's fit. :func:`tlsk.evaluation.plots.plot_lr_find` draws the curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tlsk.training.optimizers import make_optimizer

__all__ = ["LRFinderResult", "range_test"]

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
        # Drawing is evaluation's job, a later stage: imported on use only.
        from tlsk.evaluation.plots import plot_lr_find

        return plot_lr_find(self, path)


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
