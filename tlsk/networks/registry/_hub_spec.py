"""What a registry entry says about a KerasHub network: :class:`HubSpec`.

KerasHub's vision transformers (DINOv2, DINOv3, ViT) and language-supervised
networks (CLIP, SigLIP 2) are registered beside ``keras.applications``'s
CNNs. An entry holds what KerasHub needs to build the network with random
weights and no download (its class and architecture), where its pretrained
weights come from (the KerasHub preset), what its preset's image converter
does to a picture (:class:`ImageConverterSpec`), and what tlsk offers on it:
poolings, block cut points, cost. The code that builds and cuts the networks
is :mod:`tlsk.networks.hub`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FAMILY_POOLINGS", "HUB_POOLINGS", "HubSpec", "ImageConverterSpec"]

# Every pooling a KerasHub network may offer; each entry lists its own.
# "cls": the class token after the final norm; "mean": the mean of the patch
# tokens (class and register tokens left out); "cls+mean": both, concatenated
# (DINOv2's linear-evaluation protocol); "embedding": a CLIP or SigLIP
# network's own pooled and projected image embedding, the one its text tower
# is trained against.
HUB_POOLINGS = ("cls", "mean", "cls+mean", "embedding")

# The poolings each family offers, its default first: DINO and ViT have a
# class token and patch tokens; CLIP also its projected image embedding;
# SigLIP its attention-pooled embedding and patch tokens, no class token.
FAMILY_POOLINGS = {
    "dinov2": ("cls", "mean", "cls+mean"),
    "dinov3": ("cls", "mean", "cls+mean"),
    "vit": ("cls", "mean", "cls+mean"),
    "clip": ("embedding", "cls", "mean", "cls+mean"),
    "siglip": ("embedding", "mean"),
}


@dataclass(frozen=True)
class ImageConverterSpec:
    """What a KerasHub preset's image converter does to an image.

    KerasHub's ``ImageConverter`` resizes with ``keras.layers.Resizing``
    (``interpolation``, ``antialias``, ``crop_to_aspect_ratio``) in float32,
    then computes ``x * scale + offset`` per channel. tlsk does the same, with
    the same Keras layer, so that a picture becomes the network input it
    would become in KerasHub.

    >>> half = (1 / 127.5,) * 3
    >>> spec = ImageConverterSpec("bilinear", False, False, half, (-1.0,) * 3)
    >>> spec.apply(np.full((1, 2, 2, 3), 255.0))[0, 0, 0]
    array([1., 1., 1.], dtype=float32)
    """

    interpolation: str
    antialias: bool
    crop_to_aspect_ratio: bool
    scale: tuple[float, float, float]
    offset: tuple[float, float, float]

    @classmethod
    def from_config(cls, config: Mapping) -> ImageConverterSpec:
        """From an ``image_converter.json``'s ``config`` (or the registry's)."""

        def channels(value, default):
            value = default if value is None else value
            if isinstance(value, int | float):
                value = [value] * 3
            value = tuple(float(v) for v in value)
            if len(value) != 3 or not all(np.isfinite(value)):
                raise ValueError(f"expected 3 finite values; received {value!r}")
            return value

        return cls(
            interpolation=str(config.get("interpolation", "bilinear")),
            antialias=bool(config.get("antialias", False)),
            crop_to_aspect_ratio=bool(config.get("crop_to_aspect_ratio", True)),
            scale=channels(config.get("scale"), 1.0),
            offset=channels(config.get("offset"), 0.0),
        )

    @property
    def tag(self) -> str:
        """Its name in a cache fingerprint: every value that changes a pixel."""
        record = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return "kerashub-converter-" + hashlib.sha256(record.encode()).hexdigest()[:16]

    def resize(self, image, size: int) -> np.ndarray:
        """``image`` (RGB, uint8 or float) as a float32 ``size`` x ``size`` picture.

        Resized in its own dtype, as KerasHub's converter resizes what it is
        given: a uint8 picture comes back rounded to whole levels.
        """
        resizing = self._resizing(int(size))
        out = resizing(np.asarray(image)[None])
        return np.asarray(out, dtype=np.float32)[0]

    def apply(self, batch) -> np.ndarray:
        """A new float32 array: ``x * scale + offset`` per channel."""
        out = np.asarray(batch, dtype=np.float32) * np.asarray(self.scale, np.float32)
        out += np.asarray(self.offset, np.float32)
        return out

    def _resizing(self, size):
        """The Keras layer, one per thread and size (layers are not shared)."""
        cache = _RESIZING.__dict__.setdefault("layers", {})
        key = (self, size)
        if key not in cache:
            import keras

            cache[key] = keras.layers.Resizing(
                size,
                size,
                interpolation=self.interpolation,
                antialias=self.antialias,
                crop_to_aspect_ratio=self.crop_to_aspect_ratio,
                dtype="float32",
            )
        return cache[key]


_RESIZING = threading.local()


@dataclass(frozen=True, eq=False)
class HubSpec:
    """Everything that differs between two KerasHub networks.

    Attributes
    ----------
    name : str
        tlsk's name, the value of ``backbone=``.
    family : {"dinov2", "dinov3", "vit", "clip", "siglip"}
        How the network's vision tower is cut and pooled (:mod:`tlsk.networks.hub`).
    hub_class : str
        The class of ``keras_hub.models`` that builds it.
    preset : str
        KerasHub's preset: ``from_preset(preset)`` loads the pretrained
        network (``weights="pretrained"``).
    kaggle_handle : str
        Where KerasHub downloads that preset from.
    source : str
        The original checkpoint the preset was converted from.
    config : dict
        The class's constructor arguments (nested ``vision_encoder`` and
        ``text_encoder`` ones for CLIP and SigLIP): the architecture, built
        with random weights by ``weights=None``, with no download.
    converter : ImageConverterSpec
        What the preset's image converter does to a picture.
    native_size : int
        The side its preset's image converter resizes to.
    patch_size : int
        Its patches' side: an input size must be a multiple of it.
    n_blocks : int
        Transformer blocks of its vision tower (``layer="block<i>"``,
        ``trainable_blocks``).
    hidden_dim : int
        Width of its tokens.
    embedding_dim : int or None
        Length of the ``"embedding"`` pooling (CLIP, SigLIP).
    prefix_tokens : int
        Tokens before the patch tokens in its sequence: the class token and
        its register (DINOv2) or storage (DINOv3) tokens; 0 for SigLIP,
        which has no class token.
    resizable : bool
        Whether it takes other input sizes than its native one (KerasHub
        interpolates the position embeddings of DINO and ViT).
    gflops : float
        Floating-point operations per image at ``native_size`` for the
        vision tower (two per multiply-add), measured by
        ``benchmarks/backbone_costs.py``.
    params : int
        Parameters of the whole network (the text tower of CLIP and SigLIP
        included), as built.
    linear_probe : str
        The published linear-probe figure, with its source ("" if none).
    """

    name: str
    family: str
    hub_class: str
    preset: str
    kaggle_handle: str
    source: str
    config: dict = field(repr=False)
    converter: ImageConverterSpec
    native_size: int
    patch_size: int
    n_blocks: int
    hidden_dim: int
    embedding_dim: int | None
    prefix_tokens: int
    resizable: bool
    gflops: float
    params: int
    linear_probe: str = ""

    # What code written for keras.applications entries asks of any entry.
    preprocessing = "kerashub"
    imagenet = None
    imagenet_top = None
    imagenet_top1 = None
    imagenet_fixup = None
    stage_ends = ()

    @property
    def builder(self) -> str:
        """The network's name for people: its KerasHub class and preset."""
        return f"{self.hub_class} ({self.preset})"

    @property
    def min_size(self) -> int:
        return self.patch_size

    @property
    def cut_points(self) -> tuple[str, ...]:
        """The values ``layer=`` accepts: the output of each block, in order."""
        return tuple(f"block{i}" for i in range(1, self.n_blocks + 1))

    @property
    def dims(self) -> tuple[int, ...]:
        return (self.hidden_dim,) * self.n_blocks

    @property
    def default_layer(self) -> str:
        return self.cut_points[-1]

    @property
    def poolings(self) -> tuple[str, ...]:
        """The poolings it offers, its default first."""
        return FAMILY_POOLINGS[self.family]

    @property
    def default_pooling(self) -> str:
        return self.poolings[0]

    @property
    def n_stages(self) -> int:
        """How many blocks ``trainable_blocks`` counts."""
        return self.n_blocks

    def pooling_dim(self, pooling: str) -> int:
        """The feature length of ``pooling`` at the last block."""
        if pooling == "embedding":
            return int(self.embedding_dim)
        return self.hidden_dim * (2 if pooling == "cls+mean" else 1)

    def dim(self, layer):
        """The feature length of the default pooling at cut point ``layer``."""
        self.cut_points.index(layer)  # a ValueError for another name
        return self.pooling_dim(self.default_pooling)

    def input_size(self, value):
        """The side images are resized to for an ``input_size`` parameter."""
        if value is None:
            return self.native_size
        value = int(value)
        if not self.resizable and value != self.native_size:
            raise ValueError(
                f"input_size must be {self.native_size} for {self.name}, whose "
                f"position embeddings KerasHub does not resize; received {value}"
            )
        if value < self.patch_size or value % self.patch_size:
            raise ValueError(
                f"input_size must be a multiple of {self.name}'s patch size, "
                f"{self.patch_size}; received {value}"
            )
        return value

    def as_record(self) -> dict:
        """A JSON-ready dict of this entry."""
        record = {
            name: getattr(self, name)
            for name in (
                "name",
                "family",
                "hub_class",
                "preset",
                "kaggle_handle",
                "source",
                "native_size",
                "patch_size",
                "n_blocks",
                "hidden_dim",
                "embedding_dim",
                "prefix_tokens",
                "resizable",
                "gflops",
                "params",
                "linear_probe",
                "builder",
                "min_size",
                "default_layer",
                "n_stages",
                "preprocessing",
                "imagenet_top1",
            )
        }
        record["config"] = json.loads(json.dumps(self.config))
        record["converter"] = dataclasses.asdict(self.converter)
        record["poolings"] = {p: self.pooling_dim(p) for p in self.poolings}
        record["cut_points"] = list(self.cut_points)
        record["dims"] = list(self.dims)
        record["stage_ends"] = []
        record["weights_from"] = (
            f"KerasHub preset {self.preset!r} ({self.kaggle_handle}), converted "
            f"from {self.source}"
        )
        return record
