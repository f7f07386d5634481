"""Fixes to a folder-per-class tree: relabel a file, remove it to a quarantine, or
keep it; every move journaled first, so that any of it can be undone.

The fixes CSV
-------------
UTF-8 text (a byte-order mark is allowed), comma-separated, quoted as RFC 4180
quotes (``"a, b.jpg"``, ``"say ""hi"".jpg"``). The first row names the
columns, in any order:

``file`` (required)
    The image, relative to the data folder, with ``/`` between names:
    ``<class>/<name>`` or ``<class>/<sub>/.../<name>``, as ``tlsk check --json``
    prints paths. It must be an existing regular file below a class folder;
    an absolute path, ``..``, ``.``, an empty name, a hidden name (``.x``) and
    a symbolic link anywhere on the way are refused. A name that is not UTF-8
    is given by its bytes, as the ``tlsk check`` CSVs write it. In a split
    (``split=``: ``train/``, ``val/``, ``test/`` of class folders) it is
    ``<part>/<class>/<name>``, and a relabel stays in its part.
``action`` (required)
    ``relabel``, ``remove`` or ``keep`` (case and surrounding spaces ignored).
``label``
    For ``relabel``, the class the file moves to: an existing class folder,
    or a new one, which must then be a safe folder name (one printable name,
    not hidden, no ``/``, no space at either end, at most 255 bytes). Read
    for ``relabel`` only.
``reason``
    Free text, kept in the journal (``label error``, ``near duplicate``).

A cell that starts with ``'`` loses that one quote: spreadsheets take it as
"this is text", and the check report's page puts one before every cell
that starts with ``'``, a formula character (``= + - @``) or white space,
so that no spreadsheet runs a name. Write ``''x.jpg`` for a file named ``'x.jpg``.
Blank rows are skipped. The same file twice with the same action is read
once; with different actions it is an error.

What the actions do
-------------------
- ``relabel`` moves ``root/<old>/<sub>/<name>`` to ``root/<label>/<name>``,
  creating the class folder if needed.
- ``remove`` moves ``root/<path>`` to ``<quarantine>/<path>`` (the same
  relative path); the quarantine is ``<root>.quarantine`` beside the data
  folder unless another is given. Nothing is ever deleted.
- ``keep`` moves nothing; it is recorded in the journal.

Nothing is overwritten. When the name a file would take is taken (on disk,
or by an earlier row of the same fixes), the file gets the first free name
of ``<stem>~<old class><ext>``, ``<stem>~<old class>~2<ext>``, ... for a
relabel, and of ``<stem>~2<ext>``, ``<stem>~3<ext>``, ... in the quarantine,
and the summary says so. The names depend only on the tree and the order of
the rows, so the same fixes on the same tree always give the same result.

Every row is checked before anything moves: one error names the CSV, each
bad row's line and its problem, and the tree is left as it was.

The journal
-----------
``<root>.tlsk-fixes.jsonl`` beside the data folder (``root`` with its links
resolved), JSON lines: a header ``{"format": "tlsk-fixes", "version": 1,
"root": ...}``, then one record per applied batch and per fix, and one
per move an undo has finished (so that a later undo takes nothing found
there since for a loss). A move's
record (where from, where to, which folders it creates, the file's size and
SHA-256, and whether it is a rename or, across file systems, a copy) is
written and fsynced *before* the move. A move is a hard link of the new
name then removal of the old one (so an existing name is never replaced;
where the file system has no hard links, a rename after checking that the
name is free); across file systems, a copy into a hidden temporary file
beside the destination, fsynced, linked into place, then removal of the
source. Killed at any moment, every file is whole at its old place, at its
new place, or (for an instant) at both, and the journal says which files
tlsk may have moved: :func:`undo_fixes` puts back each file that is where
tlsk put it (a move that never happened is skipped), removes the leftovers
of an interrupted move and the empty folders tlsk created, then the
journal. Applying the same fixes again after a crash finishes the work:
rows already applied are reported as such, and nothing is moved twice.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field

from tlsk._util.files import file_kind, folder_locked, fsync_dir

__all__ = [
    "ACTIONS",
    "FIXES_COLUMNS",
    "AppliedFixes",
    "Fix",
    "FixesError",
    "Move",
    "UndoneFixes",
    "apply_fixes",
    "default_quarantine",
    "journal_path",
    "read_fixes",
    "undo_fixes",
]

ACTIONS = ("relabel", "remove", "keep")
FIXES_COLUMNS = ("file", "action", "label", "reason")
JOURNAL_FORMAT = "tlsk-fixes"
JOURNAL_VERSION = 1
_NAME_MAX_BYTES = 255
# Errors listed in one message; the rest are counted.
_ERRORS_SHOWN = 20
# What os.link raises where a file system has no hard links.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}
_READ_CHUNK = 1 << 20


class FixesError(ValueError):
    """Fixes that cannot be applied: a bad row, a bad journal. Nothing was moved."""


@dataclass(frozen=True)
class Fix:
    """One row of a fixes CSV.

    ``file`` is relative to the data folder, with ``/``; ``label`` is the new
    class of a ``relabel`` (None otherwise); ``source`` and ``line`` say
    where the row was read, for error messages (None when built in Python).
    """

    file: str
    action: str
    label: str | None = None
    reason: str = ""
    source: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Move:
    """A file moved by a fix (or put back by an undo).

    ``file`` is the image's path relative to the data folder before the fix;
    ``destination`` the absolute path it was moved to; ``renamed`` is True
    when its name was taken there and it got a new one.
    """

    action: str
    file: str
    destination: str
    renamed: bool = False


@dataclass
class AppliedFixes:
    """What :func:`apply_fixes` did: ``moved`` now, ``already`` moved by an
    earlier apply of the same fixes, ``kept`` (paths relative to the data
    folder); ``journal`` is its path."""

    moved: list[Move] = field(default_factory=list)
    already: list[Move] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    journal: str = ""


@dataclass
class UndoneFixes:
    """What :func:`undo_fixes` did: ``restored`` files (each a :class:`Move`
    whose ``destination`` is where the fix had put it), ``problems`` (files
    left where they are, and why), ``folders_removed``; ``complete`` when
    nothing is left to undo (the journal is then removed)."""

    restored: list[Move] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    folders_removed: list[str] = field(default_factory=list)
    journal: str = ""
    complete: bool = True


def default_quarantine(root) -> str:
    """``<root>.quarantine``, beside the data folder (``root``'s links resolved)."""
    return _root(root) + ".quarantine"


def journal_path(root) -> str:
    """``<root>.tlsk-fixes.jsonl``, beside the data folder: the journal of its fixes."""
    return _root(root) + ".tlsk-fixes.jsonl"


def read_fixes(path, root, *, quarantine=None, split=None) -> list[Fix]:
    """Read a fixes CSV (format: the module's docstring) and check every row.

    Parameters
    ----------
    path : str or path-like
        The CSV file.
    root : str or path-like
        The data folder the CSV's paths are relative to.
    quarantine : str or path-like, optional
        Where removed files would go (default: :func:`default_quarantine`).
    split : list of str, optional
        When ``root`` is a split (``["train", "val", "test"]``, its parts):
        paths are then ``<part>/<class>/...``, and a relabel stays in its part.

    Returns
    -------
    fixes : list of Fix
        In the CSV's order, each file once.

    Raises
    ------
    FixesError
        Naming the CSV, and each bad row's line and problem: an unknown
        column or action, a relabel without a label or to an unsafe class
        name, a path outside the folder (absolute, ``..``, a symbolic link),
        no regular file there, the same file with two different actions.

    Examples
    --------
    >>> import os, tempfile
    >>> root = os.path.join(tempfile.mkdtemp(), "data")
    >>> os.makedirs(os.path.join(root, "cat"))
    >>> open(os.path.join(root, "cat", "a.jpg"), "wb").close()
    >>> csv_path = os.path.join(os.path.dirname(root), "fixes.csv")
    >>> with open(csv_path, "w") as file:
    ...     _ = file.write("file,action,label\\ncat/a.jpg,relabel,dog\\n")
    >>> read_fixes(csv_path, root)[0].label
    'dog'
    >>> with open(csv_path, "w") as file:
    ...     _ = file.write("file,action\\n../a.jpg,remove\\n")
    >>> read_fixes(csv_path, root)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tlsk.images.fixes.FixesError: ...fixes.csv: line 2: '../a.jpg': ...'..'...
    """
    fixes = _parse_csv(os.fsdecode(os.fspath(path)))
    root = _root(root)
    quarantine = _quarantine(root, quarantine)
    journal = _Journal(root)
    journal.load()
    _, fixes = _plan(root, fixes, quarantine, journal, _split(split))
    return fixes


def apply_fixes(root, fixes, *, quarantine=None, split=None) -> AppliedFixes:
    """Apply ``fixes`` to the data folder ``root``, journaled, undoable.

    Every fix is checked first (as :func:`read_fixes` does), against the tree
    as it is now; one bad fix and nothing moves. Then each move is recorded
    in the journal (:func:`journal_path`), fsynced, and made; see the
    module's docstring for the moves and the crash contract. Rows that an
    earlier, interrupted or complete, apply already did are not done again.

    Parameters
    ----------
    root : str or path-like
        The data folder, one sub-folder per class.
    fixes : list of Fix
        From :func:`read_fixes`, or built in Python.
    quarantine : str or path-like, optional
        Where removed files go (default: :func:`default_quarantine`); outside
        ``root``. On another file system, files are copied, fsynced, then
        removed from ``root``.
    split : list of str, optional
        When ``root`` is a split, its parts (as :func:`read_fixes`).

    Returns
    -------
    AppliedFixes

    Examples
    --------
    >>> import os, tempfile
    >>> root = os.path.join(tempfile.mkdtemp(), "data")
    >>> for name in ("cat/a.jpg", "cat/b.jpg", "dog/c.jpg"):
    ...     os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
    ...     with open(os.path.join(root, name), "wb") as file:
    ...         _ = file.write(name.encode())
    >>> done = apply_fixes(
    ...     root, [Fix("cat/a.jpg", "relabel", "dog"), Fix("cat/b.jpg", "remove")]
    ... )
    >>> sorted(os.listdir(os.path.join(root, "dog")))
    ['a.jpg', 'c.jpg']
    >>> os.listdir(os.path.join(root + ".quarantine", "cat"))
    ['b.jpg']
    >>> undone = undo_fixes(root)
    >>> sorted(os.listdir(os.path.join(root, "cat"))), undone.complete
    (['a.jpg', 'b.jpg'], True)
    >>> os.path.exists(root + ".quarantine"), os.path.exists(done.journal)
    (False, False)
    """
    root = _root(root)
    quarantine = _quarantine(root, quarantine)
    summary = AppliedFixes(journal=journal_path(root))
    with folder_locked(root):
        journal = _Journal(root)
        journal.load()
        for record in journal.moves():
            _settle(root, record)
        steps, _ = _plan(root, list(fixes), quarantine, journal, _split(split))
        batch = journal.next_batch()
        journal.append({"op": "apply", "batch": batch, "quarantine": quarantine})
        for number, step in enumerate(steps):
            fix = step.fix
            if step.kind == "already":
                summary.already.append(step.move)
                continue
            if step.kind == "keep":
                journal.append(
                    {
                        "op": "keep",
                        "batch": batch,
                        "step": number,
                        "file": fix.file,
                        "reason": fix.reason,
                    }
                )
                summary.kept.append(fix.file)
                continue
            record = {
                "op": "move",
                "batch": batch,
                "step": number,
                "action": fix.action,
                "label": fix.label,
                "reason": fix.reason,
                "from": fix.file,
                "to": step.destination,
                "made": step.made,
                "size": step.size,
                "sha256": step.sha256,
                "how": step.how,
            }
            journal.append(record)
            for folder in step.made:
                _mkdir(folder)
                fsync_dir(os.path.dirname(folder))
            _carry(
                _source(root, fix.file),
                step.destination,
                step.how,
                _temp(step.destination, "fix", record),
            )
            summary.moved.append(
                Move(fix.action, fix.file, step.destination, step.renamed)
            )
    return summary


def undo_fixes(root) -> UndoneFixes:
    """Put back every file that the fixes of ``root`` moved, newest first.

    Only files that the journal (:func:`journal_path`) says tlsk moved, and
    only if each is still where tlsk put it (same size and SHA-256) and its
    original place is free; otherwise it stays, and ``problems`` says why
    (nothing is overwritten). The leftovers of an interrupted move are
    removed, then the empty folders the fixes created. When nothing is left
    to undo, the journal is removed too, and the tree is as it was before
    the first apply. Undoing again after a kill, or after fixing a problem,
    goes on where it stopped.

    Returns
    -------
    UndoneFixes

    Examples
    --------
    >>> import tempfile
    >>> undo_fixes(tempfile.mkdtemp()).restored  # no journal: nothing to do
    []
    """
    root = _root(root)
    summary = UndoneFixes(journal=journal_path(root))
    with folder_locked(root):
        journal = _Journal(root)
        journal.load()
        if not journal.exists:
            journal.remove_torn()
            return summary
        for record in reversed(journal.moves()):
            at_source, at_destination = _settle(root, record)
            if at_destination == "ours" and at_source is None:
                try:
                    _restore(root, record, _source(root, record["from"]))
                except _RowProblem as problem:  # a link where its folder was
                    summary.problems.append(
                        f"{record['to']!r} was not put back: {problem}"
                    )
                    continue
                summary.restored.append(
                    Move(record["action"], record["from"], record["to"])
                )
                at_source, at_destination = "ours", None
            if at_source is not None and at_destination != "ours":
                # Back, or never moved: nothing of it is left to undo, and a
                # later undo must not take what is there now for a loss.
                journal.append(
                    {"op": "undone", "batch": record["batch"], "step": record["step"]}
                )
            elif at_source is None:
                why = (
                    "is gone"
                    if at_destination is None
                    else "holds another file (changed since)"
                )
                summary.problems.append(
                    f"{record['from']!r} was not put back: {record['to']!r}, where "
                    f"the fixes moved it, {why}"
                )
            else:
                summary.problems.append(
                    f"{record['to']!r} was not put back: its old place "
                    f"{record['from']!r} holds another file"
                )
        for record in reversed(journal.moves(undone=True)):
            for folder in reversed(record["made"]):
                if _remove_if_empty(folder):
                    summary.folders_removed.append(folder)
        summary.complete = not summary.problems
        if summary.complete:
            journal.remove()
    return summary


# -- the CSV -----------------------------------------------------------------


def _parse_csv(path):
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
    )


def _text(cell):
    """A cell without the ``'`` a spreadsheet takes as "this is text"."""
    return cell[1:] if cell.startswith("'") else cell


def _label(fix):
    return fix.label if fix.action == "relabel" else None


def _said(fix):
    return f"relabel to {fix.label!r}" if fix.action == "relabel" else fix.action


def _where(fix, bare=False):
    if fix.line is None:
        place = f"the fix of {fix.file!r}"
        return place if bare else place + ": "
    if bare:
        return f"line {fix.line}"
    return f"{fix.source}: line {fix.line}: "


def _raise(problems):
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


# -- checking and planning ---------------------------------------------------


@dataclass
class _Step:
    kind: str  # "move", "keep" or "already"
    fix: Fix
    destination: str = ""
    made: list = field(default_factory=list)
    size: int = 0
    sha256: str = ""
    how: str = "link"
    renamed: bool = False
    move: Move | None = None


def _plan(root, fixes, quarantine, journal, split=None):
    """``(steps, fixes each file once)`` on the tree as it is, or one FixesError
    naming every bad fix. The same file twice with another action is one."""
    problems, steps, unique, first, taken, made = [], [], [], {}, set(), set()
    for fix in fixes:
        if not isinstance(fix, Fix):
            raise TypeError(f"fixes must be Fix objects; received {fix!r}")
        earlier = first.setdefault(fix.file, fix)
        if earlier is not fix:
            if (earlier.action, _label(earlier)) != (fix.action, _label(fix)):
                problems.append(
                    _where(fix)
                    + f"{fix.file!r} is also on {_where(earlier, bare=True)} with "
                    f"{_said(earlier)}; one action per file"
                )
            continue
        unique.append(fix)
        try:
            steps.append(_step(root, fix, quarantine, journal, taken, made, split))
        except _RowProblem as problem:
            problems.append(_where(fix) + str(problem))
    _raise(problems)
    return steps, unique


class _RowProblem(Exception):
    pass


def _step(root, fix, quarantine, journal, taken, made, split):
    if fix.action not in ACTIONS:
        raise _RowProblem(
            f"unknown action {fix.action!r} for {fix.file!r}; the actions are "
            f"{', '.join(ACTIONS)}"
        )
    names = _names(fix.file, split)
    base = os.path.join(root, names[0]) if split else root  # of the classes
    old = names[1] if split else names[0]
    if fix.action == "relabel":
        _check_label(base, fix, old)
    source = os.path.join(root, *names)
    missing = _check_source(root, names)
    if missing:
        done = journal.done(root, fix)
        if done is not None:
            return _Step("already", fix, move=done)
        raise _RowProblem(f"{fix.file!r}: {missing}{journal.moved_to(root, fix)}")
    if fix.action == "keep":
        return _Step("keep", fix)
    if fix.action == "relabel":
        folder, tag = os.path.join(base, fix.label), old
    else:
        folder, tag = os.path.join(quarantine, *names[:-1]), ""
    new_folders = _missing_folders(folder, made)
    name = _free_name(folder, names[-1], tag, taken)
    destination = os.path.join(folder, name)
    try:
        size, sha256 = _digest(source)
    except OSError as err:
        raise _RowProblem(f"cannot read {fix.file!r}: {err.strerror}") from err
    taken.add(destination)
    made.update(new_folders)
    return _Step(
        "move",
        fix,
        destination=destination,
        made=new_folders,
        size=size,
        sha256=sha256,
        how="link" if _same_device(source, _existing(folder)) else "copy",
        renamed=name != names[-1],
    )


def _names(file, split):
    """The names on the way to ``file``, checked; a split's first is a part."""
    if not isinstance(file, str) or not file:
        raise _RowProblem(f"no file named: {file!r}")
    if "\0" in file:
        raise _RowProblem(f"{file!r}: a path cannot hold a NUL character")
    if file.startswith("/"):
        raise _RowProblem(
            f"{file!r}: an absolute path; give it relative to the data folder "
            "('<class>/<name>'), as tlsk check --json prints it"
        )
    names = file.split("/")
    for name in names:
        if name in ("", ".", ".."):
            raise _RowProblem(
                f"{file!r}: {name!r} in a path; give it as tlsk check --json "
                "prints it ('<class>/<name>', no '..', '.' or '//')"
            )
        if name.startswith("."):
            raise _RowProblem(f"{file!r}: {name!r} is hidden, never an image of tlsk")
    if split and (len(names) < 3 or names[0] not in split):
        raise _RowProblem(
            f"{file!r} is not inside a class folder of a part of the split "
            f"({', '.join(split)}); expected '<part>/<class>/<name>'"
        )
    if len(names) < 2:
        raise _RowProblem(
            f"{file!r} is not inside a class folder; expected '<class>/<name>'"
        )
    return names


def _check_label(root, fix, old):
    label = fix.label
    if not label:
        raise _RowProblem(f"relabel {fix.file!r} to what? Its label cell is empty")
    if label == old:
        raise _RowProblem(
            f"relabel {fix.file!r} to {label!r}, the class it is in; 'keep' it"
        )
    path = os.path.join(root, label) if _one_name(label) else None
    try:
        mode = os.lstat(path).st_mode if path else None
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        return  # an existing class folder, whatever its name
    if mode is not None:
        raise _RowProblem(
            f"relabel {fix.file!r} to {label!r}: {label!r} in the data folder is "
            f"{file_kind(mode)}, not a class folder"
        )
    if not _safe_folder_name(label):
        raise _RowProblem(
            f"relabel {fix.file!r} to {label!r}: not a class folder, nor a safe "
            "name for a new one (one printable name, not hidden, no '/', no "
            "space at either end, at most 255 bytes)"
        )


def _one_name(name):
    return name not in (".", "..") and "/" not in name and "\0" not in name


def _safe_folder_name(name):
    return (
        _one_name(name)
        and name.isprintable()
        and not name.startswith(".")
        and name == name.strip()
        and len(name.encode("utf-8")) <= _NAME_MAX_BYTES
    )


def _check_source(root, parts):
    """'' for a regular file at ``root/parts`` reached through real folders;
    the reason it is missing; or a _RowProblem for what may never be moved."""
    path = root
    for i, part in enumerate(parts):
        path = os.path.join(path, part)
        shown = "/".join(parts[: i + 1])
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return "no such file in the data folder"
        except OSError as err:
            raise _RowProblem(f"cannot look at {shown!r}: {err.strerror}") from err
        last = i == len(parts) - 1
        if stat.S_ISLNK(mode):
            raise _RowProblem(
                f"{shown!r} is a symbolic link: links are never followed nor moved"
            )
        if last and not stat.S_ISREG(mode):
            raise _RowProblem(
                f"{shown!r} is {file_kind(mode)}; only regular files are moved"
            )
        if not last and not stat.S_ISDIR(mode):
            raise _RowProblem(f"{shown!r} is {file_kind(mode)}, not a folder")
    return ""


def _missing_folders(folder, planned):
    """The folders down to ``folder`` that a move must create, outermost first
    (those that an earlier step creates left out); a symbolic link or a file
    on the way is refused."""
    missing, path = [], folder
    while True:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None:
            if not stat.S_ISDIR(mode):
                raise _RowProblem(
                    f"{path!r} is {file_kind(mode)}; a folder is needed there"
                )
            break
        if path not in planned:
            missing.append(path)
        path = os.path.dirname(path)
    missing.reverse()
    return missing


def _free_name(folder, name, tag, taken):
    stem, ext = os.path.splitext(name)
    candidates = [name]
    if tag:
        candidates.append(f"{stem}~{tag}{ext}")
    n = 2
    while True:
        for candidate in candidates:
            if len(os.fsencode(candidate)) > _NAME_MAX_BYTES:
                raise _RowProblem(
                    f"{name!r} is taken in {folder!r}, and {candidate!r}, its new "
                    "name, would be too long"
                )
            path = os.path.join(folder, candidate)
            if path not in taken and not os.path.lexists(path):
                return candidate
        candidates = [f"{stem}~{tag}~{n}{ext}" if tag else f"{stem}~{n}{ext}"]
        n += 1


def _existing(path):
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def _same_device(a, b):
    return os.lstat(a).st_dev == os.stat(b).st_dev


def _digest(path):
    """``(size, sha256 hex)`` of the regular file at ``path`` (never a link)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _RowProblem(f"{path!r} is not a regular file")
        digest, size = hashlib.sha256(), 0
        while chunk := file.read(_READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _root(root):
    root = os.path.realpath(os.fsdecode(os.fspath(root)))
    if not os.path.isdir(root):
        raise FixesError(f"root must be an existing folder; received {root!r}")
    if os.path.dirname(root) == root:
        raise FixesError("root must be a data folder, not the file system's root")
    return root


def _quarantine(root, quarantine):
    if quarantine is None:
        return root + ".quarantine"
    path = os.fsdecode(os.fspath(quarantine))
    folder, name = os.path.split(os.path.abspath(path))
    path = os.path.join(os.path.realpath(folder), name)
    for one, other in ((path, root), (root, path)):
        if os.path.commonpath([one, other]) == other:
            raise FixesError(
                f"quarantine must be outside the data folder {root!r}, and not "
                f"hold it; received {path!r}"
            )
    if path == journal_path(root):
        raise FixesError(f"quarantine {path!r} is the journal's name")
    return path


def _split(split):
    if split is None:
        return None
    if isinstance(split, str) or not all(isinstance(p, str) and p for p in split):
        raise TypeError(f"split must be a list of folder names; received {split!r}")
    return tuple(split)


def _source(root, file):
    return os.path.join(root, *file.split("/"))


def _temp(path, kind, record):
    """The hidden name of a copy in progress beside ``path``, one per record."""
    return os.path.join(
        os.path.dirname(path), f".tlsk-{kind}-{record['batch']}-{record['step']}.part"
    )


# -- the journal -------------------------------------------------------------


class _Journal:
    """The journal of a data folder: read whole, appended to line by line."""

    def __init__(self, root):
        self.root = root
        self.path = journal_path(root)
        self.records = []
        self.exists = False
        self.torn = False
        self.length = 0  # bytes up to the last complete line

    def header(self):
        header = {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION}
        return _line({**header, "root": self.root})

    def load(self):
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISREG(mode):
            raise FixesError(
                f"the journal {self.path!r} is {file_kind(mode)}; move it away"
            )
        with open(self.path, "rb") as file:
            data = file.read()
        if b"\n" not in data:
            # Killed while writing its first line: a prefix of the header.
            if not self.header().startswith(data):
                raise FixesError(f"{self.path!r} is not a journal of tlsk's fixes")
            self.torn = True
            return
        self.exists = True
        self.length = data.rindex(b"\n") + 1
        lines = data[: self.length].split(b"\n")[:-1]
        try:
            header = json.loads(lines[0])
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != JOURNAL_FORMAT:
            raise FixesError(f"{self.path!r} is not a journal of tlsk's fixes")
        if header.get("version") != JOURNAL_VERSION or header.get("root") != self.root:
            raise FixesError(
                f"the journal {self.path!r} is of {header.get('root')!r} "
                f"(version {header.get('version')!r}), not of {self.root!r} "
                f"(version {JOURNAL_VERSION}); move it away"
            )
        for number, line in enumerate(lines[1:], start=2):
            try:
                record = json.loads(line)
            except ValueError as err:
                raise FixesError(
                    f"the journal {self.path!r} is damaged at line {number}: {err}; "
                    "nothing was moved"
                ) from err
            self.records.append(record)

    def moves(self, *, undone=False):
        """The move records, in order; those an undo finished only if ``undone``."""
        finished = {
            (record.get("batch"), record.get("step"))
            for record in self.records
            if record.get("op") == "undone"
        }
        return [
            record
            for record in self.records
            if record.get("op") == "move"
            and (undone or (record["batch"], record["step"]) not in finished)
        ]

    def next_batch(self):
        return 1 + max((r.get("batch", 0) for r in self.records), default=0)

    def append(self, record):
        if not self.exists:
            self._create()
        elif os.path.getsize(self.path) != self.length:
            _truncate(self.path, self.length)
        data = _line(record)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            _write_line(fd, data)
        finally:
            os.close(fd)
        self.length += len(data)
        self.records.append(record)

    def _create(self):
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
        flags |= os.O_TRUNC if self.torn else os.O_EXCL
        fd = os.open(self.path, flags, 0o666)
        data = self.header()
        try:
            _write_line(fd, data)
        finally:
            os.close(fd)
        fsync_dir(os.path.dirname(self.path))
        self.exists, self.torn, self.length = True, False, len(data)

    def remove(self):
        _unlink(self.path)
        fsync_dir(os.path.dirname(self.path))
        self.exists = False

    def remove_torn(self):
        if self.torn:
            _unlink(self.path)
            fsync_dir(os.path.dirname(self.path))

    def done(self, root, fix):
        """The Move of an earlier apply that did ``fix`` already, or None."""
        record = self._last_move_of(fix.file)
        if record is None or (record["action"], record["label"]) != (
            fix.action,
            _label(fix),
        ):
            return None
        if _state(root, record) != (None, "ours"):
            return None
        renamed = os.path.basename(record["to"]) != fix.file.split("/")[-1]
        return Move(fix.action, fix.file, record["to"], renamed)

    def moved_to(self, root, fix):
        """Words for a missing file that an earlier apply moved elsewhere."""
        record = self._last_move_of(fix.file)
        if record is None or _state(root, record)[1] != "ours":
            return ""
        return (
            f"; earlier fixes moved it to {record['to']!r} ({_said_record(record)}): "
            "undo them first to give it another action"
        )

    def _last_move_of(self, file):
        for record in reversed(self.moves()):
            if record["from"] == file:
                return record
        return None


def _said_record(record):
    if record["action"] == "relabel":
        return f"relabel to {record['label']!r}"
    return record["action"]


def _line(record):
    # ensure_ascii: a name that is not UTF-8 (surrogate escapes) stays exact.
    return (json.dumps(record, ensure_ascii=True, sort_keys=True) + "\n").encode()


# -- moving, and knowing where a moved file is -------------------------------
#
# Every change to the file system goes through the functions below, one
# system call each, so that a test can stop the process before any of them.


def _write_line(fd, data):
    """Append ``data`` and make it durable before anything it describes happens."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _truncate(path, length):
    """Cut a torn last line (a kill while it was written) off the journal."""
    os.truncate(path, length)
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkdir(path):
    os.mkdir(path)


def _rmdir(path):
    os.rmdir(path)


def _link(source, destination):
    os.link(source, destination, follow_symlinks=False)


def _rename(source, destination):
    os.rename(source, destination)


def _unlink(path):
    os.unlink(path)


def _copy(source, temporary):
    """Copy ``source`` to a new file ``temporary``, fsynced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o666)
    try:
        with open(source, "rb") as file:
            while chunk := file.read(_READ_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _place(source, destination):
    """Give ``source`` the name ``destination`` (on its file system), never
    replacing a file there; ``source``'s name is then removed."""
    try:
        _link(source, destination)
    except OSError as err:
        if err.errno == errno.EEXIST:
            raise FileExistsError(
                errno.EEXIST,
                f"{destination!r} appeared while the fixes were applied; nothing "
                "was replaced (undo them, or apply them again)",
            ) from err
        if err.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(destination):
            raise FileExistsError(
                errno.EEXIST, f"{destination!r} appeared meanwhile; nothing replaced"
            ) from err
        _rename(source, destination)
    else:
        _unlink(source)


def _carry(source, destination, how, temporary):
    """Move a file: renamed on one file system, copied then removed across two."""
    if how == "copy":
        _copy(source, temporary)
        _place(temporary, destination)
        fsync_dir(os.path.dirname(destination))
        _unlink(source)
    else:
        _place(source, destination)
        fsync_dir(os.path.dirname(destination))
    fsync_dir(os.path.dirname(source))


def _restore(root, record, source):
    """Carry a record's file back from where it went to ``source``."""
    folder = os.path.dirname(source)
    for missing in _missing_folders(folder, set()):
        _mkdir(missing)
    _carry(record["to"], source, record["how"], _temp(source, "unfix", record))


def _whose(path, record):
    """``"ours"`` if ``path`` holds the record's file (size, SHA-256), ``"other"``
    if it holds anything else, None if nothing is there."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size != record["size"]:
        return "other"
    try:
        size, sha256 = _digest(path)
    except (OSError, _RowProblem):
        return "other"
    return "ours" if (size, sha256) == (record["size"], record["sha256"]) else "other"


def _state(root, record):
    """``(at its old place, at its new place)``: each "ours", "other" or None."""
    return (
        _whose(_source(root, record["from"]), record),
        _whose(record["to"], record),
    )


def _settle(root, record):
    """Finish what a kill interrupted in the move (or the undo) of ``record``:
    partial copies are removed, and a file at both places keeps its old one.
    Returns :func:`_state` afterwards."""
    source = _source(root, record["from"])
    temporaries = (_temp(record["to"], "fix", record), _temp(source, "unfix", record))
    for temporary in temporaries:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISREG(os.lstat(temporary).st_mode):
                _unlink(temporary)
                fsync_dir(os.path.dirname(temporary))
    at_source, at_destination = _state(root, record)
    if at_source == at_destination == "ours":
        both = record["how"] == "copy" or os.path.samefile(source, record["to"])
        if both:
            _unlink(record["to"])
            fsync_dir(os.path.dirname(record["to"]))
            at_destination = None
    return at_source, at_destination


def _remove_if_empty(folder):
    """Remove a folder tlsk created if it is (still) an empty folder."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        _rmdir(folder)
    except OSError:
        return False  # gone, or not empty: someone's files are in it
    fsync_dir(os.path.dirname(folder))
    return True
