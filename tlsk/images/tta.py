"""Test-time augmentation: the views of an image that predictions average over.

``tta=`` on :class:`tlsk.ImageFeatureExtractor`, :class:`tlsk.SmallCNNClassifier`
and :class:`tlsk.KerasFineTuneClassifier` names one of :data:`TTA_MODES`:

- ``None`` (the default): the image as it is, one view;
- ``"flip"``: the image and its horizontal mirror, two views;
- ``"ten_crop"``: the image and its four corner crops, each covering
  ``CROP_FRACTION`` (7/8) of the side and resized back to it, each also
  mirrored: ten views (after nolearn's and Caffe's ten crops, which use the
  centre crop where tlsk keeps the whole image, so that the first view is
  the plain one a model without TTA sees).

A view works on a batch already resized to the network's input, in pixel
values [0, 255], before the network's own preprocessing. Features or
probabilities are averaged over the views.

Examples
--------
>>> import numpy as np
>>> from tlsk.images.tta import apply_view, tta_views
>>> tta_views("flip")
('original', 'mirror')
>>> batch = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
>>> np.array_equal(apply_view(batch, "mirror"), batch[:, :, ::-1])
True
>>> apply_view(batch, "top_left_mirror").shape
(2, 4, 4, 3)
"""

from __future__ import annotations

import numpy as np

__all__ = ["CROP_FRACTION", "TTA_MODES", "apply_view", "tta_views"]

TTA_MODES = ("flip", "ten_crop")
CROP_FRACTION = 7 / 8
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")

_VIEWS = {
    None: ("original",),
    "flip": ("original", "mirror"),
    "ten_crop": ("original", "mirror")
    + tuple(view for corner in CORNERS for view in (corner, f"{corner}_mirror")),
}


def tta_views(tta):
    """The names of the views of ``tta`` (None or one of ``TTA_MODES``), in order.

    The first is always ``"original"``, the image as it is.
    """
    if tta not in _VIEWS:
        raise ValueError(f"tta must be None or one of {TTA_MODES}; received {tta!r}")
    return _VIEWS[tta]


def apply_view(batch, view):
    """The view ``view`` of a float batch ``(n, side, side, 3)``: a new array."""
    mirrored = view == "mirror" or view.endswith("_mirror")
    corner = view.removesuffix("_mirror")
    if corner in ("original", "mirror"):
        out = batch
    elif corner in CORNERS:
        out = _corner_crop(batch, corner)
    else:
        raise ValueError(f"unknown view {view!r}")
    if mirrored:
        out = out[:, :, ::-1]
    return np.array(out, dtype=np.float32)


def _corner_crop(batch, corner):
    """The ``corner`` crop of ``CROP_FRACTION`` of each side, resized back."""
    import keras

    height, width = batch.shape[1:3]
    crop_h = max(1, round(height * CROP_FRACTION))
    crop_w = max(1, round(width * CROP_FRACTION))
    top = 0 if corner.startswith("top") else height - crop_h
    left = 0 if corner.endswith("left") else width - crop_w
    crop = batch[:, top : top + crop_h, left : left + crop_w]
    resized = keras.ops.image.resize(crop, (height, width), interpolation="bilinear")
    return keras.ops.convert_to_numpy(resized)
