"""Images in, float32 RGB batches out.

This module turns whatever the user passes as ``X`` (file paths, one big
numpy array, a list of arrays of different sizes, or of Pillow images) into
RGB images, resizes them to a square batch. It knows nothing about Keras
models or any network; how a network wants its pixels prepared is
:mod:`tlsk.networks.preprocessing`.

Decoding policy (``DECODE_POLICY``; bump it when output pixels change)
----------------------------------------------------------------------
Files are decoded by content, never by extension: a PNG named ``.jpg``
decodes, a text file named ``.jpg`` raises :class:`ImageError`.

* Formats: JPEG (and MPO), PNG, BMP, GIF (first frame), TIFF (first page), and
  WebP and AVIF when this Pillow build has them (see ``FORMATS``). Pillow's
  other plugins are not tried: some (EPS) run external programs, and a data
  set of photographs has no need of them.
* EXIF orientation is applied (``PIL.ImageOps.exif_transpose``), so a JPEG
  tagged "rotate 90" gives the pixels of a copy rotated on disk.
* Modes become RGB uint8 as follows:

  - ``"1"``, ``"L"``: gray replicated to three channels.
  - ``"P"``: through the palette. ``"P"``, ``"L"``, ``"RGB"`` and ``"1"`` with a
    ``transparency`` entry (a PNG ``tRNS`` chunk, a GIF transparent index), and
    ``"PA"``, ``"LA"``, ``"RGBA"``: composited on ``ALPHA_BACKGROUND`` (white)
    with the alpha, not by dropping it: transparent backgrounds saved as black
    would otherwise become black blobs. ``"La"`` and ``"RGBa"`` (premultiplied
    alpha) likewise, with the premultiplied formula.
  - ``"CMYK"``, ``"YCbCr"``, ``"LAB"``, ``"HSV"``, ``"RGBX"``: Pillow's own
    conversion to RGB (Pillow inverts Adobe CMYK JPEGs itself).
  - 16-bit gray (``"I;16"``, ``"I;16B"``, ``"I;16L"``, ``"I;16N"``, and ``"I"``,
    the 32-bit mode Pillow gives some 16-bit files): *scaled* by 255/65535 and
    rounded (65535 -> 255, 32896 -> 128). Pillow's own conversion clips at 255,
    which turns nearly every 16-bit photograph white. ``"I"`` is read as a
    16-bit range: values are clipped to [0, 65535] first.
  - ``"F"`` (32-bit float): read as the 0-255 range, as Pillow's own ``F -> L``
    conversion does, but rounded rather than truncated; NaN -> 0, values
    clipped to [0, 255].

* Decompression bombs: after ``Image.open`` (which reads the header only) the
  pixel count is checked against ``max_pixels`` before any pixel is decoded.
  This does not touch ``PIL.Image.MAX_IMAGE_PIXELS`` and works when the user
  set it to ``None``. Pillow's own limit still applies as well (its
  ``DecompressionBombError``, and its warning when warnings are errors, become
  :class:`ImageError`); raise ``PIL.Image.MAX_IMAGE_PIXELS`` to go beyond it.
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set: a truncated file is an
  error, not a gray band.

Files are opened in one place, :func:`tlsk.images.files.open_regular_file`:
only regular files (after following links) of at most ``MAX_FILE_BYTES`` are
read; a FIFO, a
device, a socket or a larger file is an :class:`ImageError` saying what it is,
and nothing is read from it. To decode, the header is read first (a file
that is no image, or has too many pixels, is refused there), then the file
is read into memory once; its SHA-256 and its pixels come from those same
bytes, so a cache key always names what was decoded. A key alone is hashed
in chunks, in flat memory. Pillow releases the GIL while it decodes and this
module keeps no mutable state, so :meth:`ImageInput.load` may run in threads.

Array inputs: uint8 is used as is; other integer dtypes must lie in [0, 255];
float dtypes must be finite and lie in [0, 255]: floats are always read on the
0-255 scale, never rescaled. A float image whose values all lie in [0, 1] (and
are not all 0) is still read that way, as a nearly black image, but with an
:class:`ImageRangeWarning` (one per call, naming the first such images), as
it was most likely scaled to [0, 1] by mistake: multiply such images by 255
first. Other values are checked per image in :meth:`ImageInput.load`.

Pillow images (``PIL.Image.Image``, what ``Image.open`` and embetter's
``ImageLoader`` return) go through the policy for files above, from the
mode conversions on: EXIF orientation is applied (an image opened from a
file then gives the pixels that file gives as a path; ``exif_transpose``
removes the tag, so an image already turned is not turned again), then its
mode becomes RGB uint8. Each becomes an array input (:class:`ArrayInput`)
when ``X`` is read, its content key that of its RGB pixels: the same pixels
passed as an array share its cached vector. The caller's image is not
modified. ``max_pixels`` does not apply: the image is decoded already.
"""

import contextlib
import functools
import hashlib
import io
import os
import warnings
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageOps

from tlsk._util.files import file_identity
from tlsk.images.errors import ImageError, ImageRangeWarning, UndecodableImageWarning
from tlsk.images.files import open_regular_file, read_all
from tlsk.images.keys import array_key, file_key, remembered_key

__all__ = [
    "ALPHA_BACKGROUND",
    "DECODE_POLICY",
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "INTERPOLATIONS",
    "ArrayInput",
    "FileInput",
    "ImageError",
    "ImageInput",
    "ImageRangeWarning",
    "UndecodableImageWarning",
    "decode_image",
    "decode_threads",
    "image_inputs",
    "decoded",
    "load_batch",
    "read_image",
    "resize_image",
]

DEFAULT_MAX_PIXELS: int = 89_478_485
ALPHA_BACKGROUND: tuple = (255, 255, 255)
INTERPOLATIONS: tuple[str, ...] = (
    "nearest",
    "bilinear",
    "bicubic",
    "lanczos",
    "box",
    "hamming",
)
DECODE_POLICY: str = "rgb-v1"

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def _available_formats():
    Image.init()
    wanted = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "AVIF")
    return tuple(name for name in wanted if name in Image.OPEN)


FORMATS: tuple[str, ...] = _available_formats()

_STRAIGHT_ALPHA_MODES = ("RGBA", "LA", "PA")
_PREMULTIPLIED_MODES = ("RGBa", "La")
_TRANSPARENCY_MODES = ("1", "L", "P", "RGB")
_PILLOW_TO_RGB_MODES = ("1", "L", "P", "RGB", "CMYK", "YCbCr", "LAB", "HSV", "RGBX")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


# --------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------


def _check_max_pixels(max_pixels):
    if max_pixels is None:
        return
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int | np.integer):
        raise TypeError(
            "max_pixels must be a positive int or None; "
            f"received {max_pixels!r} of type {type(max_pixels).__name__}"
        )
    if max_pixels < 1:
        raise ValueError(
            f"max_pixels must be a positive int or None; received {max_pixels!r}"
        )


def _check_size(size):
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"size must be a positive int; received {size!r}")
    return int(size)


def _check_interpolation(interpolation):
    if interpolation not in _RESAMPLE:
        allowed = ", ".join(repr(name) for name in INTERPOLATIONS)
        raise ValueError(
            f"interpolation must be one of {allowed}; received {interpolation!r}"
        )
    return _RESAMPLE[interpolation]


@contextlib.contextmanager
def open_image_file(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Yield Pillow's image of a file: its header read, its pixels not yet decoded.

    For a caller that decodes in its own way (a report's thumbnails, at a
    reduced size), with the checks :meth:`FileInput.load` makes before
    decoding: a regular file (:func:`open_regular_file`) in one of
    ``FORMATS`` with at most ``max_pixels`` pixels.

    Raises
    ------
    ImageError
        Naming the file, when a check fails; errors while the caller
        decodes are Pillow's own.
    """
    label = os.fsdecode(os.fspath(path))
    with open_regular_file(label, label) as file:
        with _pillow_errors(label):
            image = _open_image(file, label, max_pixels)
        with image:
            yield image


def _composite(rgb, alpha, premultiplied):
    """Composite ``rgb`` (H, W, C) over ALPHA_BACKGROUND with ``alpha`` (H, W)."""
    color = rgb.astype(np.float32)
    a = alpha.astype(np.float32)[..., np.newaxis] / 255.0
    background = np.asarray(ALPHA_BACKGROUND, dtype=np.float32)
    if not premultiplied:
        color *= a
    color += background * (1.0 - a)
    return np.clip(np.rint(color), 0, 255).astype(np.uint8)


def _scale_16bit(values):
    # Exact integer rounding of v * 255 / 65535 (65535 is odd: no ties).
    v = np.clip(values, 0, 65535).astype(np.uint32)
    return ((v * 255 + 32767) // 65535).astype(np.uint8)


def _gray_to_rgb(gray):
    return np.repeat(gray[..., np.newaxis], 3, axis=2)


def _pil_to_rgb(im):
    """Convert a loaded Pillow image of any mode to an RGB uint8 (H, W, 3) array."""
    mode = im.mode
    if mode in _TRANSPARENCY_MODES and "transparency" in im.info:
        mode, im = "RGBA", im.convert("RGBA")
    elif mode == "PA":
        mode, im = "RGBA", im.convert("RGBA")
    if mode in _STRAIGHT_ALPHA_MODES or mode in _PREMULTIPLIED_MODES:
        # np.asarray, not convert(): Pillow cannot convert "La" at all.
        arr = np.asarray(im)
        color = arr[..., :-1]
        if color.shape[-1] == 1:
            color = np.repeat(color, 3, axis=2)
        return _composite(color, arr[..., -1], mode in _PREMULTIPLIED_MODES)
    if mode in _PILLOW_TO_RGB_MODES:
        return np.array(im.convert("RGB"))
    if mode in _SIXTEEN_BIT_MODES:
        return _gray_to_rgb(_scale_16bit(np.asarray(im)))
    if mode == "F":
        arr = np.nan_to_num(np.asarray(im), nan=0.0, posinf=255.0, neginf=0.0)
        return _gray_to_rgb(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    return np.array(im.convert("RGB"))


def _decode(data, label, max_pixels):
    if not data:
        raise ImageError(label, "file is empty (0 bytes)")
    with _pillow_errors(label), _open_image(io.BytesIO(data), label, max_pixels) as im:
        im.load()
        # In place: a copy of every image without an orientation tag is waste.
        ImageOps.exif_transpose(im, in_place=True)
        return _pil_to_rgb(im)


def _open_image(file, label, max_pixels):
    """Pillow's image of ``file``, its header read, its pixels not yet decoded.

    Refuses (before any pixel is decoded) more pixels than ``max_pixels``.
    Leave it with ``with``, never ``close()``: closing the image closes
    ``file``, which belongs to the caller.
    """
    im = Image.open(file, formats=FORMATS)
    width, height = im.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            label,
            f"image has {width}x{height} = {width * height} pixels, more "
            f"than max_pixels={max_pixels}; it may be a decompression "
            "bomb. Pass a larger max_pixels if you trust this file",
        )
    return im


@contextlib.contextmanager
def _pillow_errors(label):
    """Pillow's exceptions while opening or decoding, as :class:`ImageError`."""
    try:
        yield
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(
            label,
            f"image has too many pixels for Pillow's limit ({err}); raise "
            "PIL.Image.MAX_IMAGE_PIXELS if you trust this file",
        ) from err
    except Image.UnidentifiedImageError as err:
        supported = ", ".join(FORMATS)
        raise ImageError(
            label, f"not an image file in a supported format ({supported})"
        ) from err
    except Exception as err:
        # Pillow reports damage as OSError, SyntaxError, ValueError, struct
        # errors or (with warnings as errors) UserWarning: all mean "corrupt".
        message = str(err)
        if "truncated" in message.lower():
            raise ImageError(label, "image file is truncated") from err
        raise ImageError(
            label, f"corrupt or unreadable image data ({type(err).__name__}: {message})"
        ) from err


def _check_array_dtype(array, what):
    kind = array.dtype.kind
    if kind == "b":
        raise TypeError(
            f"{what} has dtype bool; expected uint8, another integer dtype or a "
            "float dtype with values in [0, 255]; convert masks with "
            "X.astype(np.uint8) * 255"
        )
    if kind not in "uif":
        raise TypeError(
            f"{what} has dtype {array.dtype}; expected uint8, another integer "
            "dtype or a float dtype with values in [0, 255]"
        )


def _image_values(array, label):
    """Validate one array image's values; return it as uint8 or float32 RGB."""
    if array.dtype == np.uint8:
        image = array
    elif array.dtype.kind in "iu":
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low < 0 or high > 255:
            raise ValueError(
                f"{label} has integer values in [{low}, {high}]; expected [0, 255]; "
                "scale the images to 0-255 (and cast to uint8) before passing them"
            )
        image = array.astype(np.uint8)
    else:
        if not np.isfinite(array).all():
            raise ValueError(
                f"{label} contains NaN or infinity; expected finite values in "
                "[0, 255]; replace them (e.g. np.nan_to_num) before passing them"
            )
        low, high = (float(array.min()), float(array.max())) if array.size else (0, 0)
        if low < 0 or high > 255:
            raise ValueError(
                f"{label} has float values in [{low:g}, {high:g}]; expected [0, 255]; "
                "scale the images to 0-255 (e.g. (x + 1) * 127.5 for [-1, 1]) "
                "before passing them"
            )
        image = array.astype(np.float32, copy=False)
    if image.ndim == 2:
        return _gray_to_rgb(image)
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image is array:
        # A read-only view: whoever holds it cannot write into the caller's data.
        image = array.view()
        image.flags.writeable = False
    return image


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


class ImageInput:
    """One image of ``X``: a file or an array, read on demand.

    Use :func:`image_inputs` to make these; :class:`FileInput` and
    :class:`ArrayInput` are the two kinds.

    Attributes
    ----------
    label : str
        What error messages name: the path as given, or ``"X[3]"``.
    """

    label: str

    def content_key(self):
        """Return the 32-byte SHA-256 digest of the image content."""
        raise NotImplementedError

    def known_key(self):
        """The content key if it is known without reading the content, else None."""
        return None

    def size_hint(self):
        """About how many bytes hashing the content reads (0 if unknown)."""
        return 0

    def load(self, max_pixels=DEFAULT_MAX_PIXELS):
        """Read the content once; return ``(content_key, rgb_image)``.

        Parameters
        ----------
        max_pixels : int or None, default=DEFAULT_MAX_PIXELS
            Files with more pixels raise :class:`ImageError` before decoding.

        Returns
        -------
        key : bytes
            SHA-256 digest of exactly the content that was decoded.
        image : ndarray of shape (H, W, 3)
            uint8, or float32 in [0, 255] for float arrays.
        """
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.label!r})"


class FileInput(ImageInput):
    """An image file.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        The file. Bytes paths are decoded with ``os.fsdecode``.

    Attributes
    ----------
    path : str
    label : str
        The path as given (``str``), for error messages.
    """

    __slots__ = ("path", "label")

    def __init__(self, path):
        self.path = os.fsdecode(os.fspath(path))
        self.label = self.path

    def content_key(self):
        """Return ``hashlib.sha256(file bytes).digest()`` (as ``sha256sum``).

        Remembered per process while the file's inode, size and timestamps
        stay the same, so a file read again is not hashed again.
        """
        return file_key(self.label, self.path)

    def known_key(self):
        return remembered_key(file_identity(self.path))

    def identity(self):
        """:func:`tlsk._util.files.file_identity` of the file (None if unknown)."""
        return file_identity(self.path)

    def size_hint(self):
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0

    def load(self, max_pixels=DEFAULT_MAX_PIXELS):
        _check_max_pixels(max_pixels)
        with open_regular_file(self.path, self.label) as file:
            size = os.fstat(file.fileno()).st_size
            if size:
                # From the header alone: a file that is no image, or one with
                # too many pixels, is refused before the rest is read.
                with (
                    _pillow_errors(self.label),
                    _open_image(file, self.label, max_pixels),
                ):
                    pass
                file.seek(0)
            data = read_all(file, self.label, size)
        return hashlib.sha256(data).digest(), _decode(data, self.label, max_pixels)


class ArrayInput(ImageInput):
    """An image already in memory, (H, W), (H, W, 1) or (H, W, 3).

    Parameters
    ----------
    array : ndarray
        Kept as given (often a view into the caller's batch); never modified.
    label : str
        The name used in error messages, e.g. ``"X[3]"``.
    """

    __slots__ = ("array", "label")

    def __init__(self, array, label):
        # Every array image of X comes through here: an image of no pixel
        # would otherwise be resized into a feature row.
        if 0 in array.shape[:2]:
            raise ValueError(
                f"expected {label} as an image of at least 1 x 1 pixels; "
                f"received an array of shape {array.shape}"
            )
        self.array = array
        self.label = label

    def content_key(self):
        """Return the SHA-256 digest of the array.

        Over ``b"tlsk-array\\0" + dtype.str + repr(shape)`` (ASCII) and then the
        C-contiguous bytes, so equal bytes of another dtype or shape differ.
        """
        return array_key(self.array)

    def size_hint(self):
        return self.array.nbytes

    def load(self, max_pixels=DEFAULT_MAX_PIXELS):
        # max_pixels guards decoding; an array in memory has been decoded.
        return array_key(self.array), _image_values(self.array, self.label)


def _from_pillow(image, label):
    """An RGB uint8 array of a Pillow image, by the decoding policy of files."""
    with _pillow_errors(label):
        image.load()
        # Not in place: the image is the caller's.
        turned = ImageOps.exif_transpose(image)
        return _pil_to_rgb(turned if turned is not None else image)


def _as_item(item, index):
    if isinstance(item, str | bytes | os.PathLike):
        return FileInput(item)
    if isinstance(item, Image.Image):
        label = f"X[{index}]"
        return ArrayInput(_from_pillow(item, label), label)
    if isinstance(item, np.ndarray):
        label = f"X[{index}]"
        _check_array_dtype(item, label)
        if not (item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (1, 3))):
            raise ValueError(
                f"expected {label} as an image of shape (H, W, 3), (H, W, 1) or "
                f"(H, W); received an array of shape {item.shape}"
            )
        return ArrayInput(item, label)
    raise TypeError(
        f"expected X[{index}] to be a file path (str or os.PathLike), a numpy "
        f"array or a PIL image; received {type(item).__name__}"
    )


def _from_batch_array(X):
    if X.ndim == 1 and X.size == 0:
        return []  # an empty list or Series through np.asarray
    _check_array_dtype(X, "X")
    if X.ndim == 4 and X.shape[3] not in (1, 3):
        raise ValueError(
            "expected images with 3 channels (RGB) or 1 (grayscale) in the last "
            f"axis; received an array of shape {X.shape}; drop an alpha channel "
            "with X[..., :3]"
        )
    if X.ndim not in (3, 4):
        raise ValueError(
            "expected images as (N, H, W, 3) or (N, H, W); received an array of "
            f"shape {X.shape}"
        )
    if X.ndim == 3 and X.shape[2] in (3, 4):
        # (H, W, 3) read as N gray images 3 pixels wide is always a mistake.
        raise ValueError(
            "expected images as (N, H, W, 3) or (N, H, W); received an array of "
            f"shape {X.shape}, which looks like one color image; pass "
            "X[np.newaxis] for a batch of one"
        )
    return [ArrayInput(X[i], f"X[{i}]") for i in range(X.shape[0])]


def decode_threads(n_jobs):
    """How many threads decode images for a ``n_jobs`` parameter.

    ``None``: ``min(4, os.cpu_count())`` (decoding overlaps the network, which
    needs the cores); a positive int: that many; a negative int: all CPUs but
    ``-n_jobs - 1`` (``-1``: all), as in scikit-learn.

    >>> decode_threads(3)
    3
    """
    cpus = os.cpu_count() or 1
    if n_jobs is None:
        return min(4, cpus)
    if n_jobs > 0:
        return int(n_jobs)
    return max(1, cpus + 1 + n_jobs)


def image_inputs(X, warn_range=True):
    """Turn ``X`` into a list of :class:`ImageInput`, one per image.

    Checks shapes and dtypes now, and warns once if float images look scaled
    to [0, 1]; pixel values are checked per image when it is loaded. Arrays
    are not copied (items are views) and never modified.

    Parameters
    ----------
    X : sequence of paths, ndarray, or sequence of ndarrays
        - file paths (str, bytes or os.PathLike), as a list, tuple, 1-D array
          or anything ``np.asarray`` turns into one (a pandas Series), or as
          a single column: an array of shape (N, 1) or a one-column pandas
          DataFrame (what ``ColumnTransformer([("img", extractor,
          ["path"])])`` passes);
        - Pillow images (``PIL.Image.Image``), decoded as files are (EXIF
          orientation applied, any mode to RGB);
        - one array of shape (N, H, W, 3), (N, H, W, 1) or (N, H, W);
        - a list of arrays of different sizes, each (H, W, 3), (H, W, 1) or
          (H, W); paths, arrays and Pillow images may be mixed.

        uint8 is used as is; other integer dtypes must hold values in
        [0, 255]; float dtypes must be finite and in [0, 255] (a float image
        entirely in [0, 1] warns, :class:`ImageRangeWarning`); bool is refused.
    warn_range : bool, default=True
        False: no ImageRangeWarning (for a caller that only checks X's kind
        and will warn when it reads the images).

    Returns
    -------
    list of ImageInput
        In the order of ``X``.

    Raises
    ------
    ValueError
        An array of the wrong rank or channel count.
    TypeError
        An item that is neither path, array nor Pillow image, or an unusable
        dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from tlsk.images.decode import image_inputs
    >>> inputs = image_inputs(np.zeros((2, 8, 8, 3), dtype=np.uint8))
    >>> [item.label for item in inputs]
    ['X[0]', 'X[1]']
    >>> key, image = inputs[1].load()
    >>> len(key), image.shape, image.dtype
    (32, (8, 8, 3), dtype('uint8'))
    >>> gray = [np.zeros((5, 7)), np.zeros((9, 4, 3), dtype=np.uint8)]
    >>> [item.load()[1].shape for item in image_inputs(gray)]
    [(5, 7, 3), (9, 4, 3)]
    """
    items = _items(X)
    if warn_range:
        _warn_if_scaled_to_one(items)
    return items


def _items(X):
    if isinstance(X, str | bytes | os.PathLike):
        raise TypeError(
            f"expected a sequence of images; received a single path {X!r}; "
            "wrap it in a list: [path]"
        )
    if isinstance(X, Image.Image):
        raise TypeError(
            "expected a sequence of images; received a single PIL image "
            f"({type(X).__name__}); wrap it in a list: [image]"
        )
    if isinstance(X, np.ndarray):
        if X.dtype.kind in "OUS":
            if X.ndim == 2 and X.shape[1] == 1:
                X = X[:, 0]  # one column of paths (a DataFrame's, in a pipeline)
            if X.ndim != 1:
                raise ValueError(
                    "expected file paths as a 1-D sequence or a single column "
                    f"(N, 1); received an array of shape {X.shape} and dtype "
                    f"{X.dtype}"
                )
            return [_as_item(item, i) for i, item in enumerate(X.tolist())]
        return _from_batch_array(X)
    if isinstance(X, list | tuple):
        return [_as_item(item, i) for i, item in enumerate(X)]
    if hasattr(X, "__array__"):
        # pandas Series, xarray, ...: numpy knows how to read them.
        return _items(np.asarray(X))
    if isinstance(X, Iterable) and not isinstance(X, Mapping):
        return [_as_item(item, i) for i, item in enumerate(X)]
    raise TypeError(
        "expected file paths, an array of images or a list of arrays; "
        f"received {type(X).__name__}"
    )


_NAMED_SUSPECTS = 5  # images named in the warning; the rest are counted


def _warn_if_scaled_to_one(items):
    """One ImageRangeWarning for all float images whose values lie in [0, 1]."""
    suspects = []
    for item in items:
        array = getattr(item, "array", None)
        if array is None or array.dtype.kind != "f" or array.size == 0:
            continue
        with np.errstate(invalid="ignore"):
            low, high = np.min(array), np.max(array)
        if 0 <= low and 0 < high <= 1:  # NaN compares False: refused at load
            suspects.append(item.label)
    if suspects:
        named = ", ".join(suspects[:_NAMED_SUSPECTS])
        more = len(suspects) - _NAMED_SUSPECTS
        warnings.warn(
            f"{len(suspects)} of {len(items)} float images have values in [0, 1] "
            f"({named}{f' and {more} more' if more > 0 else ''}): tlsk reads "
            "float pixels on the 0-255 scale, so they are nearly black; if the "
            "images were scaled to [0, 1], multiply them by 255",
            ImageRangeWarning,
            stacklevel=3,
        )


def decode_image(data, label="<bytes>", max_pixels=DEFAULT_MAX_PIXELS):
    """Decode image file content to an RGB uint8 array.

    Parameters
    ----------
    data : bytes
        The whole file.
    label : str, default="<bytes>"
        Named by :class:`ImageError`.
    max_pixels : int or None, default=DEFAULT_MAX_PIXELS
        Refuse (before decoding) images with more pixels than this.

    Returns
    -------
    ndarray of shape (H, W, 3), dtype uint8
    """
    _check_max_pixels(max_pixels)
    return _decode(bytes(data), str(label), max_pixels)


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Read and decode one image file to an RGB uint8 array.

    Parameters
    ----------
    path : str, bytes or os.PathLike
    max_pixels : int or None, default=DEFAULT_MAX_PIXELS

    Returns
    -------
    ndarray of shape (H, W, 3), dtype uint8

    Raises
    ------
    ImageError
        Naming ``path``, for any file that cannot be read or decoded.
    """
    return FileInput(path).load(max_pixels)[1]


def resize_image(image, size, interpolation="bilinear"):
    """Squash an RGB image to ``size`` x ``size`` float32.

    The aspect ratio is not kept: this is the geometry of
    ``keras.utils.load_img(path, target_size=(size, size))``. Pillow's filter of
    the given name is used, and Pillow antialiases when it shrinks (except
    with ``"nearest"``).

    Parameters
    ----------
    image : ndarray of shape (H, W, 3)
        uint8 (resized as an RGB image), or float in [0, 255] (resized per
        channel in Pillow's mode ``"F"``, without quantisation). Not modified.
    size : int
        Output height and width.
    interpolation : {"nearest", "bilinear", "bicubic", "lanczos", "box", \
"hamming"}, default="bilinear"

    Returns
    -------
    ndarray of shape (size, size, 3), dtype float32
        Values in [0, 255] (float results of bicubic/lanczos overshoot are
        clipped). A new array, even when no resampling was needed.

    Examples
    --------
    >>> import numpy as np
    >>> from tlsk.images.decode import resize_image
    >>> image = np.full((40, 60, 3), 200, dtype=np.uint8)
    >>> out = resize_image(image, 16)
    >>> out.shape, out.dtype, float(out.max())
    ((16, 16, 3), dtype('float32'), 200.0)
    >>> resize_image(image, 16, interpolation="area")
    Traceback (most recent call last):
    ...
    ValueError: interpolation must be one of 'nearest', 'bilinear', 'bicubic', \
'lanczos', 'box', 'hamming'; received 'area'
    """
    resample = _check_interpolation(interpolation)
    size = _check_size(size)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(
            "expected an RGB image of shape (H, W, 3), at least 1 x 1 pixels; "
            f"received shape {image.shape}"
        )
    if image.dtype != np.uint8 and image.dtype.kind != "f":
        raise TypeError(
            f"expected an image of dtype uint8 or float; received {image.dtype}"
        )
    if image.shape[:2] == (size, size):
        return image.astype(np.float32)
    if image.dtype == np.uint8:
        resized = Image.fromarray(np.ascontiguousarray(image)).resize(
            (size, size), resample
        )
        return np.asarray(resized, dtype=np.float32)
    out = np.empty((size, size, 3), dtype=np.float32)
    for channel in range(3):
        plane = np.ascontiguousarray(image[..., channel], dtype=np.float32)
        resized = Image.fromarray(plane).resize((size, size), resample)
        out[..., channel] = np.asarray(resized)
    return np.clip(out, 0.0, 255.0, out=out)


def load_batch(
    inputs,
    size,
    interpolation="bilinear",
    max_pixels=DEFAULT_MAX_PIXELS,
    resize=None,
):
    """Load, decode and resize images into one float32 batch.

    Sequential on purpose: parallelism is the caller's business.

    Parameters
    ----------
    inputs : sequence of ImageInput
    size : int
    interpolation : str, default="bilinear"
        One of ``INTERPOLATIONS``.
    max_pixels : int or None, default=DEFAULT_MAX_PIXELS
    resize : callable, optional
        ``resize(image)``: a decoded image as a float32 ``size`` x ``size``
        RGB picture in [0, 255], instead of :func:`resize_image` with
        ``interpolation`` (for a network that resizes its own way).

    Returns
    -------
    keys : list of bytes
        The content keys, in input order.
    batch : ndarray of shape (n, size, size, 3), dtype float32
        RGB in [0, 255], in input order.
    """
    _check_interpolation(interpolation)
    size = _check_size(size)
    _check_max_pixels(max_pixels)
    if resize is None:
        resize = functools.partial(resize_image, size=size, interpolation=interpolation)
    inputs = list(inputs) if not isinstance(inputs, Sequence) else inputs
    batch = np.empty((len(inputs), size, size, 3), dtype=np.float32)
    keys = []
    for i, result in decoded(inputs, range(len(inputs)), resize, max_pixels):
        if isinstance(result, ImageError):
            raise result
        keys.append(result[0])
        batch[i] = result[1]
    return keys, batch


def decoded(
    inputs, indices, resize, max_pixels=DEFAULT_MAX_PIXELS, pool=None, lookahead=64
):
    """Yield ``(index, (key, resized image) or ImageError)`` for each of ``indices``.

    The one loop that turns images into resized pixels. In the order of
    ``indices``; an image that cannot be read or decoded yields its
    :class:`ImageError` (the caller decides: raise, or a NaN row).
    ``resize(image)`` makes the decoded image the network's input size.
    With a ``pool`` (a ``concurrent.futures`` executor), images are decoded
    on it, up to ``lookahead`` ahead of the one yielded; without, here.

    Examples
    --------
    >>> import numpy as np
    >>> inputs = image_inputs([np.zeros((8, 8, 3), np.uint8)])
    >>> [(i, image.shape) for i, (_, image) in decoded(inputs, [0], lambda im: im)]
    [(0, (8, 8, 3))]
    """

    def load(index):
        try:
            key, image = inputs[index].load(max_pixels)
        except ImageError as err:
            return index, err
        return index, (key, resize(image))

    if pool is None:
        yield from map(load, indices)
        return
    pending = deque()
    for index in indices:
        pending.append(pool.submit(load, index))
        if len(pending) >= lookahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
