"""A truncated network that turns images into feature vectors.

A backbone is described by a :class:`BackboneConfig` (which network, its
weights, the cut layer, the pooling, the input size, the precision).
:func:`get_backbone` builds the Keras model for a configuration once per
process and keeps it, so estimators never pickle a Keras model: they keep the
configuration and ask for the backbone again.

Networks
--------
A name of the registry (:mod:`tlsk.networks.registry`: ``"vgg16"``, ``"resnet50"``,
...) is built by Keras's own builder (``keras.applications.ResNet50(
include_top=False, weights=None, ...)``), then given its weights as below. A
path to a ``.keras`` model file (your own network) is loaded with
``keras.saving.load_model(..., safe_mode=True)``, so a file can hold no code
that runs when it is read.

Weights
-------
``"imagenet"``
    Keras's ImageNet weights without the fully connected top, the file the
    registry names for that network. It is looked up in Keras's cache folder
    (``$KERAS_HOME/models`` or ``~/.keras/models``, where
    ``keras.applications`` keeps it too), downloaded there when missing and
    verified against its pinned digest (:mod:`tlsk.networks.weights`). Offline and not
    cached, :class:`WeightsUnavailableError` says at once which file is
    missing, its URL and where to put it. For a ``.keras`` file, the weights
    saved in it.
a path
    A weights file of that network without its top: Keras 3 ``.weights.h5``
    (``model.save_weights``) or a legacy Keras ``.h5`` such as the ImageNet
    ones. A file of another network is refused with
    :class:`WeightsMismatchError`, naming the file and the network.
``None``
    Random initialisation, identical in every process: Glorot-uniform
    kernels drawn from a fixed seed; biases, normalisation statistics and
    scales as Keras's builder sets them (constants). For tests and as a lower
    bound on what pretrained weights bring.

Precision
---------
``"bfloat16"`` gives every layer Keras's ``"mixed_bfloat16"`` policy, except
the network's own preprocessing layers (those before its first layer with
trainable weights, e.g. EfficientNet's Rescaling and Normalization) and the
final pooling (with ConvNeXt's head norm after it), which stay float32.
Keras's global dtype policy is never read or set: the network is cloned layer
by layer with each layer's policy.

The :attr:`Backbone.fingerprint` records everything of the network that
changes the output: the network, the SHA-256 of its weights (and of the
model file), the layer, the pooling, the input size and the precision, and
``"embedding": "keras-head-norm"`` where Keras's head norm follows the pooling
(ConvNeXt's "avg" and "max", :func:`split_head_norm`). The feature cache files
vectors under it.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlsk._util.limits import MAX_INPUT_SIZE
from tlsk._util.memo import Memo
from tlsk.networks.hub import (
    PRESET_FOLDER,
    PRESET_WEIGHTS,
    build_hub,
    hub_identity,
    is_hub_backbone,
    is_preset_folder,
    read_preset,
)
from tlsk.networks.precision import COMPUTE_PRECISIONS, keras_dtype
from tlsk.networks.random_weights import RANDOM_WEIGHTS_ID, initialise_randomly
from tlsk.networks.registry import (
    DEFAULT_BACKBONE,
    HUB_POOLINGS,
    HubSpec,
    get_spec,
    is_model_file,
)
from tlsk.networks.weights import (
    WeightsMismatchError,
    WeightsUnavailableError,
    fetch,
    file_digest,
    file_sha256,
    keras_cache_dir,
    keras_cached,
    weights_file,
)

__all__ = [
    "LAYERS",
    "POOLINGS",
    "IMAGENET_WEIGHTS_FILE",
    "IMAGENET_WEIGHTS_URL",
    "MIN_INPUT_SIZE",
    "MODEL_FILE",
    "Backbone",
    "BackboneConfig",
    "WeightsUnavailableError",
    "WeightsMismatchError",
    "base_network",
    "feature_map_network",
    "fetch",
    "file_digest",
    "file_sha256",
    "get_backbone",
    "imagenet_weights_path",
    "keras_cache_dir",
    "load_weights",
    "pooling_layer",
    "resolve_backbone",
    "resolve_weights",
    "split_head_norm",
]

_VGG16 = get_spec("vgg16")
# VGG16's cut points, pinned file and smallest input, by the names that the
# VGG16 extractor's parameter checks and the tests read.
LAYERS = _VGG16.cut_points
IMAGENET_WEIGHTS_FILE = _VGG16.imagenet.name
IMAGENET_WEIGHTS_URL = _VGG16.imagenet.url
MIN_INPUT_SIZE = _VGG16.min_size

POOLINGS = ("avg", "max", "flatten")
MODEL_FILE = "keras-file"  # the fingerprint's "model" for a .keras backbone

# The fingerprint's "embedding" where Keras's head norm follows the pooling
# (split_head_norm); absent elsewhere, so that every other configuration keeps
# its fingerprint and the caches filed under it.
HEAD_NORM_EMBEDDING = "keras-head-norm"


@dataclass(frozen=True)
class BackboneConfig:
    """Everything that decides the backbone's output.

    ``backbone`` is a registry name or the absolute path of a ``.keras``
    file; ``weights`` is ``"imagenet"``, ``None`` or an absolute path (str);
    ``layer`` a cut point of that network (a layer name of a ``.keras``
    file); ``precision`` a resolved precision, ``"float32"`` or
    ``"bfloat16"`` (see :mod:`tlsk.networks.precision`).
    """

    weights: str | None = "imagenet"
    layer: str = "block5_pool"
    pooling: str = "avg"
    input_size: int = 224
    precision: str = "float32"
    backbone: str = DEFAULT_BACKBONE

    def check(self):
        """Raise ValueError unless every field is one fit could have resolved.

        For a configuration read from a model file: its fields decide what
        :func:`get_backbone` builds and which files it reads. Reads no file.
        """
        backbone, weights, size = self.backbone, self.weights, self.input_size
        in_file = isinstance(backbone, str) and is_model_file(backbone)
        # A KerasHub preset folder is the only other absolute path fit leaves.
        in_folder = isinstance(backbone, str) and os.path.isabs(backbone)
        in_folder = in_folder and not in_file
        on_disk = in_file or in_folder
        spec = None if on_disk else get_spec(backbone)  # names the known ones
        hub = in_folder or isinstance(spec, HubSpec)
        checks = {
            "weights": weights is None
            or (isinstance(weights, str) and weights == "imagenet")
            or (
                isinstance(weights, str)
                and os.path.isabs(weights)
                and (weights.endswith(".h5") or hub)
            ),
            "layer": isinstance(self.layer, str) and self.layer in spec.cut_points
            if spec
            else self.layer is None or isinstance(self.layer, str),
            "pooling": isinstance(self.pooling, str)
            and self.pooling in (HUB_POOLINGS if hub else POOLINGS),
            "input_size": (size is None and on_disk)
            or (
                isinstance(size, int | np.integer)
                and not isinstance(size, bool)
                and (spec.min_size if spec else 1) <= size <= MAX_INPUT_SIZE
            ),
            "precision": isinstance(self.precision, str)
            and self.precision in COMPUTE_PRECISIONS,
            "backbone": not on_disk or os.path.isabs(backbone),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"the backbone configuration has {bad[0]}="
                f"{getattr(self, bad[0])!r}, which fit never resolves "
                f"(backbone {backbone!r}, input sizes up to {MAX_INPUT_SIZE})"
            )


class Backbone:
    """A built, truncated network for one :class:`BackboneConfig`.

    Obtain it with :func:`get_backbone`; do not pickle it.
    """

    def __init__(self, config, model, identity, layer, embedding=None, converter=None):
        self.config = config
        self.model = model
        self.output_dim = int(model.output_shape[-1])
        # A KerasHub network's preset image converter (resize, scale, offset);
        # None for keras.applications networks, prepared by tlsk.networks.preprocessing.
        self.converter = converter
        if is_model_file(config.backbone):
            network = {"model": MODEL_FILE, "model_sha256": identity["model_sha256"]}
        elif "preset_sha256" in identity:
            network = {
                "model": PRESET_FOLDER,
                "preset_sha256": identity["preset_sha256"],
            }
        else:
            network = {"model": config.backbone}
        self.fingerprint = {
            **network,
            "weights_sha256": identity["weights_sha256"],
            "layer": layer,
            "pooling": config.pooling,
            "input_size": int(model.input_shape[1]),
            "precision": config.precision,
        }
        if embedding is not None:
            self.fingerprint["embedding"] = embedding
        self.identity = identity
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
            "BackboneConfig and call "
            "tlsk.networks.backbone.get_backbone(config) instead"
        )


# A few networks at once: a grid over backbones keeps its last ones built.
_BACKBONES = Memo("built networks", max_entries=8)


def get_backbone(config):
    """Return the backbone for ``config``, building it on first use.

    Examples
    --------
    >>> from tlsk.networks.backbone import BackboneConfig, get_backbone
    >>> backbone = get_backbone(BackboneConfig(weights=None, input_size=32))
    >>> backbone.output_dim
    512
    >>> backbone is get_backbone(BackboneConfig(weights=None, input_size=32))
    True
    """
    identity = _identity(config.backbone, config.weights)
    # A weights or model file replaced since the build must not serve stale
    # features.
    return _BACKBONES.get_or_build(
        config, lambda: _build(config), lambda built: built.identity == identity
    )


def feature_map_network(config):
    """The network of ``get_backbone(config)`` up to its pooling: feature maps.

    A Keras model from the same input to the input of the pooling layer, on
    the layers (and so the weights) of the built network itself, not a copy:
    its output ``(n, h, w, c)`` averaged over ``h`` and ``w`` is the vector
    that ``config`` with ``pooling="avg"`` gives (before ConvNeXt's head norm,
    where there is one). Raises ValueError when the layer cut gives no
    feature map (a transformer's tokens, or vectors).

    Examples
    --------
    >>> from tlsk.networks.backbone import BackboneConfig, feature_map_network
    >>> config = BackboneConfig(weights=None, layer="block4_pool", input_size=32)
    >>> feature_map_network(config).output_shape
    (None, 2, 2, 512)
    """
    import keras

    model = get_backbone(config).model
    pool = model.layers[-1]
    if pool.name == "head_norm":
        pool = next(layer for layer in model.layers if layer.output is pool.input)
    maps = pool.input
    if len(maps.shape) != 4:
        raise ValueError(
            f"layer {config.layer!r} of {_network_name(config.backbone)} gives "
            f"outputs of shape {tuple(maps.shape)} before its pooling, not "
            "feature maps (n, h, w, c)"
        )
    return keras.Model(model.input, maps, name=f"{model.name}_maps")


def base_network(backbone, weights, input_size, precision="float32"):
    """A fresh Keras network without top, with its weights: ``(model, identity)``.

    ``backbone`` and ``weights`` as resolved by :func:`resolve_backbone` and
    :func:`resolve_weights`, ``precision`` resolved (``"float32"`` or
    ``"bfloat16"``). ``input_size`` None means the network's own: its native
    size, or a ``.keras`` file's input size (224 when it takes any).
    ``identity`` holds the SHA-256 of the weights (``"weights_sha256"``)
    and, for a ``.keras`` file, of the file (``"model_sha256"``). Unlike
    :func:`get_backbone`, the model is new at each call and the caller's to
    train (fine-tuning).
    """
    if precision not in COMPUTE_PRECISIONS:
        raise ValueError(f"precision must be resolved first; received {precision!r}")
    identity = _identity(backbone, weights)
    fixup = None
    if is_model_file(backbone):
        model = _model_file_network(backbone, input_size, precision)
        if weights == "imagenet":  # the weights saved in the file
            return model, identity
        name = repr(os.path.basename(backbone))
    else:
        spec = get_spec(backbone)
        # Weights are loaded or drawn next: the builder's are not worth copying.
        built = spec.build(input_size=input_size)
        model = _with_precision(built, precision, keep_weights=False)
        name = spec.builder
        fixup = spec.imagenet_fixup
    if weights is None:
        initialise_randomly(model)
    elif weights == "imagenet":
        load_weights(model, imagenet_weights_path(backbone=backbone), name)
        if fixup is not None:
            fixup(model)
    else:
        load_weights(model, weights, name)
    return model, identity


def _identity(backbone, weights):
    """What identifies the network's parameters: the SHA-256 of its files."""
    if is_hub_backbone(backbone):
        return hub_identity(backbone, weights)
    identity = {}
    if is_model_file(backbone):
        identity["model_sha256"] = file_sha256(backbone)
        if weights == "imagenet":
            identity["weights_sha256"] = identity["model_sha256"]
            return identity
    if weights is None:
        identity["weights_sha256"] = RANDOM_WEIGHTS_ID
    elif weights == "imagenet":
        path = imagenet_weights_path(backbone=backbone)
        identity["weights_sha256"] = file_sha256(path)
    else:
        identity["weights_sha256"] = file_sha256(weights)
    return identity


def _build(config):
    import keras

    if is_hub_backbone(config.backbone):
        model, identity, layer, _, converter = build_hub(
            config.backbone,
            config.weights,
            config.layer,
            config.pooling,
            config.input_size,
            config.precision,
        )
        return Backbone(config, model, identity, layer, converter=converter)
    base, identity = base_network(
        config.backbone, config.weights, config.input_size, config.precision
    )
    base, norm = split_head_norm(base, config.backbone, config.pooling, config.layer)
    layer, features = _cut(base, config.backbone, config.layer)
    rank = len(features.shape)
    if rank == 2 and config.pooling != "flatten":
        raise ValueError(
            f"layer {layer!r} of {_network_name(config.backbone)} gives vectors "
            f"{tuple(features.shape)}, not feature maps: use pooling='flatten' "
            f"(received pooling={config.pooling!r})"
        )
    if rank not in (2, 3, 4):
        raise ValueError(
            f"layer {layer!r} of {_network_name(config.backbone)} gives outputs of "
            f"shape {tuple(features.shape)}; a cut point gives feature maps "
            "(n, h, w, c), token sequences (n, t, c) or vectors (n, c)"
        )
    features = pooling_layer(config.pooling, f"{config.pooling}_pool", rank)(features)
    embedding = None
    if norm is not None:
        features, embedding = norm(features), HEAD_NORM_EMBEDDING
    name = f"{base.name}_{layer}".replace("/", "_")
    model = keras.Model(base.input, features, name=name)
    return Backbone(config, model, identity, layer, embedding)


def _cut(base, backbone, layer):
    """``(layer, its output in base)``; None is the default cut point.

    A registry network's last cut point is its output (some networks' last
    layer has no stable name); a ``.keras`` file's default is its last layer.
    """
    if not is_model_file(backbone):
        spec = get_spec(backbone)
        layer = spec.default_layer if layer is None else layer
        if layer == spec.default_layer:
            return layer, base.output
        return layer, base.get_layer(layer).output
    if layer is None:
        return base.layers[-1].name, base.layers[-1].output
    names = [candidate.name for candidate in base.layers]
    if layer not in names:
        raise ValueError(
            f"layer must be a layer of the model in {os.path.basename(backbone)!r}; "
            f"received {layer!r}; its layers are {_listing(names)}"
        )
    return layer, base.get_layer(layer).output


def _listing(names, most=12):
    if len(names) <= most:
        return repr(names)
    return repr(names[: most // 2])[:-1] + ", ..., " + repr(names[-most // 2 :])[1:]


def pooling_layer(pooling, name, rank=4):
    """The Keras layer that turns a feature map into a vector, in float32.

    Float32 whatever the precision: an average of 49 bfloat16 values would
    round away the differences between images. ``rank`` is that of the
    layer's output: 4 for feature maps ``(n, h, w, c)``, 3 for sequences of
    tokens ``(n, t, c)``, 2 for vectors (only ``"flatten"``, which keeps them).
    """
    import keras

    layers = {
        4: (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D),
        3: (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalMaxPooling1D),
    }
    if pooling == "flatten":
        return keras.layers.Flatten(name=name, dtype="float32")
    average, maximum = layers[rank]
    layer = average if pooling == "avg" else maximum
    return layer(name=name, dtype="float32")


def split_head_norm(base, backbone, pooling, layer=None):
    """``base`` without the norm that Keras applies after ``pooling``, and that norm.

    Returns ``(network, norm)``. Where the registry entry of ``backbone`` has
    ``head_norm`` (ConvNeXt), ``layer`` is its default cut point (or None)
    and ``pooling`` is ``"avg"`` or ``"max"``: ``network`` is ``base`` up to
    the input of its last layer, a LayerNormalization, and ``norm`` a float32
    copy of that layer, with its weights, for the pooled vector (float32 as
    the pooling is). Elsewhere ``(base, None)``.

    The rule: tlsk's vectors are Keras's own. Keras's builder ends a ConvNeXt
    without its top with that norm, over channels: of the pooled vector for
    ``pooling="avg"`` or ``"max"`` (as its classifier head and timm's
    ``forward_head(pre_logits=True)`` do), of each position of the map for
    ``pooling=None``. So "avg" and "max" pool, then normalise; "flatten"
    flattens the normalised map (Keras's ``pooling=None`` output); an earlier
    cut point, where Keras puts no norm, has none; a ``.keras`` file is
    taken as it is.
    """
    if is_model_file(backbone) or pooling not in ("avg", "max"):
        return base, None
    spec = get_spec(backbone)
    if not spec.head_norm or layer not in (None, spec.default_layer):
        return base, None
    import keras

    last = base.layers[-1]
    if not isinstance(last, keras.layers.LayerNormalization):
        raise TypeError(
            f"the registry entry {spec.name!r} has head_norm, so its network "
            "without top must end with a LayerNormalization; it ends with "
            f"{type(last).__name__} {last.name!r}"
        )
    config = {**last.get_config(), "name": "head_norm", "dtype": "float32"}
    norm = keras.layers.LayerNormalization.from_config(config)
    norm.build((None, int(last.input.shape[-1])))
    norm.set_weights(last.get_weights())
    return keras.Model(base.input, last.input, name=base.name), norm


def _with_precision(model, precision, input_size=None, keep_weights=True):
    """``model`` computing in ``precision``, on float32 inputs of ``input_size``.

    Keras's builders give layers the global dtype policy, which belongs to the
    user; so unless ``model`` already computes in float32 from float32
    inputs of the wanted size, it is cloned layer by layer with an explicit
    policy each. Layers before the first one with trainable weights (a
    network's own preprocessing: Rescaling, Normalization) compute in
    float32, as do the input and whatever the caller puts after. With
    ``keep_weights``, a clone has the weights of ``model``; without, Keras's
    fresh initialisation (constants where the builder set constants).
    """
    import keras

    target = keras_dtype(precision)
    size = model.input_shape[1] if input_size is None else int(input_size)
    if (
        target == "float32"
        and model.input.dtype == "float32"
        and model.input_shape[1] == size
        and _policies(model) == {"float32"}
    ):
        return model
    first = next(
        (i for i, layer in enumerate(model.layers) if layer.trainable_weights),
        len(model.layers),
    )
    preprocessing = {id(layer) for layer in model.layers[:first]}

    def clone(layer):
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = "float32" if id(layer) in preprocessing else target
        return layer.__class__.from_config(config)

    cloned = keras.models.clone_model(
        model,
        input_tensors=keras.Input((size, size, 3), dtype="float32"),
        clone_function=clone,
        recursive=True,
    )
    if keep_weights:
        cloned.set_weights(model.get_weights())
    return cloned


def _policies(model):
    """The dtype policy names of every layer of ``model``, nested ones included."""
    import keras

    names = set()
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            names |= _policies(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            names.add(layer.dtype_policy.name)
    return names


def load_weights(model, path, network, top=False):
    """Load ``path`` into ``model``, refusing a file of another network.

    ``network`` names it in messages; ``top``: ``model`` is the complete
    network, with its classifier top.

    Keras raises for some mismatches and, for Keras 3 ``.weights.h5`` files,
    only warns and leaves the layers it could not match as they were; tlsk
    compares the file's arrays with the network's first, and refuses a load
    that Keras warned about.
    """

    part = "with its top (include_top=True)" if top else "without its top"
    full = "full " if top else ""

    def mismatch(reason):
        return WeightsMismatchError(
            f"cannot load {full}{network} weights from {path!r}: {reason}. "
            f"Expected weights of {network} {part}, as a Keras '.weights.h5' "
            "file or a legacy '.h5' weights file"
        )

    if path.endswith(".weights.h5"):
        problem = _layout_mismatch(model, path)
        if problem:
            raise mismatch(problem)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as err:  # Keras raises several types for a bad file
            raise mismatch(err) from err
    complaints = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if complaints:
        raise mismatch(f"Keras could not match the file: {complaints[0]}")


def _layout_mismatch(model, path):
    """Why the arrays of a ``.weights.h5`` file cannot be ``model``'s, or None."""
    import h5py

    shapes = []
    try:
        with h5py.File(path, "r") as file:
            file.visititems(
                lambda _, obj: (
                    shapes.append(tuple(obj.shape))
                    if isinstance(obj, h5py.Dataset)
                    else None
                )
            )
    except OSError as err:
        return f"not an HDF5 file ({err})"
    expected = sorted(tuple(v.shape) for v in model.weights)
    if sorted(shapes) == expected:
        return None
    return (
        f"the file holds {len(shapes)} arrays, the network has {len(expected)} "
        "variables" + ("" if len(shapes) != len(expected) else " of other shapes")
    )


def _model_file_network(path, input_size, precision):
    """The network of a ``.keras`` file, loaded safely, in ``precision``.

    A network with a fixed input size keeps it (``input_size`` must then be
    None or that size); one that takes any size is rebuilt on an input of
    ``input_size`` (None: 224) so that every shape is known.
    """
    import keras

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # Keras raises several types for a bad file
        raise ValueError(
            f"cannot load the Keras model file {path!r} (with safe_mode=True): {err}"
        ) from err
    if not isinstance(model, keras.Model) or len(model.inputs) != 1:
        raise ValueError(
            f"the Keras model file {path!r} must hold a model with one image input"
        )
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(
            f"the model in {path!r} takes inputs of shape {shape}; a backbone "
            "takes RGB images (height, width, 3)"
        )
    if shape[0] is not None:
        if shape[0] > MAX_INPUT_SIZE:
            raise ValueError(
                f"the model in {path!r} takes {shape[0]} x {shape[1]} images; "
                f"tlsk resizes images to at most {MAX_INPUT_SIZE} x {MAX_INPUT_SIZE}"
            )
        if shape[0] != shape[1] or input_size not in (None, shape[0]):
            raise ValueError(
                f"the model in {path!r} takes {shape[0]} x {shape[1]} images; "
                f"received input_size={input_size}"
                + ("" if shape[0] == shape[1] else " (tlsk resizes to squares)")
            )
        return _with_precision(model, precision)
    return _with_precision(model, precision, input_size or 224)


def _network_name(backbone):
    return repr(os.path.basename(backbone)) if is_model_file(backbone) else backbone


def imagenet_weights_path(download=True, backbone=DEFAULT_BACKBONE, top=False):
    """Path of a backbone's verified ImageNet weights, fetching them if needed.

    Parameters
    ----------
    download : bool, default=True
        Download the file into Keras's cache folder when it is not there.
    backbone : str, default="vgg16"
        A registry name.
    top : bool, default=False
        The weights with the 1000-class top (``tlsk predict --imagenet``)
        rather than without it.

    Raises
    ------
    WeightsUnavailableError
        The file is not in Keras's cache and cannot be downloaded.
    WeightsMismatchError
        The cached or downloaded file does not have the pinned checksum.
    """
    spec = get_spec(backbone)
    pinned = spec.imagenet_top if top else spec.imagenet
    part = "with its top" if top else "no top"
    instead = (
        ""
        if top
        else f", or pass weights='/path/to/{pinned.name}', or weights=None for a "
        "random initialisation"
    )
    return keras_cached(
        pinned, f"{spec.builder} ImageNet weights ({part})", download, instead=instead
    )


def resolve_backbone(backbone):
    """Validate ``backbone``: a registry name, or the absolute path of a .keras file.

    Raises ``ValueError`` listing the known names for anything else.
    """
    if is_model_file(backbone):
        path = Path(backbone).expanduser()
        if not path.is_file():
            raise ValueError(
                f"backbone {os.fspath(backbone)!r} names a '.keras' model file "
                "that does not exist"
            )
        return str(path.resolve())
    if is_preset_folder(backbone):
        return read_preset(Path(backbone).expanduser().resolve()).folder
    return get_spec(backbone).name


def resolve_weights(weights):
    """Validate the ``weights`` parameter; return "imagenet", None or an abs path.

    ``"pretrained"`` is what ``"imagenet"`` means for a KerasHub network (its
    published preset) and resolves to it; a KerasHub preset folder resolves
    to its absolute path. Raises ``ValueError`` naming the parameter for
    anything else.
    """
    if weights is None or (isinstance(weights, str) and weights in PRESET_WEIGHTS):
        return None if weights is None else "imagenet"
    if is_preset_folder(weights):
        return str(Path(weights).expanduser().resolve())
    if isinstance(weights, (str, os.PathLike)):
        return weights_file(
            weights, "'imagenet', None or the path of an existing weights file"
        )
    raise ValueError(
        "weights must be 'imagenet', None or the path of a weights file; "
        f"received {weights!r}"
    )
