"""tlsk: transfer learning with pretrained Keras networks, as scikit-learn estimators.

The bottleneck path: :class:`ImageFeatureExtractor` (any network of
:func:`list_backbones`, or your own ``.keras`` file) and its VGG16 case
:class:`VGG16FeatureExtractor` turn images into vectors (cached in HDF5 when
``cache=`` names a file) for any scikit-learn classifier.
Fine-tuning: :class:`KerasFineTuneClassifier`. The from-scratch baseline:
:class:`SmallCNNClassifier`; the learning-rate range test for either:
:func:`lr_find`. On a Dask cluster: :func:`featurize`.
"""

from tlsk._version import __version__
from tlsk.backbones import list_backbones
from tlsk.cache import CacheError, FeatureCache
from tlsk.datasets import (
    check_image_folder,
    find_bad_images,
    load_image_folder,
    split_image_folder,
)
from tlsk.distributed import featurize, local_cluster
from tlsk.features import ImageFeatureExtractor, VGG16FeatureExtractor
from tlsk.finetune import KerasFineTuneClassifier
from tlsk.images import ImageError, ImageRangeWarning, UndecodableImageWarning
from tlsk.lr_finder import lr_find
from tlsk.scratch import SmallCNNClassifier
from tlsk.weights import WeightsMismatchError, WeightsUnavailableError

__all__ = [
    "CacheError",
    "FeatureCache",
    "ImageError",
    "ImageFeatureExtractor",
    "ImageRangeWarning",
    "KerasFineTuneClassifier",
    "SmallCNNClassifier",
    "UndecodableImageWarning",
    "VGG16FeatureExtractor",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "__version__",
    "check_image_folder",
    "featurize",
    "find_bad_images",
    "list_backbones",
    "load_image_folder",
    "local_cluster",
    "lr_find",
    "split_image_folder",
]
