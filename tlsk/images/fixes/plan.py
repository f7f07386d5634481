"""Every fix checked against the tree as it is, before anything moves, and
turned into a step: where each file goes, under which free name, which
folders it needs, and whether it is linked or copied there."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field

from tlsk._util.files import file_kind
from tlsk.images.fixes.csv_format import (
    ACTIONS,
    Fix,
    RowProblem,
    label_of,
    not_the_file,
    parse_csv,
    raise_problems,
    said,
    where,
)
from tlsk.images.fixes.journal import Journal
from tlsk.images.fixes.moves import digest, missing_folders
from tlsk.images.fixes.paths import data_root, quarantine_path, split_parts
from tlsk.images.fixes.results import Move

__all__ = ["plan_steps", "read_fixes", "same_device"]

_NAME_MAX_BYTES = 255
_SHA256 = re.compile(r"[0-9a-f]{64}")


def read_fixes(path, root, *, quarantine=None, split=None) -> list[Fix]:
    """Read a fixes CSV (format: :mod:`tlsk.images.fixes`) and check every row.

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
    >>> from tlsk.images.fixes import read_fixes
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
    fixes = parse_csv(os.fsdecode(os.fspath(path)))
    root = data_root(root)
    quarantine = quarantine_path(root, quarantine)
    journal = Journal(root)
    journal.load()
    _, fixes = plan_steps(root, fixes, quarantine, journal, split_parts(split))
    return fixes


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


def plan_steps(root, fixes, quarantine, journal, split=None):
    """``(steps, fixes each file once)`` on the tree as it is, or one FixesError
    naming every bad fix. The same file twice with another action is one."""
    problems, steps, unique, first, taken, made = [], [], [], {}, set(), set()
    for fix in fixes:
        if not isinstance(fix, Fix):
            raise TypeError(f"fixes must be Fix objects; received {fix!r}")
        earlier = first.setdefault(fix.file, fix)
        if earlier is not fix:
            if (earlier.action, label_of(earlier)) != (fix.action, label_of(fix)):
                problems.append(
                    where(fix)
                    + f"{fix.file!r} is also on {where(earlier, bare=True)} with "
                    f"{said(earlier)}; one action per file"
                )
            continue
        unique.append(fix)
        try:
            steps.append(_step(root, fix, quarantine, journal, taken, made, split))
        except RowProblem as problem:
            problems.append(where(fix) + str(problem))
    raise_problems(problems)
    return steps, unique


def _step(root, fix, quarantine, journal, taken, made, split):
    if fix.action not in ACTIONS:
        raise RowProblem(
            f"unknown action {fix.action!r} for {fix.file!r}; the actions are "
            f"{', '.join(ACTIONS)}"
        )
    names = _names(fix.file, split)
    if fix.sha256 is not None and not (
        isinstance(fix.sha256, str) and _SHA256.fullmatch(fix.sha256)
    ):
        raise RowProblem(
            f"{fix.file!r}: its sha256 {fix.sha256!r} is not a SHA-256 (64 "
            "hexadecimal digits)"
        )
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
        raise RowProblem(f"{fix.file!r}: {missing}{journal.moved_to(root, fix)}")
    if fix.action == "keep":
        if fix.sha256 is not None:
            _check_content(fix, source)
        return _Step("keep", fix)
    if fix.action == "relabel":
        folder, tag = os.path.join(base, fix.label), old
    else:
        folder, tag = os.path.join(quarantine, *names[:-1]), ""
    new_folders = missing_folders(folder, made)
    name = _free_name(folder, names[-1], tag, taken)
    destination = os.path.join(folder, name)
    try:
        size, sha256 = digest(source)
    except OSError as err:
        raise RowProblem(f"cannot read {fix.file!r}: {err.strerror}") from err
    _check_content(fix, source, sha256)
    taken.add(destination)
    made.update(new_folders)
    return _Step(
        "move",
        fix,
        destination=destination,
        made=new_folders,
        size=size,
        sha256=sha256,
        how="link" if same_device(source, _existing(folder)) else "copy",
        renamed=name != names[-1],
    )


def _check_content(fix, source, sha256=None):
    """A RowProblem unless the file's bytes have the SHA-256 its row gives (if
    it gives one); ``sha256``: the file's, when already read."""
    if fix.sha256 is None:
        return
    if sha256 is None:
        try:
            _, sha256 = digest(source)
        except OSError as err:
            raise RowProblem(f"cannot read {fix.file!r}: {err.strerror}") from err
    if sha256 != fix.sha256:
        raise not_the_file(fix)


def _names(file, split):
    """The names on the way to ``file``, checked; a split's first is a part."""
    if not isinstance(file, str) or not file:
        raise RowProblem(f"no file named: {file!r}")
    if "\0" in file:
        raise RowProblem(f"{file!r}: a path cannot hold a NUL character")
    if file.startswith("/"):
        raise RowProblem(
            f"{file!r}: an absolute path; give it relative to the data folder "
            "('<class>/<name>'), as tlsk check --json prints it"
        )
    names = file.split("/")
    for name in names:
        if name in ("", ".", ".."):
            raise RowProblem(
                f"{file!r}: {name!r} in a path; give it as tlsk check --json "
                "prints it ('<class>/<name>', no '..', '.' or '//')"
            )
        if name.startswith("."):
            raise RowProblem(f"{file!r}: {name!r} is hidden, never an image of tlsk")
    if split and (len(names) < 3 or names[0] not in split):
        raise RowProblem(
            f"{file!r} is not inside a class folder of a part of the split "
            f"({', '.join(split)}); expected '<part>/<class>/<name>'"
        )
    if len(names) < 2:
        raise RowProblem(
            f"{file!r} is not inside a class folder; expected '<class>/<name>'"
        )
    return names


def _check_label(root, fix, old):
    label = fix.label
    if not label:
        raise RowProblem(f"relabel {fix.file!r} to what? Its label cell is empty")
    if label == old:
        raise RowProblem(
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
        raise RowProblem(
            f"relabel {fix.file!r} to {label!r}: {label!r} in the data folder is "
            f"{file_kind(mode)}, not a class folder"
        )
    if not _safe_folder_name(label):
        raise RowProblem(
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
    the reason it is missing; or a RowProblem for what may never be moved."""
    path = root
    for i, part in enumerate(parts):
        path = os.path.join(path, part)
        shown = "/".join(parts[: i + 1])
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return "no such file in the data folder"
        except OSError as err:
            raise RowProblem(f"cannot look at {shown!r}: {err.strerror}") from err
        last = i == len(parts) - 1
        if stat.S_ISLNK(mode):
            raise RowProblem(
                f"{shown!r} is a symbolic link: links are never followed nor moved"
            )
        if last and not stat.S_ISREG(mode):
            raise RowProblem(
                f"{shown!r} is {file_kind(mode)}; only regular files are moved"
            )
        if not last and not stat.S_ISDIR(mode):
            raise RowProblem(f"{shown!r} is {file_kind(mode)}, not a folder")
    return ""


def _free_name(folder, name, tag, taken):
    stem, ext = os.path.splitext(name)
    candidates = [name]
    if tag:
        candidates.append(f"{stem}~{tag}{ext}")
    n = 2
    while True:
        for candidate in candidates:
            if len(os.fsencode(candidate)) > _NAME_MAX_BYTES:
                raise RowProblem(
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


def same_device(a, b):
    """Whether ``a`` (never followed) and ``b`` are on one file system: a move
    between them is a link, otherwise a copy."""
    return os.lstat(a).st_dev == os.stat(b).st_dev
