"""``weights=None``: a network's random weights, the same in every process."""

import numpy as np

__all__ = ["RANDOM_INIT_SEED", "RANDOM_WEIGHTS_ID", "initialise_randomly"]

# Seed of the weights=None initialisation; part of the fingerprint.
RANDOM_INIT_SEED = 0
# What stands for the weights' SHA-256 in the fingerprint of random weights.
RANDOM_WEIGHTS_ID = f"random-glorot-uniform-seed-{RANDOM_INIT_SEED}"


def initialise_randomly(model):
    """Glorot-uniform kernels from a fixed seed; the rest as Keras built it.

    Keras's own initialisers draw from a global seed, so two processes would
    build different "random" networks; this one is the same everywhere. Only
    kernels (variables of rank 2 or more) are drawn: biases, normalisation
    statistics and scales are constants in every Keras builder.
    """
    rng = np.random.default_rng(RANDOM_INIT_SEED)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if len(shape) < 2:
            continue
        receptive = int(np.prod(shape[:-2]))
        fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        variable.assign(rng.uniform(-limit, limit, size=shape).astype(np.float32))
