"""Model files: a fitted model and its metadata JSON, written and read together.

``save_model(model, "m.joblib", metadata)`` writes the model (joblib) and
``m.json`` beside it; the JSON records the model file's SHA-256, so that
:func:`load_model` never pairs a model with another model's metadata. The
``tlsk`` command writes and reads its models through these two functions.

joblib files run code when they are loaded: load only files from a trusted
source.

>>> import os, tempfile
>>> from sklearn.dummy import DummyClassifier
>>> model = DummyClassifier().fit([[0], [1]], ["a", "b"])
>>> path = os.path.join(tempfile.mkdtemp(), "model.joblib")
>>> save_model(model, path, {"classes": ["a", "b"]})
>>> loaded, metadata = load_model(path)
>>> metadata["format"], metadata["classes"], len(metadata["model_sha256"])
('tlsk-model', ['a', 'b'], 64)
"""

from __future__ import annotations

import json
import os

from tlsk._files import write_atomically
from tlsk.backbone import file_sha256

__all__ = [
    "MODEL_FORMAT",
    "ModelFileError",
    "load_model",
    "metadata_path",
    "model_file",
    "save_model",
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


def save_model(model, path, metadata, force=False):
    """Write ``model`` (joblib) and its metadata (JSON) beside it, atomically.

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
    import joblib

    from tlsk._version import __version__

    path = os.fspath(path)
    for target in (path, metadata_path(path)):
        if os.path.lexists(target) and not force:
            raise FileExistsError(f"{target!r} exists; pass force=True to replace it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: no folder {folder!r}")
    previous = _matching_record(path)
    record = {"format": MODEL_FORMAT, "tlsk_version": __version__, **metadata}

    def describe_first(tmp):
        record["model_sha256"] = file_sha256(tmp)
        if previous is not None:
            _write_json(metadata_path(path), {**record, "previous": previous})

    write_atomically(
        path, lambda file: joblib.dump(model, file), before_replace=describe_first
    )
    _write_json(metadata_path(path), record)


def load_model(path):
    """``(model, metadata)`` from a model file written by :func:`save_model`.

    A missing file, a file without tlsk metadata beside it, or a model that is
    not the file its metadata describes is a :class:`ModelFileError` that
    names the file. joblib files run code when loaded: load only files from a
    trusted source.
    """
    import joblib

    path = os.fspath(path)
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
        model = joblib.load(path)
    except Exception as err:  # a damaged file fails in many ways
        raise ModelFileError(f"cannot load model {path!r}: {err}") from err
    return model, metadata


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
