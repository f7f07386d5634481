"""tlsk: transfer learning with a pretrained VGG16, as scikit-learn estimators."""

from tlsk._version import __version__

__all__ = ["__version__"]
