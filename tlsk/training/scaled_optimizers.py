"""Keras optimizers with per-variable learning-rate scales (imports Keras).

Registered with Keras's serialisation (package "tlsk"), so that a model
compiled with one loads back, ``safe_mode`` included, once this module is
imported.
"""

from __future__ import annotations

import keras

__all__ = ["PLAIN", "SCALED", "ScaledAdam", "ScaledRMSprop", "ScaledSGD"]


class _ScaledRates:
    """Mixin: each variable updates with the phase's rate times its scale."""

    def __init__(self, *args, rate_scales=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.rate_scales = dict(rate_scales or {})

    def build(self, variables):
        super().build(variables)
        # Looked up by the optimizer's own index of the variable: the variable
        # update_step receives may be the backend's, without the Keras path.
        self._scale_by_index = [
            float(self.rate_scales.get(variable.path, 1.0)) for variable in variables
        ]

    def update_step(self, gradient, variable, learning_rate):
        scale = self._scale_by_index[self._get_variable_index(variable)]
        if scale != 1.0:
            learning_rate = keras.ops.multiply(learning_rate, scale)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "rate_scales": self.rate_scales}


@keras.saving.register_keras_serializable(package="tlsk")
class ScaledAdam(_ScaledRates, keras.optimizers.Adam):
    """Adam with per-variable learning-rate scales."""


@keras.saving.register_keras_serializable(package="tlsk")
class ScaledSGD(_ScaledRates, keras.optimizers.SGD):
    """SGD with per-variable learning-rate scales."""


@keras.saving.register_keras_serializable(package="tlsk")
class ScaledRMSprop(_ScaledRates, keras.optimizers.RMSprop):
    """RMSprop with per-variable learning-rate scales."""


PLAIN = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}
SCALED = {"adam": ScaledAdam, "sgd": ScaledSGD, "rmsprop": ScaledRMSprop}
