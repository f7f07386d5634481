"""Moving a user's file, and knowing where a moved file is.

A move gives the file its new name by a hard link, then removes the old
one, so that an existing name is never replaced; where the file system has
no hard links, a rename after checking that the name is free. Across file
systems: a copy into a hidden temporary file beside the destination,
fsynced, linked into place, then removal of the source. A file is known by
its size and SHA-256, as its journal record gives them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat

from tlsk._util.files import file_kind, fsync_dir
from tlsk.images.fixes import system_calls
from tlsk.images.fixes.csv_format import RowProblem
from tlsk.images.fixes.paths import source_path, temporary_path

__all__ = [
    "carry",
    "digest",
    "missing_folders",
    "remove_if_empty",
    "restore",
    "settle",
    "state",
]

# What os.link raises where a file system has no hard links.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


def digest(path):
    """``(size, sha256 hex)`` of the regular file at ``path`` (never a link)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RowProblem(f"{path!r} is not a regular file")
        sha256, size = hashlib.sha256(), 0
        while chunk := file.read(system_calls.READ_CHUNK):
            sha256.update(chunk)
            size += len(chunk)
    return size, sha256.hexdigest()


def missing_folders(folder, planned):
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
                raise RowProblem(
                    f"{path!r} is {file_kind(mode)}; a folder is needed there"
                )
            break
        if path not in planned:
            missing.append(path)
        path = os.path.dirname(path)
    missing.reverse()
    return missing


def _place(source, destination):
    """Give ``source`` the name ``destination`` (on its file system), never
    replacing a file there; ``source``'s name is then removed."""
    try:
        system_calls.link(source, destination)
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
        system_calls.rename(source, destination)
    else:
        system_calls.unlink(source)


def carry(source, destination, how, temporary):
    """Move a file: renamed on one file system, copied then removed across two."""
    if how == "copy":
        system_calls.copy(source, temporary)
        _place(temporary, destination)
        fsync_dir(os.path.dirname(destination))
        system_calls.unlink(source)
    else:
        _place(source, destination)
        fsync_dir(os.path.dirname(destination))
    fsync_dir(os.path.dirname(source))


def restore(root, record, source):
    """Carry a record's file back from where it went to ``source``."""
    folder = os.path.dirname(source)
    for missing in missing_folders(folder, set()):
        system_calls.mkdir(missing)
    carry(record["to"], source, record["how"], temporary_path(source, "unfix", record))


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
        size, sha256 = digest(path)
    except (OSError, RowProblem):
        return "other"
    return "ours" if (size, sha256) == (record["size"], record["sha256"]) else "other"


def state(root, record):
    """``(at its old place, at its new place)``: each "ours", "other" or None."""
    return (
        _whose(source_path(root, record["from"]), record),
        _whose(record["to"], record),
    )


def settle(root, record):
    """Finish what a kill interrupted in the move (or the undo) of ``record``:
    partial copies are removed, and a file at both places keeps its old one.
    Returns :func:`state` afterwards."""
    source = source_path(root, record["from"])
    temporaries = (
        temporary_path(record["to"], "fix", record),
        temporary_path(source, "unfix", record),
    )
    for temporary in temporaries:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISREG(os.lstat(temporary).st_mode):
                system_calls.unlink(temporary)
                fsync_dir(os.path.dirname(temporary))
    at_source, at_destination = state(root, record)
    if at_source == at_destination == "ours":
        both = record["how"] == "copy" or os.path.samefile(source, record["to"])
        if both:
            system_calls.unlink(record["to"])
            fsync_dir(os.path.dirname(record["to"]))
            at_destination = None
    return at_source, at_destination


def remove_if_empty(folder):
    """Remove a folder tlsk created if it is (still) an empty folder."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        system_calls.rmdir(folder)
    except OSError:
        return False  # gone, or not empty: someone's files are in it
    fsync_dir(os.path.dirname(folder))
    return True
