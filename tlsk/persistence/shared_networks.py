"""What the Keras network inside a shared model file may be.

A fitted :class:`~tlsk.KerasFineTuneClassifier` or
:class:`~tlsk.SmallCNNClassifier` holds its network as ``.keras`` bytes, which
``keras.saving.load_model(..., safe_mode=True)`` builds. Safe mode refuses
code (a Lambda layer), but not a config that allocates without bound (a Dense
layer of a billion units is built, its weights drawn, before the weights file
is read), a layer that reads a path of the machine (a lookup layer's
vocabulary file, a ``TFSMLayer``'s SavedModel), or a weights file whose
datasets live in another file or expand a thousandfold. While a shared
(``.skops``) file is read (:func:`reading_shared_file`), :func:`check_network`
refuses all of these before Keras builds anything:

- the ``.keras`` archive holds Keras's own members only, expanding at most
  :data:`tlsk.persistence.skops.MAX_EXPANSION` times (a zip bomb is refused);
- every object its config names is of a Keras class that tlsk's own networks
  are made of (:data:`NETWORK_CLASSES`: every registry backbone, KerasHub's
  vision towers and tlsk's pooling of their tokens, the heads, the
  from-scratch CNN, augmentation, the optimizers tlsk compiles with);
- its weights file holds plain datasets only (no external storage, virtual
  dataset, soft or external link) that expand at most as much;
- built without allocating (Keras's ``StatelessScope``), its variables take
  no more bytes than its weights file holds, every shape but the batch is
  fixed, and no layer outputs more than :data:`MAX_LAYER_VALUES` values per
  image.

A pickle (joblib) runs code when loaded anyway; its networks are not checked.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import math
import zipfile

import numpy as np

from tlsk._util.limits import MAX_INPUT_SIZE
from tlsk.persistence.skops import EXPANSION_SLACK, MAX_EXPANSION

__all__ = [
    "MAX_LAYER_VALUES",
    "NETWORK_CLASSES",
    "check_network",
    "checking_shared_file",
    "reading_shared_file",
]

# VGG16's first block at the largest input size (2048 * 2048 * 64 = 2**28
# values, 1 GiB of float32 per image): no network tlsk builds has a larger
# layer output, and a padding layer of a crafted config would.
MAX_LAYER_VALUES = MAX_INPUT_SIZE * MAX_INPUT_SIZE * 64

_KERAS_MEMBERS = {"config.json", "metadata.json", "model.weights.h5"}
_LAYERS = (
    "Activation",
    "Add",
    "AveragePooling2D",
    "BatchNormalization",
    "Concatenate",
    "Conv2D",
    "Dense",
    "DepthwiseConv2D",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "InputLayer",
    "LayerNormalization",
    "MaxPooling2D",
    "Multiply",
    "Normalization",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "ReLU",
    "Rescaling",
    "Reshape",
    "SeparableConv2D",
    "ZeroPadding2D",
)
_INITIALIZERS = ("GlorotUniform", "HeUniform", "Ones", "VarianceScaling", "Zeros")
# The KerasHub classes a fine-tuned transformer's config names (KerasHub 0.32):
# each family's vision tower, as one layer or, for SigLIP, as the layers tlsk
# cuts from its encoder; their configurations hold sizes, never a path (a
# tokenizer, which reads its vocabulary, is not among them). (module, class),
# registered as "keras_hub>Class"; SigLIP's layers under their bare names.
_KERAS_HUB_MODELS = (
    ("keras_hub.src.models.dinov2.dinov2_backbone", "DINOV2Backbone"),
    ("keras_hub.src.models.dinov3.dinov3_backbone", "DINOV3Backbone"),
    ("keras_hub.src.models.vit.vit_backbone", "ViTBackbone"),
    ("keras_hub.src.models.clip.clip_vision_encoder", "CLIPVisionEncoder"),
)
_KERAS_HUB_LAYERS = tuple(
    ("keras_hub.src.models.siglip.siglip_layers", name)
    for name in (
        "SigLIPVisionEmbedding",
        "SigLIPEncoderLayer",
        "SigLIPMultiHeadAttentionPooling",
    )
)
_OPTIMIZERS = ("Adam", "RMSprop", "SGD")
# (module, class_name, registered_name) as Keras writes them in a config: the
# classes of every network tlsk builds (tests/robustness/test_shared_models.py
# checks each registry backbone's), and nothing that reads a file.
NETWORK_CLASSES = frozenset(
    {("keras.layers", name, None) for name in _LAYERS}
    | {("keras.initializers", name, None) for name in _INITIALIZERS}
    | {("keras.optimizers", name, None) for name in _OPTIMIZERS}
    | {
        ("tlsk.training.scaled_optimizers", f"Scaled{name}", f"tlsk>Scaled{name}")
        for name in _OPTIMIZERS
    }
    | {(module, name, f"keras_hub>{name}") for module, name in _KERAS_HUB_MODELS}
    | {(module, name, name) for module, name in _KERAS_HUB_LAYERS}
    | {
        ("keras", "DTypePolicy", None),
        ("tlsk.networks.hub_layers", "TokenPooling", "tlsk>TokenPooling"),
        # CLIP's class token, taken for its projection: tokens[:, 0, :].
        ("keras.src.ops.numpy", "GetItem", "GetItem"),
        (None, "__slice__", None),
        ("keras", "Sequential", None),
        ("keras.optimizers.schedules", "CosineDecay", None),
        ("keras.src.models.functional", "Functional", "Functional"),
        ("keras.src.applications.convnext", "LayerScale", "LayerScale"),
        ("keras.src.ops.numpy", "Add", "Add"),
        ("keras.src.ops.numpy", "Multiply", "Multiply"),
        (None, "__keras_tensor__", None),
    }
)

_SHARED_FILE = contextvars.ContextVar("tlsk_shared_file", default=False)


@contextlib.contextmanager
def reading_shared_file():
    """Within: every Keras network unpickled is checked by :func:`check_network`."""
    token = _SHARED_FILE.set(True)
    try:
        yield
    finally:
        _SHARED_FILE.reset(token)


def checking_shared_file():
    """True within :func:`reading_shared_file`."""
    return _SHARED_FILE.get()


def check_network(data):
    """Raise ValueError unless the ``.keras`` bytes ``data`` are a network tlsk makes.

    Nothing is built or allocated beyond the archive's own members: see the
    module docstring for the rules.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as err:
        raise ValueError(f"its Keras network is not a .keras archive: {err}") from err
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        names = [info.filename for info in archive.infolist()]
        if (
            len(names) != len(members)
            or not members.keys() <= _KERAS_MEMBERS
            or not {"config.json", "model.weights.h5"} <= members.keys()
        ):
            raise ValueError(
                f"its Keras network's archive holds {sorted(names)}; a network "
                f"tlsk saves holds {sorted(_KERAS_MEMBERS)}"
            )
        expanded = sum(info.file_size for info in members.values())
        if expanded > MAX_EXPANSION * len(data) + EXPANSION_SLACK:
            raise ValueError(
                f"its Keras network of {len(data)} bytes would expand to "
                f"{expanded} (a zip bomb?)"
            )
        config = json.loads(archive.read("config.json"))
        weights = archive.read("model.weights.h5")
    _check_classes(config)
    stored = _weights_bytes(weights)
    _check_built_sizes(config, stored)


def _check_classes(config):
    """Refuse any object of the config whose class tlsk's networks never use."""
    foreign, stack = set(), [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if "class_name" in node:
                named = (
                    node.get("module"),
                    node.get("class_name"),
                    node.get("registered_name"),
                )
                if not all(isinstance(part, str | None) for part in named):
                    foreign.add(repr(named))
                elif named not in NETWORK_CLASSES:
                    foreign.add(".".join(part for part in named[:2] if part))
            stack.extend(node.values())
    if foreign:
        raise ValueError(
            f"its Keras network uses {sorted(foreign)}, which no network tlsk "
            "builds does (a layer that reads a file, or code)"
        )


def _weights_bytes(data):
    """The bytes the datasets of the HDF5 weights file ``data`` declare.

    Counted as the variables they load into take them (a bfloat16 value: 4
    bytes of a float32 variable). Refuses a link that is not a hard link, a
    dataset stored outside the file (external or virtual), one that is not
    numbers, and a total that expands beyond
    :data:`tlsk.persistence.skops.MAX_EXPANSION`
    times the file.
    """
    import h5py

    total = 0
    with h5py.File(io.BytesIO(data), "r") as file:
        stack = [file]
        while stack:
            group = stack.pop()
            for name in group:
                link = group.get(name, getlink=True)
                where = f"{group.name.rstrip('/')}/{name}"
                if not isinstance(link, h5py.HardLink):
                    raise ValueError(
                        f"its Keras weights file links {where} elsewhere "
                        f"({type(link).__name__})"
                    )
                item = group[name]
                if isinstance(item, h5py.Group):
                    stack.append(item)
                    continue
                if (
                    not isinstance(item, h5py.Dataset)
                    or item.is_virtual
                    or item.external
                    or not (item.dtype.kind in "biuf" or _is_bfloat16(item))
                ):
                    raise ValueError(
                        f"its Keras weights file holds {where}, which is not an "
                        "array of numbers stored in the file"
                    )
                # A bfloat16 value loads into a float32 variable: 4 bytes.
                size = 4 if _is_bfloat16(item) else item.dtype.itemsize
                total += math.prod(item.shape) * size
    if total > MAX_EXPANSION * len(data) + EXPANSION_SLACK:
        raise ValueError(
            f"its Keras weights file of {len(data)} bytes declares {total} bytes "
            "of weights (compressed a thousandfold?)"
        )
    return total


def _is_bfloat16(dataset):
    """Whether ``dataset`` holds bfloat16 values as Keras writes them.

    HDF5 has no bfloat16: Keras stores such an array as 2-byte opaque values
    marked ``dtype="bfloat16"`` (a LoRA layer of a mixed-precision network
    saves its merged kernel so).
    """
    marked = dataset.attrs.get("dtype")
    if isinstance(marked, bytes):
        marked = marked.decode("ascii", "replace")
    return (
        dataset.dtype.kind == "V"
        and dataset.dtype.itemsize == 2
        and dataset.dtype.names is None
        and marked == "bfloat16"
    )


def _check_built_sizes(config, stored):
    """Build ``config`` without allocating; refuse sizes beyond what it stores."""
    model = _built_without_variables(config)
    needed = sum(
        math.prod(variable.shape) * _itemsize(variable.dtype)
        for variable in model.weights
    )
    if needed > stored + EXPANSION_SLACK:
        raise ValueError(
            f"its Keras network's variables take {needed} bytes and its weights "
            f"file holds {stored}: a network tlsk saved holds all its weights"
        )
    for operation in _operations(model):
        for shape in _output_shapes(operation):
            values = math.prod(shape[1:]) if None not in shape[1:] else None
            if values is None or values > MAX_LAYER_VALUES:
                raise ValueError(
                    f"its Keras layer {operation.name!r} outputs {shape} per batch: "
                    "every shape of a network tlsk builds is fixed and at most "
                    f"{MAX_LAYER_VALUES} values per image"
                )


def _itemsize(dtype):
    """Bytes per value of a Keras dtype name; 8 for one numpy does not know."""
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        return 8


def _built_without_variables(config):
    """The model of ``config``, its variables shaped but given no memory.

    Keras defers initialising variables made in a ``StatelessScope`` that
    does not initialise them; those it keeps in a global list (Keras 3,
    ``keras.src.backend.common.global_state``), restored here so that none is
    ever given its memory later.
    """
    import keras
    from keras.src.backend.common import global_state

    pending = global_state.get_global_attribute("uninitialized_variables")
    before = list(pending or [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            return keras.saving.deserialize_keras_object(
                {**config, "compile_config": None}, safe_mode=True
            )
    except Exception as err:  # Keras raises many types for a bad config
        raise ValueError(f"its Keras network's config does not build: {err}") from err
    finally:
        global_state.set_global_attribute("uninitialized_variables", before)


def _operations(model):
    """Every layer and operation of ``model``, nested models' included."""
    for operation in getattr(model, "operations", None) or model.layers:
        yield operation
        if hasattr(operation, "layers"):
            yield from _operations(operation)


def _output_shapes(operation):
    """The shape of every output of every call of ``operation`` in its model.

    Keras keeps the calls in ``_inbound_nodes`` (Keras 2 and 3): a layer
    called twice has two outputs, which ``operation.output`` (the first)
    would not show.
    """
    import keras

    for node in getattr(operation, "_inbound_nodes", []):
        for tensor in keras.tree.flatten(node.output_tensors):
            yield tuple(tensor.shape)
