"""The input conventions of pretrained networks: arithmetic on RGB batches.

Each network of :mod:`tlsk.networks.registry` was trained on inputs prepared one of
four ways, the modes of ``keras.applications.imagenet_utils.preprocess_input``:

``"caffe"``
    RGB -> BGR, minus the ImageNet mean per channel, no scaling (VGG16,
    VGG19, ResNet50).
``"tf"``
    Scaled to [-1, 1]: ``x / 127.5 - 1`` (ResNet50V2, InceptionV3, Xception).
``"torch"``
    Scaled to [0, 1], minus the ImageNet mean, divided by its standard
    deviation, per RGB channel (DenseNet).
``"none"``
    RGB values in [0, 255], untouched: the network carries its own
    preprocessing layers (EfficientNet, EfficientNetV2, MobileNetV3,
    ConvNeXt).

Every function returns a new float32 array and never modifies its input
(Keras's ``preprocess_input`` works in place on float arrays). Nothing here
knows a network: :mod:`tlsk.networks.registry` says which mode each one uses.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "IMAGENET_MEAN_RGB",
    "IMAGENET_STD_RGB",
    "HUB_PREPROCESSING",
    "NETWORK_PREPROCESSINGS",
    "PREPROCESSINGS",
    "VGG16_MEAN_BGR",
    "fingerprint_tag",
    "preprocess",
    "preprocess_vgg16",
]

PREPROCESSINGS = ("caffe", "tf", "torch", "none")
# A KerasHub network's images are prepared by its preset's image converter
# (tlsk.networks.registry.ImageConverterSpec), named so in an extractor's
# ``preprocessing_``; not a mode of :func:`preprocess`.
HUB_PREPROCESSING = "kerashub"
NETWORK_PREPROCESSINGS = (*PREPROCESSINGS, HUB_PREPROCESSING)

# The ImageNet statistics Keras's preprocess_input uses (imagenet_utils.py).
VGG16_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)

# How each mode is named in a feature cache fingerprint. These names are part
# of every cache's namespaces: changing one orphans the vectors cached under
# it (hence "caffe" is "vgg16-caffe-bgr-mean").
_FINGERPRINT_TAGS = {
    "caffe": "vgg16-caffe-bgr-mean",
    "tf": "tf-minus-one-to-one",
    "torch": "torch-imagenet-mean-std",
    "none": "none-rgb-0-255",
}


def fingerprint_tag(mode):
    """The name of a preprocessing mode in a cache fingerprint.

    >>> fingerprint_tag("caffe")
    'vgg16-caffe-bgr-mean'
    """
    _check_mode(mode)
    return _FINGERPRINT_TAGS[mode]


def preprocess(batch, mode):
    """A new float32 array: ``batch`` (RGB in [0, 255]) prepared as ``mode`` says.

    Parameters
    ----------
    batch : array-like of shape (..., 3)
        RGB values in [0, 255].
    mode : {"caffe", "tf", "torch", "none"}

    Returns
    -------
    ndarray of the same shape, dtype float32

    Examples
    --------
    >>> import numpy as np
    >>> pixel = np.array([[[0.0, 127.5, 255.0]]])
    >>> preprocess(pixel, "tf")
    array([[[-1.,  0.,  1.]]], dtype=float32)
    >>> preprocess(pixel, "caffe").round(3)
    array([[[ 151.061,   10.721, -123.68 ]]], dtype=float32)
    """
    _check_mode(mode)
    batch = np.asarray(batch)
    if batch.ndim < 1 or batch.shape[-1] != 3:
        raise ValueError(
            "expected RGB images with 3 channels in the last axis; received shape "
            f"{batch.shape}"
        )
    if mode == "caffe":
        out = batch[..., ::-1].astype(np.float32)
        out -= np.asarray(VGG16_MEAN_BGR, dtype=np.float32)
    elif mode == "tf":
        out = batch.astype(np.float32)
        out /= np.float32(127.5)
        out -= np.float32(1.0)
    elif mode == "torch":
        out = batch.astype(np.float32)
        out /= np.float32(255.0)
        out -= np.asarray(IMAGENET_MEAN_RGB, dtype=np.float32)
        out /= np.asarray(IMAGENET_STD_RGB, dtype=np.float32)
    else:
        out = batch.astype(np.float32)  # astype copies: the caller's array is safe
    return out


def preprocess_vgg16(batch):
    """VGG16 ("caffe") preprocessing: RGB -> BGR, minus the ImageNet mean.

    The same arithmetic as ``keras.applications.vgg16.preprocess_input``;
    ``preprocess(batch, "caffe")``.

    Parameters
    ----------
    batch : array-like of shape (..., 3)
        RGB values in [0, 255].

    Returns
    -------
    ndarray of the same shape, dtype float32
    """
    return preprocess(batch, "caffe")


def _check_mode(mode):
    if mode not in PREPROCESSINGS:
        raise ValueError(
            f"preprocessing must be one of {PREPROCESSINGS}; received {mode!r}"
        )
