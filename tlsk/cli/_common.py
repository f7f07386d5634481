"""What the sub-commands share: options, safe file writing, model files, output."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tlsk._files import safe_join, write_atomically
from tlsk.backbone import POOLINGS, file_sha256
from tlsk.cli import CommandError
from tlsk.images import INTERPOLATIONS
from tlsk.precision import PRECISIONS
from tlsk.preprocessing import PREPROCESSINGS

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


def fraction(text):
    """argparse type: a float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1); got {text!r}")
    return value


def int_at_least(minimum):
    """argparse type: an int >= ``minimum`` (a bad value is a usage error)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}; got {text!r}"
            )
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def add_extractor_options(parser):
    """The feature extractor's options, for the extract/train commands."""
    group = parser.add_argument_group("backbone and features")
    group.add_argument(
        "--backbone",
        default="vgg16",
        metavar="NAME|FILE.keras",
        help="the network: a name 'tlsk backbones' lists, or a .keras model file "
        "of your own (then give --preprocessing) (default: vgg16)",
    )
    group.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' (default), 'none' for a seeded random initialisation, "
        "or the path of the backbone's no-top weights file",
    )
    group.add_argument(
        "--layer",
        metavar="LAYER",
        help="where the network is cut: a cut point 'tlsk backbones' lists "
        "(default: its last)",
    )
    group.add_argument("--pooling", default="avg", choices=POOLINGS)
    group.add_argument(
        "--input-size",
        type=int_at_least(1),
        metavar="PX",
        help="side images are resized to (default: the backbone's native size)",
    )
    group.add_argument("--interpolation", default="bilinear", choices=INTERPOLATIONS)
    group.add_argument(
        "--preprocessing",
        choices=PREPROCESSINGS,
        help="how pixels are prepared (default: the backbone's own; required "
        "for a .keras file)",
    )
    group.add_argument("--batch-size", type=int_at_least(1), default=32)
    group.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="'auto' (default): bfloat16 where the CPU or GPU computes it "
        "natively (AMX, AVX512-BF16), float32 elsewhere",
    )


def parse_weights(text):
    """'imagenet' | 'none' | a path -> the extractor's ``weights`` value."""
    return None if text.lower() == "none" else text


def extractor_params(args, **overrides):
    """Keyword arguments for ImageFeatureExtractor from parsed options."""
    return {
        "backbone": args.backbone,
        "weights": parse_weights(args.weights),
        "layer": args.layer,
        "pooling": args.pooling,
        "input_size": args.input_size,
        "interpolation": args.interpolation,
        "preprocessing": args.preprocessing,
        "batch_size": args.batch_size,
        "precision": args.precision,
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


def check_writable(path, force):
    """Refuse to replace an existing file unless ``force``."""
    if os.path.lexists(path) and not force:
        raise CommandError(f"{path!r} exists; use --force to overwrite it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CommandError(f"cannot write {path!r}: folder {folder!r} does not exist")


def metadata_path(model_path):
    """The JSON file beside a model file: ``model.joblib`` -> ``model.json``."""
    return model_file(model_path, ".json")


def _write_json(path, record):
    write_atomically(
        path,
        lambda file: file.write(json.dumps(record, indent=2, default=str).encode()),
    )


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
    """
    import joblib

    from tlsk._version import __version__

    check_writable(path, force)
    check_writable(metadata_path(path), force)
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


def _read_metadata(path):
    with open(metadata_path(path), encoding="utf-8") as file:
        metadata = json.load(file)
    if not isinstance(metadata, dict) or metadata.get("format") != MODEL_FORMAT:
        raise CommandError(f"{metadata_path(path)!r} is not a tlsk model's metadata")
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
    except (OSError, ValueError, CommandError):
        return None


def load_model(path):
    """``(model, metadata)`` from a model file written by :func:`save_model`.

    joblib files run code when loaded: load only files from a trusted source.
    """
    import joblib

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CommandError(f"no model file at {path!r}")
    try:
        metadata = _read_metadata(path)
    except (OSError, ValueError) as err:
        raise CommandError(
            f"cannot read the metadata of model {path!r} at "
            f"{metadata_path(path)!r}: {err}"
        ) from err
    metadata = _pick_record(metadata, file_sha256(path))
    if metadata is None:
        raise CommandError(
            f"model {path!r} is not the file its metadata {metadata_path(path)!r} "
            "describes (SHA-256 differs: one was replaced or damaged); train again "
            "or restore both files together"
        )
    try:
        model = joblib.load(path)
    except Exception as err:  # a damaged file fails in many ways
        raise CommandError(f"cannot load model {path!r}: {err}") from err
    return model, metadata


# -- labelled folders, predictions and reports (train, evaluate, predict) -----


def model_file(model_path, suffix):
    """A file beside a model: ``m.joblib``, ``.curves.png`` -> ``m.curves.png``."""
    return os.path.splitext(os.fspath(model_path))[0] + suffix


def read_labelled_folder(args, root):
    """``(paths, labels, bad)`` of a folder-per-class tree.

    Files that cannot be decoded are left out and named in a note; ``bad``
    holds their :class:`tlsk.images.ImageError`.
    """
    from tlsk.datasets import find_bad_images, load_image_folder

    paths, labels = load_image_folder(root, check=False)
    bad = find_bad_images(paths)
    if bad:
        bad_paths = {err.path for err in bad}
        keep = [i for i, path in enumerate(paths) if path not in bad_paths]
        paths, labels = [paths[i] for i in keep], labels[keep]
        note(args, f"skipped {len(bad)} files that cannot be decoded:")
        for err in bad:
            note(args, f"  {err}")
    if not paths:
        raise CommandError(f"no image that can be decoded in {root!r}")
    return paths, labels, bad


def image_files(paths):
    """The files named by ``paths``, folders expanded recursively.

    Inside folders, hidden files and folders are skipped and links to folders
    are not followed; a file named explicitly is kept whatever its name, and
    so is a path that does not exist, for the caller to report.
    """
    from tlsk.datasets import _files_below

    found = []
    for path in map(os.fspath, paths):
        found.extend(_files_below(path) if os.path.isdir(path) else [path])
    return found


def show_progress(model, args):
    """Progress bars (stderr) while a loaded model extracts features, unless -q."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, Pipeline) and "verbose" in model[0].get_params():
        model[0].set_params(verbose=0 if args.quiet else 1)


def predict_proba(model, paths):
    """``(probabilities, classes)`` of a tlsk model (a Pipeline or Keras classifier)."""
    import numpy as np

    proba = np.asarray(model.predict_proba(list(paths)), dtype=np.float64)
    return proba, np.asarray(model.classes_)


def classification_summary(y_true, y_pred, known):
    """``(metrics, text)``: accuracy, per-class precision/recall/F1, confusion matrix.

    ``known`` are the model's classes; labels of ``y_true`` outside them are
    added at the end of the rows (the model can never predict them).
    """
    from sklearn.metrics import classification_report, confusion_matrix

    known = [str(c) for c in known]
    unknown = sorted(set(map(str, y_true)) - set(known))
    labels = known + unknown
    y_true = [str(y) for y in y_true]
    y_pred = [str(y) for y in y_pred]
    report = classification_report(
        y_true, y_pred, labels=labels, output_dict=True, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    correct = sum(t == p for t, p in zip(y_true, y_pred, strict=True))
    metrics = {
        "n_images": len(y_true),
        "accuracy": correct / len(y_true) if y_true else 0.0,
        "per_class": {
            label: {
                "precision": report[label]["precision"],
                "recall": report[label]["recall"],
                "f1": report[label]["f1-score"],
                "support": int(report[label]["support"]),
            }
            for label in labels
        },
        "macro_f1": report["macro avg"]["f1-score"],
        "unknown_classes": {label: int(report[label]["support"]) for label in unknown},
        "confusion_matrix": {"labels": labels, "matrix": matrix.tolist()},
    }
    text = [f"accuracy: {metrics['accuracy']:.3f} on {len(y_true)} images", ""]
    text.append(
        classification_report(
            y_true, y_pred, labels=labels, zero_division=0, digits=3
        ).rstrip()
    )
    text += ["", "confusion matrix (rows: true class, columns: predicted class)"]
    text += format_table(
        [[""] + labels]
        + [[label, *map(str, row)] for label, row in zip(labels, matrix, strict=True)]
    )
    if unknown:
        text += [
            "",
            "classes the model does not know (always counted as errors): "
            + ", ".join(
                f"{label!r} ({n} images)"
                for label, n in metrics["unknown_classes"].items()
            ),
        ]
    return metrics, "\n".join(text)


def format_table(rows):
    """Lines of a plain text table: first column left-aligned, the rest right."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def save_figure(figure, path):
    """Write a matplotlib figure as PNG, atomically."""
    write_atomically(path, lambda file: figure.savefig(file, format="png", dpi=100))
