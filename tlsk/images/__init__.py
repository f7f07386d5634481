"""Stage 1, images: any file or array -> RGB uint8 -> a resized batch; content keys;
folders of classes, their checks and splits; sample data; TTA views. No network."""

from tlsk.images.errors import ImageError, ImageRangeWarning, UndecodableImageWarning

__all__ = ["ImageError", "ImageRangeWarning", "UndecodableImageWarning"]


def __getattr__(name):
    # The names this package's 0.1.0 module had, from their homes today.
    from tlsk._compat import moved_name

    return moved_name(__name__, name)
