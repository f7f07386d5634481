"""Bottleneck features of a pretrained network, as scikit-learn transformers.

:class:`ImageFeatureExtractor` turns images (file paths or arrays) into one
float32 vector per image with a truncated network of the registry
(:mod:`tlsk.backbones`) or of a ``.keras`` file, optionally through an HDF5
feature cache so that model selection on the vectors never recomputes them.
:class:`VGG16FeatureExtractor` is its VGG16 case, with the parameters,
defaults and cache namespaces tlsk had before there were other backbones.
"""

from __future__ import annotations

import copy
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from tlsk._extraction import (
    batches,
    check_cache_path,
    content_keys_with_memo,
    progress,
    warn_undecodable,
)
from tlsk._sklearn_compat import Interval, StrOptions, _fit_context
from tlsk.backbone import (
    LAYERS,
    MIN_INPUT_SIZE,
    POOLINGS,
    BackboneConfig,
    get_backbone,
    resolve_backbone,
    resolve_weights,
)
from tlsk.backbones import get_spec, is_model_file
from tlsk.cache import FeatureCache, FileKeyMemo
from tlsk.images import (
    DECODE_POLICY,
    DEFAULT_MAX_PIXELS,
    INTERPOLATIONS,
    ImageError,
    decode_threads,
    image_inputs,
    resize_image,
)
from tlsk.precision import PRECISIONS, resolve_precision
from tlsk.preprocessing import PREPROCESSINGS, fingerprint_tag, preprocess

__all__ = ["ImageFeatureExtractor", "VGG16FeatureExtractor"]

_ON_ERROR = ("raise", "nan")


class ImageFeatureExtractor(TransformerMixin, BaseEstimator):
    """Bottleneck features of a pretrained network, as a scikit-learn transformer.

    Each image is decoded to RGB, resized to ``input_size`` x ``input_size``,
    preprocessed as the network expects, run through the network up to
    ``layer`` and pooled into one vector.

    Parameters
    ----------
    backbone : str or path, default="vgg16"
        A network of the registry, by name: ``"vgg16"``, ``"vgg19"``,
        ``"resnet50"``, ``"resnet50v2"``, ``"inception_v3"``,
        ``"xception"``, ``"densenet121"``, ``"mobilenet_v3_large"``,
        ``"efficientnet_b0"``, ``"efficientnet_v2_s"``, ``"convnext_tiny"``
        (see :func:`tlsk.list_backbones` for their sizes, cut points and
        costs). Or the path of a ``.keras`` model file, your own network,
        loaded with ``safe_mode=True``; then ``preprocessing`` must be given,
        and ``layer`` is any of its layer names (default: its last layer).
    weights : "imagenet", None or path, default="imagenet"
        ``"imagenet"``: the network's ImageNet weights (no top) from Keras's
        cache folder, downloaded when missing and verified; for a ``.keras``
        file, the weights saved in it. ``None``: a random initialisation that
        is the same in every process. A path: weights of that network without
        its top, ``.weights.h5`` or legacy ``.h5``; a file of another network
        is refused.
    layer : str or None, default=None
        Where the network is cut: one of its cut points
        (``list_backbones()``), e.g. ``"conv4_block6_out"`` for ResNet50.
        None: the last one, the output of the network without its top.
    pooling : {"avg", "max", "flatten"}, default="avg"
        How the layer's feature map becomes a vector. ``"flatten"`` keeps every
        position (7 x 7 x 512 = 25,088 values for VGG16 at 224 px).
    input_size : int or None, default=None
        Side of the square the images are resized to; None: the network's
        native size (224, 299 for InceptionV3 and Xception, 384 for
        EfficientNetV2-S). At least the network's minimum (32; 75 for
        InceptionV3, 71 for Xception).
    interpolation : str, default="bilinear"
        Pillow resampling filter for resizing: "nearest", "bilinear",
        "bicubic", "lanczos", "box" or "hamming". Images are squashed to the
        square (aspect ratio not kept), as ``keras.utils.load_img`` does.
    preprocessing : {"caffe", "tf", "torch", "none"} or None, default=None
        How pixels are prepared for the network (:mod:`tlsk.preprocessing`);
        None: the network's own convention. Required for a ``.keras`` file.
    batch_size : int, default=32
        Images per network call.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        ``"bfloat16"`` computes in mixed bfloat16 (float32 pooling and
        output); ``"auto"`` picks it where the hardware computes bfloat16
        natively (CPUs with AMX or AVX512-BF16, recent GPUs), and float32
        elsewhere. Resolved at ``fit`` into ``precision_``; part of the cache
        fingerprint. See :mod:`tlsk.precision`.
    cache : str, path or None, default=None
        HDF5 feature cache file. Vectors are looked up by the SHA-256 of the
        image content within the fingerprint of this configuration; only
        misses are computed, and each finished batch is stored at once.
        Several backbones (or configurations) share one file, each in its
        own namespace.
    on_error : {"raise", "nan"}, default="raise"
        A file that cannot be decoded raises :class:`tlsk.images.ImageError`
        naming it (after storing the batches already done), or, with
        ``"nan"``, gets a row of NaN and a
        :class:`~tlsk.images.UndecodableImageWarning` naming it. A
        transformer cannot drop rows without breaking ``y``; to skip bad
        files, filter them first with :func:`tlsk.load_image_folder`.
    max_image_pixels : int, default=89_478_485
        Images with more pixels are refused before decoding (decompression
        bomb guard). Pillow's global limit is never changed.
    n_jobs : int or None, default=None
        Threads that read, decode and resize images while the network runs;
        ``None`` means ``min(4, os.cpu_count())``, -1 all CPUs.
    verbose : int, default=0
        ``1`` or more shows a progress bar on stderr while features are
        computed.

    Attributes
    ----------
    fingerprint_ : dict
        Everything that decides the output (network, weights SHA-256, layer,
        pooling, input size, resizing, preprocessing, precision); the cache
        namespace.
    n_features_out_ : int
        Length of each feature vector.
    precision_ : str
        The precision computed in, ``"float32"`` or ``"bfloat16"``.
    layer_ : str
        The layer the network is cut at.
    input_size_ : int
        The side images are resized to.
    preprocessing_ : str
        The preprocessing mode applied.
    cache_path_ : str or None
        The absolute path of the feature cache.
    network_ : str
        The network's name for people: its Keras builder ("ResNet50"), or
        the ``.keras`` file's name.

    See Also
    --------
    VGG16FeatureExtractor : the VGG16 case, with tlsk's original parameters.
    tlsk.list_backbones : the registered networks.
    tlsk.cache.FeatureCache : the HDF5 feature store behind ``cache``.

    Examples
    --------
    >>> import numpy as np
    >>> from tlsk import ImageFeatureExtractor
    >>> images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3))
    >>> extractor = ImageFeatureExtractor(
    ...     backbone="resnet50", weights=None, input_size=32, precision="float32"
    ... )
    >>> extractor.fit_transform(images).shape
    (4, 2048)
    >>> extractor.layer_, extractor.preprocessing_
    ('conv5_block3_out', 'caffe')
    """

    _parameter_constraints: dict = {
        "backbone": [str, os.PathLike],
        "weights": [StrOptions({"imagenet"}), None, str, os.PathLike],
        "layer": [None, str],
        "pooling": [StrOptions(set(POOLINGS))],
        "input_size": [None, Interval(Integral, 1, None, closed="left")],
        "interpolation": [StrOptions(set(INTERPOLATIONS))],
        "preprocessing": [None, StrOptions(set(PREPROCESSINGS))],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "precision": [StrOptions(set(PRECISIONS))],
        "cache": [None, str, os.PathLike],
        "on_error": [StrOptions(set(_ON_ERROR))],
        "max_image_pixels": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [
            None,
            Interval(Integral, 1, None, closed="left"),
            Interval(Integral, None, -1, closed="right"),
        ],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        backbone="vgg16",
        weights="imagenet",
        layer=None,
        pooling="avg",
        input_size=None,
        interpolation="bilinear",
        preprocessing=None,
        batch_size=32,
        precision="auto",
        cache=None,
        on_error="raise",
        max_image_pixels=DEFAULT_MAX_PIXELS,
        n_jobs=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.pooling = pooling
        self.input_size = input_size
        self.interpolation = interpolation
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.precision = precision
        self.cache = cache
        self.on_error = on_error
        self.max_image_pixels = max_image_pixels
        self.n_jobs = n_jobs
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Validate the parameters and build the network; learns nothing from X.

        Parameters
        ----------
        X : images, optional
            Checked for a supported kind when given, not read.
        y : ignored

        Returns
        -------
        self : ImageFeatureExtractor
        """
        if X is not None:
            image_inputs(X, warn_range=False)  # transform warns, once
        # Resolved once, so that worker processes in other folders agree.
        self.cache_path_ = None if self.cache is None else check_cache_path(self.cache)
        self.precision_ = resolve_precision(self.precision)
        network = resolve_backbone(self.backbone)
        self.preprocessing_ = self._resolved_preprocessing(network)
        self._backbone_config = BackboneConfig(
            weights=resolve_weights(self.weights),
            layer=self._resolved_layer(network),
            pooling=self.pooling,
            input_size=self._resolved_input_size(network),
            precision=self.precision_,
            backbone=network,
        )
        backbone = get_backbone(self._backbone_config)
        self.fingerprint_ = {
            **backbone.fingerprint,
            "interpolation": self.interpolation,
            "decode": DECODE_POLICY,
            "preprocessing": fingerprint_tag(self.preprocessing_),
        }
        self.network_ = (
            os.path.basename(network)
            if is_model_file(network)
            else get_spec(network).builder
        )
        self.layer_ = backbone.fingerprint["layer"]
        self.input_size_ = backbone.fingerprint["input_size"]
        self.n_features_out_ = backbone.output_dim
        return self

    def transform(self, X):
        """Return the feature vectors of ``X``, float32 ``(n_images, n_features_out_)``.

        Parameters
        ----------
        X : sequence of paths, array (N, H, W, 3) or (N, H, W), or list of arrays
            The images, in the order of the rows returned.

        Returns
        -------
        features : ndarray of shape (n_images, n_features_out_), float32
        """
        check_is_fitted(self)
        backbone = self._current_backbone()
        inputs = image_inputs(X)
        features = np.zeros((len(inputs), self.n_features_out_), dtype=np.float32)
        if not inputs:
            return features
        with ThreadPoolExecutor(decode_threads(self.n_jobs), "tlsk-decode") as pool:
            if self.cache_path_ is None:
                todo = range(len(inputs))
                failures = self._compute(backbone, inputs, todo, features, pool)
            else:
                failures = self._compute_with_cache(backbone, inputs, features, pool)
        if failures:
            features[list(failures)] = np.nan
            warn_undecodable(failures, len(inputs), stacklevel=2)
        return features

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``<network>_<layer>_<pooling><i>``."""
        check_is_fitted(self)
        prefix = f"{self._network_label()}_{self.layer_}_{self.pooling}"
        return np.asarray(
            [f"{prefix}{i}" for i in range(self.n_features_out_)], dtype=object
        )

    def with_cache_file(self, path):
        """A copy of this fitted extractor that reads and writes another cache.

        The copy keeps this one's fitted state, fingerprint included (so its
        vectors are filed in the same namespace), and ``n_jobs`` and the
        other parameters; only ``cache`` and ``cache_path_`` change. Used by
        :func:`tlsk.featurize` to point workers at private shard files.
        """
        check_is_fitted(self)
        other = copy.copy(self)
        other.cache = path
        other.cache_path_ = None if path is None else check_cache_path(path)
        return other

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Images, not a 2-D table: (N, H, W[, 3]) arrays or lists of paths.
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- fit: parameters against the network ---------------------------------

    def _resolved_layer(self, network):
        if is_model_file(network):
            return self.layer  # checked against the file's layers when built
        spec = get_spec(network)
        if self.layer is None:
            return spec.default_layer
        if self.layer not in spec.cut_points:
            raise ValueError(
                f"layer must be a cut point of {spec.name}, one of "
                f"{list(spec.cut_points)}; received {self.layer!r}"
            )
        return self.layer

    def _resolved_input_size(self, network):
        if is_model_file(network):
            return self.input_size  # checked against the file's input when built
        return get_spec(network).input_size(self.input_size)

    def _resolved_preprocessing(self, network):
        if self.preprocessing is not None:
            return self.preprocessing
        if is_model_file(network):
            raise ValueError(
                f"preprocessing must be given for a '.keras' backbone ({network!r}): "
                f"one of {list(PREPROCESSINGS)}, as the network was trained; "
                "received None"
            )
        return get_spec(network).preprocessing

    def _network_label(self):
        network = self._backbone_config.backbone
        if is_model_file(network):
            return os.path.basename(network)[: -len(".keras")]
        return network

    # -- transform -----------------------------------------------------------

    def _current_backbone(self):
        backbone = get_backbone(self._backbone_config)
        changed = {
            key
            for key, value in backbone.fingerprint.items()
            if self.fingerprint_.get(key) != value
        }
        if changed:
            config = self._backbone_config
            what = (
                f"model file {config.backbone!r}"
                if "model_sha256" in changed
                else f"weights file {config.weights!r}"
            )
            raise ValueError(
                f"the {what} of this extractor changed since it was fitted; fit again"
            )
        return backbone

    def _features(self, backbone, images):
        return backbone.predict(preprocess(np.stack(images), self.preprocessing_))

    def _compute(self, backbone, inputs, todo, features, pool):
        """Fill ``features[i]`` for each index in ``todo``; return the failures."""
        failures = {}
        for indices, _, images in self._decoded_batches(inputs, todo, pool, failures):
            features[indices] = self._features(backbone, images)
        return failures

    def _compute_with_cache(self, backbone, inputs, features, pool):
        cache = FeatureCache(self.cache_path_)
        keys, failures = content_keys_with_memo(
            inputs, pool, decode_threads(self.n_jobs), FileKeyMemo(cache)
        )
        if failures and self.on_error == "raise":
            raise next(iter(failures.values()))
        readable = [i for i in range(len(inputs)) if i not in failures]
        found = np.zeros(len(inputs), dtype=bool)
        found[readable], features[readable] = cache.lookup(
            self.fingerprint_, [keys[i] for i in readable], self.n_features_out_
        )
        # The same content twice is computed once and copied to its twins.
        first_of_key, twins = {}, []
        for index in np.flatnonzero(~found):
            if index in failures:
                continue
            first = first_of_key.setdefault(keys[index], index)
            if first != index:
                twins.append((index, first))
        if first_of_key:
            with cache.writer(self.fingerprint_, self.n_features_out_) as writer:
                decoded = self._decoded_batches(
                    inputs, list(first_of_key.values()), pool, failures
                )
                for indices, batch_keys, images in decoded:
                    # Under the lock, so that another process sharing the cache
                    # never computes what this one is computing, and vice versa.
                    with writer.claim():
                        self._fill_through_cache(
                            backbone, writer, features, indices, batch_keys, images
                        )
        for index, first in twins:
            features[index] = features[first]
            if first in failures:
                failures[index] = failures[first]
        return failures

    def _fill_through_cache(self, backbone, writer, features, indices, keys, images):
        """Take what the cache holds now; compute, store and fill in the rest."""
        hit, stored = writer.lookup(keys)
        features[indices] = stored
        miss = np.flatnonzero(~hit)
        if miss.size:
            computed = self._features(backbone, [images[i] for i in miss])
            features[[indices[i] for i in miss]] = computed
            writer.append([keys[i] for i in miss], computed)

    def _decoded_batches(self, inputs, todo, pool, failures):
        """Yield ``(indices, keys, images)`` batches of decoded, resized images.

        Files that cannot be decoded raise, or go into ``failures`` with
        ``on_error="nan"``. Progress is shown per image.
        """
        with progress(len(todo), self.verbose, f"{self.network_} features") as bar:
            for batch in batches(self._decoded(inputs, todo, pool), self.batch_size):
                indices, keys, images = [], [], []
                for index, result in batch:
                    if isinstance(result, ImageError):
                        if self.on_error == "raise":
                            raise result
                        failures[index] = result
                    else:
                        indices.append(index)
                        keys.append(result[0])
                        images.append(result[1])
                if images:
                    yield indices, keys, images
                bar.update(len(batch))

    def _decoded(self, inputs, todo, pool):
        """Yield ``(index, (key, image) or ImageError)`` in order, decoding ahead."""
        # What changes the output comes from the fitted fingerprint, never from
        # parameters set since: vectors must match the namespace they go into.
        size = self.fingerprint_["input_size"]
        interpolation = self.fingerprint_["interpolation"]
        max_pixels = self.max_image_pixels

        def load(index):
            try:
                key, image = inputs[index].load(max_pixels)
            except ImageError as err:
                return index, err
            return index, (key, resize_image(image, size, interpolation))

        lookahead = 2 * self.batch_size
        pending = deque()
        for index in todo:
            pending.append(pool.submit(load, index))
            if len(pending) >= lookahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class VGG16FeatureExtractor(ImageFeatureExtractor):
    """Bottleneck features of a pretrained VGG16, as a scikit-learn transformer.

    The VGG16 case of :class:`ImageFeatureExtractor`, with the parameters
    and defaults it has always had: its vectors, fingerprints and cache
    namespaces are those of every earlier tlsk, so existing caches keep
    hitting. Each image is decoded to RGB, resized to ``input_size`` x
    ``input_size``, preprocessed as VGG16 expects (BGR, ImageNet mean
    subtracted), run through VGG16 up to ``layer`` and pooled into one vector.

    Parameters
    ----------
    weights : "imagenet", None or path, default="imagenet"
        ``"imagenet"``: Keras's pretrained weights, from Keras's cache folder,
        downloaded when missing and verified. ``None``: a random
        initialisation that is the same in every process. A path: a VGG16
        (no top) weights file, ``.weights.h5`` or legacy ``.h5``.
    layer : str, default="block5_pool"
        Where VGG16 is cut: any conv or pooling layer of blocks 3 to 5, e.g.
        ``"block4_pool"``, ``"block5_conv3"``.
    pooling : {"avg", "max", "flatten"}, default="avg"
        How the layer's feature map becomes a vector. ``"flatten"`` keeps every
        position (7 x 7 x 512 = 25,088 values at 224 px and block5_pool).
    input_size : int, default=224
        Side of the square the images are resized to; at least 32.
    interpolation, batch_size, precision, cache, on_error, max_image_pixels, \
n_jobs, verbose
        As for :class:`ImageFeatureExtractor`.

    Attributes
    ----------
    fingerprint_ : dict
        Everything that decides the output (weights SHA-256, layer, pooling,
        input size, resizing, preprocessing, precision); the cache namespace.
    n_features_out_ : int
        Length of each feature vector.
    precision_ : str
        The precision computed in, ``"float32"`` or ``"bfloat16"``.
    layer_, input_size_, preprocessing_, cache_path_, network_
        As for :class:`ImageFeatureExtractor`.

    See Also
    --------
    ImageFeatureExtractor : the same for any registered network or .keras file.
    tlsk.cache.FeatureCache : the HDF5 feature store behind ``cache``.

    Examples
    --------
    >>> import numpy as np
    >>> from tlsk import VGG16FeatureExtractor
    >>> images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3))
    >>> extractor = VGG16FeatureExtractor(weights=None, input_size=32)
    >>> extractor.fit_transform(images).shape
    (4, 512)
    >>> extractor.get_feature_names_out()[:2]
    array(['vgg16_block5_pool_avg0', 'vgg16_block5_pool_avg1'], dtype=object)
    """

    # Not parameters of this class: the general extractor's, fixed here.
    backbone = "vgg16"
    preprocessing = None

    _parameter_constraints: dict = {
        **{
            key: value
            for key, value in ImageFeatureExtractor._parameter_constraints.items()
            if key not in ("backbone", "preprocessing")
        },
        "layer": [StrOptions(set(LAYERS))],
        "input_size": [Interval(Integral, MIN_INPUT_SIZE, None, closed="left")],
    }

    def __init__(
        self,
        weights="imagenet",
        layer="block5_pool",
        pooling="avg",
        input_size=224,
        interpolation="bilinear",
        batch_size=32,
        precision="auto",
        cache=None,
        on_error="raise",
        max_image_pixels=DEFAULT_MAX_PIXELS,
        n_jobs=None,
        verbose=0,
    ):
        self.weights = weights
        self.layer = layer
        self.pooling = pooling
        self.input_size = input_size
        self.interpolation = interpolation
        self.batch_size = batch_size
        self.precision = precision
        self.cache = cache
        self.on_error = on_error
        self.max_image_pixels = max_image_pixels
        self.n_jobs = n_jobs
        self.verbose = verbose
