"""A backbone's own ImageNet classifier: the 1000 ImageNet classes of an image.

What ``tlsk predict --imagenet`` runs. Unlike the rest of tlsk, which cuts a
network before its top, this is the complete network of a registered
backbone (:mod:`tlsk.networks.registry`, VGG16 by default) with its original
1000-way softmax, so it needs two files besides the images:

weights
    Keras's ImageNet weights of that network with its top (for VGG16,
    ``vgg16_weights_tf_dim_ordering_tf_kernels.h5``, 553,467,096 bytes): the
    registry's ``imagenet_top`` file.
class index
    ``imagenet_class_index.json``, which names each output:
    ``{"0": ["n01440764", "tench"], ..., "999": [...]}``; the same for every
    network.

Both are looked up in Keras's cache folder (``$KERAS_HOME/models`` or
``~/.keras/models``, where ``keras.applications`` and
``keras.applications.imagenet_utils.decode_predictions`` keep them too) and
downloaded there when missing, through a temporary file checked before it
takes its place (see :mod:`tlsk.networks.weights`). Offline and not cached,
:class:`~tlsk.networks.weights.WeightsUnavailableError` says at once which file is
missing, its URL, and where to put it.

Images are decoded as everywhere in tlsk (:mod:`tlsk.images.decode`), squashed to
the network's native size with bilinear interpolation and preprocessed as
that network's ``preprocess_input`` does. Keras's own examples load images
with ``keras.utils.load_img``, whose default interpolation is "nearest", so
their probabilities differ slightly from these.
"""

from __future__ import annotations

import functools
import json
import os
from numbers import Integral

import numpy as np

from tlsk._util.files import file_identity
from tlsk._util.memo import Memo, settled
from tlsk.images.decode import FileInput, ImageError, decoded, resize_image
from tlsk.networks.backbone import imagenet_weights_path, load_weights
from tlsk.networks.preprocessing import preprocess
from tlsk.networks.registry import DEFAULT_BACKBONE, WeightsFile, get_spec
from tlsk.networks.weights import WeightsMismatchError, keras_cached, weights_file

__all__ = [
    "CLASS_INDEX",
    "N_CLASSES",
    "class_index_path",
    "load_class_index",
    "predict_imagenet",
    "weights_path",
]

N_CLASSES = 1000
INTERPOLATION = "bilinear"

# The MD5 that keras.applications.imagenet_utils.decode_predictions pins (Keras
# 3.x); the structure is validated as well, as for any class index file.
CLASS_INDEX = WeightsFile(
    "imagenet_class_index.json",
    "https://storage.googleapis.com/download.tensorflow.org/data/"
    "imagenet_class_index.json",
    "c2c37ea517e94d9795004a39431a14cb",
)

_MODELS = Memo("ImageNet heads", max_entries=4)


# --------------------------------------------------------------------------
# The two files


def weights_path(download=True, backbone=DEFAULT_BACKBONE):
    """Path of a backbone's verified ImageNet weights with the top, fetched if needed.

    Parameters
    ----------
    download : bool, default=True
        Download the file into Keras's cache folder when it is not there.
    backbone : str, default="vgg16"
        A name of the registry.

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
    return imagenet_weights_path(download, backbone, top=True)


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
    return keras_cached(
        CLASS_INDEX, "the ImageNet class index", download, verify=load_class_index
    )


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
            f"as in {CLASS_INDEX.url}"
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


def _build_model(spec, path, imagenet):
    """Keras's complete network of ``spec`` (1000-way softmax) with ``path``'s weights.

    ``imagenet``: ``path`` is the registry's ImageNet file, after which the
    entry's fix-up (if any) makes the network the one Keras builds for it.
    """
    model = spec.build(include_top=True)
    load_weights(model, path, spec.builder, top=True)
    if imagenet and spec.imagenet_fixup is not None:
        spec.imagenet_fixup(model)
    return model


def _model(spec, path, imagenet):
    """The model for a weights file, built once per process per file state."""
    # A file replaced since the build must not serve the old weights.
    identity = file_identity(os.path.realpath(path))
    if not settled(identity):
        return _build_model(spec, path, imagenet)
    return _MODELS.get_or_build(
        (spec.name, imagenet, identity), lambda: _build_model(spec, path, imagenet)
    )


def _resolve_weights(weights, spec):
    if isinstance(weights, str) and weights == "imagenet":
        return weights_path(backbone=spec.name)
    if isinstance(weights, (str, os.PathLike)):
        return weights_file(
            weights, f"'imagenet' or the path of a full {spec.name} weights file"
        )
    raise ValueError(
        f"weights must be 'imagenet' or the path of a full {spec.name} weights "
        f"file (with its top); received {weights!r}"
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
    paths,
    top_k=5,
    weights="imagenet",
    class_index=None,
    batch_size=16,
    backbone=DEFAULT_BACKBONE,
):
    """The ``top_k`` ImageNet classes of each image, by a backbone's own classifier.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Image files.
    top_k : int, default=5
        Classes per image, most probable first; 1 to 1000.
    weights : "imagenet" or path, default="imagenet"
        ``"imagenet"``: Keras's ImageNet weights of the network with its top,
        from Keras's cache folder, downloaded when missing and verified. A
        path: weights of that network with its 1000-way top, legacy ``.h5``
        or ``.weights.h5``.
    class_index : path or None, default=None
        A class index JSON file (see :func:`load_class_index`); ``None`` takes
        Keras's ``imagenet_class_index.json`` from Keras's cache folder,
        downloaded when missing and verified.
    batch_size : int, default=16
        Images per network call.
    backbone : str, default="vgg16"
        The network, a name of the registry (:func:`tlsk.list_backbones`).

    Returns
    -------
    list
        One item per path, in order: a :class:`~tlsk.images.decode.ImageError` for
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
        A weights file that is not the complete network's, or a damaged
        cached file.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError(
            f"paths must be a sequence of image files; received a single path "
            f"{paths!r}; wrap it in a list: [path]"
        )
    inputs = [FileInput(path) for path in paths]
    spec = get_spec(backbone)
    top_k = _check_positive_int("top_k", top_k, N_CLASSES)
    batch_size = _check_positive_int("batch_size", batch_size)
    classes = load_class_index(
        class_index_path() if class_index is None else class_index
    )
    imagenet = isinstance(weights, str) and weights == "imagenet"
    model = _model(spec, _resolve_weights(weights, spec), imagenet)
    results = [None] * len(inputs)
    resize = functools.partial(
        resize_image, size=spec.native_size, interpolation=INTERPOLATION
    )
    for start in range(0, len(inputs), batch_size):
        indices, images = [], []
        todo = range(start, min(start + batch_size, len(inputs)))
        for index, result in decoded(inputs, todo, resize):
            if isinstance(result, ImageError):
                results[index] = result
            else:
                indices.append(index)
                images.append(result[1])
        if not images:
            continue
        batch = preprocess(np.stack(images), spec.preprocessing)
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
