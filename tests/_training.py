"""Training settings the Keras classifier tests share.

Fast and deterministic: 32 px, small batches, no augmentation, no
validation hold-out, no early stopping, a fixed seed.
"""

PLAIN = {
    "input_size": 32,
    "batch_size": 8,
    "augmentation": False,
    "validation_fraction": 0,
    "early_stopping": False,
    "random_state": 0,
}
