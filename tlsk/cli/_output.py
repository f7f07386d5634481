"""What the commands print and write: notes, JSON, metrics tables, figures, and the
no-overwrite rule of their output files."""

from __future__ import annotations

import json
import os
import sys

from tlsk._files import write_atomically
from tlsk.cli import CommandError


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


def check_report_folder(path, force):
    """Refuse an existing report folder unless ``force``, before any work."""
    if path and os.path.exists(path) and not force:
        raise CommandError(
            f"{path!r} exists; pass --force to replace the report folder"
        )


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
