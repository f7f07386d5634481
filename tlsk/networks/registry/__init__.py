"""The networks tlsk can cut: one registry entry per backbone.

Each entry says everything that differs between networks. A
:class:`BackboneSpec` (``_zoo.py``, ``keras.applications``' CNNs): Keras's
builder, the input preprocessing, native and minimum input size, the named
cut points with their feature lengths, the fine-tuning stages, the ImageNet
weights files (names, URLs, pinned digests) and the cost in GFLOP per image.
A :class:`HubSpec` (``_hub_zoo.py``, KerasHub's vision transformers: DINOv2,
DINOv3, SigLIP 2, CLIP, ViT): its KerasHub class, architecture and preset,
its preset's image converter, poolings, blocks and cost. Adding a backbone is
adding an entry; nothing else in tlsk names a network.

Examples
--------
>>> from tlsk.networks.registry import get_spec, list_backbones
>>> [spec.name for spec in list_backbones()][:3]
['vgg16', 'vgg19', 'resnet50']
>>> spec = get_spec("resnet50")
>>> spec.default_layer, spec.dim(spec.default_layer), spec.preprocessing
('conv5_block3_out', 2048, 'caffe')
"""

from __future__ import annotations

import os

from tlsk.networks.registry._hub_spec import (
    FAMILY_POOLINGS,
    HUB_POOLINGS,
    HubSpec,
    ImageConverterSpec,
)
from tlsk.networks.registry._hub_zoo import HUB_ZOO
from tlsk.networks.registry._spec import BackboneSpec, WeightsFile
from tlsk.networks.registry._zoo import ZOO

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "FAMILY_POOLINGS",
    "HUB_POOLINGS",
    "BackboneSpec",
    "HubSpec",
    "ImageConverterSpec",
    "WeightsFile",
    "get_spec",
    "is_model_file",
    "list_backbones",
]

BACKBONES = {spec.name: spec for spec in (*ZOO, *HUB_ZOO)}
DEFAULT_BACKBONE = "vgg16"
MODEL_FILE_SUFFIX = ".keras"


def list_backbones():
    """Every registered backbone, as :class:`BackboneSpec` records, in order.

    ``spec.as_record()`` gives a JSON-ready dict of one.
    """
    return list(BACKBONES.values())


def get_spec(name):
    """The registry entry of ``name``; a ValueError listing the known names."""
    spec = BACKBONES.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(
            f"backbone must be one of {sorted(BACKBONES)} or the path of a "
            f"'{MODEL_FILE_SUFFIX}' model file; received {name!r}"
        )
    return spec


def is_model_file(value):
    """Whether ``backbone=value`` names a Keras model file rather than an entry."""
    return isinstance(value, (str, os.PathLike)) and os.fspath(value).endswith(
        MODEL_FILE_SUFFIX
    )
