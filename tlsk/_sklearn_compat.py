"""Every private or version-dependent scikit-learn name tlsk uses, in one place.

scikit-learn keeps its parameter validation private; tlsk uses it as
scikit-learn's own estimators do. When scikit-learn changes one of these, this
file is the only one to change.

- ``_fit_context`` (``sklearn.base``, since 1.3): validates the parameters
  against ``_parameter_constraints`` and skips nested validation.
- ``Interval``, ``StrOptions`` (``sklearn.utils._param_validation``, since
  1.2): the constraint types of ``_parameter_constraints``.

tlsk requires scikit-learn >= 1.6 (``__sklearn_tags__``), which has them all.
"""

from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

__all__ = ["Interval", "StrOptions", "_fit_context"]
