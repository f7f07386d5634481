"""Keras optimizers for the training phases: by name, with a schedule, and with
per-layer learning rates.

- Schedules (:data:`SCHEDULES`) are Keras's own ``CosineDecay`` with warm-up,
  shaped per phase over its number of steps:

  - ``"constant"``: the rate throughout;
  - ``"cosine"``: a linear warm-up from 0 over the first ``COSINE_WARMUP``
    (10%) of the steps, then cosine decay to 0;
  - ``"one_cycle"``: Smith's one-cycle policy with fastai's defaults for
    ``fit_one_cycle``: up from ``rate / 25`` over the first ``ONE_CYCLE_WARMUP``
    (25%) of the steps, then cosine annealing down to ``rate / 1e5``. (Keras's
    warm-up is linear, fastai's cosine; the momentum is not cycled.)

- Discriminative learning rates: ``rate_scales`` maps a variable's ``path``
  to a factor of the phase's rate. The optimizer is Keras's own class with its
  ``update_step`` given the scaled rate, so every optimizer of
  :data:`OPTIMIZERS` keeps its update rule and serialises with its scales
  (:mod:`tlsk.training.scaled_optimizers`).

Keras is imported when an optimizer is made, not with this module.
"""

from __future__ import annotations

__all__ = ["OPTIMIZERS", "SCHEDULES", "learning_rate_schedule", "make_optimizer"]

OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "one_cycle")
COSINE_WARMUP = 0.1
ONE_CYCLE_WARMUP = 0.25
ONE_CYCLE_START_DIVISOR = 25.0
ONE_CYCLE_END_DIVISOR = 1e5


def learning_rate_schedule(schedule, learning_rate, steps):
    """The learning rate of ``schedule`` peaking at ``learning_rate``, over ``steps``.

    Returns a float for ``"constant"``, else a Keras ``LearningRateSchedule``.
    """
    import keras

    if schedule == "constant":
        return float(learning_rate)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; received {schedule!r}")
    steps = max(int(steps), 2)
    if schedule == "cosine":
        warmup = max(1, round(COSINE_WARMUP * steps))
        start, end = 0.0, 0.0
    else:
        warmup = max(1, round(ONE_CYCLE_WARMUP * steps))
        start = learning_rate / ONE_CYCLE_START_DIVISOR
        end = learning_rate / ONE_CYCLE_END_DIVISOR
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=start,
        decay_steps=max(1, steps - warmup),
        alpha=end / learning_rate,
        warmup_target=float(learning_rate),
        warmup_steps=warmup,
    )


def make_optimizer(
    name, learning_rate, momentum=0.0, *, schedule="constant", steps=1, rate_scales=None
):
    """A fresh Keras optimizer by name (one of ``OPTIMIZERS``).

    ``schedule`` and ``steps`` shape the rate (see :func:`learning_rate_schedule`);
    ``rate_scales`` (``{variable path: factor}``) gives some variables a
    fraction of it.
    """
    from tlsk.training.scaled_optimizers import PLAIN, SCALED

    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}; received {name!r}")
    rate = learning_rate_schedule(schedule, learning_rate, steps)
    options = {} if name == "adam" else {"momentum": momentum}
    if rate_scales:
        return SCALED[name](rate, rate_scales=rate_scales, **options)
    return PLAIN[name](rate, **options)
