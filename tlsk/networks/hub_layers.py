"""tlsk's Keras layers for KerasHub networks (imports Keras).

Registered with Keras's serialisation (package "tlsk"), so that a fine-tuned
network holding one loads back, ``safe_mode`` included, once this module is
imported.
"""

from __future__ import annotations

import keras

__all__ = ["TOKEN_POOLINGS", "TokenPooling"]

TOKEN_POOLINGS = ("cls", "mean", "cls+mean")


@keras.saving.register_keras_serializable(package="tlsk")
class TokenPooling(keras.layers.Layer):
    """One vector from a token sequence ``(n, tokens, width)``, in float32.

    ``"cls"``: the first token (the class token); ``"mean"``: the mean of the
    patch tokens, the ``prefix_tokens`` before them (class, register or
    storage tokens) left out; ``"cls+mean"``: both, concatenated (DINOv2's
    linear-evaluation protocol). Float32 whatever the network computes in: a
    mean of hundreds of bfloat16 tokens would round away what tells images
    apart.

    >>> import numpy as np
    >>> tokens = np.arange(12, dtype="float32").reshape(1, 3, 4)
    >>> np.asarray(TokenPooling("mean", 1)(tokens))
    array([[6., 7., 8., 9.]], dtype=float32)
    """

    def __init__(self, mode, prefix_tokens, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if mode not in TOKEN_POOLINGS:
            raise ValueError(
                f"mode must be one of {list(TOKEN_POOLINGS)}; received {mode!r}"
            )
        if isinstance(prefix_tokens, bool) or int(prefix_tokens) < 0:
            raise ValueError(
                f"prefix_tokens must be a count >= 0; received {prefix_tokens!r}"
            )
        self.mode = mode
        self.prefix_tokens = int(prefix_tokens)

    def call(self, tokens):
        ops = keras.ops
        tokens = ops.cast(tokens, "float32")
        first = tokens[:, 0, :]
        mean = ops.mean(tokens[:, self.prefix_tokens :, :], axis=1)
        if self.mode == "cls":
            return first
        if self.mode == "mean":
            return mean
        return ops.concatenate([first, mean], axis=-1)

    def compute_output_shape(self, shape):
        return (shape[0], shape[-1] * (2 if self.mode == "cls+mean" else 1))

    def get_config(self):
        return {
            **super().get_config(),
            "mode": self.mode,
            "prefix_tokens": self.prefix_tokens,
        }
