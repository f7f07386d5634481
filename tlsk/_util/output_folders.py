"""Folders that tlsk writes as a whole (a report), and the rule for replacing one.

A folder that tlsk writes carries a marker file, ``.tlsk-output.json``,
that says what kind of folder it is and lists every name tlsk wrote in it
(:func:`write_folder_marker`). Such a folder is replaced only when its marker
says it is of the kind being written and it holds nothing else
(:func:`check_replaceable_folder`); a folder without a marker, or holding a
file that tlsk did not write, may be someone's work and is never replaced,
force or not, and neither is the data a command reads, a folder holding it
or one inside it.

:func:`folder_writer` builds the new folder under a temporary name beside
the old one and swaps it in when complete. Its writer holds a ``flock`` on
the marker inside for as long as it writes, so that the temporary folder of
a writer that died is known for dead and removed by the next writer
(:func:`remove_dead_temp_folders`), never one still being written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import time
from collections.abc import Iterator

from tlsk._util.files import (
    file_kind,
    fsync_dir,
    naming,
    resolved,
    stale_temps,
    temp_name,
    write_atomically,
)

__all__ = [
    "FOLDER_MARKER",
    "check_only_written",
    "check_replaceable_folder",
    "folder_writer",
    "read_folder_marker",
    "remove_dead_temp_folders",
    "write_folder_marker",
]

FOLDER_MARKER = ".tlsk-output.json"

# A report lists a few thousand thumbnails at most: 100,000 names of 64 bytes.
_MARKER_MAX_BYTES = 8 * 2**20

# Opens without following a link or waiting on a FIFO; for writing, since a
# lock on a network file system needs it.
_OPEN_TO_LOCK = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

# A temporary folder younger than this may be one whose writer has not yet
# made and locked its marker: it is left alone.
_YOUNGEST_DEAD_TEMP_SECONDS = 5.0


def _marker_bytes(kind: str, files) -> bytes:
    record = {"format": "tlsk-output", "kind": kind, "files": sorted(files)}
    return json.dumps(record, indent=1, ensure_ascii=True).encode("ascii")


def write_folder_marker(folder, kind: str, files=None) -> None:
    """Mark ``folder`` as written by tlsk as a ``kind``, listing what it holds.

    Call it last, when the folder is complete: every file and folder under it
    is listed (or ``files``, when tlsk writes only those in it), so that a
    file added later by someone else keeps the folder from being replaced
    (:func:`check_replaceable_folder`).
    """
    folder = os.fsdecode(os.fspath(folder))
    if files is None:
        files = _listing(folder) - {FOLDER_MARKER}
    data = _marker_bytes(kind, files)
    write_atomically(os.path.join(folder, FOLDER_MARKER), lambda f: f.write(data))


def read_folder_marker(folder) -> dict | None:
    """The marker :func:`write_folder_marker` left in ``folder``, or None.

    None too for anything that is not one: a link, a FIFO, a file larger
    than a marker can be, or a record of the wrong shape.
    """
    path = os.path.join(os.fsdecode(os.fspath(folder)), FOLDER_MARKER)
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _parse_marker(os.read(fd, _MARKER_MAX_BYTES + 1))
    except OSError:
        return None
    finally:
        os.close(fd)


def _parse_marker(data: bytes) -> dict | None:
    if len(data) > _MARKER_MAX_BYTES:
        return None
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if (
        not isinstance(record, dict)
        or record.get("format") != "tlsk-output"
        or not isinstance(record.get("kind"), str)
        or not isinstance(record.get("files"), list)
        or not all(isinstance(name, str) for name in record["files"])
    ):
        return None
    return record


def _listing(folder: str) -> set[str]:
    """Every path under ``folder``, relative, '/'-separated; links not followed."""
    found = set()
    for root, dirs, files in os.walk(folder):
        relative = os.path.relpath(root, folder)
        for name in dirs + files:
            found.add(name if relative == "." else f"{relative}/{name}")
    return found


def check_only_written(what: str, present, written) -> None:
    """Raise FileExistsError if ``present`` holds a name that ``written`` lacks.

    ``what`` is about to be replaced; ``present`` are the names it holds,
    ``written`` those tlsk wrote there. Anything else is someone's work.
    """
    foreign = sorted(set(present) - set(written) - {FOLDER_MARKER})
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise FileExistsError(
            f"refusing to replace {what}: tlsk did not write {foreign[0]!r}{more} "
            "there; move them away first, or choose another folder"
        )


def check_replaceable_folder(
    out, kind: str, *, force: bool, inputs=(), force_flag: str = "force=True"
) -> None:
    """Raise unless the folder ``out`` may be written as a whole (a ``kind``).

    ``out`` may be written when it does not exist; with ``force``, also when
    it is an empty folder, or one that tlsk wrote as a ``kind`` (its marker
    says so) holding nothing but what tlsk wrote. Never when it is, holds or
    lies inside one of ``inputs`` (the data the command reads), and never a
    link, a file or a folder of someone else's, force or not.
    """
    out_given = os.fsdecode(os.fspath(out))
    out = resolved(out_given)
    for source in inputs:
        source = os.fsdecode(os.fspath(source))
        source_real = os.path.realpath(source)
        for place in {out, os.path.realpath(out)}:
            if os.path.commonpath([place, source_real]) in (place, source_real):
                raise ValueError(
                    f"refusing to write the {kind} folder {out_given!r}: it is, "
                    f"holds or lies inside {source!r}, which is read; choose a "
                    "folder outside the data"
                )
    try:
        mode = os.lstat(out).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        raise FileExistsError(
            f"refusing to replace {out_given!r}: it is {file_kind(mode)}, not a "
            f"{kind} folder; choose another name"
        )
    if not force:
        raise FileExistsError(
            f"{kind} folder {out_given!r} exists; pass {force_flag} to replace it"
        )
    marker = read_folder_marker(out)  # before any listing: a marker or nothing
    if marker is None or marker.get("kind") != kind:
        with os.scandir(out) as entries:
            if next(entries, None) is None:
                return  # an empty folder holds nothing to lose
        raise FileExistsError(
            f"refusing to replace {out_given!r}: tlsk did not write it as a {kind} "
            f"(it has no {FOLDER_MARKER} of one), so it may hold someone's "
            "files; choose another folder, or move it away yourself"
        )
    check_only_written(
        f"the {kind} folder {out_given!r}", _listing(out), marker["files"]
    )


def _create_temp_folder(out: str, kind: str) -> tuple[str, int]:
    """A new temporary folder for ``out``, marked, and a descriptor locking it.

    The lock is on the marker inside, opened for writing (which a lock on a
    network file system needs); it lasts until the descriptor is closed.
    """
    work = temp_name(out)
    os.mkdir(work, 0o755)
    try:
        marker = os.path.join(work, FOLDER_MARKER)
        fd = os.open(marker, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, _marker_bytes(kind, ()))
        except BaseException:
            os.close(fd)
            raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return work, fd


def remove_dead_temp_folders(out) -> list[str]:
    """Remove the temporary folders of ``out`` whose writer died; return them.

    Only folders named ``.tmp-<out's name>-<16 hex digits>`` beside ``out``:
    an empty one (its writer died before marking it), or one whose marker is
    tlsk's and unlocked (its writer died while filling it). Links are never
    followed; a folder still being written is never touched.
    """
    out = resolved(out)
    folder, name = os.path.split(out)
    removed = []
    for work in stale_temps(folder, name):
        try:
            info = os.lstat(work)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            continue
        if time.time() - info.st_mtime < _YOUNGEST_DEAD_TEMP_SECONDS:
            continue
        with contextlib.suppress(OSError):
            if _dead_and_marked(work):
                shutil.rmtree(work)
                removed.append(work)
            elif not os.listdir(work):
                os.rmdir(work)
                removed.append(work)
    return removed


def _dead_and_marked(work: str) -> bool:
    """Whether ``work`` holds tlsk's marker and no live writer locks it."""
    try:
        fd = os.open(os.path.join(work, FOLDER_MARKER), _OPEN_TO_LOCK)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # its writer is alive
        return _parse_marker(os.read(fd, _MARKER_MAX_BYTES + 1)) is not None
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_writer(out, kind: str, *, force: bool, inputs=()) -> Iterator[str]:
    """Yield a new temporary folder that becomes ``out`` (a ``kind``) on success.

    The caller has checked ``out`` with :func:`check_replaceable_folder`; the
    body fills the folder; then the marker lists what it holds, ``out`` is
    checked again (something may have appeared meanwhile) and the folder
    takes ``out``'s place (an old ``out`` is moved aside first, then
    removed). A failed or interrupted body leaves ``out`` as it was; the
    temporary folder of a killed writer is removed by the next writer of
    ``out``.
    """
    out = resolved(out)
    remove_dead_temp_folders(out)
    with naming(out):
        work, fd = _create_temp_folder(out, kind)
    old = None
    try:
        with naming(out, work):
            yield work
            write_folder_marker(work, kind)
            check_replaceable_folder(out, kind, force=force, inputs=inputs)
            if os.path.lexists(out):
                old = temp_name(out)
                os.rename(out, old)
            os.rename(work, out)
            fsync_dir(os.path.dirname(out))
    except BaseException:
        if old is not None and not os.path.lexists(out):
            with contextlib.suppress(OSError):
                os.rename(old, out)  # the old folder back where it was
                old = None
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        os.close(fd)
    if old is not None:
        with contextlib.suppress(OSError):  # the next writer of ``out`` retries
            shutil.rmtree(old)
