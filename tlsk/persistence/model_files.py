"""Model files: a fitted model and its metadata JSON, written and read together.

``save_model(model, "m.joblib", metadata)`` writes the model and ``m.json``
beside it; the JSON records the model file's SHA-256, so that
:func:`load_model` never pairs a model with another model's metadata. The
``tlsk`` command writes and reads its models through these two functions.

The suffix picks the format. ``.skops`` (:mod:`tlsk.persistence.skops`, ``pip install
'tlsk[skops]'``): safe to load from someone else, since loading builds only
scikit-learn's estimators, numpy's arrays and tlsk's estimators, and refuses
any other type before building anything. Any other suffix (``.joblib``):
a pickle, the fastest to load, but loading runs whatever code the file
names: load only your own files, or files from a source you trust.

Types are not values: a file of trusted types may still hold an estimator
that ``fit`` would never have made. So :func:`load_model` checks every
estimator in a loaded model, nested ones included (a Pipeline's steps, a
calibrated classifier's or a search's fitted estimators): its parameters
against its ``_parameter_constraints`` (tlsk's bounded by
:mod:`tlsk._util.limits`), and a tlsk estimator's fitted attributes as ``fit``
leaves them. A ``.skops`` file must moreover name no file of this machine (a
feature cache, a weights or ``.keras`` file, a Pipeline's ``memory``;
:func:`save_model` writes a model without its feature cache) and no
``n_jobs`` above :data:`tlsk._util.limits.MAX_N_JOBS`, and the Keras network of a
classifier in it is checked before it is built
(:mod:`tlsk.persistence.shared_networks`): a shared file never makes tlsk read or write
a path of your machine.

>>> import os, tempfile
>>> from sklearn.dummy import DummyClassifier
>>> model = DummyClassifier().fit([[0], [1]], ["a", "b"])
>>> path = os.path.join(tempfile.mkdtemp(), "model.joblib")
>>> save_model(model, path, {"classes": ["a", "b"]})
>>> load_model(path).predict([[0]]).shape
(1,)
>>> metadata = load_metadata(path)
>>> metadata["format"], metadata["classes"], len(metadata["model_sha256"])
('tlsk-model', ['a', 'b'], 64)
>>> serialization("shared.skops"), serialization("mine.joblib")
('skops', 'joblib')
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings

from tlsk._util.files import (
    check_replaceable,
    file_identity,
    folder_locked,
    resolved,
    write_atomically,
)
from tlsk._util.limits import MAX_N_JOBS
from tlsk.networks.backbone import file_sha256
from tlsk.persistence import skops as _skops
from tlsk.persistence.skops import UntrustedTypesError

__all__ = [
    "MODEL_FORMAT",
    "ModelFileError",
    "UntrustedTypesError",
    "check_shareable",
    "load_metadata",
    "load_model",
    "load_model_with_metadata",
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

    Every suffix but ``.skops`` is joblib (``.joblib``, ``.pkl``, none), so
    that a model file of any name a user chose loads. Raises the ImportError
    that says how to install skops when a ``.skops`` file is asked for
    without it.
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


def save_model(model, path, metadata=None, *, force=False):
    """Write ``model`` and its metadata (JSON) beside it, atomically.

    ``path`` ending in ``.skops`` writes the skops format, any other suffix
    joblib (see the module docstring for which to use when). A ``.skops``
    model is for sharing, so it names no file of this machine. A feature
    cache is left out: the file holds the model with ``cache=None`` in each
    estimator that names one (it computes its features afresh), a
    ``UserWarning`` says so, and the metadata lists them under
    ``"written_without_cache"``; ``model`` itself keeps its cache. Any other
    file (a weights or ``.keras`` file, a Pipeline's ``memory``, anywhere in
    the model) is a :class:`ModelFileError` that says which and what to do,
    and nothing is written.

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

    kind = serialization(path)
    without_cache = []
    if kind == "skops":
        model, without_cache = _without_caches(model)
        check_shareable(model, path)
        if without_cache:
            warnings.warn(
                f"the .skops model {os.fspath(path)!r} is written without its "
                f"feature cache (cache=None in {', '.join(without_cache)}): a "
                "model to share names no file of this machine, so it computes "
                "its features afresh; the model in memory keeps its cache, and "
                "a .joblib file would keep it too",
                UserWarning,
                stacklevel=2,
            )
    path = resolved(path)
    for target in (path, metadata_path(path)):
        check_replaceable(target, force=force)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: no folder {folder!r}")
    record = {
        "format": MODEL_FORMAT,
        "tlsk_version": __version__,
        "serialization": kind,
        **(metadata or {}),
    }
    if without_cache:
        record["written_without_cache"] = without_cache
    # Two writers of one model must not interleave their three steps: the
    # metadata of one would describe the other's model.
    with folder_locked(folder):
        previous = _matching_record(path)

        def describe_first(tmp):
            record["model_sha256"] = file_sha256(tmp)
            if previous is not None:
                _write_json(metadata_path(path), {**record, "previous": previous})

        write_atomically(
            path,
            lambda file: _WRITERS[kind](model, file),
            before_replace=describe_first,
        )
        _write_json(metadata_path(path), record)


def load_model(path, *, trusted=()):
    """The model in a model file written by :func:`save_model`.

    Returns the model alone, as ``joblib.load`` and ``skops.io.load`` do, so
    that ``load_model(path).predict(X)`` works; its metadata is
    :func:`load_metadata`'s (or :func:`load_model_with_metadata`'s, both
    from one reading of the pair).

    A missing file, a file without tlsk metadata beside it, metadata that
    records no ``model_sha256``, or a model that is not the file its metadata
    describes is a :class:`ModelFileError` that names the file. So is a model
    holding an estimator that ``fit`` would not have made, and, in a
    ``.skops`` file, one that names a file of this machine (see the module
    docstring).

    A ``.skops`` file builds only the types tlsk trusts (scikit-learn's
    estimators, numpy's arrays, tlsk's estimators) and the names in
    ``trusted`` (e.g. ``["sklearn.tree._tree.Tree"]`` for a random forest,
    whose trees skops does not check); a file naming any other type is an
    :class:`UntrustedTypesError` that lists them, raised before anything is
    built. A joblib file runs code when loaded: load only your own files or
    files from a source you trust (``trusted`` is then a ValueError: a pickle
    has no list of types to check).
    """
    return load_model_with_metadata(path, trusted=trusted)[0]


def load_metadata(path):
    """The metadata (a dict) of the model file ``path``, without loading the model.

    The record of the JSON file beside the model (:func:`metadata_path`)
    that describes the model file's bytes (its SHA-256): what made the
    model, its classes, and what :func:`save_model` was given. Nothing in
    the model file is built or run, so it is safe on any file, and answers
    what a model is before one decides to trust it. A missing model or
    metadata file, or a pair that does not match, is a
    :class:`ModelFileError`, as for :func:`load_model`.
    """
    path = os.fspath(path)
    _check_pair_exists(path)
    metadata, file = _open_matching_pair(path)
    file.close()
    return metadata


def load_model_with_metadata(path, *, trusted=()):
    """``(model, metadata)`` from one reading of a model file and its metadata.

    :func:`load_model` and :func:`load_metadata` together, with the metadata
    guaranteed to describe the very bytes the model was built from, even
    while another process replaces the pair (two calls could each see a
    different model). ``trusted``: as for :func:`load_model`.
    """
    path = os.fspath(path)
    kind = serialization(path)
    if trusted and kind != "skops":
        raise ValueError(
            f"trusted= applies to .skops model files; {path!r} is a joblib "
            "pickle, which builds whatever it names"
        )
    _check_pair_exists(path)
    metadata, file = _open_matching_pair(path)
    with file:
        shared = kind == "skops"
        try:
            if shared:
                from tlsk.persistence.shared_networks import reading_shared_file

                with reading_shared_file():
                    model = _skops.load(file, path, trusted=tuple(trusted))
            else:
                import joblib

                model = joblib.load(file)
        except (ModelFileError, UntrustedTypesError):
            raise
        except _skops.ArchiveError as err:  # names the file already
            raise ModelFileError(str(err)) from err
        except Exception as err:  # a damaged file fails in many ways
            raise ModelFileError(f"cannot load model {path!r}: {err}") from err
    _check_loaded(model, path, shared)
    return model, metadata


def _check_pair_exists(path):
    if not os.path.isfile(path):
        raise ModelFileError(f"no model file at {path!r}")
    if not os.path.isfile(metadata_path(path)):
        raise ModelFileError(
            f"{path!r} is not a tlsk model: its metadata {metadata_path(path)!r} is "
            "missing ('tlsk train' and save_model write both)"
        )


def check_shareable(model, path):
    """Raise :class:`ModelFileError` if ``model`` names a file of this machine.

    What :func:`save_model` checks before writing a ``.skops`` file to
    ``path``, on a fitted or unfitted model (a command may call it before
    it trains): a feature cache, a weights or ``.keras`` file, a Pipeline's
    ``memory``, in any estimator of the model, parameters and fitted
    attributes.
    """
    for where, estimator in _objects(model, estimators_only=True):
        for name, value in _local_paths(estimator).items():
            kind, instead = _LOCAL_FILES[name]
            raise ModelFileError(
                f"a .skops model ({os.fspath(path)!r}) must name no {kind} of this "
                f"machine; its {type(estimator).__name__} ({where}) names "
                f"{name}={value!r}: {instead}; or save it as .joblib, for your own "
                "use"
            )


def _without_caches(model):
    """``(model to write, [where])``: ``model``, or a copy without feature caches.

    The copy has ``cache=None`` (and no resolved cache path) in each
    estimator that names a feature cache, listed by where it is
    (``model.steps[0][1]``); ``model`` is not modified. A model naming no
    cache is returned as it is, not copied.
    """
    cached = [
        where
        for where, estimator in _objects(model, estimators_only=True)
        if "cache" in _local_paths(estimator)
    ]
    if not cached:
        return model, []
    model = copy.deepcopy(model)
    for where, estimator in _objects(model, estimators_only=True):
        if where in cached:
            estimator.cache = None
            if "cache_path_" in vars(estimator):
                estimator.cache_path_ = None
    return model, cached


def _dump_joblib(model, file):
    import joblib

    joblib.dump(model, file)


_WRITERS = {"joblib": _dump_joblib, "skops": _skops.dump}


# The files a model may name, by the parameter that names them (fitted
# attributes count as the parameter they come from): what each is, and what a
# model to share does instead.
_LOCAL_FILES = {
    "cache": (
        "feature cache",
        "a model to share computes its features afresh: save "
        "extractor.with_cache_file(None) (as 'tlsk train' does)",
    ),
    "weights": (
        "weights file",
        "a model to share builds its network from the registry, with "
        "weights='imagenet' or None (a fitted classifier's network holds its "
        "weights already: set_params(weights=None))",
    ),
    "backbone": (
        "model file",
        "a model to share names its backbone from the registry",
    ),
    "memory": ("cache folder", "set_params(memory=None)"),
}


def _local_paths(estimator):
    """``{parameter: path}``: the files of this machine ``estimator`` names.

    A tlsk estimator says which (``_local_paths``); a scikit-learn one may
    name a cache folder (``memory``).
    """
    method = getattr(estimator, "_local_paths", None)
    named = dict(method()) if method is not None else {}
    memory = estimator.__dict__.get("memory")
    if memory is not None:
        named["memory"] = memory
    return named


def _check_loaded(model, path, shared):
    """Refuse a loaded model holding an estimator that fit would not have made.

    First, no object of scikit-learn or tlsk in it (:func:`_objects`) has an
    attribute that hides a method of its class: a file sets attributes, and
    would otherwise replace the checks that follow. Then each estimator: its
    parameters against its ``_parameter_constraints`` and, for tlsk's, its
    fitted attributes (``_check_state``); from a shared file also no file of
    this machine and no ``n_jobs`` above :data:`MAX_N_JOBS`.
    """
    from sklearn.base import BaseEstimator

    from tlsk._util.sklearn_compat import validate_params

    def refuse(where, obj, reason):
        return ModelFileError(
            f"model {path!r} holds a {type(obj).__name__} ({where}) that fit would "
            f"not have made: {reason}. The file was edited or damaged after it "
            "was written: train again, or ask its author for it again"
        )

    found = list(_objects(model))
    for where, obj in found:
        cls = type(obj)
        hiding = [
            key
            for key in vars(obj)
            if not isinstance(key, str) or callable(getattr(cls, key, None))
        ]
        if hiding:
            raise refuse(where, obj, f"its attribute {hiding[0]!r} hides a method")
    for where, obj in found:
        if not isinstance(obj, BaseEstimator):
            continue
        try:
            validate_params(obj)
            if hasattr(obj, "_check_state"):
                obj._check_state()
            n_jobs = obj.__dict__.get("n_jobs")
            if shared and isinstance(n_jobs, int) and n_jobs > MAX_N_JOBS:
                raise ValueError(f"n_jobs={n_jobs} is above {MAX_N_JOBS}")
            files = _local_paths(obj) if shared else {}
        except Exception as err:  # whatever a crafted attribute makes fail
            raise refuse(where, obj, err) from err
        for parameter, value in files.items():
            kind = _LOCAL_FILES[parameter][0]
            raise ModelFileError(
                f"model {path!r} names a {kind} of this machine ({parameter}="
                f"{value!r}, in its {type(obj).__name__} at {where}) and was "
                "refused: a shared model file never makes tlsk read or write a "
                "path of your machine. Ask its author for a model saved without it"
            )


def _objects(model, estimators_only=False):
    """``(where, object)`` for every scikit-learn or tlsk object in ``model``.

    ``model`` itself, and whatever its attributes hold, parameters and fitted
    ones alike (a Pipeline's steps, a search's ``best_estimator_``, a
    calibrated classifier's fitted estimators, a backbone configuration),
    through lists, tuples, dicts and object arrays; with ``estimators_only``,
    the estimators among them. ``where`` says how to reach it
    (``model.steps[0][1]``). A Keras network is not looked into: it is the
    classifier's to check.
    """
    import numpy as np
    from sklearn.base import BaseEstimator

    seen, stack = set(), [("model", model)]
    while stack:
        where, obj = stack.pop()
        if isinstance(obj, (str, bytes, int, float)) or obj is None:
            continue
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            children = [(f"{where}[{key!r}]", value) for key, value in obj.items()]
        elif isinstance(obj, (list, tuple)):
            children = [(f"{where}[{i}]", value) for i, value in enumerate(obj)]
        elif isinstance(obj, np.ndarray):
            items = obj.ravel() if obj.dtype == object else ()
            children = [(f"{where}.flat[{i}]", value) for i, value in enumerate(items)]
        elif type(obj).__module__.split(".")[0] in ("sklearn", "tlsk") and hasattr(
            obj, "__dict__"
        ):
            if isinstance(obj, BaseEstimator) or not estimators_only:
                yield where, obj
            children = [(f"{where}.{key}", value) for key, value in vars(obj).items()]
        else:
            continue
        # Reversed: the stack then yields them in order, outer ones first.
        stack.extend(reversed(children))


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


# Reading a pair while another process replaces it may see the metadata of
# one model beside another; the pair is read again this many times.
_READ_ATTEMPTS = 5


def _open_matching_pair(path):
    """``(record, open model file)``: the metadata record that describes the
    model bytes the file holds.

    The model is hashed from the open file, the very bytes that will be
    loaded, even if the name is replaced meanwhile. A mismatch while either
    file is being replaced (their identities change under the reader) is
    read again, both files afresh; one that stays is a
    :class:`ModelFileError`.
    """
    for _ in range(_READ_ATTEMPTS):
        before = file_identity(metadata_path(path))
        try:
            metadata = _read_metadata(path)
        except (OSError, ValueError) as err:
            raise ModelFileError(
                f"cannot read the metadata of model {path!r} at "
                f"{metadata_path(path)!r}: {err}"
            ) from err
        if not isinstance(metadata.get("model_sha256"), str):
            raise ModelFileError(
                f"the metadata {metadata_path(path)!r} of model {path!r} records "
                "no model_sha256, so nothing says it describes that model; train "
                "again, or write both files with save_model"
            )
        file = open(path, "rb")  # noqa: SIM115 - returned open, closed by the caller
        try:
            sha256 = hashlib.file_digest(file, "sha256").hexdigest()
            record = _pick_record(metadata, sha256)
            if record is not None:
                file.seek(0)
                return record, file
            reading = file_identity(path, os.fstat(file.fileno()))
        except BaseException:
            file.close()
            raise
        file.close()
        moved = file_identity(path) != reading
        if not moved and file_identity(metadata_path(path)) == before:
            break
    raise ModelFileError(
        f"model {path!r} is not the file its metadata {metadata_path(path)!r} "
        "describes (SHA-256 differs: one was replaced or damaged); train again "
        "or restore both files together"
    )


def _pick_record(metadata, sha256):
    """The record of ``metadata`` that describes a model file of ``sha256``.

    A record without ``model_sha256`` describes no file: it pairs with none.
    """
    previous = metadata.pop("previous", None)
    if metadata.get("model_sha256") == sha256:
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
