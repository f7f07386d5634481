"""tlsk: transfer learning with a pretrained VGG16, as scikit-learn estimators.

The bottleneck path: :class:`VGG16FeatureExtractor` turns images into vectors
(cached in HDF5 when ``cache=`` names a file) for any scikit-learn classifier.
Fine-tuning: :class:`KerasFineTuneClassifier`. The from-scratch baseline:
:class:`SmallCNNClassifier`. On a Dask cluster: :func:`featurize`.
"""

from tlsk._version import __version__
from tlsk.backbone import WeightsMismatchError, WeightsUnavailableError
from tlsk.cache import CacheError, FeatureCache
from tlsk.datasets import (
    check_image_folder,
    find_bad_images,
    load_image_folder,
    split_image_folder,
)
from tlsk.distributed import featurize, local_cluster
from tlsk.features import VGG16FeatureExtractor
from tlsk.finetune import KerasFineTuneClassifier
from tlsk.images import ImageError, ImageRangeWarning
from tlsk.scratch import SmallCNNClassifier

__all__ = [
    "CacheError",
    "FeatureCache",
    "ImageError",
    "ImageRangeWarning",
    "KerasFineTuneClassifier",
    "SmallCNNClassifier",
    "VGG16FeatureExtractor",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "__version__",
    "check_image_folder",
    "featurize",
    "find_bad_images",
    "load_image_folder",
    "local_cluster",
    "split_image_folder",
]
