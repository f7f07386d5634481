"""Perceptual hashes: 64 bits that change little when an image is resized,
recompressed, recoloured or slightly cropped.

The DCT hash (pHash, as Zauner describes it in "Implementation and
benchmarking of perceptual image hash functions", 2010, and as imagededup and
ImageHash compute it): the image in grey, squashed to 32 x 32 pixels, its
2-D discrete cosine transform, and of the 8 x 8 lowest frequencies one bit
each: above their median or not. Two copies of one photograph differ in a few
bits; two different photographs in about half of them.

A plain pHash is weak on crops: a copy that lost 10 % of its width and
height differs from its original in 16 bits (median, on the photographs of
the near-duplicate benchmark in benchmarks/README.md) while different
photographs differ in 18 or more. So :func:`perceptual_hashes` also hashes
nine crops of each image that keep 90 % of its width and height (the four
corners, the middle of each side and the centre): a cropped copy is then
within 2.5 % of one of the original's crops, and :func:`hash_distances`
compares each image with the other's crops as well.

The median split needs structure to split: an image with little of it (a
plain colour, a smooth gradient, two flat halves) has most of its
coefficients at zero within rounding, and its hash carries few set bits
whatever its colours (plain red and plain blue hash alike, black and white
differ in one bit). Measured: each of the 10 hashes of each of the 778
images of the near-duplicate benchmark in benchmarks/README.md (tiles of
real photographs, their copies, shifted tiles) has exactly 32 bits set, as
do those of the tiles it leaves out for lack of detail, down to a patch of
sky whose grey varies by 3 levels; those of plain colours 0 or 1, of
horizontal and vertical ramps and of two flat halves 2 to 8 (64 px). So a
hash of the whole image with fewer than :data:`PLAIN_BITS` bits set marks
the image *plain* (:func:`plain`): its hash cannot tell it from other plain
images, and :func:`colour_layout` (the mean colour of each quarter) must.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> photo = rng.integers(0, 256, (8, 8, 3)).repeat(16, 0).repeat(16, 1)
>>> photo = photo.astype(np.uint8)
>>> brighter = np.clip(photo * 1.2, 0, 255).astype(np.uint8)
>>> hashes = np.stack([perceptual_hashes(photo), perceptual_hashes(brighter)])
>>> hashes.shape, hashes.dtype
((2, 10), dtype('uint64'))
>>> int(hash_distances(hashes[:1], hashes)[0, 1]) <= 4
True
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = [
    "CROP",
    "HASH_BITS",
    "LAYOUT_TOLERANCE",
    "PLAIN_BITS",
    "colour_layout",
    "hash_distances",
    "perceptual_hashes",
    "plain",
]

HASH_BITS = 64
# What each crop keeps of the width and height, and where the crops sit
# (fractions of the room left): 3 x 3 places, so any crop of up to 10 % is
# within 2.5 % of the width or height of one of them.
CROP = 0.9
_PLACES = (0.0, 0.5, 1.0)
# Fewer set bits than this in the whole image's hash: a plain image. Half
# of the 32 a median split sets; measured, see the module's docstring.
PLAIN_BITS = 16
# Two plain images are alike when the mean colours of their quarters differ
# by at most this, in levels of 0-255, in every channel. Measured: JPEG at
# quality 20, 50 and 90 and half size moved those of the benchmark's 20
# simple images by 3.2 levels at most; twice that, and no more, so that
# images of merely similar colours do not chain into one group.
LAYOUT_TOLERANCE = 6.0
_SIDE = 32  # the DCT's input: 32 x 32 pixels
_LOW = 8  # its 8 x 8 lowest frequencies make the 64 bits


def _dct_matrix(n):
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    return np.cos(np.pi * (2 * x + 1) * k / (2 * n))


_DCT = _dct_matrix(_SIDE)
_WEIGHTS = 1 << np.arange(HASH_BITS, dtype=np.uint64)


def _hash(grey):
    """The 64-bit pHash of a grey Pillow image (mode "F")."""
    pixels = np.asarray(grey.resize((_SIDE, _SIDE), Image.Resampling.LANCZOS))
    low = (_DCT @ pixels.astype(np.float64) @ _DCT.T)[:_LOW, :_LOW].ravel()
    # Above the median by more than rounding: a plain image's coefficients
    # are all rounding noise, and must hash alike, not at random.
    noise = 1e-9 * (np.abs(low).max() + 1.0)
    bits = low > np.median(low) + noise
    return np.bitwise_or.reduce(_WEIGHTS[bits], initial=np.uint64(0))


def perceptual_hashes(image):
    """The pHash of ``image`` and of its nine 90 % crops, as 10 uint64.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3)
        RGB, uint8 or float in [0, 255] (what
        :meth:`tlsk.images.decode.ImageInput.load` returns).

    Returns
    -------
    ndarray of shape (10,), dtype uint64
        The whole image's hash first, then the crops' (rows top to bottom,
        each left to right).
    """
    rgb = np.asarray(image, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(
            f"expected an RGB image of shape (H, W, 3); received shape {rgb.shape}"
        )
    # ITU-R 601-2 luma, Pillow's own conversion to grey ("L").
    grey = Image.fromarray(rgb @ np.float32([0.299, 0.587, 0.114]), mode="F")
    width, height = grey.size
    keep_w, keep_h = max(1, round(width * CROP)), max(1, round(height * CROP))
    hashes = [_hash(grey)]
    for y in _PLACES:
        for x in _PLACES:
            left = round(x * (width - keep_w))
            top = round(y * (height - keep_h))
            hashes.append(_hash(grey.crop((left, top, left + keep_w, top + keep_h))))
    return np.array(hashes, dtype=np.uint64)


def hash_distances(queries, hashes):
    """Bits that differ between each query image and each image of ``hashes``.

    The distance of two images is the smallest of: whole image against whole
    image, the query's whole image against the other's crops, and the
    query's crops against the other's whole image: a copy cropped by up to
    10 % is close to one of its original's crops, whichever of the two is
    the query, so the distance is symmetric.

    Parameters
    ----------
    queries : ndarray of shape (m, 10), dtype uint64
    hashes : ndarray of shape (n, 10), dtype uint64
        Rows of :func:`perceptual_hashes`.

    Returns
    -------
    ndarray of shape (m, n), dtype uint8
        Memory: about ``m * n * 72`` bytes at the peak; give queries in
        blocks.
    """
    queries = np.asarray(queries, dtype=np.uint64)
    hashes = np.asarray(hashes, dtype=np.uint64)
    whole = np.bitwise_count(queries[:, None, 0] ^ hashes[None, :, 0])
    theirs = np.bitwise_count(queries[:, None, None, 0] ^ hashes[None, :, 1:])
    ours = np.bitwise_count(queries[:, None, 1:] ^ hashes[None, :, None, 0])
    return np.minimum(whole, np.minimum(theirs.min(axis=2), ours.min(axis=2)))


def plain(hashes):
    """True for each image whose hash is too empty to tell it from others.

    Parameters
    ----------
    hashes : ndarray of shape (..., 10), dtype uint64
        Rows of :func:`perceptual_hashes`.

    Returns
    -------
    ndarray of bool, shape ``hashes.shape[:-1]``
        Fewer than :data:`PLAIN_BITS` bits set in the whole image's hash.

    Examples
    --------
    >>> import numpy as np
    >>> red = np.zeros((64, 64, 3), np.uint8)
    >>> red[..., 0] = 255
    >>> noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    >>> plain(np.stack([perceptual_hashes(red), perceptual_hashes(noise)])).tolist()
    [True, False]
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    return np.bitwise_count(hashes[..., 0]) < PLAIN_BITS


def colour_layout(image):
    """The mean colour of each quarter of ``image``: 12 numbers in [0, 255].

    What tells plain images apart (:func:`plain`): red from blue, black from
    white, a ramp from its mirror image.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3)
        RGB, uint8 or float in [0, 255].

    Returns
    -------
    ndarray of shape (12,), dtype float32
        Top left, top right, bottom left, bottom right; R, G, B of each. An
        image one pixel high or wide shares that row or column between its
        quarters.

    Examples
    --------
    >>> import numpy as np
    >>> ramp = np.repeat(np.linspace(0, 255, 8)[None, :, None], 3, 2).repeat(4, 0)
    >>> colour_layout(ramp)[[0, 3]].astype(float).round(1).tolist()
    [54.6, 200.4]
    """
    rgb = np.asarray(image, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(
            f"expected an RGB image of shape (H, W, 3); received shape {rgb.shape}"
        )
    height, width = rgb.shape[:2]
    rows = (slice(0, max(1, height // 2)), slice(height // 2, height))
    columns = (slice(0, max(1, width // 2)), slice(width // 2, width))
    return np.concatenate(
        [rgb[r, c].mean(axis=(0, 1)) for r in rows for c in columns]
    ).astype(np.float32)
