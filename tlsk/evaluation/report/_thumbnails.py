"""The images a report shows: a small thumbnail and a larger view of each.

``thumbs/N.jpg`` is what the page shows; ``images/N.jpg``, beside it, is what
a thumbnail opens (at most ``VIEW_PX`` a side), so a report is one folder
that needs nothing else to show its images, even when it is sent elsewhere.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

from tlsk.images.decode import open_image_file

THUMBNAIL_PX = 160
VIEW_PX = 1024
_QUALITY = 80
VIEW_FOLDER = "images"


def write_thumbnail(source, folder: str, name: str) -> str | None:
    """Write ``folder/name`` (JPEG, at most ``THUMBNAIL_PX`` a side); its name.

    The larger view goes to ``images/name`` beside ``folder`` (at most
    ``VIEW_PX`` a side), from the same decoding. ``source`` is an image
    file's path or an image array (H, W[, 3]). A file that cannot be decoded
    gets no thumbnail (None): the report says so. An image shown in two
    galleries is made once.
    """
    path = os.path.join(folder, name)
    if os.path.exists(path):
        return name
    try:
        image = _open(source)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    views = os.path.join(os.path.dirname(folder), VIEW_FOLDER)
    os.makedirs(views, exist_ok=True)
    image.thumbnail((VIEW_PX, VIEW_PX))
    image.save(os.path.join(views, name), format="JPEG", quality=_QUALITY)
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    image.save(path, format="JPEG", quality=_QUALITY)
    return name


def _open(source) -> Image.Image:
    if isinstance(source, np.ndarray):
        array = np.clip(source, 0, 255).astype(np.uint8)
        return Image.fromarray(array.squeeze()).convert("RGB")
    # The one opener of image files: regular files only, tlsk's formats.
    with open_image_file(source) as image:
        image.draft("RGB", (VIEW_PX, VIEW_PX))  # JPEG: decode no larger than needed
        return ImageOps.exif_transpose(image).convert("RGB")
