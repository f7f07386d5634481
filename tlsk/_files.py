"""Writing files safely: atomically, and never outside a chosen folder."""

from __future__ import annotations

import os
import tempfile

__all__ = ["safe_join", "write_atomically"]


def write_atomically(path, write, verify=None, *, before_replace=None):
    """Write ``path`` through a temporary file in its folder, fsync, then replace.

    ``write(file)`` fills a binary file object; ``verify(temporary_path)``, if
    given, may raise to refuse the result before it takes the place of
    ``path``; ``before_replace(temporary_path)``, if given, runs after it, when
    the new content is complete on disk (to describe it elsewhere first).
    Killed at any moment, ``path`` holds the old content or the new, never a
    mixture, and a refused or failed write (a full disk) leaves no temporary
    file and the old content in place.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        if verify is not None:
            verify(tmp)
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def safe_join(root, *parts):
    """``root/part/...``, refusing (ValueError) any result outside ``root``.

    Class names, file names and labels come from data the user may not
    control: ``..``, absolute paths and symbolic links that lead out are
    refused.
    """
    root_real = os.path.realpath(root)
    for part in parts:
        if not part or part in (".", "..") or os.path.isabs(part) or "/" in part:
            raise ValueError(
                f"refusing to write {part!r} under {root!r}: a name must be one "
                "plain path component (no '/', '..' or absolute path)"
            )
    path = os.path.join(root_real, *parts)
    if os.path.commonpath([root_real, os.path.realpath(path)]) != root_real:
        raise ValueError(f"refusing to write {path!r}: it leads outside {root!r}")
    return path
