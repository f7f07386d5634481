"""KerasHub networks: build them, find their presets, cut and pool their tokens.

A KerasHub backbone comes from one of three places:

* its registry entry's architecture (``weights=None``): built with random
  weights, drawn from tlsk's fixed seed, with no download;
* a preset folder (what ``save_to_preset`` writes: ``config.json``,
  ``model.weights.h5``, ``image_converter.json``, a tokenizer): loaded with
  KerasHub's own ``from_preset``, offline, after its class is checked to be
  one tlsk supports; given as ``weights=`` for a registry name or as
  ``backbone=`` for a network of your own;
* KerasHub's published preset (``weights="pretrained"``): the folder KerasHub
  keeps in its download cache, downloaded there first when missing (offline,
  an immediate error says which preset and how to copy one over).

:func:`vision_model` gives a Keras model from preprocessed images to the
vision tower's tokens at a block, and, for CLIP and SigLIP, to its pooled
image embedding; :func:`pooled` turns them into one vector as the network's
authors define it (:class:`tlsk.networks.hub_layers.TokenPooling`, registered with
Keras, so that a fine-tuned network saves and loads with ``safe_mode=True``).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass

from tlsk.networks.random_weights import RANDOM_WEIGHTS_ID, initialise_randomly
from tlsk.networks.registry import FAMILY_POOLINGS, HubSpec, ImageConverterSpec
from tlsk.networks.weights import WeightsUnavailableError

__all__ = [
    "FAMILIES",
    "HubNetwork",
    "PRESET_WEIGHTS",
    "hub_base",
    "hub_network",
    "is_preset_folder",
    "preset_identity",
    "read_preset",
    "require_keras_hub",
    "vision_model",
]

HUB_EXTRA = "pip install 'tlsk[hub]'"

# The values of ``weights=`` that load a registry entry's published preset;
# "imagenet" is what the keras.applications entries call theirs.
PRESET_WEIGHTS = ("pretrained", "imagenet")

# KerasHub class -> tlsk's family: how its vision tower is cut and pooled.
FAMILIES = {
    "DINOV2Backbone": "dinov2",
    "DINOV3Backbone": "dinov3",
    "ViTBackbone": "vit",
    "CLIPBackbone": "clip",
    "SigLIPBackbone": "siglip",
}

# A preset folder's files are hashed into the fingerprint; one with more or
# larger files than these is not a preset of a vision backbone.
_PRESET_MAX_FILES = 64
_PRESET_MAX_JSON_BYTES = 4 * 2**20


def require_keras_hub():
    """The ``keras_hub`` module, or an ImportError that says how to install it."""
    try:
        import keras_hub
    except ImportError as err:
        raise ImportError(
            f"KerasHub backbones (DINOv2, DINOv3, SigLIP 2, CLIP, ViT) need the "
            f"optional extra: {HUB_EXTRA} (keras-hub needs Python 3.11 or "
            f"newer); received {err}"
        ) from err
    return keras_hub


# -- preset folders -----------------------------------------------------------


def is_preset_folder(value) -> bool:
    """Whether ``value`` names a KerasHub preset folder (one with a config.json)."""
    if not isinstance(value, str | os.PathLike):
        return False
    path = os.fspath(value)
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))


@dataclass(frozen=True)
class PresetInfo:
    """What a preset folder says of itself."""

    folder: str
    hub_class: str
    family: str
    converter: ImageConverterSpec | None
    image_size: int | None
    n_blocks: int
    patch_size: int | None = None


def read_preset(folder) -> PresetInfo:
    """Read and check a preset folder's ``config.json`` and image converter.

    Raises ValueError naming the folder when it is not a preset of a class
    tlsk supports (:data:`FAMILIES`).
    """
    folder = os.path.abspath(os.fspath(folder))
    config = _read_json(os.path.join(folder, "config.json"))
    hub_class = config.get("class_name") if isinstance(config, dict) else None
    if hub_class not in FAMILIES:
        raise ValueError(
            f"{folder!r} is not a preset folder of a network tlsk supports: its "
            f"config.json names class {hub_class!r}, not one of {sorted(FAMILIES)}"
        )
    converter = image_size = None
    path = os.path.join(folder, "image_converter.json")
    if os.path.lexists(path):
        record = _read_json(path)
        settings = record.get("config", {}) if isinstance(record, dict) else {}
        if not isinstance(settings, dict):
            raise ValueError(f"{path!r} holds no image converter configuration")
        converter = ImageConverterSpec.from_config(settings)
        size = settings.get("image_size")
        if isinstance(size, list | tuple) and size and isinstance(size[0], int):
            image_size = int(size[0])
    settings = config.get("config")
    if FAMILIES[hub_class] in ("clip", "siglip") and isinstance(settings, dict):
        vision = settings.get("vision_encoder")
        settings = vision.get("config") if isinstance(vision, dict) else None
    n_blocks = settings.get("num_layers") if isinstance(settings, dict) else None
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(
            f"{folder!r}'s config.json gives its vision tower no number of blocks "
            f"(num_layers); received {n_blocks!r}"
        )
    family = FAMILIES[hub_class]
    patch = _plain(settings.get("patch_size"))
    patch = patch if isinstance(patch, int) and not isinstance(patch, bool) else None
    return PresetInfo(folder, hub_class, family, converter, image_size, n_blocks, patch)


def _read_json(path):
    try:
        info = os.lstat(path)
    except OSError as err:
        raise ValueError(f"cannot read {path!r}: {err}") from err
    if not stat.S_ISREG(info.st_mode) or info.st_size > _PRESET_MAX_JSON_BYTES:
        raise ValueError(
            f"{path!r} is not a preset's JSON file (a regular file of at most "
            f"{_PRESET_MAX_JSON_BYTES} bytes)"
        )
    with open(path, encoding="utf-8") as file:
        try:
            return json.load(file)
        except (ValueError, RecursionError) as err:
            raise ValueError(f"{path!r} is not valid JSON: {err}") from err


def preset_identity(folder) -> str:
    """The SHA-256 of a preset folder: every file's name and content, in order.

    Links are not followed (a link in a preset is refused), so that the
    digest names exactly what ``from_preset`` reads.
    """
    from tlsk.networks.weights import file_sha256

    folder = os.path.abspath(os.fspath(folder))
    entries = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files) + [
            d for d in dirs if os.path.islink(os.path.join(root, d))
        ]:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            if not stat.S_ISREG(os.lstat(path).st_mode):
                raise ValueError(
                    f"preset folder {folder!r} holds {relative!r}, which is not a "
                    "regular file (a link, a device): copy the preset's files there"
                )
            entries.append(f"{relative}\t{file_sha256(path)}")
            if len(entries) > _PRESET_MAX_FILES:
                raise ValueError(
                    f"preset folder {folder!r} holds more than {_PRESET_MAX_FILES} "
                    "files; a preset of a vision network holds a handful"
                )
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def published_preset_folder(spec: HubSpec) -> str:
    """The folder of ``spec``'s published preset, downloaded by KerasHub if missing.

    Offline (or with ``TLSK_NO_DOWNLOAD=1``) and not in KerasHub's download
    cache, a :class:`WeightsUnavailableError` says at once which preset is
    missing, where KerasHub fetches it and how to give a copied folder.
    """
    folder = _cached_preset_folder(spec)
    if folder is not None:
        return folder
    if os.environ.get("TLSK_NO_DOWNLOAD"):
        raise _unavailable(spec, "downloads are off (TLSK_NO_DOWNLOAD is set)")
    keras_hub = require_keras_hub()
    try:
        keras_hub.models.Backbone.from_preset(spec.preset, load_weights=False)
        from keras_hub.src.utils.preset_utils import get_file

        for name in ("model.weights.h5", "image_converter.json"):
            get_file(spec.kaggle_handle, name)
    except Exception as err:  # KerasHub raises many kinds when offline
        raise _unavailable(spec, f"the download failed: {err}") from err
    folder = _cached_preset_folder(spec)
    if folder is None:
        raise _unavailable(spec, "KerasHub kept no complete copy of it")
    return folder


def published_preset_is_cached(spec: HubSpec) -> bool:
    """Whether ``spec``'s published preset is in KerasHub's download cache."""
    return _cached_preset_folder(spec) is not None


def _cached_preset_folder(spec):
    """Where KerasHub's download cache (kagglehub) holds ``spec``'s preset, if whole."""
    folder = os.path.join(_kaggle_cache_dir(), "models", *_handle_parts(spec))
    needed = ("config.json", "model.weights.h5")
    if all(os.path.isfile(os.path.join(folder, name)) for name in needed):
        return folder
    return None


def _handle_parts(spec):
    """``kaggle://keras/dinov2/keras/dinov2_small/1`` -> its path parts."""
    return spec.kaggle_handle.removeprefix("kaggle://").split("/")


def _kaggle_cache_dir():
    """kagglehub's cache folder (``KAGGLEHUB_CACHE``, else ~/.cache/kagglehub)."""
    return os.environ.get(
        "KAGGLEHUB_CACHE",
        os.path.join(os.path.expanduser("~"), ".cache", "kagglehub"),
    )


def _unavailable(spec, why):
    target = os.path.join(_kaggle_cache_dir(), "models", *_handle_parts(spec))
    return WeightsUnavailableError(
        f"the pretrained weights of {spec.name} (KerasHub preset {spec.preset!r}, "
        f"from {spec.kaggle_handle}) are not on this machine and {why}. On a "
        f"machine with a network, keras_hub.models.Backbone.from_preset("
        f"{spec.preset!r}) downloads it; copy that preset folder (config.json, "
        f"model.weights.h5, image_converter.json, ...) to {target!r}, or give "
        "that folder's path as weights= or as the backbone itself"
    )


# -- building -------------------------------------------------------------------


@dataclass
class HubNetwork:
    """A built KerasHub backbone and what tlsk needs to know of it."""

    backbone: object  # the keras_hub Backbone
    family: str
    converter: ImageConverterSpec
    input_size: int
    prefix_tokens: int
    n_blocks: int


def hub_network(source, input_size, precision="float32") -> HubNetwork:
    """Build a KerasHub backbone from a registry entry or a preset folder.

    ``source`` is a :class:`HubSpec` (random weights, drawn from tlsk's fixed
    seed) or the path of a preset folder (its weights, loaded offline);
    ``input_size`` the side of its input images (None: the converter's);
    ``precision`` ``"float32"`` or ``"bfloat16"`` (mixed: variables stay
    float32). The user's global dtype policy is never read or set.
    """
    keras_hub = require_keras_hub()
    dtype = "mixed_bfloat16" if precision == "bfloat16" else "float32"
    if isinstance(source, HubSpec):
        size = source.input_size(input_size)
        backbone = _from_config(keras_hub, source, size, dtype)
        initialise_randomly(backbone)
        _derive_interpolated_position_embeddings(backbone)
        return HubNetwork(
            backbone,
            source.family,
            source.converter,
            size,
            source.prefix_tokens,
            source.n_blocks,
        )
    info = read_preset(source)
    if info.converter is None:
        raise ValueError(
            f"preset folder {info.folder!r} has no image_converter.json: tlsk "
            "prepares images as the preset's image converter does"
        )
    size = input_size or info.image_size
    if size is not None and info.patch_size and int(size) % info.patch_size:
        raise ValueError(
            f"input_size must be a multiple of the patch size of the preset in "
            f"{info.folder!r}, {info.patch_size}; received {size}"
        )
    kwargs = {"dtype": dtype}
    # DINOv2 and DINOv3 interpolate their position embeddings to any size;
    # the others' are a table of one size (checked below).
    if size is not None and info.family in ("dinov2", "dinov3"):
        kwargs["image_shape"] = (int(size), int(size), 3)
    backbone = keras_hub.models.Backbone.from_preset(info.folder, **kwargs)
    vision = _vision_tower(backbone, info.family)
    built_size = int(vision.inputs[0].shape[1])
    if size is not None and int(size) != built_size:
        raise ValueError(
            f"input_size must be {built_size} for the preset in {info.folder!r} "
            f"({info.hub_class} does not resize its position embeddings); "
            f"received {size}"
        )
    return HubNetwork(
        backbone,
        info.family,
        info.converter,
        built_size,
        _prefix_tokens(backbone, info.family),
        _n_blocks(backbone, info.family),
    )


def _derive_interpolated_position_embeddings(backbone):
    """Make DINOv2's two copies of its position embeddings agree, as a load does.

    DINOv2 keeps them at the preset's size and interpolated to the input's;
    drawn at random, the two are unrelated, and a saved network (fine-tuned)
    would load back computing something else: KerasHub saves the first
    (derived from the second when that changed) and interpolates the second
    from it on load. Its own save and load, here, derive them so.
    """
    for layer in backbone._flatten_layers():
        if hasattr(layer, "interpolated_position_embeddings"):
            store = {}
            layer.save_own_variables(store)
            layer.load_own_variables(store)


def _from_config(keras_hub, spec, size, dtype):
    config = json.loads(json.dumps(spec.config))  # a copy, lists for tuples
    models = keras_hub.models
    if spec.family in ("clip", "siglip"):
        vision = dict(config.pop("vision_encoder"))
        text = dict(config.pop("text_encoder"))
        vision["image_shape"] = [size, size, 3]
        vision_encoder = getattr(models, vision.pop("class_name"))(
            **vision, dtype=dtype
        )
        text_encoder = getattr(models, text.pop("class_name"))(**text, dtype=dtype)
        cls = getattr(models, spec.hub_class)
        return cls(vision_encoder, text_encoder, **config, dtype=dtype)
    config["image_shape"] = [size, size, 3]
    return getattr(models, spec.hub_class)(**config, dtype=dtype)


def _vision_tower(backbone, family):
    """The functional model that takes the images."""
    return backbone.vision_encoder if family in ("clip", "siglip") else backbone


def _prefix_tokens(backbone, family):
    """Class, register or storage tokens before the patch tokens."""
    if family in ("dinov2", "dinov3"):
        return 1 + int(backbone.num_register_tokens)
    if family == "vit":
        return int(bool(getattr(backbone, "use_class_token", True)))
    return 1 if family == "clip" else 0


def _n_blocks(backbone, family):
    return int(_vision_tower(backbone, family).num_layers)


# -- cutting and pooling -----------------------------------------------------------


def vision_model(network: HubNetwork, block=None, embedding=True):
    """A Keras model: preprocessed images -> ``{"tokens": ..., "embedding": ...}``.

    ``"tokens"``: the vision tower's token sequence after block ``block``
    (1-based; None: the last) and the tower's final norm, as DINOv2's authors
    read intermediate layers. ``"embedding"`` (CLIP and SigLIP, last block
    only, unless ``embedding=False``): the tower's pooled, projected image
    embedding, the one its text tower is trained against. Without it, the
    model holds no layer its tokens do not need (a network to fine-tune
    trains nothing it does not use).
    """
    import keras

    family, backbone = network.family, network.backbone
    last = block is None or block == network.n_blocks
    embedding = embedding and last
    size = network.input_size
    images = keras.Input((size, size, 3), dtype="float32", name="images")
    outputs = {}
    if family in ("dinov2", "dinov3"):
        key = "images" if family == "dinov2" else "pixel_values"
        if last:
            outputs["tokens"] = backbone({key: images})
        else:
            stages = keras.Model(
                backbone.inputs, backbone.pyramid_outputs[f"stage{block}"]
            )
            outputs["tokens"] = backbone.layernorm(stages({key: images}))
    elif family == "vit":
        if last:
            # The backbone as one layer: a fine-tuned network holding it saves
            # and loads (KerasHub 0.32's patching layer alone does not load).
            outputs["tokens"] = backbone(images)
        else:
            encoder = backbone.get_layer("vit_encoder")
            tokens = backbone.get_layer("vit_patching_and_embedding")(images)
            for layer in encoder.encoder_layers[:block]:
                tokens = layer(tokens)
            outputs["tokens"] = encoder.layer_norm(tokens)
    elif family == "clip":
        encoder = backbone.vision_encoder
        if last:
            tokens = encoder({"images": images})
            if embedding:
                outputs["embedding"] = backbone.vision_projection(tokens[:, 0, :])
        else:
            inner = keras.Model(
                encoder.inputs, encoder.encoder_layers[block - 1].output
            )
            tokens = encoder.layer_norm(inner({"images": images}))
        outputs["tokens"] = tokens
    else:  # siglip
        encoder = backbone.vision_encoder
        if embedding:
            inner = keras.Model(
                encoder.inputs, [encoder.post_layer_norm.output, encoder.output]
            )
            outputs["tokens"], outputs["embedding"] = inner({"images": images})
        elif last:
            inner = keras.Model(encoder.inputs, encoder.post_layer_norm.output)
            outputs["tokens"] = inner({"images": images})
        else:
            inner = keras.Model(
                encoder.inputs, encoder.encoder_layers[block - 1].output
            )
            outputs["tokens"] = encoder.post_layer_norm(inner({"images": images}))
    return keras.Model(images, outputs, name=f"{backbone.name}_vision")


def poolings(family) -> tuple[str, ...]:
    """The poolings a family offers, its default first."""
    return FAMILY_POOLINGS[family]


def check_pooling(pooling, family, name, last_block=True):
    """``pooling`` resolved for a network (None: its default).

    A ValueError when the network does not offer it.
    """
    offered = poolings(family)
    if pooling is None:
        pooling = offered[0] if last_block or offered[0] != "embedding" else offered[1]
    if pooling not in offered:
        raise ValueError(
            f"pooling must be one of {list(offered)} for {name}; received {pooling!r}"
        )
    if pooling == "embedding" and not last_block:
        raise ValueError(
            f"pooling='embedding' is {name}'s image embedding, after its last "
            "block; for an earlier layer use one of "
            f"{[p for p in offered if p != 'embedding']}"
        )
    return pooling


def pooled(outputs, pooling, prefix_tokens, name=None):
    """The float32 feature tensor of ``pooling`` from :func:`vision_model`'s outputs.

    ``name``: the pooling layer's (default: after the pooling).
    """
    if pooling == "embedding":
        import keras

        return keras.layers.Activation(
            "linear", dtype="float32", name=name or "embedding"
        )(outputs["embedding"])
    from tlsk.networks.hub_layers import TokenPooling

    name = name or pooling.replace("+", "_") + "_pool"  # scope names take no "+"
    return TokenPooling(pooling, prefix_tokens, name=name)(outputs["tokens"])


# -- tlsk's backbones ---------------------------------------------------------------

PRESET_FOLDER = "kerashub-preset"  # the fingerprint's "model" for a preset folder


def is_hub_backbone(backbone) -> bool:
    """Whether ``backbone`` (resolved) names a KerasHub network."""
    from tlsk.networks.registry import BACKBONES

    if isinstance(backbone, str) and isinstance(BACKBONES.get(backbone), HubSpec):
        return True
    return is_preset_folder(backbone)


def weights_source(backbone, weights):
    """What gives the network its weights: a :class:`HubSpec` (random) or a folder.

    ``backbone`` a registry name or a preset folder (resolved); ``weights``
    ``"pretrained"``/``"imagenet"`` (the published preset, or a folder's
    own weights), None (random) or a preset folder.
    """
    from tlsk.networks.registry import get_spec

    if is_preset_folder(backbone):
        if weights is None:
            raise ValueError(
                f"weights=None builds a registry network with random weights; "
                f"backbone {backbone!r} is a preset folder, which holds its own: "
                "use weights='pretrained'"
            )
        if weights not in PRESET_WEIGHTS:
            raise ValueError(
                f"weights of a preset folder backbone ({backbone!r}) are its own: "
                f"weights must be 'pretrained'; received {weights!r}"
            )
        return backbone
    spec = get_spec(backbone)
    if weights is None:
        return spec
    if weights in PRESET_WEIGHTS:
        folder = published_preset_folder(spec)
    elif not os.path.isdir(weights):
        raise ValueError(
            f"weights of {spec.name}, a KerasHub network, come as a preset folder "
            "(config.json, model.weights.h5, ... as save_to_preset writes them): "
            "weights must be 'pretrained', None or the path of such a folder; "
            f"received {os.fspath(weights)!r}, which is not a folder"
        )
    else:
        folder = weights
    check_preset_architecture(spec, folder)
    return read_preset(folder).folder


# What must agree between a registry entry and a preset folder given as its
# weights: the architecture (input size and image converter may differ).
_ARCHITECTURE_KEYS = (
    "patch_size",
    "num_layers",
    "hidden_dim",
    "num_heads",
    "intermediate_dim",
    "mlp_dim",
    "num_register_tokens",
    "projection_dim",
)


def check_preset_architecture(spec: HubSpec, folder) -> None:
    """Raise ValueError unless the preset in ``folder`` is ``spec``'s network."""
    info = read_preset(folder)
    if info.hub_class != spec.hub_class:
        raise ValueError(
            f"weights {os.fspath(folder)!r} is a preset of {info.hub_class}, not "
            f"of {spec.name} ({spec.hub_class})"
        )
    config = _read_json(os.path.join(info.folder, "config.json")).get("config", {})
    expected = spec.config
    if info.family in ("clip", "siglip"):
        vision = config.get("vision_encoder", {})
        config = {
            **config,
            **(vision.get("config", {}) if isinstance(vision, dict) else {}),
        }
        expected = {**expected, **expected["vision_encoder"]}
    for key in _ARCHITECTURE_KEYS:
        if (
            key in expected
            and key in config
            and _plain(config[key]) != _plain(expected[key])
        ):
            raise ValueError(
                f"weights {os.fspath(folder)!r} is a preset of another "
                f"{spec.hub_class} than {spec.name}: its {key} is "
                f"{config[key]!r}, {spec.name}'s {expected[key]!r}; give it as "
                "backbone= to use that network"
            )


def _plain(value):
    """``[16, 16]``, ``(16, 16)`` and ``16`` name one patch size."""
    if isinstance(value, list | tuple) and len(set(value)) == 1:
        return value[0]
    return value


def hub_identity(backbone, weights) -> dict:
    """What identifies the network's parameters: its preset folder's SHA-256."""
    source = weights_source(backbone, weights)
    if isinstance(source, HubSpec):
        return {"weights_sha256": RANDOM_WEIGHTS_ID}
    digest = preset_identity(source)
    if is_preset_folder(backbone):
        return {"preset_sha256": digest, "weights_sha256": digest}
    return {"weights_sha256": digest}


def hub_layer(backbone, layer, n_blocks):
    """``layer`` as a block number (1-based); None or ``"block<n>"`` or an int."""
    if layer is None:
        return n_blocks
    text = str(layer)
    number = text[len("block") :] if text.startswith("block") else text
    if number.isdigit() and 1 <= int(number) <= n_blocks:
        return int(number)
    raise ValueError(
        f"layer must be a block of {network_label(backbone)}: 'block1' to "
        f"'block{n_blocks}' (or 1 to {n_blocks}); received {layer!r}"
    )


def network_label(backbone):
    """How a message names ``backbone``: its registry name, or its preset folder."""
    if is_preset_folder(backbone):
        name = os.path.basename(os.path.normpath(os.fspath(backbone)))
        return f"the preset in {name!r}"
    return backbone


def hub_base(backbone, weights, input_size, precision):
    """``(network, identity)``: a new :class:`HubNetwork` and what identifies it.

    ``backbone`` a registry name or a preset folder and ``weights`` as
    :func:`weights_source` takes them (resolved); the network is the
    caller's (the feature extractor cuts it, fine-tuning trains it).
    """
    identity = hub_identity(backbone, weights)
    network = hub_network(weights_source(backbone, weights), input_size, precision)
    return network, identity


def build_hub(backbone, weights, layer, pooling, input_size, precision):
    """``(model, identity, layer name, pooling, converter)`` of a KerasHub backbone.

    ``model`` takes images prepared by ``converter`` and returns pooled float32
    vectors.
    """
    import keras

    network, identity = hub_base(backbone, weights, input_size, precision)
    block = hub_layer(backbone, layer, network.n_blocks)
    last = block == network.n_blocks
    pooling = check_pooling(pooling, network.family, network_label(backbone), last)
    tower = vision_model(network, block)
    features = pooled(tower.output, pooling, network.prefix_tokens)
    model = keras.Model(tower.input, features, name=f"{tower.name}_block{block}")
    return model, identity, f"block{block}", pooling, network.converter
