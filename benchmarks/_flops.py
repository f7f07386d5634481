"""Floating-point operations of a Keras model, counted by TensorFlow's profiler.

What the registry's ``gflops`` figures come from (``backbone_costs.py``) and
what the extraction sections divide by to give GFLOP/s: the model is traced
for one image, its variables frozen into constants, and TensorFlow's profiler
adds up the float operations of every op in the graph (two per multiply-add
of a convolution or matrix product; element-wise ops count one per element
where the profiler knows their shape).
"""

from __future__ import annotations

__all__ = ["model_gflops"]


def model_gflops(model, size):
    """GFLOP for one ``size`` x ``size`` image through ``model`` (inference)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(
        tf.TensorSpec([1, size, size, 3], tf.float32)
    )
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=frozen.graph, options=options)
    return profile.total_float_ops / 1e9
