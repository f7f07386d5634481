"""Stage 1, images: any file or array -> RGB uint8 -> a resized batch; content keys;
folders of classes, their checks and splits; sample data; TTA views. No network."""

from tlsk.images.decode import ImageError, ImageRangeWarning, UndecodableImageWarning

__all__ = ["ImageError", "ImageRangeWarning", "UndecodableImageWarning"]
