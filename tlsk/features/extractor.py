"""Bottleneck features of a pretrained network, as scikit-learn transformers.

:class:`ImageFeatureExtractor` turns images (file paths or arrays) into one
float32 vector per image with a truncated network of the registry
(:mod:`tlsk.networks.registry`) or of a ``.keras`` file, optionally through an HDF5
feature cache so that model selection on the vectors never recomputes them.
:class:`VGG16FeatureExtractor` is its VGG16 case, with the parameters,
defaults and cache namespaces tlsk had before there were other backbones.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import re
import reprlib
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from tlsk._util.keyword_only import keyword_only
from tlsk._util.limits import (
    MAX_BATCH_SIZE,
    MAX_IMAGE_PIXELS,
    MAX_INPUT_SIZE,
    MAX_N_JOBS,
)
from tlsk._util.sklearn_compat import (
    Interval,
    StrOptions,
    _fit_context,
    image_input_tags,
)
from tlsk.cache import FeatureCache, FileKeyMemo
from tlsk.features.extraction import (
    ContentGroups,
    ViewMean,
    batches,
    check_cache_path,
    lookups,
    progress,
    warn_undecodable,
)
from tlsk.images.decode import (
    DECODE_POLICY,
    DEFAULT_MAX_PIXELS,
    INTERPOLATIONS,
    ImageError,
    decode_threads,
    decoded,
    image_inputs,
    resize_image,
)
from tlsk.images.keys import content_keys
from tlsk.images.tta import TTA_MODES, apply_view, tta_views
from tlsk.networks.backbone import (
    LAYERS,
    MIN_INPUT_SIZE,
    POOLINGS,
    BackboneConfig,
    get_backbone,
    resolve_backbone,
    resolve_weights,
)
from tlsk.networks.hub import (
    PRESET_WEIGHTS,
    check_pooling,
    hub_layer,
    is_preset_folder,
    read_preset,
)
from tlsk.networks.openvino import ENGINES, get_openvino_backbone, resolve_engine
from tlsk.networks.precision import (
    COMPUTE_PRECISIONS,
    EXTRACTION_PRECISIONS,
    resolve_precision,
)
from tlsk.networks.preprocessing import (
    HUB_PREPROCESSING,
    NETWORK_PREPROCESSINGS,
    PREPROCESSINGS,
    fingerprint_tag,
    preprocess,
)
from tlsk.networks.registry import (
    BACKBONES,
    HUB_POOLINGS,
    HubSpec,
    get_spec,
    is_model_file,
)

__all__ = ["ImageFeatureExtractor", "VGG16FeatureExtractor"]

_ON_ERROR = ("raise", "nan")
# int8 calibration: NNCF's statistics need a few dozen images to be stable.
MIN_CALIBRATION_IMAGES = 32


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
    pooling : str or None, default=None
        How the layer's feature map becomes a vector: ``"avg"``, ``"max"`` or
        ``"flatten"`` (every position: 7 x 7 x 512 = 25,088 values for VGG16
        at 224 px); for a KerasHub network ``"cls"``, ``"mean"``,
        ``"cls+mean"``, or ``"embedding"`` (CLIP, SigLIP). None: the
        network's own, ``"avg"`` for the ``keras.applications`` networks.
    input_size : int or None, default=None
        Side of the square the images are resized to; None: the network's
        native size (224, 299 for InceptionV3 and Xception, 384 for
        EfficientNetV2-S). At least the network's minimum (32; 75 for
        InceptionV3, 71 for Xception), at most 2048
        (:data:`tlsk._util.limits.MAX_INPUT_SIZE`).
    interpolation : str or None, default=None
        Pillow resampling filter for resizing: "nearest", "bilinear",
        "bicubic", "lanczos", "box" or "hamming". Images are squashed to the
        square (aspect ratio not kept), as ``keras.utils.load_img`` does.
        None: the network's own, "bilinear" for the ``keras.applications``
        networks; a KerasHub network resizes with its image converter.
    preprocessing : {"caffe", "tf", "torch", "none"} or None, default=None
        How pixels are prepared for the network (:mod:`tlsk.networks.preprocessing`);
        None: the network's own convention. Required for a ``.keras`` file.
    batch_size : int, default=32
        Images per network call, at most 4096.
    precision : {"auto", "float32", "bfloat16", "int8"}, default="auto"
        ``"bfloat16"`` computes in mixed bfloat16 (float32 pooling and
        output); ``"auto"`` picks it where the hardware computes bfloat16
        natively (CPUs with AMX or AVX512-BF16, recent GPUs), and float32
        elsewhere. ``"int8"``: post-training quantization (NNCF) learned by
        ``fit`` from the images given to it, run by the OpenVINO engine.
        Resolved at ``fit`` into ``precision_``; part of the cache
        fingerprint. See :mod:`tlsk.networks.precision`.
    cache : str, path or None, default=None
        HDF5 feature cache file. Vectors are looked up by the SHA-256 of the
        image content within the fingerprint of this configuration; only
        misses are computed, and each finished batch is stored at once.
        Several backbones (or configurations) share one file, each in its
        own namespace.
    on_error : {"raise", "nan"}, default="raise"
        A file that cannot be decoded raises :class:`tlsk.images.decode.ImageError`
        naming it (after storing the batches already done), or, with
        ``"nan"``, gets a row of NaN and a
        :class:`~tlsk.images.decode.UndecodableImageWarning` naming it. A
        transformer cannot drop rows without breaking ``y``; to skip bad
        files, filter them first with :func:`tlsk.load_image_folder`.
    max_image_pixels : int, default=89_478_485
        Images with more pixels are refused before decoding (decompression
        bomb guard); at most 2**32, never None. Pillow's global limit is
        never changed.
    n_jobs : int or None, default=None
        Threads that read, decode and resize images while the network runs;
        ``None`` means ``min(4, os.cpu_count())``, -1 all CPUs; at most 1024.
    verbose : int, default=0
        ``1`` or more shows a progress bar on stderr while features are
        computed.
    tta : {None, "flip", "ten_crop"}, default=None
        Test-time augmentation (:mod:`tlsk.images.tta`): each vector is the mean of
        the vectors of the image's views, the image and its mirror
        (``"flip"``, 2 views) or also four corner crops and their mirrors
        (``"ten_crop"``, 10 views); same shape as without. Each view's
        vectors are cached in a namespace of their own (the image as it is:
        the namespace of ``tta=None``), so a second transform of the same
        images computes nothing. Fixed at ``fit``; :meth:`with_tta` gives a
        fitted copy with another mode.
    engine : {"auto", "keras", "openvino"}, default="auto"
        Who runs the network. ``"openvino"`` converts it to an OpenVINO
        model in memory and compiles it once per process (the optional
        extra ``tlsk[openvino]``). ``"auto"``: OpenVINO for int8, Keras
        otherwise (OpenVINO measured no faster in float32 or bfloat16; see
        :func:`tlsk.networks.openvino.resolve_engine`). Resolved at ``fit`` into
        ``engine_``; with Keras the fingerprint is that of earlier versions.
    calibration_size : int, default=300
        With ``precision="int8"``: at most this many images of ``fit(X)``
        calibrate the quantization (at least 32 are needed).
    random_state : int, RandomState or None, default=0
        Which images of ``fit(X)`` calibrate int8, when X has more than
        ``calibration_size``: the same X and seed give the same model.

    Attributes
    ----------
    fingerprint_ : dict
        Everything that decides the output (network, weights SHA-256, layer,
        pooling, input size, resizing, preprocessing, precision, and
        ``"tta"`` when there is test-time augmentation); without ``tta``,
        the cache namespace. With it, nothing is stored under it: the
        views' vectors are, under :meth:`view_fingerprints`.
        With the OpenVINO engine it also holds ``"engine"``, the OpenVINO
        version and, for int8, ``"quantization_sha256"`` (of the
        calibration images' keys, NNCF's version and options).
    engine_ : str
        The engine that computes the vectors, ``"keras"`` or ``"openvino"``.
    calibration_keys_ : list of str
        With ``precision="int8"``: the content keys (SHA-256, hex) of the
        images the quantization was calibrated on, in order. The quantized
        model itself is stored once beside Keras's cache
        (:func:`tlsk.networks.openvino.quantized_model_dir`), so a pickle stays small.
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
        "weights": [StrOptions(set(PRESET_WEIGHTS)), None, str, os.PathLike],
        "layer": [None, str, Interval(Integral, 1, None, closed="left")],
        "pooling": [None, StrOptions({*POOLINGS, *HUB_POOLINGS})],
        "input_size": [None, Interval(Integral, 1, MAX_INPUT_SIZE, closed="both")],
        "interpolation": [None, StrOptions(set(INTERPOLATIONS))],
        "preprocessing": [None, StrOptions(set(PREPROCESSINGS))],
        "batch_size": [Interval(Integral, 1, MAX_BATCH_SIZE, closed="both")],
        "precision": [StrOptions(set(EXTRACTION_PRECISIONS))],
        "cache": [None, str, os.PathLike],
        "on_error": [StrOptions(set(_ON_ERROR))],
        "max_image_pixels": [Interval(Integral, 1, MAX_IMAGE_PIXELS, closed="both")],
        "n_jobs": [
            None,
            Interval(Integral, 1, MAX_N_JOBS, closed="both"),
            Interval(Integral, None, -1, closed="right"),
        ],
        "verbose": ["verbose"],
        "tta": [None, StrOptions(set(TTA_MODES))],
        "engine": [StrOptions(set(ENGINES))],
        "calibration_size": [
            Interval(Integral, MIN_CALIBRATION_IMAGES, None, closed="left")
        ],
        "random_state": ["random_state"],
    }

    @keyword_only
    def __init__(
        self,
        *,
        backbone="vgg16",
        weights="imagenet",
        layer=None,
        pooling=None,
        input_size=None,
        interpolation=None,
        preprocessing=None,
        batch_size=32,
        precision="auto",
        cache=None,
        on_error="raise",
        max_image_pixels=DEFAULT_MAX_PIXELS,
        n_jobs=None,
        verbose=0,
        tta=None,
        engine="auto",
        calibration_size=300,
        random_state=0,
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
        self.tta = tta
        self.engine = engine
        self.calibration_size = calibration_size
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Validate the parameters and build the network; with int8, quantize it.

        Parameters
        ----------
        X : images, optional
            Checked for a supported kind when given, and read only with
            ``precision="int8"``, which requires it: up to
            ``calibration_size`` of its images calibrate the quantization.
        y : ignored

        Returns
        -------
        self : ImageFeatureExtractor
        """
        if X is not None:
            image_inputs(X, warn_range=False)  # transform warns, once
        # Resolved once, so that worker processes in other folders agree.
        self.cache_path_ = None if self.cache is None else check_cache_path(self.cache)
        self.precision_ = resolve_precision(
            self.precision, allowed=EXTRACTION_PRECISIONS
        )
        self.engine_ = resolve_engine(self.engine, self.precision_)
        if self.precision_ == "int8" and X is None:
            raise ValueError(
                "precision='int8' learns its quantization from the images given "
                f"to fit: call fit(X) with at least {MIN_CALIBRATION_IMAGES} "
                "images; received X=None"
            )
        network = resolve_backbone(self.backbone)
        self.preprocessing_ = self._resolved_preprocessing(network)
        layer = self._resolved_layer(network)
        self._backbone_config = BackboneConfig(
            weights=resolve_weights(self.weights),
            layer=layer,
            pooling=self._resolved_pooling(network, layer),
            input_size=self._resolved_input_size(network),
            # OpenVINO converts the float32 network and lowers it itself.
            precision="float32" if self.engine_ == "openvino" else self.precision_,
            backbone=network,
        )
        self._quantization = None
        if self.precision_ == "int8":
            self._quantization = self._calibrate(X)
        backbone = self._engine_backbone()
        converter = get_backbone(self._backbone_config).converter
        self.fingerprint_ = _with_tta_mode(
            {
                **backbone.fingerprint,
                # A KerasHub network's images are resized and prepared as its
                # preset's image converter says, every value of it in the tag.
                "interpolation": self.interpolation or "bilinear"
                if converter is None
                else converter.interpolation,
                "decode": DECODE_POLICY,
                "preprocessing": fingerprint_tag(self.preprocessing_)
                if converter is None
                else converter.tag,
            },
            self.tta,
        )
        self.network_ = (
            os.path.basename(network)
            if is_model_file(network) or is_preset_folder(network)
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
            The images, in the order of the rows returned. Paths may come as
            one column (an (N, 1) array, a one-column DataFrame); a list may
            hold Pillow images (see :func:`tlsk.images.decode.image_inputs`).

        Returns
        -------
        features : ndarray of shape (n_images, n_features_out_), float32
        """
        check_is_fitted(self)
        views = self._fitted_views()
        backbone = self._current_backbone()
        inputs = image_inputs(X)
        out = ViewMean(len(inputs), self.n_features_out_, len(views))
        if not inputs:
            return out.mean()
        with ThreadPoolExecutor(decode_threads(self.n_jobs), "tlsk-decode") as pool:
            if self.cache_path_ is None:
                todo = range(len(inputs))
                failures = self._compute(backbone, inputs, todo, views, out, pool)
            else:
                failures = self._compute_with_cache(backbone, inputs, views, out, pool)
        features = out.mean()
        if failures:
            features[list(failures)] = np.nan
            warn_undecodable(failures, len(inputs), stacklevel=2)
        return features

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``<network>_<layer>_<pooling><i>``."""
        check_is_fitted(self)
        pooling = self.fingerprint_["pooling"]
        prefix = f"{self._network_label()}_{self.layer_}_{pooling}"
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

    def with_tta(self, tta):
        """A copy of this fitted extractor that averages over the views of ``tta``.

        The copy keeps this one's fitted state (network, precision, cache);
        only ``tta`` and the mode in ``fingerprint_`` change, so that a
        trained pipeline can predict with test-time augmentation without a
        new fit (``tlsk predict --tta``). Its views' vectors share the cache
        namespaces of any other mode.

        Parameters
        ----------
        tta : {None, "flip", "ten_crop"}

        Returns
        -------
        ImageFeatureExtractor
        """
        check_is_fitted(self)
        tta_views(tta)  # the error that names a bad mode
        other = copy.copy(self)
        other.tta = tta
        other.fingerprint_ = _with_tta_mode(self.fingerprint_, tta)
        return other

    def view_fingerprints(self):
        """The cache namespace of each view of ``tta``: ``{view: fingerprint}``.

        In the order of :func:`tlsk.images.tta.tta_views`. The image as it is
        (``"original"``) has the fingerprint of ``tta=None``, so plain
        vectors and a TTA transform's first view are the same cache
        entries; every other view adds ``"view": <name>`` to it.

        Examples
        --------
        >>> from tlsk import VGG16FeatureExtractor
        >>> extractor = VGG16FeatureExtractor(weights=None, input_size=32).fit()
        >>> plain = extractor.fingerprint_
        >>> views = extractor.with_tta("flip").view_fingerprints()
        >>> list(views), views["original"] == plain
        (['original', 'mirror'], True)
        >>> views["mirror"] == {**plain, "view": "mirror"}
        True
        """
        check_is_fitted(self)
        plain = _with_tta_mode(self.fingerprint_, None)
        return {
            view: plain if view == "original" else {**plain, "view": view}
            for view in tta_views(self.fingerprint_.get("tta"))
        }

    def __setstate__(self, state):
        # Extractors pickled before tta existed averaged over nothing; before
        # engines, Keras ran them.
        defaults = {"tta": None, "engine": "auto", "calibration_size": 300}
        defaults["random_state"] = 0
        if "fingerprint_" in state:
            defaults.update(engine_="keras", _quantization=None)
        super().__setstate__({**defaults, **state})

    def __sklearn_tags__(self):
        tags = image_input_tags(super().__sklearn_tags__())
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- a fitted extractor read from a file ----------------------------------

    def _local_paths(self):
        """``{parameter: path}``: the files of this machine this extractor names.

        In its parameters and in what fit resolved from them; a shared model
        file must name none (:mod:`tlsk.persistence.model_files`).
        """
        config = getattr(self, "_backbone_config", None)
        not_files = {"cache": (), "weights": PRESET_WEIGHTS, "backbone": BACKBONES}
        named = [
            ("cache", self.cache),
            ("cache", getattr(self, "cache_path_", None)),
            ("weights", self.weights),
            ("weights", getattr(config, "weights", None)),
            ("backbone", self.backbone),
            ("backbone", getattr(config, "backbone", None)),
        ]
        return {
            name: value
            for name, value in named
            if value is not None
            and not (isinstance(value, str) and value in not_files[name])
        }

    def _check_state(self):
        """Raise ValueError unless the fitted attributes are as fit leaves them.

        For an extractor read from a model file (:func:`tlsk.load_model`):
        what transform builds, reads and allocates from must be what fit
        could have written. Reads no file; an unfitted extractor has nothing
        to check.
        """
        if not hasattr(self, "fingerprint_"):
            return
        config = getattr(self, "_backbone_config", None)
        if not isinstance(config, BackboneConfig):
            raise ValueError(f"_backbone_config is a {type(config).__name__}")
        config.check()
        fingerprint, size = self.fingerprint_, getattr(self, "input_size_", None)
        quantization = getattr(self, "_quantization", None)
        checks = {
            "input_size_": isinstance(size, Integral)
            and 1 <= size <= MAX_INPUT_SIZE
            and config.input_size in (None, size),
            "fingerprint_": isinstance(fingerprint, dict)
            and fingerprint.get("input_size") == size
            and fingerprint.get("interpolation") in INTERPOLATIONS
            and fingerprint.get("tta") in (None, *TTA_MODES),
            "n_features_out_": isinstance(self.n_features_out_, Integral),
            "precision_": getattr(self, "precision_", None)
            in (*COMPUTE_PRECISIONS, "int8"),
            "engine_": getattr(self, "engine_", None) in ENGINES[1:],
            "preprocessing_": getattr(self, "preprocessing_", None)
            in NETWORK_PREPROCESSINGS,
            "cache_path_": isinstance(getattr(self, "cache_path_", ""), str | None),
            "_quantization": quantization is None
            or isinstance(quantization, dict)
            and re.fullmatch(
                "[0-9a-f]{64}", str(quantization.get("quantization_sha256"))
            ),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            value = reprlib.repr(getattr(self, bad[0], None))
            raise ValueError(f"{bad[0]} is {value}, which fit never leaves")

    # -- fit: parameters against the network ---------------------------------

    def _resolved_layer(self, network):
        if is_model_file(network):
            return self.layer  # checked against the file's layers when built
        if is_preset_folder(network) or isinstance(get_spec(network), HubSpec):
            n_blocks = _hub_blocks(network)
            return f"block{hub_layer(network, self.layer, n_blocks)}"
        spec = get_spec(network)
        if self.layer is None:
            return spec.default_layer
        if self.layer not in spec.cut_points:
            raise ValueError(
                f"layer must be a cut point of {spec.name}, one of "
                f"{list(spec.cut_points)}; received {self.layer!r}"
            )
        return self.layer

    def _resolved_pooling(self, network, layer):
        """The pooling: the network's own default for None; one it offers."""
        if is_preset_folder(network):
            family, label = read_preset(network).family, os.path.basename(network)
        elif not is_model_file(network) and isinstance(get_spec(network), HubSpec):
            spec = get_spec(network)
            family, label = spec.family, spec.name
        else:
            pooling = "avg" if self.pooling is None else self.pooling
            if pooling not in POOLINGS:
                raise ValueError(
                    f"pooling must be one of {list(POOLINGS)} for "
                    f"{self._network_name(network)}; received {pooling!r}"
                )
            return pooling
        last = layer == f"block{_hub_blocks(network)}"
        return check_pooling(self.pooling, family, label, last)

    def _network_name(self, network):
        if is_model_file(network):
            return os.path.basename(network)
        return network

    def _resolved_input_size(self, network):
        if is_model_file(network) or is_preset_folder(network):
            return self.input_size  # checked against the network when built
        return get_spec(network).input_size(self.input_size)

    def _resolved_preprocessing(self, network):
        hub = is_preset_folder(network) or (
            not is_model_file(network) and isinstance(get_spec(network), HubSpec)
        )
        if hub:
            if self.preprocessing is not None or self.interpolation is not None:
                raise ValueError(
                    "a KerasHub network's images are resized and prepared as its "
                    "preset's image converter does: preprocessing and "
                    "interpolation must be None for "
                    f"{self._network_name(network)}; received preprocessing="
                    f"{self.preprocessing!r}, interpolation={self.interpolation!r}"
                )
            return HUB_PREPROCESSING
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
        if is_preset_folder(network):
            return os.path.basename(network.rstrip(os.sep))
        return network

    # -- transform -----------------------------------------------------------

    def _engine_backbone(self):
        """The backbone run by ``engine_``, built (and compiled) once per process."""
        backbone = get_backbone(self._backbone_config)
        if self.engine_ == "keras":
            return backbone
        return get_openvino_backbone(backbone, self.precision_, self._quantization)

    def _calibrate(self, X):
        """Quantize the network on images of X; return its quantization."""
        from tlsk.networks.openvino import quantize_backbone

        inputs = image_inputs(X, warn_range=False)
        if len(inputs) < MIN_CALIBRATION_IMAGES:
            raise ValueError(
                f"precision='int8' needs at least {MIN_CALIBRATION_IMAGES} images "
                f"in fit(X) to calibrate the quantization; received {len(inputs)}"
            )
        rng = check_random_state(self.random_state)
        n = min(self.calibration_size, len(inputs))
        chosen = np.sort(rng.choice(len(inputs), n, replace=False))
        backbone = get_backbone(self._backbone_config)
        resize = self._resizer(
            backbone.fingerprint["input_size"], self.interpolation or "bilinear"
        )

        loaded, max_pixels = [], self.max_image_pixels
        with ThreadPoolExecutor(decode_threads(self.n_jobs), "tlsk-decode") as pool:
            for _, result in decoded(inputs, chosen, resize, max_pixels, pool):
                if isinstance(result, ImageError):
                    raise result
                loaded.append(result)
        keys = [key.hex() if isinstance(key, bytes) else str(key) for key, _ in loaded]
        images = self._prepared(np.stack([image for _, image in loaded]))
        self.calibration_keys_ = keys
        return quantize_backbone(
            backbone, np.asarray(images, np.float32), keys, verbose=bool(self.verbose)
        )

    def _current_backbone(self):
        backbone = self._engine_backbone()
        changed = {
            key
            for key, value in backbone.fingerprint.items()
            if self.fingerprint_.get(key) != value
        }
        if changed:
            config = self._backbone_config
            if changed & {"openvino", "nncf"}:
                raise ValueError(
                    "the OpenVINO or NNCF version changed since this extractor "
                    "was fitted; fit again"
                )
            if "embedding" in changed:
                raise ValueError(
                    f"tlsk now computes {config.backbone}'s pooled vectors as Keras "
                    "does (its head LayerNormalization after the pooling), not as "
                    "when this extractor was fitted; fit again"
                )
            if "model_sha256" in changed:
                what = f"model file {config.backbone!r}"
            elif "preset_sha256" in changed or config.weights in (None, "imagenet"):
                what = f"network {config.backbone!r}"
            else:
                what = f"weights file {config.weights!r}"
            raise ValueError(
                f"the {what} of this extractor changed since it was fitted; fit again"
            )
        if backbone.output_dim != self.n_features_out_:  # sizes every output
            raise ValueError(
                f"n_features_out_ is {self.n_features_out_!r} and the network gives "
                f"vectors of {backbone.output_dim}; fit again"
            )
        return backbone

    def _fitted_views(self):
        """The views of the fitted mode; a ValueError if ``tta`` changed since."""
        fitted = self.fingerprint_.get("tta")
        if self.tta != fitted:
            raise ValueError(
                f"tta was set to {self.tta!r} after this extractor was fitted "
                f"with tta={fitted!r}; fit again, or use with_tta({self.tta!r})"
            )
        return tta_views(fitted)

    def _features(self, backbone, images, view="original"):
        batch = np.stack(images)
        # The original view is the untouched batch: a tta=None fingerprint
        # equals the plain one, and existing caches rely on it.
        if view != "original":
            batch = apply_view(batch, view)
        return backbone.predict(self._prepared(batch))

    def _converter(self):
        """The fitted KerasHub network's image converter; None for the others."""
        return get_backbone(self._backbone_config).converter

    def _resizer(self, size, interpolation):
        """``resize(image)``: a decoded image as the network takes it, ``size`` px.

        A KerasHub network's images are resized by its preset's image
        converter; the others' with the Pillow filter ``interpolation``.
        """
        converter = self._converter()
        if converter is not None:
            return functools.partial(converter.resize, size=size)
        return functools.partial(resize_image, size=size, interpolation=interpolation)

    def _prepared(self, batch):
        """A batch of resized images as the fitted network's input, float32."""
        converter = self._converter()
        if converter is not None:
            return converter.apply(batch)
        return preprocess(batch, self.preprocessing_)

    def _compute(self, backbone, inputs, todo, views, out, pool):
        """Add each view's vectors of each index in ``todo``; return the failures."""
        failures = {}
        for indices, _, images in self._decoded_batches(inputs, todo, pool, failures):
            for view in views:
                out.add(indices, self._features(backbone, images, view))
        return failures

    def _compute_with_cache(self, backbone, inputs, views, out, pool):
        cache = FeatureCache(self.cache_path_)
        keys, failures = content_keys(
            inputs, pool, decode_threads(self.n_jobs), FileKeyMemo(cache)
        )
        if failures and self.on_error == "raise":
            raise next(iter(failures.values()))
        groups = ContentGroups(keys, failures)
        unique, unique_keys = groups.first_indices(), groups.unique_keys()
        fingerprints = self.view_fingerprints()
        missing = {}  # view -> indices its namespace lacks
        for view in views:
            dim = self.n_features_out_
            for start, found, vectors in lookups(
                cache, fingerprints[view], unique_keys, dim
            ):
                rows = unique[start : start + len(found)]
                out.add(rows[found], vectors[found])
                if not found.all():
                    missing.setdefault(view, set()).update(rows[~found].tolist())
        if missing:
            todo = sorted(set().union(*missing.values()))
            self._compute_missing(
                backbone, cache, inputs, todo, missing, out, pool, failures
            )
        for index, first in groups.copies():
            out.copy_row(index, first)
            if first in failures:
                failures[index] = failures[first]
        return failures

    def _compute_missing(
        self, backbone, cache, inputs, todo, missing, out, pool, failures
    ):
        """Decode ``todo`` once; compute and store what each view's namespace lacks."""
        fingerprints = self.view_fingerprints()
        with contextlib.ExitStack() as stack:
            writers = {
                view: stack.enter_context(
                    cache.writer(fingerprints[view], self.n_features_out_)
                )
                for view in missing
            }
            decoded = self._decoded_batches(inputs, todo, pool, failures)
            for indices, batch_keys, images in decoded:
                for view, writer in writers.items():
                    lacking = [j for j, i in enumerate(indices) if i in missing[view]]
                    if not lacking:
                        continue
                    # Under the lock, so that another process sharing the cache
                    # never computes what this one is computing, and vice versa.
                    with writer.claim():
                        self._fill_through_cache(
                            backbone,
                            writer,
                            view,
                            out,
                            [indices[j] for j in lacking],
                            [batch_keys[j] for j in lacking],
                            [images[j] for j in lacking],
                        )

    def _fill_through_cache(self, backbone, writer, view, out, indices, keys, images):
        """Take what the cache holds now; compute, store and add in the rest."""
        hit, stored = writer.lookup(keys)
        out.add([indices[i] for i in np.flatnonzero(hit)], stored[hit])
        miss = np.flatnonzero(~hit)
        if miss.size:
            computed = self._features(backbone, [images[i] for i in miss], view)
            out.add([indices[i] for i in miss], computed)
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
        """``(index, (key, image) or ImageError)`` in order, decoded on ``pool``."""
        # What changes the output comes from the fitted fingerprint, never from
        # parameters set since: vectors must match the namespace they go into.
        resize = self._resizer(
            self.fingerprint_["input_size"], self.fingerprint_["interpolation"]
        )
        return decoded(
            inputs, todo, resize, self.max_image_pixels, pool, 2 * self.batch_size
        )


def _hub_blocks(network):
    """How many blocks a KerasHub network (a registry name or a preset) has."""
    if is_preset_folder(network):
        return read_preset(network).n_blocks
    return get_spec(network).n_blocks


def _with_tta_mode(fingerprint, tta):
    """``fingerprint`` saying the mode ``tta``; without the key when None.

    Without TTA the fingerprint is exactly that of earlier tlsk versions, so
    their caches keep serving it.
    """
    plain = {key: value for key, value in fingerprint.items() if key != "tta"}
    return plain if tta is None else {**plain, "tta": tta}


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
        Side of the square the images are resized to; from 32 to 2048.
    interpolation, batch_size, precision, cache, on_error, max_image_pixels, \
n_jobs, verbose, tta, engine, calibration_size, random_state
        As for :class:`ImageFeatureExtractor`; with ``tta=None`` the vectors
        and namespaces are those of earlier tlsk versions.

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
        "input_size": [
            Interval(Integral, MIN_INPUT_SIZE, MAX_INPUT_SIZE, closed="both")
        ],
    }

    @keyword_only
    def __init__(
        self,
        *,
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
        tta=None,
        engine="auto",
        calibration_size=300,
        random_state=0,
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
        self.tta = tta
        self.engine = engine
        self.calibration_size = calibration_size
        self.random_state = random_state
