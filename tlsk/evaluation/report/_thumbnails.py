"""Small JPEG thumbnails of the images a report shows, each made once."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

from tlsk.images.decode import open_image_file

THUMBNAIL_PX = 160
_QUALITY = 80


def write_thumbnail(source, folder: str, name: str) -> str | None:
    """Write ``folder/name`` (JPEG, at most ``THUMBNAIL_PX`` a side); its name.

    ``source`` is an image file's path or an image array (H, W[, 3]). A file
    that cannot be decoded gets no thumbnail (None): the report says so. An
    image shown in two galleries is made once.
    """
    path = os.path.join(folder, name)
    if os.path.exists(path):
        return name
    try:
        image = _open(source)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    image.save(path, format="JPEG", quality=_QUALITY)
    return name


def _open(source) -> Image.Image:
    if isinstance(source, np.ndarray):
        array = np.clip(source, 0, 255).astype(np.uint8)
        return Image.fromarray(array.squeeze()).convert("RGB")
    # The one opener of image files: regular files only, tlsk's formats.
    with open_image_file(source) as image:
        image.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))  # JPEG: decode small
        return ImageOps.exif_transpose(image).convert("RGB")
