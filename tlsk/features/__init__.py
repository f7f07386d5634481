"""Stage 3, features: the scikit-learn transformers that turn images into vectors
through a network and the cache, and the same on a Dask cluster (``featurize``)."""

from tlsk.features.extractor import ImageFeatureExtractor, VGG16FeatureExtractor

__all__ = ["ImageFeatureExtractor", "VGG16FeatureExtractor"]
