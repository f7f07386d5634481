"""The skops format of model files: a file builds only the types tlsk trusts.

A joblib file is a pickle, and a pickle may call any function as it loads.
A ``.skops`` file (:mod:`skops.io`) is a zip of JSON and arrays in which
every object names its type, and :func:`load` constructs nothing until each
type named is one that tlsk trusts (:func:`is_trusted_type`): scikit-learn's
estimators, numpy's arrays, dtypes and scalars, and tlsk's own estimators.
Functions, methods and every other type are refused, with their names.

The Keras network of a tlsk classifier is stored as ``.keras`` bytes (what
``__getstate__`` returns) and loaded by ``__setstate__`` with
``safe_mode=True``, as from a pickle.

>>> import io
>>> from sklearn.linear_model import LogisticRegression
>>> buffer = io.BytesIO()
>>> dump(LogisticRegression().fit([[0], [1]], [0, 1]), buffer)
>>> load(io.BytesIO(buffer.getvalue()), "model.skops").predict([[1]]).tolist()
[1]
>>> is_trusted_type("sklearn.calibration._CalibratedClassifier")
True
>>> [is_trusted_type(name) for name in ("builtins.eval", "os.system")]
[False, False]
"""

from __future__ import annotations

import importlib

__all__ = ["UntrustedTypesError", "dump", "is_trusted_type", "load", "refused_types"]

INSTALL_HINT = "pip install 'tlsk[skops]'"

# scikit-learn's fitted estimators hold a few objects that are no estimators.
# Trusted by name: each holds only arrays and estimators.
SKLEARN_FITTED_PARTS = frozenset({"sklearn.calibration._CalibratedClassifier"})

# Types trusted only when the caller names them, and why they are not trusted
# by default (skops refuses them by default too).
KNOWN_RISKS = {
    "sklearn.tree._tree.Tree": (
        "its node indices are not bounds-checked, so a crafted forest can crash "
        "predict() or read memory out of bounds"
    ),
}


class UntrustedTypesError(ValueError):
    """A ``.skops`` file that names types tlsk does not trust; nothing was built."""

    def __init__(self, path, types):
        self.types = sorted(types)
        risks = "".join(
            f"; {name}: {KNOWN_RISKS[name]}"
            for name in self.types
            if name in KNOWN_RISKS
        )
        super().__init__(
            f"model {path!r} holds types tlsk does not trust, so nothing in it was "
            f"loaded: {self.types}{risks}. A .skops model builds only "
            "scikit-learn's estimators, numpy's arrays and tlsk's estimators; pass "
            "a type to trusted= ('--trust TYPE') only if you trust the file's author"
        )


def skops_io(purpose="a .skops model file"):
    """:mod:`skops.io`, or an ImportError that says how to install it."""
    try:
        import skops.io
    except ImportError as err:
        raise ImportError(
            f"{purpose} needs skops, which is not installed: {INSTALL_HINT}"
        ) from err
    return skops.io


def dump(model, file):
    """Write ``model`` in the skops format to the binary file object ``file``."""
    skops_io().dump(model, file)


def refused_types(file, trusted=()):
    """The types named in the skops ``file`` that neither tlsk nor ``trusted`` trust.

    Reads the file's schema only: no object of it is built.
    """
    named = skops_io().get_untrusted_types(file=file)
    return [name for name in named if name not in trusted and not is_trusted_type(name)]


def load(file, path, trusted=()):
    """The model in the skops ``file`` (named ``path`` in errors).

    ``trusted``: names of further types to build (e.g.
    ``"sklearn.tree._tree.Tree"`` for a random forest); any other type that
    :func:`is_trusted_type` refuses is an :class:`UntrustedTypesError` raised
    before anything is built.
    """
    sio = skops_io()
    if hasattr(file, "seek"):
        file.seek(0)
    named = sio.get_untrusted_types(file=file)
    refused = [n for n in named if n not in trusted and not is_trusted_type(n)]
    if refused:
        raise UntrustedTypesError(path, refused)
    if hasattr(file, "seek"):
        file.seek(0)
    # Every name in the list has just been checked: the list is tlsk's own.
    return sio.load(file, trusted=named)


def is_trusted_type(name):
    """True if the type ``name`` (``module.Class``) may be built from a file.

    Trusted: a class of scikit-learn that is an estimator (or one of
    :data:`SKLEARN_FITTED_PARTS`), numpy's ``ndarray``, dtypes and scalar
    types, and tlsk's estimators and their fitted configuration. Never a
    function or method, never another package's type. Only modules of
    scikit-learn and numpy are imported to look a name up.
    """
    if name.startswith("tlsk."):
        return name in _tlsk_types()
    if name.startswith("sklearn."):
        from sklearn.base import BaseEstimator

        cls = _class_named(name, "sklearn")
        return cls is not None and (
            issubclass(cls, BaseEstimator) or name in SKLEARN_FITTED_PARTS
        )
    if name.startswith("numpy."):
        import numpy as np

        cls = _class_named(name, "numpy")
        return cls is not None and (
            cls is np.ndarray or issubclass(cls, (np.generic, np.dtype))
        )
    return False


def _tlsk_types():
    from tlsk.backbone import BackboneConfig
    from tlsk.features import ImageFeatureExtractor, VGG16FeatureExtractor
    from tlsk.finetune import KerasFineTuneClassifier
    from tlsk.scratch import SmallCNNClassifier

    classes = (
        BackboneConfig,
        ImageFeatureExtractor,
        VGG16FeatureExtractor,
        KerasFineTuneClassifier,
        SmallCNNClassifier,
    )
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in classes}


def _class_named(name, package):
    """The class of ``package`` that ``name`` names (module, attributes), or None.

    A class of another package re-exported by one of ``package``'s modules is
    None: it is judged by its own name.
    """
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            found = getattr(found, attribute, None)
        if isinstance(found, type) and found.__module__.split(".")[0] == package:
            return found
        return None
    return None
