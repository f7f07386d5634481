"""The truncated VGG16 that turns images into feature vectors.

A backbone is described by a :class:`BackboneConfig` (weights, cut layer,
pooling, input size, precision). :func:`get_backbone` builds the Keras model
for a configuration once per process and keeps it, so estimators never pickle
a Keras model: they keep the configuration and ask for the backbone again.

Weights
-------
``"imagenet"``
    Keras's VGG16 ImageNet weights without the fully connected top
    (``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, 58,889,256 bytes).
    The file is looked up in Keras's cache folder (``$KERAS_HOME/models`` or
    ``~/.keras/models``, where ``keras.applications.VGG16`` keeps it too) and
    downloaded there when missing; its SHA-256 is verified before use.
    Offline and not cached, :class:`WeightsUnavailableError` says at once which
    file is missing and where to put it.
a path
    A weights file for VGG16 without top: Keras 3 ``.weights.h5`` written by
    ``model.save_weights``, or a legacy Keras ``.h5`` weights file such as the
    ImageNet one.
``None``
    Random initialisation, identical in every process (Glorot uniform drawn
    from a fixed seed): for tests and as a lower bound on what the pretrained
    weights bring.

The :attr:`Backbone.fingerprint` records everything that changes the output:
the SHA-256 of the weights file, the layer, the pooling, the input size and
the precision. The feature cache files vectors under it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlsk._files import write_atomically
from tlsk.precision import COMPUTE_PRECISIONS, keras_dtype

__all__ = [
    "LAYERS",
    "POOLINGS",
    "IMAGENET_WEIGHTS_FILE",
    "IMAGENET_WEIGHTS_URL",
    "MIN_INPUT_SIZE",
    "Backbone",
    "BackboneConfig",
    "WeightsUnavailableError",
    "WeightsMismatchError",
    "get_backbone",
    "imagenet_weights_path",
]

# The layers a user may cut VGG16 at: every conv and pooling layer of blocks
# 3-5. Earlier layers give low-level edges, rarely worth a classifier.
LAYERS = tuple(
    f"block{block}_{kind}"
    for block in (3, 4, 5)
    for kind in ("conv1", "conv2", "conv3", "pool")
)
POOLINGS = ("avg", "max", "flatten")
MIN_INPUT_SIZE = 32  # five 2x2 poolings leave 1x1 at 32 px

IMAGENET_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
    + IMAGENET_WEIGHTS_FILE
)
IMAGENET_WEIGHTS_SIZE = 58_889_256
# Keras itself pins the MD5 6d6bbae143d832006294945121d1f1fc for this file;
# tlsk pins its SHA-256, as published for the same 58,889,256 bytes elsewhere.
IMAGENET_WEIGHTS_SHA256 = (
    "bfe5187d0a272bed55ba430631598124cff8e880b98d38c9e56c8d66032abdc1"
)

# Seed of the weights=None initialisation; part of the fingerprint.
RANDOM_INIT_SEED = 0
_DOWNLOAD_TIMEOUT_SECONDS = 10


class WeightsUnavailableError(FileNotFoundError):
    """The ImageNet weights are neither cached nor downloadable."""


class WeightsMismatchError(ValueError):
    """A weights file whose checksum or layout is not what was expected."""


@dataclass(frozen=True)
class BackboneConfig:
    """Everything that decides the backbone's output.

    ``weights`` is ``"imagenet"``, ``None`` or an absolute path (str);
    ``precision`` is a resolved precision, ``"float32"`` or ``"bfloat16"``
    (see :mod:`tlsk.precision`).
    """

    weights: str | None = "imagenet"
    layer: str = "block5_pool"
    pooling: str = "avg"
    input_size: int = 224
    precision: str = "float32"


class Backbone:
    """A built, truncated VGG16 for one :class:`BackboneConfig`.

    Obtain it with :func:`get_backbone`; do not pickle it.
    """

    def __init__(self, config, model, weights_sha256):
        self.config = config
        self.model = model
        self.output_dim = int(model.output_shape[-1])
        self.fingerprint = {
            "model": "vgg16",
            "weights_sha256": weights_sha256,
            "layer": config.layer,
            "pooling": config.pooling,
            "input_size": config.input_size,
            "precision": config.precision,
        }
        # Keras models are not safe to call from several threads at once.
        self._lock = threading.Lock()

    def predict(self, batch):
        """Return float32 features ``(n, output_dim)`` of a preprocessed batch."""
        with self._lock:
            out = self.model.predict_on_batch(np.asarray(batch, dtype=np.float32))
        return np.asarray(out, dtype=np.float32)

    def __reduce__(self):
        raise TypeError(
            "a tlsk Backbone holds a Keras model and is not pickled; keep its "
            "BackboneConfig and call tlsk.backbone.get_backbone(config) instead"
        )


_BACKBONES: dict[BackboneConfig, Backbone] = {}
_BACKBONES_LOCK = threading.Lock()
_FILE_DIGESTS: dict[tuple, str] = {}


def get_backbone(config):
    """Return the backbone for ``config``, building it on first use.

    Examples
    --------
    >>> from tlsk.backbone import BackboneConfig, get_backbone
    >>> backbone = get_backbone(BackboneConfig(weights=None, input_size=32))
    >>> backbone.output_dim
    512
    >>> backbone is get_backbone(BackboneConfig(weights=None, input_size=32))
    True
    """
    with _BACKBONES_LOCK:
        path, weights_sha256 = _weights_file(config.weights)
        backbone = _BACKBONES.get(config)
        # A weights file replaced since the build must not serve stale features.
        if backbone is None or backbone.fingerprint["weights_sha256"] != weights_sha256:
            backbone = _build(config, path, weights_sha256)
            _BACKBONES[config] = backbone
        return backbone


def clear_backbones():
    """Forget every built backbone (frees their memory at the next collection)."""
    with _BACKBONES_LOCK:
        _BACKBONES.clear()


def _weights_file(weights):
    """``(path, sha256)`` of the weights to load; ``(None, seed tag)`` for None."""
    if weights is None:
        return None, f"random-glorot-uniform-seed-{RANDOM_INIT_SEED}"
    path = imagenet_weights_path() if weights == "imagenet" else weights
    return path, file_sha256(path)


def vgg16_base(weights, input_size, precision="float32"):
    """A fresh Keras VGG16 without top, with its weights: ``(model, weights_sha256)``.

    ``weights`` as resolved by :func:`resolve_weights`, ``precision`` resolved
    (``"float32"`` or ``"bfloat16"``). Unlike :func:`get_backbone`, the model
    is new at each call and the caller's to train (fine-tuning).
    """
    path, weights_sha256 = _weights_file(weights)
    return _vgg16_notop(path, input_size, precision), weights_sha256


# VGG16's convolution blocks: (convolutions, filters), each block ending in a
# 2x2 max pooling.
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


def _vgg16_notop(path, input_size, precision="float32"):
    """VGG16 without top, with weights from ``path`` (None: seeded random).

    The same layers, names and order as ``keras.applications.VGG16(
    include_top=False)``, so its weights files load, but each layer gets the
    precision's dtype policy: Keras's global policy is neither read nor set.
    """
    import keras

    if precision not in COMPUTE_PRECISIONS:
        raise ValueError(f"precision must be resolved first; received {precision!r}")
    dtype = keras_dtype(precision)
    inputs = keras.Input(
        (input_size, input_size, 3), dtype="float32", name="input_layer"
    )
    x = inputs
    for block, (convolutions, filters) in enumerate(VGG16_BLOCKS, start=1):
        for conv in range(1, convolutions + 1):
            x = keras.layers.Conv2D(
                filters,
                3,
                padding="same",
                activation="relu",
                name=f"block{block}_conv{conv}",
                dtype=dtype,
            )(x)
        x = keras.layers.MaxPooling2D(2, 2, name=f"block{block}_pool", dtype=dtype)(x)
    base = keras.Model(inputs, x, name="vgg16")
    if path is None:
        _initialise_randomly(base)
    else:
        _load_weights(base, path)
    return base


def _build(config, path, weights_sha256):
    import keras

    base = _vgg16_notop(path, config.input_size, config.precision)
    features = base.get_layer(config.layer).output
    features = pooling_layer(config.pooling, name=f"{config.pooling}_pool")(features)
    model = keras.Model(base.input, features, name=f"vgg16_{config.layer}")
    return Backbone(config, model, weights_sha256)


def pooling_layer(pooling, name):
    """The Keras layer that turns a feature map into a vector, in float32.

    Float32 whatever the precision: an average of 49 bfloat16 values would
    round away the differences between images.
    """
    import keras

    layer = {
        "avg": keras.layers.GlobalAveragePooling2D,
        "max": keras.layers.GlobalMaxPooling2D,
        "flatten": keras.layers.Flatten,
    }[pooling]
    return layer(name=name, dtype="float32")


def _initialise_randomly(model):
    """Glorot-uniform kernels and zero biases from a fixed seed.

    Keras's own initialisers draw from a global seed, so two processes would
    build different "random" VGG16s; this one is the same everywhere.
    """
    rng = np.random.default_rng(RANDOM_INIT_SEED)
    for layer in model.layers:
        if not layer.weights:
            continue
        kernel, bias = layer.get_weights()
        receptive = int(np.prod(kernel.shape[:-2]))
        fan_in, fan_out = receptive * kernel.shape[-2], receptive * kernel.shape[-1]
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        kernel = rng.uniform(-limit, limit, size=kernel.shape).astype(np.float32)
        layer.set_weights([kernel, np.zeros_like(bias)])


def _load_weights(model, path):
    try:
        model.load_weights(path)
    except Exception as err:  # Keras raises several types for a bad file
        raise WeightsMismatchError(
            f"cannot load VGG16 weights from {path!r}: {err}. Expected weights "
            "of VGG16 without its top (include_top=False), as a Keras "
            "'.weights.h5' file or a legacy '.h5' weights file"
        ) from err


def file_sha256(path):
    """SHA-256 hex digest of a file, remembered per (path, size, mtime)."""
    return file_digest(path, "sha256")


def file_digest(path, algorithm):
    """Hex digest of a file with a ``hashlib`` algorithm, remembered per file state.

    MD5 is only for checking files against the digests Keras itself pins.
    """
    stat = os.stat(path)
    # Inode and ctime too: a file replaced by `cp -p` keeps size and mtime.
    memo_key = (
        algorithm,
        os.path.abspath(path),
        stat.st_ino,
        stat.st_size,
        stat.st_mtime_ns,
        stat.st_ctime_ns,
    )
    digest = _FILE_DIGESTS.get(memo_key)
    if digest is None:
        hasher = hashlib.new(algorithm)
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                hasher.update(chunk)
        digest = _FILE_DIGESTS[memo_key] = hasher.hexdigest()
    return digest


def keras_cache_dir():
    """The folder where Keras keeps downloaded models (``<KERAS_HOME>/models``).

    The same rule as ``keras.utils.get_file``: ``$KERAS_HOME`` or ``~/.keras``,
    or ``/tmp/.keras`` when that is not writable.
    """
    base = os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras")))
    if os.path.isdir(base) and not os.access(base, os.W_OK):
        base = os.path.join(tempfile.gettempdir(), ".keras")
    return os.path.join(base, "models")


def imagenet_weights_path(download=True):
    """Path of the verified VGG16 ImageNet weights (no top), fetching them if needed.

    Raises
    ------
    WeightsUnavailableError
        The file is not in Keras's cache and cannot be downloaded.
    WeightsMismatchError
        The cached or downloaded file does not have the pinned checksum.
    """
    path = os.path.join(keras_cache_dir(), IMAGENET_WEIGHTS_FILE)
    if not os.path.exists(path):
        if not download:
            raise WeightsUnavailableError(_missing_weights_message(path, None))
        fetch(
            IMAGENET_WEIGHTS_URL,
            path,
            _verify_imagenet_weights,
            lambda err: _missing_weights_message(path, err),
        )
    else:
        _verify_imagenet_weights(path)
    return path


def _verify_imagenet_weights(path):
    size = os.path.getsize(path)
    if size != IMAGENET_WEIGHTS_SIZE or file_sha256(path) != IMAGENET_WEIGHTS_SHA256:
        raise WeightsMismatchError(
            f"the VGG16 ImageNet weights file {path!r} is damaged or not the "
            f"expected file ({size} bytes, expected {IMAGENET_WEIGHTS_SIZE} "
            f"bytes with SHA-256 {IMAGENET_WEIGHTS_SHA256}); delete it and let "
            f"tlsk download it again from {IMAGENET_WEIGHTS_URL}"
        )


def fetch(url, path, verify, unavailable_message):
    """Fetch ``url`` into ``path`` through a temporary file in the same folder.

    ``verify(temporary_path)`` runs before the file takes its place (raising
    to refuse it), so a partial download or a proxy's error page never lands
    in Keras's cache. A network or file system failure raises
    :class:`WeightsUnavailableError` with ``unavailable_message(error)``,
    which should say what is missing and where to put it by hand. With the
    environment variable ``TLSK_NO_DOWNLOAD`` set (air-gapped machines, test
    suites), nothing is fetched and that error comes at once.
    """
    if os.environ.get("TLSK_NO_DOWNLOAD"):
        raise WeightsUnavailableError(
            unavailable_message("downloads are switched off by TLSK_NO_DOWNLOAD")
        )
    os.makedirs(os.path.dirname(path), exist_ok=True)

    def download(out):
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_SECONDS) as src:
            shutil.copyfileobj(src, out, 1 << 20)

    try:
        write_atomically(path, download, verify)
    except (urllib.error.URLError, OSError) as err:
        raise WeightsUnavailableError(unavailable_message(err)) from err


def _missing_weights_message(path, err):
    reason = f" and could not be downloaded ({err})" if err is not None else ""
    return (
        f"VGG16 ImageNet weights are not in Keras's cache at {path!r}{reason}. "
        f"Download {IMAGENET_WEIGHTS_URL} on a machine with network access and "
        f"copy it to {path!r}, or pass weights='/path/to/{IMAGENET_WEIGHTS_FILE}'"
        ", or weights=None for a random initialisation"
    )


def resolve_weights(weights):
    """Validate the ``weights`` parameter; return "imagenet", None or an abs path.

    Raises ``ValueError`` naming the parameter for anything else.
    """
    if weights is None or (isinstance(weights, str) and weights == "imagenet"):
        return weights
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ValueError(
                "weights must be 'imagenet', None or the path of an existing "
                f"weights file; received {os.fspath(weights)!r}, which is not a file"
            )
        if not path.name.endswith(".h5"):
            raise ValueError(
                "weights file must be a Keras '.weights.h5' or legacy '.h5' file; "
                f"received {os.fspath(weights)!r}"
            )
        return str(path.resolve())
    raise ValueError(
        "weights must be 'imagenet', None or the path of a weights file; "
        f"received {weights!r}"
    )
