"""The fixes CSV (its format: :mod:`tlsk.images.fixes`): its columns and
actions, a row (:class:`Fix`), parsing, and the errors that name a bad row."""

from __future__ import annotations

import csv
import os
import stat
from dataclasses import dataclass

from tlsk._util.files import file_kind

__all__ = [
    "ACTIONS",
    "FIXES_COLUMNS",
    "Fix",
    "FixesError",
    "RowProblem",
    "label_of",
    "not_the_file",
    "parse_csv",
    "raise_problems",
    "said",
    "where",
]

ACTIONS = ("relabel", "remove", "keep")
FIXES_COLUMNS = ("file", "action", "label", "reason", "sha256")
# Errors listed in one message; the rest are counted.
_ERRORS_SHOWN = 20


class FixesError(ValueError):
    """Fixes that cannot be applied: a bad row, a bad journal. Nothing was moved."""


class RowProblem(Exception):
    """The problem of one fix; :func:`raise_problems` names them all in one
    :class:`FixesError`."""


@dataclass(frozen=True)
class Fix:
    """One row of a fixes CSV.

    ``file`` is relative to the data folder, with ``/``; ``label`` is the new
    class of a ``relabel`` (None otherwise); ``source`` and ``line`` say
    where the row was read, for error messages (None when built in Python);
    ``sha256``, the SHA-256 (lowercase hex) the file's bytes must have (None:
    not checked).
    """

    file: str
    action: str
    label: str | None = None
    reason: str = ""
    source: str | None = None
    line: int | None = None
    sha256: str | None = None


def parse_csv(path):
    """The rows of the fixes CSV at ``path``, as :class:`Fix` objects, in order;
    a :class:`FixesError` for what is not such a CSV."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise FixesError(f"cannot read the fixes {path!r}: {err.strerror}") from err
    if not stat.S_ISREG(mode):
        raise FixesError(f"the fixes {path!r} is {file_kind(mode)}, not a CSV file")
    fixes, header, line = [], None, 1
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as file:
        reader = csv.reader(file)
        try:
            for row in reader:
                first, line = line, reader.line_num + 1
                if first == 1 and row and row[0].startswith("\ufeff"):
                    row[0] = row[0][1:]
                if not any(cell.strip() for cell in row):
                    continue
                if header is None:
                    header = _header(path, first, row)
                    continue
                fixes.append(_row(path, first, header, row))
        except csv.Error as err:
            raise FixesError(f"{path}: line {line}: not CSV: {err}") from err
    if header is None:
        raise FixesError(
            f"{path}: no header row: expected the columns "
            f"{', '.join(FIXES_COLUMNS)} (file and action at least)"
        )
    return fixes


def _header(path, line, row):
    names = [cell.strip().lower() for cell in row]
    for name in names:
        if name not in FIXES_COLUMNS:
            raise FixesError(
                f"{path}: line {line}: unknown column {name!r}; the first row "
                f"names the columns: {', '.join(FIXES_COLUMNS)}"
            )
        if names.count(name) > 1:
            raise FixesError(f"{path}: line {line}: column {name!r} is given twice")
    missing = [name for name in ("file", "action") if name not in names]
    if missing:
        raise FixesError(
            f"{path}: line {line}: no {' or '.join(missing)} column in the header "
            f"{row!r}; the columns are {', '.join(FIXES_COLUMNS)}"
        )
    return names


def _row(path, line, header, row):
    if len(row) > len(header) and any(cell.strip() for cell in row[len(header) :]):
        raise FixesError(
            f"{path}: line {line}: {len(row)} cells for {len(header)} columns "
            f"({', '.join(header)}); quote a name that holds a comma"
        )
    cells = dict(zip(header, row + [""] * (len(header) - len(row)), strict=False))
    label = _text(cells.get("label", ""))
    return Fix(
        file=_text(cells["file"]),
        action=cells["action"].strip().lower(),
        label=label or None,
        reason=cells.get("reason", ""),
        source=path,
        line=line,
        sha256=cells.get("sha256", "").strip().lower() or None,
    )


def _text(cell):
    """A cell without the ``'`` a spreadsheet takes as "this is text"."""
    return cell[1:] if cell.startswith("'") else cell


def label_of(fix):
    """The label that counts in ``fix``: a relabel's, None for other actions."""
    return fix.label if fix.action == "relabel" else None


def not_the_file(fix):
    """The RowProblem of a file whose bytes are not those its row's
    ``sha256`` names."""
    return RowProblem(
        f"{fix.file!r} is not the file the report showed (its SHA-256 differs): "
        "was the CSV made for another folder, or has the file changed?"
    )


def said(fix):
    """``fix``'s action in words: ``relabel to 'dog'``, ``remove``, ``keep``."""
    return f"relabel to {fix.label!r}" if fix.action == "relabel" else fix.action


def where(fix, bare=False):
    """Where ``fix`` was read (``<csv>: line N: ``), or the file it names when
    built in Python; ``bare``: without the CSV and the trailing colon."""
    if fix.line is None:
        place = f"the fix of {fix.file!r}"
        return place if bare else place + ": "
    if bare:
        return f"line {fix.line}"
    return f"{fix.source}: line {fix.line}: "


def raise_problems(problems):
    """One :class:`FixesError` naming every problem (the first 20, then a
    count), if there are any."""
    if problems:
        shown = problems[:_ERRORS_SHOWN]
        more = len(problems) - len(shown)
        if more:
            shown.append(f"... and {more} more")
        text = "\n".join(shown)
        if len(problems) > 1:
            text = f"{len(problems)} fixes cannot be applied; nothing was moved:\n" + (
                text
            )
        else:
            text += "; nothing was moved"
        raise FixesError(text)
