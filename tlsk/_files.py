"""Writing files safely: the one home of atomic writes, locks and file identity.

Every file tlsk writes for others to read goes through :func:`atomic_path`
(or :func:`write_atomically`, built on it): the content is built under a
temporary name in the destination folder, flushed and fsynced, moved into
place with ``os.replace``, and the folder is fsynced so that the rename itself
survives a power cut. Killed at any moment, the destination holds the old
content or the new, never a mixture; a failed write (a full disk) leaves the
old content and no temporary file.

Temporary files are named ``.tmp-<final name>-<16 hex digits>``
(:func:`temp_name`), so that whoever owns a folder can recognise the leftovers
of a process that died (:func:`stale_temps`).

Locks are ``flock`` locks on a lock file (:func:`locked`): the kernel drops
them when a process dies, so a lock is never left held by the dead.

A file's *identity* (:func:`file_identity`) is what ``stat`` says of it
without reading it: path, device, inode, size, modification and change times.
Two stats with the same identity name the same, unchanged bytes (see
:func:`file_identity` for when that holds).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import threading
from collections.abc import Iterator

__all__ = [
    "TMP_PREFIX",
    "atomic_path",
    "file_identity",
    "fsync_dir",
    "fsync_file",
    "holds_lock",
    "locked",
    "safe_join",
    "stale_temps",
    "temp_name",
    "write_atomically",
]

TMP_PREFIX = ".tmp-"


def temp_name(final: str) -> str:
    """A fresh temporary name for ``final``, in its folder."""
    head, tail = os.path.split(final)
    return os.path.join(head, f"{TMP_PREFIX}{tail}-{secrets.token_hex(8)}")


def stale_temps(folder: str, final_prefix: str = "") -> list[str]:
    """Temporary files in ``folder`` whose final name starts with ``final_prefix``.

    Only the caller knows whether their writers are dead (it holds the lock
    every writer holds, say); this only finds them.
    """
    pattern = re.compile(
        re.escape(TMP_PREFIX + final_prefix) + r".*-[0-9a-f]{16}$", re.DOTALL
    )
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [os.path.join(folder, n) for n in names if pattern.match(n)]


def fsync_file(path: str) -> None:
    """Flush a closed file's content to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """Make the names in a folder (a rename, a new file) survive a power cut."""
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: str) -> Iterator[str]:
    """Yield a temporary path; on success it becomes ``final``, durably.

    The body writes and closes the file at the yielded path. Then it is
    fsynced and renamed over ``final``, and the folder is fsynced. On any
    exception the temporary file is removed and ``final`` is untouched.
    """
    tmp = temp_name(final)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(final))


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
    with atomic_path(os.path.abspath(os.fspath(path))) as tmp:
        with open(tmp, "xb") as file:
            write(file)
            file.flush()
        if verify is not None:
            verify(tmp)
        if before_replace is not None:
            before_replace(tmp)


_held = threading.local()


@contextlib.contextmanager
def locked(
    lock_path: str, *, shared: bool = False, blocking: bool = True
) -> Iterator[bool]:
    """Hold the ``flock`` on ``lock_path`` (created if missing); yield True.

    Exclusive by default, re-entrant within one thread (a second ``flock``
    through another descriptor of the same process would wait for itself).
    With ``blocking=False`` it yields False, holding nothing, when someone
    else holds the lock.
    """
    lock_path = os.path.abspath(lock_path)
    counts = _held.__dict__.setdefault("counts", {})
    if counts.get(lock_path):
        counts[lock_path] += 1
        try:
            yield True
        finally:
            counts[lock_path] -= 1
        return
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | (0 if blocking else fcntl.LOCK_NB))
        except OSError as err:
            if blocking or err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        counts[lock_path] = 1
        try:
            yield True
        finally:
            del counts[lock_path]
    finally:
        os.close(fd)  # releases the flock


def holds_lock(lock_path: str) -> bool:
    """Whether this thread holds the lock on ``lock_path`` through :func:`locked`."""
    return bool(_held.__dict__.get("counts", {}).get(os.path.abspath(lock_path)))


def file_identity(path, stat: os.stat_result | None = None) -> tuple | None:
    """``(size, mtime_ns, ctime_ns, device, inode, absolute path)``, or None.

    None when the file cannot be stat'ed, or when its file system gives no
    inode numbers (then nothing may be remembered about it). The path is part
    of it because some file systems (FUSE, vfat, CIFS) reuse inode numbers
    across files. The change time cannot be set by anyone but the kernel: a
    file rewritten, even with its old size and modification time restored
    (``cp -p``, ``touch -d``), gets a new one.
    """
    try:
        stat = os.stat(path) if stat is None else stat
    except OSError:
        return None
    if stat.st_ino == 0:
        return None
    return (
        stat.st_size,
        stat.st_mtime_ns,
        stat.st_ctime_ns,
        stat.st_dev,
        stat.st_ino,
        os.path.abspath(path),
    )


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
