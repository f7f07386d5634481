"""Write small, real image files for the tests (no fixtures, no network)."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def random_rgb(height, width, seed=0):
    """A random uint8 RGB array of shape (height, width, 3)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def smooth_rgb(height, width):
    """A smooth uint8 RGB gradient: JPEG keeps it within a few levels."""
    y, x = np.mgrid[0:height, 0:width]
    red = 255 * x / max(width - 1, 1)
    green = 255 * y / max(height - 1, 1)
    blue = np.full_like(red, 96.0)
    return np.rint(np.stack([red, green, blue], axis=-1)).astype(np.uint8)


def encode(image, fmt, **save_kwargs):
    """The bytes of ``image`` (a Pillow image or an array) saved as ``fmt``."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_kwargs)
    return buffer.getvalue()


def write(path, image, fmt, **save_kwargs):
    """Save ``image`` as ``fmt`` at ``path`` (whatever its extension); return path."""
    path.write_bytes(encode(image, fmt, **save_kwargs))
    return path


def _png_chunk(kind, payload):
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_header_only(width, height):
    """A tiny PNG whose header claims width x height 1-bit pixels.

    The pixel data is a few bytes: enough for ``Image.open`` (header only),
    never enough to decode, so a test of the size guard costs nothing.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _png_chunk(b"IEND", b"")
    )
