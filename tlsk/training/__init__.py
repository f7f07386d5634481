"""Stage 4, training: the Keras classifiers (fine-tuning, a small CNN from scratch) on
one shared fit, phases, batches, optimizers, the learning-rate finder; zero-shot."""
