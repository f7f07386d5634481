"""Model files: a fitted model and its metadata JSON, written and read together.

``save_model(model, "m.joblib", metadata)`` writes the model and ``m.json``
beside it; the JSON records the model file's SHA-256, so that
:func:`load_model` never pairs a model with another model's metadata. The
``tlsk`` command writes and reads its models through these two functions.

The suffix picks the format. ``.skops`` (:mod:`tlsk._skops`, ``pip install
'tlsk[skops]'``): safe to load from someone else, since loading builds only
scikit-learn's estimators, numpy's arrays and tlsk's estimators, and refuses
any other type before building anything. Any other suffix (``.joblib``):
a pickle, the fastest to load, but loading runs whatever code the file
names: load only your own files, or files from a source you trust.

>>> import os, tempfile
>>> from sklearn.dummy import DummyClassifier
>>> model = DummyClassifier().fit([[0], [1]], ["a", "b"])
>>> path = os.path.join(tempfile.mkdtemp(), "model.joblib")
>>> save_model(model, path, {"classes": ["a", "b"]})
>>> loaded, metadata = load_model(path)
>>> metadata["format"], metadata["classes"], len(metadata["model_sha256"])
('tlsk-model', ['a', 'b'], 64)
>>> serialization("shared.skops"), serialization("mine.joblib")
('skops', 'joblib')
"""

from __future__ import annotations

import json
import os

from tlsk import _skops
from tlsk._files import write_atomically
from tlsk._skops import UntrustedTypesError
from tlsk.backbone import file_sha256

__all__ = [
    "MODEL_FORMAT",
    "ModelFileError",
    "UntrustedTypesError",
    "load_model",
    "metadata_path",
    "model_file",
    "save_model",
    "serialization",
    "untrusted_types",
]

MODEL_FORMAT = "tlsk-model"


class ModelFileError(ValueError):
    """A model file, or its metadata, that is missing, foreign or damaged."""


def model_file(model_path, suffix):
    """A file beside a model: ``m.joblib``, ``.curves.png`` -> ``m.curves.png``."""
    return os.path.splitext(os.fspath(model_path))[0] + suffix


def metadata_path(model_path):
    """The JSON file beside a model file: ``model.joblib`` -> ``model.json``."""
    return model_file(model_path, ".json")


def serialization(path):
    """How the model file ``path`` is written: ``"skops"`` (``.skops``) or ``"joblib"``.

    Every suffix but ``.skops`` is joblib, as every model file was before
    skops. Raises the ImportError that says how to install skops when a
    ``.skops`` file is asked for without it.
    """
    if os.fspath(path).lower().endswith(".skops"):
        _skops.skops_io()
        return "skops"
    return "joblib"


def untrusted_types(path):
    """The types of a ``.skops`` model that load only when named in ``trusted=``.

    Reads the file's list of types, builds nothing; ``[]`` for a joblib file.
    """
    if serialization(path) != "skops":
        return []
    return _skops.refused_types(os.fspath(path))


def save_model(model, path, metadata=None, force=False):
    """Write ``model`` and its metadata (JSON) beside it, atomically.

    ``path`` ending in ``.skops`` writes the skops format, any other suffix
    joblib (see the module docstring for which to use when). A ``.skops``
    model is for sharing, so its feature extractors must name no feature
    cache (a path of this machine): a ValueError says so.

    The metadata names the exact model file it describes (its SHA-256), and
    two files cannot be replaced in one atomic step, so an existing model is
    replaced in three: the new model is written under a temporary name; the
    metadata is replaced by one that describes the new model and keeps the
    old model's record under ``"previous"``; the new model takes the old
    one's name; the metadata is rewritten without ``"previous"``. Killed at
    any moment, the pair on disk loads (:func:`load_model` picks the record
    whose SHA-256 matches): the old model before its replacement, the new one
    after. A failed write (a full disk) leaves the old pair as it was.
    Without ``force``, an existing model or metadata file is a
    :class:`FileExistsError` and nothing is written.
    """
    from tlsk._version import __version__

    path = os.fspath(path)
    kind = serialization(path)
    if kind == "skops":
        _refuse_cache_paths(model, f"a .skops model ({path!r})")
    for target in (path, metadata_path(path)):
        if os.path.lexists(target) and not force:
            raise FileExistsError(f"{target!r} exists; pass force=True to replace it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: no folder {folder!r}")
    previous = _matching_record(path)
    record = {
        "format": MODEL_FORMAT,
        "tlsk_version": __version__,
        "serialization": kind,
        **(metadata or {}),
    }

    def describe_first(tmp):
        record["model_sha256"] = file_sha256(tmp)
        if previous is not None:
            _write_json(metadata_path(path), {**record, "previous": previous})

    write_atomically(
        path, lambda file: _WRITERS[kind](model, file), before_replace=describe_first
    )
    _write_json(metadata_path(path), record)


def load_model(path, trusted=()):
    """``(model, metadata)`` from a model file written by :func:`save_model`.

    A missing file, a file without tlsk metadata beside it, or a model that is
    not the file its metadata describes is a :class:`ModelFileError` that
    names the file.

    A ``.skops`` file builds only the types tlsk trusts (scikit-learn's
    estimators, numpy's arrays, tlsk's estimators) and the names in
    ``trusted`` (e.g. ``["sklearn.tree._tree.Tree"]`` for a random forest,
    whose trees skops does not check); a file naming any other type is an
    :class:`UntrustedTypesError` that lists them, raised before anything is
    built. A joblib file runs code when loaded: load only your own files or
    files from a source you trust (``trusted`` is then a ValueError: a pickle
    has no list of types to check).
    """
    path = os.fspath(path)
    kind = serialization(path)
    if trusted and kind != "skops":
        raise ValueError(
            f"trusted= applies to .skops model files; {path!r} is a joblib "
            "pickle, which builds whatever it names"
        )
    if not os.path.isfile(path):
        raise ModelFileError(f"no model file at {path!r}")
    if not os.path.isfile(metadata_path(path)):
        raise ModelFileError(
            f"{path!r} is not a tlsk model: its metadata {metadata_path(path)!r} is "
            "missing ('tlsk train' and save_model write both)"
        )
    try:
        metadata = _read_metadata(path)
    except (OSError, ValueError) as err:
        raise ModelFileError(
            f"cannot read the metadata of model {path!r} at "
            f"{metadata_path(path)!r}: {err}"
        ) from err
    metadata = _pick_record(metadata, file_sha256(path))
    if metadata is None:
        raise ModelFileError(
            f"model {path!r} is not the file its metadata {metadata_path(path)!r} "
            "describes (SHA-256 differs: one was replaced or damaged); train again "
            "or restore both files together"
        )
    try:
        if kind == "skops":
            with open(path, "rb") as file:
                model = _skops.load(file, path, trusted=tuple(trusted))
            _refuse_cache_paths(model, f"model {path!r}")
        else:
            import joblib

            model = joblib.load(path)
    except (ModelFileError, UntrustedTypesError):
        raise
    except Exception as err:  # a damaged file fails in many ways
        raise ModelFileError(f"cannot load model {path!r}: {err}") from err
    return model, metadata


def _dump_joblib(model, file):
    import joblib

    joblib.dump(model, file)


_WRITERS = {"joblib": _dump_joblib, "skops": _skops.dump}


def _refuse_cache_paths(model, what):
    """A shared model must not make tlsk read or write a file it names."""
    from tlsk.features import ImageFeatureExtractor

    parts = [model]
    if hasattr(model, "get_params"):
        parts += model.get_params(deep=True).values()
    caches = [
        part.cache if part.cache is not None else part.cache_path_
        for part in parts
        if isinstance(part, ImageFeatureExtractor)
        and (part.cache is not None or getattr(part, "cache_path_", None) is not None)
    ]
    if caches:
        raise ModelFileError(
            f"{what} must name no feature cache, and its extractor names "
            f"{caches[0]!r}: a model to share computes its features afresh; "
            "save extractor.with_cache_file(None) (as 'tlsk train' does)"
        )


def _write_json(path, record):
    write_atomically(
        path,
        lambda file: file.write(json.dumps(record, indent=2, default=str).encode()),
    )


def _read_metadata(path):
    with open(metadata_path(path), encoding="utf-8") as file:
        metadata = json.load(file)
    if not isinstance(metadata, dict) or metadata.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{metadata_path(path)!r} is not a tlsk model's metadata")
    return metadata


def _pick_record(metadata, sha256):
    """The record of ``metadata`` that describes a model file of ``sha256``."""
    previous = metadata.pop("previous", None)
    expected = metadata.get("model_sha256")
    if expected is None or expected == sha256:
        return metadata
    if isinstance(previous, dict) and previous.get("model_sha256") == sha256:
        return previous  # killed while the model was being replaced
    return None


def _matching_record(path):
    """The record of the model at ``path`` if its pair is intact, else None."""
    try:
        return _pick_record(_read_metadata(path), file_sha256(path))
    except (OSError, ValueError):
        return None
