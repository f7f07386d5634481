"""The skops format of model files: a file builds only the types tlsk trusts.

A joblib file is a pickle, and a pickle may call any function as it loads.
A ``.skops`` file (:mod:`skops.io`) is a zip of JSON and arrays in which
every object names its type, and :func:`load` constructs nothing until each
type named is one that tlsk trusts (:func:`is_trusted_type`): scikit-learn's
estimators, numpy's arrays, dtypes and scalars, and tlsk's own estimators.
Functions, methods and every other type are refused, with their names.

The Keras network of a tlsk classifier is stored as ``.keras`` bytes (what
``__getstate__`` returns) and loaded by ``__setstate__`` with
``safe_mode=True``, as from a pickle (and, from a shared file, checked first
by :mod:`tlsk.persistence.shared_networks`).

Types are not sizes: before anything is read, :func:`load` also refuses an
archive whose members would expand to more than :data:`MAX_EXPANSION` times
the file's size (plus :data:`EXPANSION_SLACK`), counting each member as often
as the schema has it read, and an array whose header declares more bytes than
its member holds. Loading a file of ``n`` bytes so reads at most
``MAX_EXPANSION * n + EXPANSION_SLACK`` bytes of content.

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
import json
import math
import os
import zipfile

from tlsk._compat import current_type_name

__all__ = [
    "EXPANSION_SLACK",
    "MAX_EXPANSION",
    "ArchiveError",
    "UntrustedTypesError",
    "dump",
    "is_trusted_type",
    "load",
    "refused_types",
]

INSTALL_HINT = "pip install 'tlsk[skops]'"

# scikit-learn's fitted estimators hold a few objects that are no estimators.
# Trusted by name: each holds only arrays and estimators.
SKLEARN_FITTED_PARTS = frozenset({"sklearn.calibration._CalibratedClassifier"})

# tlsk's types a model file may build: its estimators and their fitted
# configuration. Names, not imports: model files sit below the estimators
# (tests/test_skops.py checks each name against its class).
TLSK_TYPES = frozenset(
    {
        "tlsk.features.extractor.ImageFeatureExtractor",
        "tlsk.features.extractor.VGG16FeatureExtractor",
        "tlsk.networks.backbone.BackboneConfig",
        "tlsk.training.finetune.KerasFineTuneClassifier",
        "tlsk.training.scratch.SmallCNNClassifier",
        "tlsk.training.zero_shot.ZeroShotImageClassifier",
    }
)

# Types trusted only when the caller names them, and why they are not trusted
# by default (skops refuses them by default too).
KNOWN_RISKS = {
    "sklearn.tree._tree.Tree": (
        "its node indices are not bounds-checked, so a crafted forest can crash "
        "predict() or read memory out of bounds"
    ),
}


# tlsk writes model files, and Keras its networks, with members stored
# uncompressed (ratio 1); a file recompressed by hand shrinks arrays of floats
# by far less than 20. A zip bomb (kilobytes that declare gigabytes) is
# refused before it is read. The slack lets any small file through.
MAX_EXPANSION = 20
EXPANSION_SLACK = 16 << 20


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


class ArchiveError(ValueError):
    """A ``.skops`` archive refused before it is read: too big for its size."""


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
    sio = skops_io()
    _check_sizes(file, file)
    named = sio.get_untrusted_types(file=file)
    return [name for name in named if name not in trusted and not is_trusted_type(name)]


def load(file, path, trusted=()):
    """The model in the skops ``file`` (named ``path`` in errors).

    ``trusted``: names of further types to build (e.g.
    ``"sklearn.tree._tree.Tree"`` for a random forest); any other type that
    :func:`is_trusted_type` refuses is an :class:`UntrustedTypesError` raised
    before anything is built.
    """
    sio = skops_io()
    _check_sizes(file, path)
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


def _check_sizes(file, path):
    """Refuse a file whose reading would take more than its size allows.

    ``file``: a path or a seekable binary file. Raises
    :class:`ArchiveError` naming
    ``path`` when the members the schema reads (a member read by several
    objects counts once each) declare more than :data:`MAX_EXPANSION` times
    the file's size plus :data:`EXPANSION_SLACK`, or when an array's header
    declares more bytes than its member holds (numpy would reserve them).
    """
    if hasattr(file, "seek"):
        size = file.seek(0, 2)
        file.seek(0)
    else:
        size = os.path.getsize(file)
    limit = MAX_EXPANSION * size + EXPANSION_SLACK
    with zipfile.ZipFile(file) as archive:
        members = {info.filename: info for info in archive.infolist()}
        schema = members.get("schema.json")
        if schema is None:
            raise ArchiveError(
                f"model {path!r} holds no schema.json: it is not a skops file"
            )
        read = schema.file_size
        if read <= limit:
            read += sum(
                members[name].file_size
                for name in _files_read(json.loads(archive.read(schema)))
                if name in members
            )
        if read > limit:
            raise ArchiveError(
                f"model {path!r} would expand from {size} bytes to {read} when "
                f"read, more than {MAX_EXPANSION} times its size: it is not a "
                "file tlsk or skops wrote (a zip bomb?)"
            )
        for name, info in members.items():
            if name.endswith(".npy"):
                with archive.open(info) as member:
                    declared = _npy_bytes(member)
                if declared > info.file_size:
                    raise ArchiveError(
                        f"model {path!r}: the array {name!r} declares {declared} "
                        f"bytes and holds {info.file_size}"
                    )
    if hasattr(file, "seek"):
        file.seek(0)


def _files_read(schema):
    """The member names the schema's objects read, as often as they are read.

    skops builds one object per ``"__id__"`` (the first node of that id), and
    a node without one each time it appears: each distinct ``(id, file)``
    pair counts once, each node without an id once per appearance.
    """
    pairs, names, stack = set(), [], [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            name, key = node.get("file"), node.get("__id__")
            if isinstance(name, str):
                if not key or isinstance(key, (dict, list)):
                    names.append(name)
                elif (key, name) not in pairs:
                    pairs.add((key, name))
                    names.append(name)
            stack.extend(node.values())
    return names


def _npy_bytes(member):
    """The bytes the header of the ``.npy`` stream ``member`` declares."""
    import numpy as np

    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    version = np.lib.format.read_magic(member)
    if version not in readers:
        raise ValueError(f"an array in .npy format {version}, which skops never wrote")
    shape, _, dtype = readers[version](member)
    return math.prod(shape) * dtype.itemsize


def is_trusted_type(name):
    """True if the type ``name`` (``module.Class``) may be built from a file.

    Trusted: a class of scikit-learn that is an estimator (or one of
    :data:`SKLEARN_FITTED_PARTS`), numpy's ``ndarray``, dtypes and scalar
    types, and tlsk's estimators and their fitted configuration (by today's
    name or the one an earlier release wrote, :mod:`tlsk._compat`). Never a
    function or method, never another package's type. Only modules of
    scikit-learn and numpy are imported to look a name up.
    """
    if name.startswith("tlsk."):
        # A file written by an earlier release names a type by its old path.
        return current_type_name(name) in TLSK_TYPES
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
