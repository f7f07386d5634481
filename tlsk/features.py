"""VGG16 bottleneck features as a scikit-learn transformer.

:class:`VGG16FeatureExtractor` turns images (file paths or arrays) into one
float32 vector per image with a truncated VGG16, optionally through an HDF5
feature cache so that model selection on the vectors never recomputes them.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from tlsk.backbone import (
    LAYERS,
    POOLINGS,
    BackboneConfig,
    get_backbone,
    resolve_weights,
)
from tlsk.cache import FeatureCache
from tlsk.images import (
    DECODE_POLICY,
    DEFAULT_MAX_PIXELS,
    INTERPOLATIONS,
    ImageError,
    image_inputs,
    preprocess_vgg16,
    resize_image,
)
from tlsk.precision import PRECISIONS, resolve_precision

__all__ = ["VGG16FeatureExtractor"]

PREPROCESSING = "vgg16-caffe-bgr-mean"
_ON_ERROR = ("raise", "nan")
_NAMED = 5  # bad files named in a warning; the rest are counted
# Contents this large on average are hashed in threads (see _content_keys).
_THREADED_HASH_BYTES = 64 * 1024
_SIZE_SAMPLE = 16


class VGG16FeatureExtractor(TransformerMixin, BaseEstimator):
    """Bottleneck features of a pretrained VGG16, as a scikit-learn transformer.

    Each image is decoded to RGB, resized to ``input_size`` x ``input_size``,
    preprocessed as VGG16 expects (BGR, ImageNet mean subtracted), run through
    VGG16 up to ``layer`` and pooled into one vector.

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
    interpolation : str, default="bilinear"
        Pillow resampling filter for resizing: "nearest", "bilinear",
        "bicubic", "lanczos", "box" or "hamming". Images are squashed to the
        square (aspect ratio not kept), as ``keras.utils.load_img`` does.
    batch_size : int, default=32
        Images per VGG16 call.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        ``"bfloat16"`` computes VGG16 in mixed bfloat16 (float32 pooling and
        output); ``"auto"`` picks it where the hardware computes bfloat16
        natively (CPUs with AMX or AVX512-BF16, recent GPUs), where it is
        the fast choice (features agree with float32 ones to a cosine
        similarity above 0.999), and float32 elsewhere. Resolved at ``fit`` into
        ``precision_``; part of the cache fingerprint. See
        :mod:`tlsk.precision`.
    cache : str, path or None, default=None
        HDF5 feature cache file. Vectors are looked up by the SHA-256 of the
        image content within the fingerprint of this configuration; only
        misses are computed, and each finished batch is stored at once.
    on_error : {"raise", "nan"}, default="raise"
        A file that cannot be decoded raises :class:`tlsk.images.ImageError`
        naming it (after storing the batches already done), or, with
        ``"nan"``, gets a row of NaN and a warning naming it. A transformer
        cannot drop rows without breaking ``y``; to skip bad files, filter them
        first with :func:`tlsk.load_image_folder`.
    max_image_pixels : int, default=89_478_485
        Images with more pixels are refused before decoding (decompression
        bomb guard). Pillow's global limit is never changed.
    n_jobs : int or None, default=None
        Threads that read, decode and resize images while VGG16 runs;
        ``None`` means ``min(4, os.cpu_count())``.
    verbose : int, default=0
        ``1`` or more shows a progress bar on stderr while features are
        computed.

    Attributes
    ----------
    fingerprint_ : dict
        Everything that decides the output (weights SHA-256, layer, pooling,
        input size, resizing, preprocessing, precision); the cache namespace.
    n_features_out_ : int
        Length of each feature vector.
    precision_ : str
        The precision computed in, ``"float32"`` or ``"bfloat16"``.

    See Also
    --------
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

    _parameter_constraints: dict = {
        "weights": [StrOptions({"imagenet"}), None, str, os.PathLike],
        "layer": [StrOptions(set(LAYERS))],
        "pooling": [StrOptions(set(POOLINGS))],
        "input_size": [Interval(Integral, 32, None, closed="left")],
        "interpolation": [StrOptions(set(INTERPOLATIONS))],
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

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Validate the parameters and build the backbone; learns nothing from X.

        Parameters
        ----------
        X : images, optional
            Checked for a supported kind when given, not read.
        y : ignored

        Returns
        -------
        self : VGG16FeatureExtractor
        """
        if X is not None:
            image_inputs(X, warn_range=False)  # transform warns, once
        # Resolved once, so that worker processes in other folders agree.
        self._cache_path = None if self.cache is None else _check_cache(self.cache)
        self.precision_ = resolve_precision(self.precision)
        self._backbone_config = BackboneConfig(
            weights=resolve_weights(self.weights),
            layer=self.layer,
            pooling=self.pooling,
            input_size=int(self.input_size),
            precision=self.precision_,
        )
        backbone = get_backbone(self._backbone_config)
        self.fingerprint_ = {
            **backbone.fingerprint,
            "interpolation": self.interpolation,
            "decode": DECODE_POLICY,
            "preprocessing": PREPROCESSING,
        }
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
        with ThreadPoolExecutor(self._n_threads(), "tlsk-decode") as pool:
            if self._cache_path is None:
                todo = range(len(inputs))
                failures = self._compute(backbone, inputs, todo, features, pool)
            else:
                failures = self._compute_with_cache(backbone, inputs, features, pool)
        if failures:
            features[list(failures)] = np.nan
            warn_undecodable(failures, len(inputs), stacklevel=3)
        return features

    def get_feature_names_out(self, input_features=None):
        """Names of the output columns: ``vgg16_<layer>_<pooling><i>``."""
        check_is_fitted(self)
        prefix = f"vgg16_{self.layer}_{self.pooling}"
        return np.asarray(
            [f"{prefix}{i}" for i in range(self.n_features_out_)], dtype=object
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Images, not a 2-D table: (N, H, W[, 3]) arrays or lists of paths.
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- internals ---------------------------------------------------------

    def _current_backbone(self):
        backbone = get_backbone(self._backbone_config)
        expected = self.fingerprint_["weights_sha256"]
        if backbone.fingerprint["weights_sha256"] != expected:
            raise ValueError(
                f"the weights file {self._backbone_config.weights!r} changed since "
                f"this extractor was fitted (SHA-256 {expected[:12]}... then, "
                f"{backbone.fingerprint['weights_sha256'][:12]}... now); fit again"
            )
        return backbone

    def _n_threads(self):
        if self.n_jobs is None:
            return min(4, os.cpu_count() or 1)
        if self.n_jobs > 0:
            return self.n_jobs
        return max(1, (os.cpu_count() or 1) + 1 + self.n_jobs)  # -1: all CPUs

    def _compute(self, backbone, inputs, todo, features, pool):
        """Fill ``features[i]`` for each index in ``todo``; return the failures."""
        failures = {}
        for indices, _, images in self._decoded_batches(inputs, todo, pool, failures):
            features[indices] = backbone.predict(preprocess_vgg16(np.stack(images)))
        return failures

    def _compute_with_cache(self, backbone, inputs, features, pool):
        cache = FeatureCache(self._cache_path)
        keys, failures = _content_keys(inputs, pool, self._n_threads())
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
                batches = self._decoded_batches(
                    inputs, list(first_of_key.values()), pool, failures
                )
                for indices, batch_keys, images in batches:
                    # Under the lock, so that another process sharing the cache
                    # never computes what this one is computing, and vice versa.
                    with writer.claim():
                        _fill_through_cache(
                            backbone, writer, features, indices, batch_keys, images
                        )
        for index, first in twins:
            features[index] = features[first]
            if first in failures:
                failures[index] = failures[first]
        return failures

    def _decoded_batches(self, inputs, todo, pool, failures):
        """Yield ``(indices, keys, images)`` batches of decoded, resized images.

        Files that cannot be decoded raise, or go into ``failures`` with
        ``on_error="nan"``. Progress is shown per image.
        """
        with _progress(len(todo), self.verbose) as bar:
            for batch in _batches(self._decoded(inputs, todo, pool), self.batch_size):
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


def warn_undecodable(failures, n_images, stacklevel):
    """One warning for the images (``{index: ImageError}``) whose rows are NaN."""
    errors = [failures[i] for i in sorted(failures)]
    named = "; ".join(str(err) for err in errors[:_NAMED])
    more = len(errors) - _NAMED
    warnings.warn(
        f"{len(errors)} of {n_images} images could not be decoded; their rows "
        f"are NaN: {named}" + (f"; and {more} more" if more > 0 else ""),
        UserWarning,
        stacklevel=stacklevel,
    )


def _fill_through_cache(backbone, writer, features, indices, keys, images):
    """Take what the cache holds now; compute, store and fill in the rest."""
    hit, stored = writer.lookup(keys)
    features[indices] = stored
    miss = np.flatnonzero(~hit)
    if miss.size:
        computed = backbone.predict(
            preprocess_vgg16(np.stack([images[i] for i in miss]))
        )
        features[[indices[i] for i in miss]] = computed
        writer.append([keys[i] for i in miss], computed)


def _content_keys(inputs, pool, n_threads):
    """``(keys, failures)``: the SHA-256 key of each input, None where unreadable.

    hashlib releases the GIL, so threads help for large contents. For small
    files (typical JPEGs) the per-file Python work dominates, and threads
    fighting over the GIL are slower than one (2,000 files of 16 kB: 23,000
    keys/s in one thread, 14,000 in two), so those are hashed here. A few
    large tasks rather than one per image: per-task overhead would dominate.
    """

    def key_or_error(item):
        try:
            return item.content_key()
        except ImageError as err:
            return err

    # Files hashed before in this process and unchanged since need no thread.
    results = [item.known_key() for item in inputs]
    unknown = [i for i, key in enumerate(results) if key is None]
    sample = [inputs[i].size_hint() for i in unknown[:_SIZE_SAMPLE]]
    if not sample or sum(sample) < _THREADED_HASH_BYTES * len(sample):
        for i in unknown:
            results[i] = key_or_error(inputs[i])
        unknown = []
    step = max(1, -(-len(unknown) // (4 * n_threads)))
    chunks = [unknown[start : start + step] for start in range(0, len(unknown), step)]
    keyed = pool.map(lambda chunk: [key_or_error(inputs[i]) for i in chunk], chunks)
    for chunk, chunk_results in zip(chunks, keyed, strict=True):
        for index, result in zip(chunk, chunk_results, strict=True):
            results[index] = result
    failures = {i: r for i, r in enumerate(results) if isinstance(r, ImageError)}
    keys = [None if i in failures else r for i, r in enumerate(results)]
    return keys, failures


def _check_cache(cache):
    """The cache file's absolute path; a ValueError naming ``cache`` if unusable."""
    path = os.path.abspath(os.fspath(cache))
    folder = os.path.dirname(path)
    if os.path.isdir(path) or not os.path.isdir(folder):
        raise ValueError(
            "cache must be the path of an HDF5 file in an existing folder; "
            f"received {os.fspath(cache)!r}"
            + (", which is a folder" if os.path.isdir(path) else "")
        )
    return path


def _batches(items, size):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _progress(total, verbose):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc="VGG16 features",
        unit="img",
        disable=not verbose or total == 0,
        file=sys.stderr,
    )
