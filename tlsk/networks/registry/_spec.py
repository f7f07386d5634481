"""What a registry entry says about a backbone: :class:`BackboneSpec`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BackboneSpec", "WeightsFile"]


@dataclass(frozen=True)
class WeightsFile:
    """A pretrained weights file as Keras publishes it.

    ``digest`` is pinned with ``algorithm``: what ``keras.applications``
    itself pins for the file (MD5 for most, SHA-256 for ConvNeXt), or a
    SHA-256 tlsk pins with the file's ``size``.
    """

    name: str
    url: str
    digest: str
    algorithm: str = "md5"
    size: int | None = None


@dataclass(frozen=True)
class BackboneSpec:
    """Everything that differs between two backbones.

    Attributes
    ----------
    name : str
        tlsk's name, the value of ``backbone=``.
    builder : str
        The function of ``keras.applications`` that builds it.
    keras_module : str
        The module of ``keras.applications`` with its ``preprocess_input``
        (what a Keras user calls; tlsk's own arithmetic is ``preprocessing``).
    preprocessing : str
        Its input convention, a mode of :mod:`tlsk.networks.preprocessing`.
    native_size : int
        The input side it was trained at (its ImageNet top needs it).
    min_size : int
        The smallest input side its builder accepts.
    cut_points : tuple of str
        The values ``layer=`` accepts, from the earliest: outputs of its
        stages or blocks. The last, the default, is the output of the network
        without its top (for some networks an alias of a layer whose Keras
        name is not stable from one build to the next).
    dims : tuple of int
        Channels at each cut point: the pooled ("avg", "max") feature length.
    stage_ends : tuple of str
        The last layer of each fine-tuning stage but the last, which ends at
        the output: ``trainable_blocks=N`` unfreezes the last N stages.
    gflops : float
        Floating-point operations per image at ``native_size`` without the top
        (two per multiply-add), measured by ``benchmarks/backbone_costs.py``.
    imagenet : WeightsFile
        The ImageNet weights without the top.
    imagenet_top : WeightsFile
        The ImageNet weights with the 1000-class top (``tlsk predict --imagenet``).
    imagenet_top1 : float
        ImageNet top-1 accuracy (%) with its top, as Keras publishes it.
    imagenet_fixup : callable or None
        Applied to a network after its ImageNet weights are loaded, where Keras
        builds that network differently for ImageNet weights than for others.
    head_norm : bool
        The network without its top ends with a LayerNormalization over
        channels that Keras's builder applies to the pooled vector when asked
        for pooled features (``pooling="avg"`` or ``"max"``) and to each
        position of the feature map otherwise: ConvNeXt's head norm. tlsk's
        pooled vectors at the default cut point are Keras's own, see
        :func:`tlsk.networks.backbone.split_head_norm`.
    """

    name: str
    builder: str
    keras_module: str
    preprocessing: str
    native_size: int
    min_size: int
    cut_points: tuple[str, ...]
    dims: tuple[int, ...]
    stage_ends: tuple[str, ...]
    gflops: float
    imagenet: WeightsFile
    imagenet_top: WeightsFile
    imagenet_top1: float
    imagenet_fixup: Callable | None = None
    head_norm: bool = False

    def __post_init__(self):
        if len(self.cut_points) != len(self.dims):
            raise ValueError(f"{self.name}: one dimension per cut point")

    @property
    def default_layer(self):
        """The default cut point: the output of the network without its top."""
        return self.cut_points[-1]

    @property
    def n_stages(self):
        """How many stages ``trainable_blocks`` counts."""
        return len(self.stage_ends) + 1

    def input_size(self, value):
        """The side images are resized to for an ``input_size`` parameter.

        None: the native size; below the minimum: a ValueError naming both.
        """
        if value is None:
            return self.native_size
        if value < self.min_size:
            raise ValueError(
                f"input_size must be at least {self.min_size} for {self.name}; "
                f"received {value}"
            )
        return int(value)

    def dim(self, layer):
        """The pooled feature length at cut point ``layer``."""
        return self.dims[self.cut_points.index(layer)]

    def build(self, include_top=False, input_size=None):
        """A new Keras network from Keras's own builder, without weights loaded.

        Weights are the builder's random initialisation; see
        :func:`tlsk.networks.backbone.base_network` for a network with its weights.
        """
        import keras

        size = self.native_size if input_size is None else int(input_size)
        builder = getattr(keras.applications, self.builder)
        if include_top:
            return builder(include_top=True, weights=None, classes=1000)
        return builder(include_top=False, weights=None, input_shape=(size, size, 3))

    def as_record(self):
        """A JSON-ready dict of this entry (without the fix-up function)."""
        record = dataclasses.asdict(self)
        record.pop("imagenet_fixup")
        record["cut_points"] = list(self.cut_points)
        record["dims"] = list(self.dims)
        record["stage_ends"] = list(self.stage_ends)
        record["default_layer"] = self.default_layer
        record["n_stages"] = self.n_stages
        return record
