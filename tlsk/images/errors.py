"""What tlsk says about an image it cannot use: the error and the two warnings."""

__all__ = ["ImageError", "ImageRangeWarning", "UndecodableImageWarning"]


class ImageRangeWarning(UserWarning):
    """A float image array whose values all lie in [0, 1].

    tlsk reads float pixels on the 0-255 scale, so such an image is nearly
    black; it was most likely scaled to [0, 1] by mistake. Multiply it by 255,
    or silence this warning with
    ``warnings.filterwarnings("ignore", category=ImageRangeWarning)`` if the
    images really are that dark.
    """


class UndecodableImageWarning(UserWarning):
    """Images that could not be decoded, whose feature rows are NaN.

    Raised (as a warning) by a transform with ``on_error="nan"``; one warning
    per call names the first few files and counts the rest. Silence it with
    ``warnings.filterwarnings("ignore", category=UndecodableImageWarning)``
    where the NaN rows are handled.
    """


class ImageError(ValueError):
    """An image file that cannot be read or decoded.

    Parameters
    ----------
    path : str
        The file as the user named it.
    reason : str
        What went wrong, in words.

    Attributes
    ----------
    path : str
    reason : str

    Examples
    --------
    >>> str(ImageError("data/cats/cat.12.jpg", "image file is truncated"))
    "cannot decode 'data/cats/cat.12.jpg': image file is truncated"
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"cannot decode {self.path!r}: {self.reason}")

    def __reduce__(self):
        # Workers (joblib, Dask) pickle exceptions; the default would call
        # ImageError(message) and lose ``reason``.
        return (type(self), (self.path, self.reason))
