"""tlsk: transfer learning with pretrained Keras networks, as scikit-learn estimators.

The bottleneck path: :class:`ImageFeatureExtractor` (any network of
:func:`list_backbones`, or your own ``.keras`` file) and its VGG16 case
:class:`VGG16FeatureExtractor` turn images into vectors (cached in HDF5 when
``cache=`` names a file) for any scikit-learn classifier.
Fine-tuning: :class:`KerasFineTuneClassifier`. From class names alone, with
a CLIP or SigLIP network: :class:`ZeroShotImageClassifier`. The
from-scratch baseline: :class:`SmallCNNClassifier`; the learning-rate range
test for either:
:func:`lr_find`. On a Dask cluster: :func:`featurize`. Model files with
their metadata: :func:`save_model`, :func:`load_model` and
:func:`load_metadata` (``.skops`` to share, ``.joblib`` for your own). What
a process remembers (built networks, digests and content keys of files):
:func:`clear_caches`.
"""

from tlsk import _compat
from tlsk._util.memo import clear_caches
from tlsk._version import __version__
from tlsk.cache import CacheError, FeatureCache
from tlsk.evaluation.explain import explain
from tlsk.evaluation.near_duplicates import find_near_duplicates
from tlsk.features.distributed import featurize, local_cluster
from tlsk.features.extractor import ImageFeatureExtractor, VGG16FeatureExtractor
from tlsk.images.decode import ImageError, ImageRangeWarning, UndecodableImageWarning
from tlsk.images.folders import (
    check_image_folder,
    find_bad_images,
    load_image_folder,
    split_image_folder,
)
from tlsk.networks.registry import list_backbones
from tlsk.networks.weights import WeightsMismatchError, WeightsUnavailableError
from tlsk.persistence.model_files import (
    ModelFileError,
    UntrustedTypesError,
    load_metadata,
    load_model,
    save_model,
)
from tlsk.training.finetune import KerasFineTuneClassifier
from tlsk.training.lr_finder import lr_find
from tlsk.training.scratch import SmallCNNClassifier
from tlsk.training.zero_shot import ZeroShotImageClassifier

_compat.install()

__all__ = [
    "CacheError",
    "FeatureCache",
    "ImageError",
    "ImageFeatureExtractor",
    "ImageRangeWarning",
    "KerasFineTuneClassifier",
    "ModelFileError",
    "SmallCNNClassifier",
    "UndecodableImageWarning",
    "UntrustedTypesError",
    "VGG16FeatureExtractor",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "ZeroShotImageClassifier",
    "__version__",
    "check_image_folder",
    "clear_caches",
    "explain",
    "featurize",
    "find_bad_images",
    "find_near_duplicates",
    "list_backbones",
    "load_image_folder",
    "load_metadata",
    "load_model",
    "local_cluster",
    "lr_find",
    "save_model",
    "split_image_folder",
]
