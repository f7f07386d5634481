"""Stage 3, features: the scikit-learn transformers that turn images into vectors
through a network and the cache, and the same on a Dask cluster (``featurize``)."""

from tlsk.features.extractor import ImageFeatureExtractor, VGG16FeatureExtractor

__all__ = ["ImageFeatureExtractor", "VGG16FeatureExtractor"]


def __getattr__(name):
    # The names this package's 0.1.0 module had, from their homes today.
    from tlsk._compat import moved_name

    return moved_name(__name__, name)
