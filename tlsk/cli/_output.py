"""What the commands print and write: notes, JSON, metrics tables, figures, and the
no-overwrite rule of their output files."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys

from tlsk._files import check_replaceable, check_writable_folder, write_atomically
from tlsk.cli import CommandError

# The library's messages name Python arguments; a command's user knows its
# flags. Each pair: a pattern of a library message, and its command-line words.
_CLI_WORDS = (
    (re.compile(r"validation_fraction=([0-9.]+)"), r"--monitor-fraction \1"),
    (re.compile(r"weights='([^']*)'"), r"--weights \1"),
    (re.compile(r"weights=None"), "--weights none"),
    (re.compile(r"force=True"), "--force"),
    (re.compile(r"than max_pixels=(\d+)"), r"than the limit of \1"),
    (
        re.compile(r"Pass a larger max_pixels if you trust this file"),
        "From Python, a larger max_pixels reads it, if you trust this file",
    ),
)


def in_cli_words(message):
    """A library message as the command line says it (``--weights none``)."""
    message = str(message)
    for pattern, words in _CLI_WORDS:
        message = pattern.sub(words, message)
    return message


def note(args, message):
    """A remark for the person at the terminal: stderr, silenced by --quiet."""
    if not args.quiet:
        print(message, file=sys.stderr)


def shown(name):
    """A name as printed on a terminal: spelled out and quoted when it must be.

    Names come from the data (class folders, files): an escape sequence in one
    must not move the cursor or clear the screen of whoever reads the output.
    Characters are spelled out as the HTML pages spell them
    (:func:`tlsk.datasets.printable`); the quotes say the name was escaped.
    """
    from tlsk.datasets import printable

    name = os.fsdecode(name) if isinstance(name, bytes) else str(name)
    return name if name.isprintable() else f"'{printable(name)}'"


# A spreadsheet runs a cell that starts with one of these as a formula
# (OWASP, "CSV Injection"); a quote in front makes it text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """``value`` as a CSV cell that a spreadsheet shows and never runs.

    A text that a spreadsheet would read as a formula gets a ``'`` in front;
    numbers (``-0.5``) stay numbers.
    """
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def csv_bytes(header, rows, *, terminal=False):
    """CSV text of ``header`` and ``rows`` as UTF-8 bytes, formulas neutralised.

    File names that are not UTF-8 keep their bytes (surrogateescape); for a
    ``terminal``, control characters in a cell are shown escaped.
    """
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    clean = (lambda cell: shown(csv_cell(cell))) if terminal else csv_cell
    writer.writerow(header)
    writer.writerows([clean(cell) for cell in row] for row in rows)
    return text.getvalue().encode("utf-8", "surrogateescape")


def write_csv(path, header, rows, publication=None):
    """Write :func:`csv_bytes` to ``path`` atomically (staged in ``publication``)."""
    data = csv_bytes(header, rows)
    if publication is None:
        write_atomically(path, lambda file: file.write(data))
    else:
        publication.stage(path, lambda file: file.write(data))


def write_stdout(data: bytes) -> None:
    """Write bytes to stdout as they are (names that are not UTF-8 included)."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text stream put in stdout's place
        sys.stdout.write(data.decode("utf-8", "surrogateescape"))
    else:
        buffer.write(data)
        buffer.flush()


def print_json(data, stream=None):
    json.dump(data, stream or sys.stdout, indent=2, sort_keys=True, default=str)
    (stream or sys.stdout).write("\n")


def check_writable(path, force):
    """Refuse, before any work, an output file that cannot or may not be written.

    It may not when it exists and ``force`` is not given, or, force or not,
    when it is not a regular file (a folder, a device such as /dev/null, a
    FIFO); it cannot when its folder is missing, read-only or not ours
    (tried by creating a temporary file there).
    """
    try:
        check_replaceable(path, force=force, force_flag="--force")
        check_writable_folder(path)
    except OSError as err:
        raise CommandError(str(err)) from err


def check_report_folder(path, force, data=()):
    """Refuse, before any work, a --report folder that may not be written.

    Without ``--force`` an existing folder is refused; with it, only a report
    that tlsk wrote and that holds nothing else is replaced. Never the data
    the command reads (``data``: folders and files), a folder that holds it
    or one inside it.
    """
    if not path:
        return
    from tlsk.report import check_report_folder as check

    try:
        check(path, force, inputs=data, force_flag="--force")
        check_writable_folder(path, folders_made=True)
    except (OSError, ValueError) as err:
        raise CommandError(f"--report: {err}") from err


def check_distinct(outputs, inputs=()):
    """Refuse outputs that share a name with each other or with an input.

    ``outputs`` and ``inputs`` are ``(what, path)`` pairs, ``what`` as the
    user knows it (``"--out"``, ``"the model's metadata"``); a path of None
    is skipped. Two outputs of one command under one name would overwrite
    each other; an output named like an input would overwrite the data.
    """
    seen = {}
    for what, path in [*inputs, *outputs]:
        if path is None:
            continue
        key = os.path.realpath(os.fsdecode(path))
        if key in seen and (what, path) in outputs:
            other, other_path = seen[key]
            raise CommandError(
                f"{what} {os.fsdecode(path)!r} and {other} {os.fsdecode(other_path)!r} "
                "are the same file: one would overwrite the other; choose "
                "another name"
            )
        seen.setdefault(key, (what, path))


def check_outputs(args, files=(), *, report=None, cache=None, data=(), inputs=()):
    """Before any work, refuse every output of a command that would fail or harm.

    ``files`` are ``(what, path)`` pairs of the files the command writes
    (``what`` as the user knows it: ``"--out"``); ``report`` its --report
    folder, ``cache`` its feature cache (kept, not replaced), ``data`` the
    folders it reads, ``inputs`` ``(what, path)`` pairs of the files it
    reads. Refused: two outputs under one name, an output named like an
    input, an output that would replace a file of the data or lie inside the
    report folder, and every output that :func:`check_writable` or
    :func:`check_report_folder` refuses.
    """
    files = [(what, os.fsdecode(path)) for what, path in files if path is not None]
    named = files + [("--cache", cache)] + [("--report", report)]
    check_distinct([(w, p) for w, p in named if p is not None], inputs)
    report_real = os.path.realpath(report) if report else None
    for what, path in files:
        real = os.path.realpath(path)
        if report_real and os.path.commonpath([real, report_real]) == report_real:
            raise CommandError(
                f"{what} {path!r} lies inside the --report folder {report!r}, "
                "which is written as a whole; choose a path outside it"
            )
        for folder in data:
            folder_real = os.path.realpath(folder)
            inside = os.path.commonpath([real, folder_real]) == folder_real
            if inside and os.path.lexists(path):
                raise CommandError(
                    f"{what} {path!r} would replace a file in the data folder "
                    f"{os.fsdecode(folder)!r}, which is only read; choose a path "
                    "outside it"
                )
        check_writable(path, args.force)
    check_report_folder(report, args.force, data)


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
    names = [shown(label) for label in labels]  # class names from the data
    text.append(
        classification_report(
            y_true,
            y_pred,
            labels=labels,
            target_names=names,
            zero_division=0,
            digits=3,
        ).rstrip()
    )
    text += ["", "confusion matrix (rows: true class, columns: predicted class)"]
    text += format_table(
        [[""] + names]
        + [[name, *map(str, row)] for name, row in zip(names, matrix, strict=True)]
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


def save_figure(figure, path, publication=None):
    """Write a matplotlib figure as PNG, atomically (staged in ``publication``)."""

    def write(file):
        figure.savefig(file, format="png", dpi=100)

    if publication is None:
        write_atomically(path, write)
    else:
        publication.stage(path, write)
