"""What the commands print and write: notes, JSON, metrics tables, figures, and the
no-overwrite rule of their output files."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys

from tlsk._util.files import (
    check_replaceable,
    check_writable_folder,
    remove_dead_temps,
    resolved,
    write_atomically,
)
from tlsk.cli import CommandError

# The library's messages name Python arguments; a command's user knows its
# flags. Each pair: a pattern of a library message, and its command-line words.
_CLI_WORDS = (
    (re.compile(r"\bvalidation_fraction=([0-9.]+)"), r"--monitor-fraction \1"),
    (re.compile(r"\bweights=None\b"), "--weights none"),
    (re.compile(r"\bforce=True\b"), "--force"),
    (re.compile(r"^backbone must\b"), "--backbone must"),
    (
        re.compile(r"\bpreprocessing and interpolation must be None\b"),
        "--preprocessing and --interpolation must not be given",
    ),
    (
        re.compile(r"\binterpolation must be None\b"),
        "--interpolation must not be given",
    ),
    (
        re.compile(r"\bas weights= or as the backbone itself"),
        "as --backbone or as --weights",
    ),
    (re.compile(r"\bthan max_pixels=(\d+)"), r"than the limit of \1"),
    (
        re.compile(r"Pass a larger max_pixels if you trust this file"),
        "From Python, a larger max_pixels reads it, if you trust this file",
    ),
)
# A quoted value in a message (Python's repr of a name or a path): the data's
# words, never translated. An apostrophe inside a word opens nothing.
_QUOTED = re.compile(r"""(?<!\w)(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def in_cli_words(message, args=None):
    """A library message as the command line says it (``--weights none``).

    Only the library's own words change; quoted names and paths (a folder
    called ``weights=None``) are left as they are. With the command's
    ``args``, a flag it does not have is not offered (``--weights``).
    """
    message, words, done = str(message), [], 0
    for quoted in _QUOTED.finditer(message):
        plain = message[done : quoted.start()]
        if plain.endswith("weights="):  # weights='/path' -> --weights /path
            words += [_translated(plain[: -len("weights=")]), "--weights "]
            words.append(quoted.group()[1:-1])
        else:
            words += [_translated(plain), quoted.group()]
        done = quoted.end()
    words.append(_translated(message[done:]))
    text = "".join(words)
    if args is not None and not hasattr(args, "weights"):
        text = text.replace("as --backbone or as --weights", "as --backbone")
    return text


def _translated(text):
    for pattern, replacement in _CLI_WORDS:
        text = pattern.sub(replacement, text)
    return text


def counted(n, noun, plural=None):
    """``n`` and ``noun``, plural unless ``n`` is 1: ``1 image``, ``2 images``.

    ``plural`` is for nouns that do not take an ``s`` (``class``, ``entry``).
    """
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def note(args, message):
    """A remark for the person at the terminal: stderr, silenced by --quiet.

    Each line is printed as :func:`shown` would print a name in it: a name
    from the data or the model's metadata never drives the terminal.
    """
    if not args.quiet:
        print(terminal_text(message), file=sys.stderr)


def terminal_text(text):
    """``text`` with what a terminal must not obey spelled out, line by line."""
    from tlsk.images.folders import printable

    return "\n".join(
        line if line.isprintable() else printable(line)
        for line in str(text).split("\n")
    )


def shown(name):
    """A name as printed on a terminal: spelled out and quoted when it must be.

    Names come from the data (class folders, files): an escape sequence in one
    must not move the cursor or clear the screen of whoever reads the output.
    Characters are spelled out as the HTML pages spell them
    (:func:`tlsk.images.folders.printable`); the quotes say the name was escaped.
    """
    from tlsk.images.folders import printable

    name = os.fsdecode(name) if isinstance(name, bytes) else str(name)
    return name if name.isprintable() else f"'{printable(name)}'"


# A spreadsheet runs a cell that starts with one of these as a formula
# (OWASP, "CSV Injection"), some after leading white space and some in their
# full-width forms; a quote in front makes the cell text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_CONTROL_STARTS = ("\t", "\r", "\n")


def csv_cell(value):
    """``value`` as a CSV cell that a spreadsheet shows and never runs.

    A text that a spreadsheet could read as a formula gets a ``'`` in front;
    plain numbers (``-0.5``, ``+1``) stay numbers.
    """
    if not isinstance(value, str):
        return value
    if value.startswith(_CONTROL_STARTS) or value.lstrip().startswith(_FORMULA_STARTS):
        if value[:1] in "+-" and value == value.strip():
            try:
                float(value)
                return value
            except ValueError:
                pass
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
    from tlsk.evaluation.report import check_report_folder as check

    try:
        check(path, force, inputs=data, force_flag="--force")
        check_writable_folder(path, folders_made=True)
    except (OSError, ValueError) as err:
        raise CommandError(f"--report: {err}") from err


def _same_file_key(path, *, output):
    """What two names share when they name one file.

    An output is the name a write replaces (its folder resolved, a link
    named last is the link); an input is the file read (links followed).
    Case is folded: on a file system that ignores case (macOS, Windows
    shares) ``model.JSON`` and ``model.json`` are one file.
    """
    path = os.fsdecode(path)
    return (resolved(path) if output else os.path.realpath(path)).casefold()


def check_distinct(outputs, inputs=()):
    """Refuse outputs that share a name with each other or with an input.

    ``outputs`` and ``inputs`` are ``(what, path)`` pairs, ``what`` as the
    user knows it (``"--out"``, ``"the model's metadata"``); a path of None
    is skipped. Two outputs of one command under one name would overwrite
    each other; an output named like an input would overwrite the data.
    """
    seen = {}
    for is_output, (what, path) in [
        *((False, pair) for pair in inputs),
        *((True, pair) for pair in outputs),
    ]:
        if path is None:
            continue
        key = _same_file_key(path, output=is_output)
        if key in seen and is_output:
            other, other_path = seen[key]
            raise CommandError(
                f"{what} {path!r} and {other} {other_path!r} are the same "
                "file: one would overwrite the other; choose another name"
            )
        seen.setdefault(key, (what, path))


def _inside(path, folder):
    path, folder = resolved(path), os.path.realpath(os.fsdecode(folder))
    return os.path.commonpath([path, folder]) == folder


def check_outputs(
    args,
    files=(),
    *,
    report=None,
    cache=None,
    cache_what="--cache",
    data=(),
    inputs=(),
):
    """Before any work, refuse every output of a command that would fail or harm.

    ``files`` are ``(what, path)`` pairs of the files the command writes
    (``what`` as the user knows it: ``"--out"``); ``report`` its --report
    folder, ``cache`` its feature cache (kept, not replaced; ``cache_what``
    as the user knows it), ``data`` the
    folders it reads, ``inputs`` ``(what, path)`` pairs of the files it
    reads. Refused: two outputs under one name, an output named like an
    input, an output or a cache inside the data (it would become part of
    it) or inside the report folder (written as a whole), and every output
    that :func:`check_writable` or :func:`check_report_folder` refuses. The
    temporary files that killed runs left for these outputs are removed.
    """
    files = [(what, os.fsdecode(path)) for what, path in files if path is not None]
    caches = [(cache_what, os.fsdecode(cache))] if cache else []
    stored = files + caches
    named = stored + ([("--report", report)] if report else [])
    check_distinct(named, inputs)
    for what, path in stored:
        if report and _inside(path, report):
            raise CommandError(
                f"{what} {path!r} lies inside the --report folder "
                f"{report!r}, which is written as a whole; choose a path "
                "outside it"
            )
        for folder in data:
            # A file beside the class folders is passed over when the data is
            # read; one inside a class folder, or a cache's folder of runs,
            # would join the data.
            beside = os.path.dirname(resolved(path)) == os.path.realpath(folder)
            if _inside(path, folder) and not (beside and (what, path) in files):
                raise CommandError(
                    f"{what} {path!r} lies inside the data folder {folder!r}, "
                    "which is only read (it would join the data); choose a path "
                    "outside it"
                )
    for _, path in files:
        check_writable(path, args.force)
        remove_dead_temps(path)
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
    n_images = counted(len(y_true), "image")
    text = [f"accuracy: {metrics['accuracy']:.3f} on {n_images}", ""]
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
                f"{label!r} ({counted(n, 'image')})"
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
