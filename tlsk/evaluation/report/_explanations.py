"""Where the model looked, drawn over the thumbnails of the report's mistakes."""

from __future__ import annotations

import os

from tlsk.evaluation.report._thumbnails import THUMBNAIL_PX, VIEW_FOLDER, VIEW_PX

# A map on fewer cells than this (a 2 x 2 grid, from a small input size)
# says nothing about where: it is not drawn.
_SMALLEST_GRID = 9


def explanation_thumbnails(model, images, indices, folder):
    """Class activation maps of ``images[i]`` for ``i`` in ``indices``, as files.

    Each map is for the class the model predicted (for a mistake: what made
    it choose the wrong class), drawn over the image by
    :func:`tlsk.evaluation.explain.overlay` and written as
    ``thumbs/cam-<i>.jpg`` under ``folder`` and its larger view
    ``images/cam-<i>.jpg``.

    Returns ``(names, note)``: ``{i: "cam-<i>.jpg"}`` and a sentence for the
    page saying how the maps were made, or ``({}, why not)`` for a model
    :func:`tlsk.explain` does not support.
    """
    from tlsk.evaluation.explain import explain, overlay, unsupported_reason

    indices = list(indices)
    if not indices:
        return {}, ""
    reason = unsupported_reason(model)
    if reason is not None:
        return {}, f"no maps of where the model looks: {reason}"
    result = explain(model, [images[i] for i in indices], target="predicted")
    height, width = result.maps.shape[1:]
    if height * width < _SMALLEST_GRID:
        return {}, (
            f"no maps of where the model looks: its last feature map is "
            f"{height} x {width} at this input size, too coarse to show a place"
        )
    thumbs = os.path.join(folder, "thumbs")
    views = os.path.join(folder, VIEW_FOLDER)
    os.makedirs(views, exist_ok=True)
    names = {}
    for i, cam in zip(indices, result.maps, strict=True):
        try:
            picture = overlay(images[i], cam, alpha=0.45, max_side=VIEW_PX)
        except (OSError, ValueError):
            continue  # an image that does not decode has no thumbnail either
        name = f"cam-{i}.jpg"
        picture.save(os.path.join(views, name), format="JPEG", quality=80)
        picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        picture.save(os.path.join(thumbs, name), format="JPEG", quality=80)
        names[i] = name
    how = (
        "Grad-CAM (Selvaraju et al., 2017)"
        if result.method == "grad-cam"
        else "the exact class activation map (Zhou et al., 2016)"
    )
    note = (
        f"where the model looked for the class it predicted: {how} on the "
        f"{result.maps.shape[1]} x {result.maps.shape[2]} feature map of layer "
        f"{result.layer}, yellow where the evidence peaks"
    )
    return names, note
