"""What the sub-commands share: options, safe file writing, model files, output."""

from __future__ import annotations

import json
import os
import sys
import tempfile

from tlsk.backbone import LAYERS, POOLINGS
from tlsk.cli import CommandError
from tlsk.images import INTERPOLATIONS

__all__ = [
    "add_extractor_options",
    "check_writable",
    "extractor_params",
    "load_model",
    "note",
    "print_json",
    "safe_join",
    "save_model",
    "write_atomically",
]

MODEL_FORMAT = "tlsk-model"


def add_extractor_options(parser):
    """The VGG16FeatureExtractor's options, for the extract/train/demo commands."""
    group = parser.add_argument_group("VGG16 features")
    group.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' (default), 'none' for a seeded random initialisation, "
        "or the path of a VGG16 no-top weights file",
    )
    group.add_argument("--layer", default="block5_pool", choices=LAYERS)
    group.add_argument("--pooling", default="avg", choices=POOLINGS)
    group.add_argument("--input-size", type=int, default=224, metavar="PX")
    group.add_argument("--interpolation", default="bilinear", choices=INTERPOLATIONS)
    group.add_argument("--batch-size", type=int, default=32)


def parse_weights(text):
    """'imagenet' | 'none' | a path -> the extractor's ``weights`` value."""
    return None if text.lower() == "none" else text


def extractor_params(args, **overrides):
    """Keyword arguments for VGG16FeatureExtractor from parsed options."""
    return {
        "weights": parse_weights(args.weights),
        "layer": args.layer,
        "pooling": args.pooling,
        "input_size": args.input_size,
        "interpolation": args.interpolation,
        "batch_size": args.batch_size,
        "verbose": 0 if args.quiet else 1,
        **overrides,
    }


def note(args, message):
    """A remark for the person at the terminal: stderr, silenced by --quiet."""
    if not args.quiet:
        print(message, file=sys.stderr)


def print_json(data, stream=None):
    json.dump(data, stream or sys.stdout, indent=2, sort_keys=True, default=str)
    (stream or sys.stdout).write("\n")


def safe_join(root, *parts):
    """``root/part/...``, refusing any result outside ``root``.

    Class names, file names and labels come from data the user may not
    control: ``..``, absolute paths and symbolic links that lead out are
    refused with a CommandError.
    """
    root_real = os.path.realpath(root)
    for part in parts:
        if not part or part in (".", "..") or os.path.isabs(part) or "/" in part:
            raise CommandError(
                f"refusing to write {part!r} under {root!r}: a name must be one "
                "plain path component (no '/', '..' or absolute path)"
            )
    path = os.path.join(root_real, *parts)
    if os.path.commonpath([root_real, os.path.realpath(path)]) != root_real:
        raise CommandError(f"refusing to write {path!r}: it leads outside {root!r}")
    return path


def check_writable(path, force):
    """Refuse to replace an existing file unless ``force``."""
    if os.path.lexists(path) and not force:
        raise CommandError(f"{path!r} exists; use --force to overwrite it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CommandError(f"cannot write {path!r}: folder {folder!r} does not exist")


def write_atomically(path, write):
    """Write through a temporary file in the same folder, fsync, then replace.

    ``write(file)`` fills a binary file object. Killed at any moment, ``path``
    holds the old content or the new, never a mixture.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def metadata_path(model_path):
    """The JSON file beside a model file: ``model.joblib`` -> ``model.json``."""
    return os.path.splitext(os.fspath(model_path))[0] + ".json"


def save_model(model, path, metadata, force=False):
    """Write ``model`` (joblib) and its metadata (JSON) beside it, atomically."""
    import joblib

    from tlsk._version import __version__

    check_writable(path, force)
    check_writable(metadata_path(path), force)
    write_atomically(path, lambda file: joblib.dump(model, file))
    record = {"format": MODEL_FORMAT, "tlsk_version": __version__, **metadata}
    write_atomically(
        metadata_path(path),
        lambda file: file.write(json.dumps(record, indent=2, default=str).encode()),
    )


def load_model(path):
    """``(model, metadata)`` from a model file written by :func:`save_model`.

    joblib files run code when loaded: load only files from a trusted source.
    """
    import joblib

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CommandError(f"no model file at {path!r}")
    try:
        with open(metadata_path(path), encoding="utf-8") as file:
            metadata = json.load(file)
    except (OSError, ValueError) as err:
        raise CommandError(
            f"cannot read the metadata of model {path!r} at "
            f"{metadata_path(path)!r}: {err}"
        ) from err
    if metadata.get("format") != MODEL_FORMAT:
        raise CommandError(f"{metadata_path(path)!r} is not a tlsk model's metadata")
    try:
        model = joblib.load(path)
    except Exception as err:  # a damaged file fails in many ways
        raise CommandError(f"cannot load model {path!r}: {err}") from err
    return model, metadata
