"""VGG16's own ImageNet classifier: the 1000 ImageNet classes of an image, top-k.

What ``tlsk predict --imagenet`` runs. Unlike the rest of tlsk, which cuts
VGG16 before its fully connected top, this is the complete network with its
original 1000-way softmax, so it needs two files besides the images:

weights
    Keras's full VGG16 ImageNet weights, with the top
    (``vgg16_weights_tf_dim_ordering_tf_kernels.h5``, 553,467,096 bytes).
class index
    ``imagenet_class_index.json``, which names each output:
    ``{"0": ["n01440764", "tench"], ..., "999": [...]}``.

Both are looked up in Keras's cache folder (``$KERAS_HOME/models`` or
``~/.keras/models``, where ``keras.applications.VGG16`` and
``keras.applications.imagenet_utils.decode_predictions`` keep them too) and
downloaded there when missing, through a temporary file checked before it
takes its place (see :func:`tlsk.backbone.fetch`). Offline and not cached,
:class:`~tlsk.backbone.WeightsUnavailableError` says at once which file is
missing, its URL, and where to put it.

Images are decoded as everywhere in tlsk (:mod:`tlsk.images`), squashed to
224 x 224 with bilinear interpolation and preprocessed as
``keras.applications.vgg16.preprocess_input`` does. Keras's own examples load
images with ``keras.utils.load_img``, whose default interpolation is
"nearest", so their probabilities differ slightly from these.
"""

from __future__ import annotations

import json
import os
import threading
from numbers import Integral

import numpy as np

from tlsk.backbone import (
    WeightsMismatchError,
    WeightsUnavailableError,
    fetch,
    file_digest,
    keras_cache_dir,
)
from tlsk.images import (
    DEFAULT_MAX_PIXELS,
    FileInput,
    ImageError,
    preprocess_vgg16,
    resize_image,
)

__all__ = [
    "CLASS_INDEX_FILE",
    "CLASS_INDEX_URL",
    "INPUT_SIZE",
    "N_CLASSES",
    "WEIGHTS_FILE",
    "WEIGHTS_URL",
    "class_index_path",
    "load_class_index",
    "predict_imagenet",
    "weights_path",
]

INPUT_SIZE = 224  # the fully connected top takes 7 x 7 x 512: 224 px, no other
N_CLASSES = 1000
INTERPOLATION = "bilinear"

WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + WEIGHTS_FILE
)
WEIGHTS_SIZE = 553_467_096
# The MD5 that keras.applications.VGG16 pins for this file. No SHA-256 of it
# could be confirmed offline, so tlsk checks what Keras checks: size and MD5.
# MD5 guards here against damaged or wrong files, not against a forger.
WEIGHTS_MD5 = "64373286793e3c8b2b4e3219cbf3544b"

CLASS_INDEX_FILE = "imagenet_class_index.json"
CLASS_INDEX_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/data/" + CLASS_INDEX_FILE
)
# The MD5 that keras.applications.imagenet_utils.decode_predictions pins (Keras
# 3.x); the structure is validated as well, as for any class index file.
CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"

_MODELS: dict[tuple, object] = {}
_MODELS_LOCK = threading.Lock()


# --------------------------------------------------------------------------
# The two files


def weights_path(download=True):
    """Path of the verified full VGG16 ImageNet weights, fetching them if needed.

    Parameters
    ----------
    download : bool, default=True
        Download the file into Keras's cache folder when it is not there.

    Returns
    -------
    str

    Raises
    ------
    WeightsUnavailableError
        Not cached and not downloadable (offline, or ``download=False``).
    WeightsMismatchError
        The cached or downloaded file is not the expected one.
    """
    return _keras_cached(
        WEIGHTS_FILE,
        WEIGHTS_URL,
        _verify_weights,
        "VGG16's full ImageNet weights (with the top)",
        download,
    )


def class_index_path(download=True):
    """Path of the verified ``imagenet_class_index.json``, fetching it if needed.

    Parameters
    ----------
    download : bool, default=True
        Download the file into Keras's cache folder when it is not there.

    Returns
    -------
    str

    Raises
    ------
    WeightsUnavailableError
        Not cached and not downloadable (offline, or ``download=False``).
    WeightsMismatchError
        The cached or downloaded file is not the expected one.
    """
    return _keras_cached(
        CLASS_INDEX_FILE,
        CLASS_INDEX_URL,
        _verify_class_index,
        "the ImageNet class index",
        download,
    )


def _keras_cached(name, url, verify, what, download):
    path = os.path.join(keras_cache_dir(), name)

    def unavailable(err):
        reason = f" and could not be downloaded ({err})" if err is not None else ""
        return (
            f"{what} {name!r} is not in Keras's cache at {path!r}{reason}. "
            f"Download {url} on a machine with network access and copy it to "
            f"{path!r}"
        )

    if os.path.exists(path):
        verify(path)
    elif download:
        fetch(url, path, verify, unavailable)
    else:
        raise WeightsUnavailableError(unavailable(None))
    return path


def _check_digest(path, size, md5, url):
    actual = os.path.getsize(path)
    if actual != size or file_digest(path, "md5") != md5:
        raise WeightsMismatchError(
            f"{path!r} is damaged or not the expected file ({actual} bytes, "
            f"expected {size} bytes with MD5 {md5}); delete it and let tlsk "
            f"download it again from {url}"
        )


def _verify_weights(path):
    _check_digest(path, WEIGHTS_SIZE, WEIGHTS_MD5, WEIGHTS_URL)


def _verify_class_index(path):
    if file_digest(path, "md5") != CLASS_INDEX_MD5:
        raise WeightsMismatchError(
            f"{path!r} is damaged or not the expected file (expected MD5 "
            f"{CLASS_INDEX_MD5}); delete it and let tlsk download it again from "
            f"{CLASS_INDEX_URL}"
        )
    load_class_index(path)


def load_class_index(path):
    """Read and validate a class index file.

    Parameters
    ----------
    path : str or os.PathLike
        JSON ``{"0": [wnid, name], ..., "999": [wnid, name]}``, as Keras's
        ``imagenet_class_index.json``: exactly the keys "0" to "999", each
        with two strings.

    Returns
    -------
    list of (str, str)
        ``(wnid, class_name)`` of each output, in output order.

    Raises
    ------
    ValueError
        The file cannot be read or does not have that structure; the message
        names the file and the first problem.

    Examples
    --------
    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "classes.json")
    >>> index = {str(i): [f"n{i:08d}", f"class {i}"] for i in range(1000)}
    >>> with open(path, "w") as file:
    ...     json.dump(index, file)
    >>> load_class_index(path)[1]
    ('n00000001', 'class 1')
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the class index {path!r}: {err}") from err

    def invalid(problem):
        return ValueError(
            f"class index {path!r} is not an ImageNet class index: {problem}; "
            f'expected {{"0": [wnid, name], ..., "{N_CLASSES - 1}": [wnid, name]}} '
            f"as in {CLASS_INDEX_URL}"
        )

    if not isinstance(data, dict):
        raise invalid(f"received a JSON {type(data).__name__}, not an object")
    expected = {str(i) for i in range(N_CLASSES)}
    if set(data) != expected:
        missing = sorted(expected - set(data), key=int)[:3]
        extra = sorted(set(data) - expected)[:3]
        raise invalid(
            f"received {len(data)} keys"
            + (f", missing {missing}" if missing else "")
            + (f", unexpected {extra}" if extra else "")
        )
    classes = []
    for i in range(N_CLASSES):
        entry = data[str(i)]
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and all(isinstance(part, str) and part for part in entry)
        ):
            raise invalid(f"entry {str(i)!r} is {entry!r}, not [wnid, name]")
        classes.append((entry[0], entry[1]))
    return classes


# --------------------------------------------------------------------------
# The model


def _build_model(path):
    """Keras's full VGG16 (224 px, 1000-way softmax) with the weights in ``path``."""
    import keras

    model = keras.applications.VGG16(
        include_top=True,
        weights=None,
        classes=N_CLASSES,
        classifier_activation="softmax",
    )
    try:
        model.load_weights(path)
    except Exception as err:  # Keras raises several types for a bad file
        raise WeightsMismatchError(
            f"cannot load full VGG16 weights from {path!r}: {err}. Expected the "
            f"weights of VGG16 with its ImageNet top (include_top=True, "
            f"{N_CLASSES} classes), as Keras's {WEIGHTS_FILE!r}, a legacy '.h5' "
            "or a Keras '.weights.h5' file"
        ) from err
    return model


def _model(path):
    """The model for a weights file, built once per process per file state."""
    stat = os.stat(path)
    # A file replaced since the build must not serve the old weights.
    key = (os.path.realpath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = _MODELS[key] = _build_model(path)
        return model


def clear_models():
    """Forget every built model (frees their memory at the next collection)."""
    with _MODELS_LOCK:
        _MODELS.clear()


def _resolve_weights(weights):
    if isinstance(weights, str) and weights == "imagenet":
        return weights_path()
    if isinstance(weights, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(weights))
        if not os.path.isfile(path):
            raise ValueError(
                "weights must be 'imagenet' or the path of a full VGG16 weights "
                f"file; received {os.fspath(weights)!r}, which is not a file"
            )
        if not path.endswith(".h5"):
            raise ValueError(
                "weights file must be a Keras '.weights.h5' or legacy '.h5' file; "
                f"received {os.fspath(weights)!r}"
            )
        return path
    raise ValueError(
        "weights must be 'imagenet' or the path of a full VGG16 weights file "
        f"(with its top); received {weights!r}"
    )


def _check_positive_int(name, value, high=None):
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an int; received {value!r}")
    if value < 1 or (high is not None and value > high):
        bound = f"between 1 and {high}" if high is not None else "at least 1"
        raise ValueError(f"{name} must be {bound}; received {value!r}")
    return int(value)


# --------------------------------------------------------------------------
# Prediction


def predict_imagenet(
    paths, top_k=5, weights="imagenet", class_index=None, batch_size=16
):
    """The ``top_k`` ImageNet classes of each image, by VGG16's own classifier.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Image files.
    top_k : int, default=5
        Classes per image, most probable first; 1 to 1000.
    weights : "imagenet" or path, default="imagenet"
        ``"imagenet"``: Keras's full VGG16 ImageNet weights from Keras's cache
        folder, downloaded when missing and verified. A path: weights of the
        full VGG16 with its 1000-way top, legacy ``.h5`` or ``.weights.h5``.
    class_index : path or None, default=None
        A class index JSON file (see :func:`load_class_index`); ``None`` takes
        Keras's ``imagenet_class_index.json`` from Keras's cache folder,
        downloaded when missing and verified.
    batch_size : int, default=16
        Images per VGG16 call.

    Returns
    -------
    list
        One item per path, in order: a :class:`~tlsk.images.ImageError` for
        a file that cannot be decoded (the others go on), otherwise a list of
        ``top_k`` tuples ``(wnid, class_name, probability)``, most probable
        first (ties in class index order).

    Raises
    ------
    ValueError
        A bad parameter, or a class index file of the wrong structure.
    WeightsUnavailableError
        ``weights="imagenet"`` or ``class_index=None`` and the file is neither
        cached nor downloadable: raised before any image is read.
    WeightsMismatchError
        A weights file that is not the full VGG16's, or a damaged cached file.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError(
            f"paths must be a sequence of image files; received a single path "
            f"{paths!r}; wrap it in a list: [path]"
        )
    inputs = [FileInput(path) for path in paths]
    top_k = _check_positive_int("top_k", top_k, N_CLASSES)
    batch_size = _check_positive_int("batch_size", batch_size)
    classes = load_class_index(
        class_index_path() if class_index is None else class_index
    )
    model = _model(_resolve_weights(weights))
    results = [None] * len(inputs)
    for start in range(0, len(inputs), batch_size):
        indices, images = [], []
        for index in range(start, min(start + batch_size, len(inputs))):
            try:
                _, image = inputs[index].load(DEFAULT_MAX_PIXELS)
            except ImageError as err:
                results[index] = err
                continue
            indices.append(index)
            images.append(resize_image(image, INPUT_SIZE, INTERPOLATION))
        if not images:
            continue
        batch = preprocess_vgg16(np.stack(images))
        probabilities = np.asarray(model.predict_on_batch(batch), dtype=np.float64)
        if probabilities.shape != (len(images), N_CLASSES):
            raise WeightsMismatchError(
                f"the model gives outputs of shape {probabilities.shape[1:]}, "
                f"expected ({N_CLASSES},) ImageNet probabilities"
            )
        for index, row in zip(indices, probabilities, strict=True):
            best = np.argsort(-row, kind="stable")[:top_k]
            results[index] = [(*classes[c], float(row[c])) for c in best]
    return results
