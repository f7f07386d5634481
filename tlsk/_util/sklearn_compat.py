"""Every private or version-dependent scikit-learn name tlsk uses, in one place.

scikit-learn keeps its parameter validation private; tlsk uses it as
scikit-learn's own estimators do. When scikit-learn changes one of these, this
file is the only one to change.

- ``_fit_context`` (``sklearn.base``, since 1.3): validates the parameters
  against ``_parameter_constraints`` and skips nested validation.
- ``Interval``, ``StrOptions`` (``sklearn.utils._param_validation``, since
  1.2): the constraint types of ``_parameter_constraints``.
- ``BaseEstimator._validate_params`` (since 1.2): what ``_fit_context``
  runs, run by :func:`validate_params` on an estimator read from a file.
- ``Tags.input_tags`` (since 1.6): what an estimator takes, set for images
  by :func:`image_input_tags`.

tlsk requires scikit-learn >= 1.6 (``__sklearn_tags__``), which has them all.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

__all__ = [
    "Interval",
    "StrOptions",
    "_fit_context",
    "image_input_tags",
    "validate_params",
]


def validate_params(estimator):
    """Check ``estimator``'s parameters against its ``_parameter_constraints``.

    As ``fit`` does first; nothing for an estimator that declares none.
    """
    if hasattr(estimator, "_parameter_constraints"):
        estimator._validate_params()


def image_input_tags(tags):
    """``tags`` (``__sklearn_tags__``) of an estimator that takes images.

    ``(N, H, W[, 3])`` arrays or lists of paths, not a 2-D table: so that
    scikit-learn's estimator checks feed it no tables.
    """
    tags.input_tags.two_d_array = False
    tags.input_tags.three_d_array = True
    tags.input_tags.string = True
    return tags
