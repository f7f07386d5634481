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
of a process that died (:func:`stale_temps`). A writer holds a ``flock`` on its
temporary file (or folder) for as long as it writes it, so that a leftover
whose lock is free belongs to a dead writer and may be removed
(:func:`remove_dead_temps`), even while other writers work beside it.

Only regular files are ever replaced: an existing destination that is a
folder, a device, a FIFO or a socket is refused (:func:`check_replaceable`),
and a symbolic link is replaced itself, never written through. Several files
that belong together are written first and put in place together
(:class:`Publication`), so that a failure while writing any of them (a full
disk) changes none. Every write error names the file.

A folder that tlsk replaces as a whole (a report) carries a marker file
listing what tlsk wrote in it (:func:`write_folder_marker`); a folder without
one, or holding anything else, is never replaced (:func:`check_replaceable_folder`).

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
import json
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Iterator

__all__ = [
    "FOLDER_MARKER",
    "TMP_PREFIX",
    "Publication",
    "atomic_path",
    "check_replaceable",
    "check_only_written",
    "check_replaceable_folder",
    "check_writable_folder",
    "file_identity",
    "file_kind",
    "folder_writer",
    "fsync_dir",
    "fsync_file",
    "holds_lock",
    "locked",
    "read_folder_marker",
    "remove_dead_temps",
    "safe_join",
    "stale_temps",
    "temp_name",
    "write_atomically",
    "write_folder_marker",
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


def file_kind(mode: int) -> str:
    """What ``stat`` says a file is, in words: ``"a FIFO (named pipe)"``."""
    for test, words in _KINDS:
        if test(mode):
            return words
    return "an unknown kind of file"


_KINDS = (
    (stat.S_ISREG, "a regular file"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def check_replaceable(path, *, force: bool, force_flag: str = "force=True") -> None:
    """Raise FileExistsError unless ``path`` may be written.

    It may be when nothing is there, or, with ``force``, when it is a regular
    file or a symbolic link (the link is replaced, never written through).
    A folder, a device, a FIFO or a socket is never replaced, force or not.
    ``force_flag`` is how the caller's user spells force (``"--force"``).
    """
    path = os.fspath(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise FileExistsError(
            f"refusing to replace {path!r}: it is {file_kind(mode)}, and only a "
            "regular file (or a symbolic link, replaced itself) is ever replaced; "
            "choose another name"
        )
    if not force:
        raise FileExistsError(f"{path!r} exists; pass {force_flag} to replace it")


def _create_temp(final: str, *, folder: bool = False) -> tuple[str, int]:
    """A new temporary file (or folder) for ``final`` and a descriptor that locks it.

    The ``flock`` lasts until the descriptor is closed: while it is held, the
    temporary belongs to a live writer (:func:`remove_dead_temps`).
    """
    tmp = temp_name(final)
    if folder:
        os.mkdir(tmp, 0o755)
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    else:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        _remove(tmp)
        raise
    return tmp, fd


def _unlock(fd: int) -> None:
    """Release a temporary's lock, stamping it first.

    Readers of the finished file may lock it themselves (HDF5 does), so the
    lock goes before the rename; the fresh modification time keeps the file
    from looking dead (:func:`remove_dead_temps`) in the moment between.
    """
    if fd < 0:
        return
    try:
        os.utime(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    """Remove a temporary file or folder of tlsk's (a link is removed itself)."""
    with contextlib.suppress(FileNotFoundError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


@contextlib.contextmanager
def _naming(final: str, temporary: str) -> Iterator[None]:
    """Give an error of writing ``final`` (through ``temporary``) its name.

    A bare ``[Errno 28] No space left on device`` says nothing of which file;
    errors that already name another file (one being read) pass unchanged.
    """
    folder, name = os.path.split(final)
    try:
        yield
    except OSError as err:
        if type(err).__module__ != "builtins" or err.errno is None:
            raise
        ours = err.filename is None or err.filename in (temporary, final)
        if not ours and isinstance(err.filename, str):
            head, tail = os.path.split(err.filename)
            ours = head == folder and tail.startswith(TMP_PREFIX + name + "-")
        if not ours:
            raise
        raise OSError(
            err.errno,
            f"cannot write {final!r}: {err.strerror}; it was left as it was",
        ) from err


@contextlib.contextmanager
def atomic_path(final) -> Iterator[str]:
    """Yield a temporary path; on success it becomes ``final``, durably.

    The temporary file exists (empty, locked by this writer): the body opens
    it for writing (``"wb"``), writes and closes it. Then it is fsynced and
    renamed over ``final``, and the folder is fsynced. On any exception the
    temporary file is removed and ``final`` is untouched; an OS error names
    ``final``. A ``final`` that is not a regular file or a link (a folder, a
    device) is refused before anything is written.
    """
    final = os.fspath(final)
    check_replaceable(final, force=True)
    with _naming(final, None):
        tmp, fd = _create_temp(final)
    try:
        with _naming(final, tmp):
            yield tmp
            fsync_file(tmp)
            check_replaceable(final, force=True)
            _unlock(fd)
            fd = -1
            os.replace(tmp, final)
            fsync_dir(os.path.dirname(final))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        _unlock(fd)


def write_atomically(path, write, verify=None, *, before_replace=None):
    """Write ``path`` through a temporary file in its folder, fsync, then replace.

    ``write(file)`` fills a binary file object; ``verify(temporary_path)``, if
    given, may raise to refuse the result before it takes the place of
    ``path``; ``before_replace(temporary_path)``, if given, runs after it, when
    the new content is complete on disk (to describe it elsewhere first).
    Killed at any moment, ``path`` holds the old content or the new, never a
    mixture, and a refused or failed write (a full disk) leaves no temporary
    file and the old content in place; the temporary files that killed
    writers of ``path`` left are removed first.
    """
    path = os.path.abspath(os.fspath(path))
    remove_dead_temps(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
        if verify is not None:
            verify(tmp)
        if before_replace is not None:
            before_replace(tmp)


class Publication:
    """Files that belong together: each written now, all put in place at once.

    :meth:`stage` writes a file completely under a temporary name (fsynced,
    locked as its writer's); :meth:`publish` renames every staged file into
    place, in the order staged, and only then fsyncs their folders. Leaving
    the ``with`` block without publishing (an error in any write, a full
    disk) removes every temporary file: the destinations are as they were.
    Renames need no space, so once everything is staged only a kill can stop
    the publication half-way, and then each destination holds a whole file,
    old or new.

    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> a, b = os.path.join(folder, "a.txt"), os.path.join(folder, "b.txt")
    >>> with Publication() as outputs:
    ...     outputs.stage(a, lambda file: file.write(b"A"))
    ...     outputs.stage(b, lambda file: file.write(b"B"))
    ...     outputs.publish()
    >>> sorted(os.listdir(folder))
    ['a.txt', 'b.txt']
    """

    def __init__(self):
        self._staged: list[tuple[str, str, int]] = []  # (temporary, final, lock)

    def __enter__(self) -> Publication:
        return self

    def __exit__(self, *exc_info) -> None:
        self.discard()

    def stage(self, final, write) -> None:
        """Write ``final``'s content with ``write(binary_file)``, not yet in place."""
        final = os.path.abspath(os.fspath(final))
        if any(final == staged for _, staged, _ in self._staged):
            raise ValueError(f"{final!r} is staged twice")
        check_replaceable(final, force=True)
        remove_dead_temps(final)
        with _naming(final, None):
            tmp, fd = _create_temp(final)
        self._staged.append((tmp, final, fd))
        with _naming(final, tmp):
            with open(tmp, "wb") as file:
                write(file)
            fsync_file(tmp)

    def publish(self) -> None:
        """Rename every staged file into place, then make the renames durable."""
        for _, final, _ in self._staged:
            check_replaceable(final, force=True)
        self._release()
        for tmp, final, _ in self._staged:
            with _naming(final, tmp):
                os.replace(tmp, final)
        for folder in sorted({os.path.dirname(final) for _, final, _ in self._staged}):
            fsync_dir(folder)
        self._staged = []

    def discard(self) -> None:
        """Remove what is staged and not published (nothing after :meth:`publish`)."""
        for tmp, _, _ in self._staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._release()
        self._staged = []

    def _release(self) -> None:
        for i, (tmp, final, fd) in enumerate(self._staged):
            _unlock(fd)
            self._staged[i] = (tmp, final, -1)


# Opens without following a link or waiting on a FIFO.
_READ_NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

# A temporary younger than this may have been created a moment ago by a
# writer that has not yet taken its lock: it is left alone.
_YOUNGEST_DEAD_TEMP_SECONDS = 5.0


def remove_dead_temps(final) -> list[str]:
    """Remove the temporary files and folders of ``final`` whose writer is dead.

    A writer holds a ``flock`` on its temporary (see :func:`atomic_path`,
    :class:`Publication`, :func:`folder_writer`); one whose lock can be taken
    belongs to a process that died. Only tlsk's own names
    (``.tmp-<name>-<16 hex digits>``) are looked at, links are never
    followed, and a folder is removed only if it holds tlsk's marker (see
    :func:`write_folder_marker`). Returns what was removed.
    """
    final = os.path.abspath(os.fspath(final))
    folder, name = os.path.split(final)
    own = re.compile(re.escape(TMP_PREFIX + name) + r"-[0-9a-f]{16}$", re.DOTALL)
    removed = []
    for tmp in stale_temps(folder, name):
        if not own.match(os.path.basename(tmp)):
            continue
        try:
            fd = os.open(tmp, _READ_NO_FOLLOW)
        except OSError:
            continue  # a link, or gone
        try:
            info = os.fstat(fd)
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                continue
            if time.time() - info.st_mtime < _YOUNGEST_DEAD_TEMP_SECONDS:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its writer is alive
            if stat.S_ISDIR(info.st_mode) and read_folder_marker(tmp) is None:
                continue
            _remove(tmp)
            removed.append(tmp)
        finally:
            os.close(fd)
    return removed


def check_writable_folder(final, *, folders_made: bool = False) -> None:
    """Raise the OSError that writing ``final`` would meet, without writing it.

    Creates and removes a temporary file beside ``final``: a missing or
    read-only folder, or one without permission, fails now, before any work
    whose result would have nowhere to go. With ``folders_made`` (the writer
    creates missing folders), the nearest folder that exists is tried.
    """
    final = os.path.abspath(os.fspath(final))
    folder = os.path.dirname(final)
    while folders_made and not os.path.lexists(folder):
        final, folder = folder, os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            errno.ENOENT, f"cannot write {final!r}: folder {folder!r} does not exist"
        )
    with _naming(final, None):
        tmp, fd = _create_temp(final)
    os.close(fd)
    os.unlink(tmp)


# -- folders tlsk replaces as a whole ---------------------------------------

FOLDER_MARKER = ".tlsk-output.json"


def write_folder_marker(folder, kind: str, files=None) -> None:
    """Mark ``folder`` as written by tlsk as a ``kind``, listing what it holds.

    Call it last, when the folder is complete: every file and folder under it
    is listed (or ``files``, when tlsk writes only those in it), so that a
    file added later by someone else keeps the folder from being replaced
    (:func:`check_replaceable_folder`).
    """
    folder = os.fspath(folder)
    if files is None:
        files = _listing(folder) - {FOLDER_MARKER}
    record = {"format": "tlsk-output", "kind": kind, "files": sorted(files)}
    data = json.dumps(record, indent=1, ensure_ascii=True).encode("ascii")
    write_atomically(os.path.join(folder, FOLDER_MARKER), lambda f: f.write(data))


def read_folder_marker(folder) -> dict | None:
    """The marker :func:`write_folder_marker` left in ``folder``, or None."""
    path = os.path.join(os.fspath(folder), FOLDER_MARKER)
    try:
        fd = os.open(path, _READ_NO_FOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, _MARKER_MAX_BYTES + 1)
    finally:
        os.close(fd)
    try:
        record = json.loads(data)
    except ValueError:
        return None
    if (
        len(data) > _MARKER_MAX_BYTES
        or not isinstance(record, dict)
        or record.get("format") != "tlsk-output"
        or not isinstance(record.get("files"), list)
    ):
        return None
    return record


# A report lists a few thousand thumbnails at most: 100,000 names of 64 bytes.
_MARKER_MAX_BYTES = 8 * 2**20


def _listing(folder: str) -> set[str]:
    """Every path under ``folder``, relative, '/'-separated; links not followed."""
    found = set()
    for root, dirs, files in os.walk(folder):
        relative = os.path.relpath(root, folder)
        for name in dirs + files:
            found.add(name if relative == "." else f"{relative}/{name}")
    return found


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
    out = os.fsdecode(out)
    real = os.path.realpath(out)
    for source in inputs:
        source = os.fsdecode(source)
        source_real = os.path.realpath(source)
        if os.path.commonpath([real, source_real]) in (real, source_real):
            raise ValueError(
                f"refusing to write the {kind} folder {out!r}: it is, holds or lies "
                f"inside {source!r}, which is read; choose a folder outside the data"
            )
    try:
        mode = os.lstat(out).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        raise FileExistsError(
            f"refusing to replace {out!r}: it is {file_kind(mode)}, not a {kind} "
            f"folder; choose another name"
        )
    if not force:
        raise FileExistsError(
            f"{kind} folder {out!r} exists; pass {force_flag} to replace it"
        )
    present = _listing(out)
    if not present:
        return
    marker = read_folder_marker(out)
    if marker is None or marker.get("kind") != kind:
        raise FileExistsError(
            f"refusing to replace {out!r}: tlsk did not write it as a {kind} (it "
            f"has no {FOLDER_MARKER} of one), so it may hold someone's files; "
            "choose another folder, or move it away yourself"
        )
    check_only_written(f"the {kind} folder {out!r}", present, marker["files"])


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


@contextlib.contextmanager
def folder_writer(out, kind: str) -> Iterator[str]:
    """Yield a new temporary folder that becomes ``out`` (a ``kind``) on success.

    The caller has checked ``out`` with :func:`check_replaceable_folder`; the
    body fills the folder; then the marker is written, and the folder takes
    ``out``'s place (an old ``out`` is moved aside first, then removed). A
    failed or interrupted body leaves ``out`` as it was; the temporary folder
    of a killed writer is removed by the next writer of ``out``.
    """
    out = os.path.abspath(os.fspath(out))
    remove_dead_temps(out)
    with _naming(out, None):
        work, fd = _create_temp(out, folder=True)
    try:
        with _naming(out, work):
            # Marked at once, so that if this writer dies the next one knows
            # the folder for tlsk's and removes it.
            write_folder_marker(work, kind, files=())
            yield work
            write_folder_marker(work, kind)
            old = None
            if os.path.lexists(out):
                old = temp_name(out)
                os.rename(out, old)
            os.rename(work, out)
            fsync_dir(os.path.dirname(out))
    except BaseException:
        _remove(work)
        raise
    finally:
        _unlock(fd)
    if old is not None:
        with contextlib.suppress(OSError):  # the next writer of ``out`` retries
            _remove(old)


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
