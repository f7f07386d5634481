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

Every output path is first :func:`resolved` (its folder as the kernel
resolves it), so that what is checked is what is written. Folders that tlsk
writes as a whole live in :mod:`tlsk._util.output_folders`.

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
import stat
import threading
import time
from collections.abc import Iterator

__all__ = [
    "TMP_PREFIX",
    "Publication",
    "atomic_path",
    "check_replaceable",
    "check_writable_folder",
    "dead_temps",
    "file_identity",
    "file_kind",
    "folder_locked",
    "fsync_dir",
    "fsync_file",
    "holds_lock",
    "locked",
    "naming",
    "remove_dead_temps",
    "resolved",
    "safe_join",
    "stale_temps",
    "temp_name",
    "write_atomically",
]

TMP_PREFIX = ".tmp-"


def resolved(path) -> str:
    """The absolute path a write to ``path`` creates or replaces.

    Its folder is resolved as the kernel resolves it (links first, then
    ``..``), its last name kept as it is: ``sym/../x`` is ``x`` beside what
    ``sym`` points to, not ``./x`` (:func:`os.path.abspath` would say), and
    a link named last is the link, not its target. Every check and write of
    an output goes through this one name.
    """
    path = os.fsdecode(os.fspath(path))
    stripped = path.rstrip(os.sep) or path
    head, tail = os.path.split(stripped)
    if tail in ("", ".", ".."):
        return os.path.realpath(stripped)
    return os.path.join(os.path.realpath(head or os.curdir), tail)


# File names are at most 255 bytes: a temporary keeps this much of its
# final name, so that a long final name still has one.
_TEMP_STEM_BYTES = 200


def _temp_stem(name: str) -> str:
    encoded = name.encode("utf-8", "surrogateescape")[:_TEMP_STEM_BYTES]
    return encoded.decode("utf-8", "ignore")


def temp_name(final: str) -> str:
    """A fresh temporary name for ``final``, in its folder."""
    head, tail = os.path.split(final)
    stem = _temp_stem(tail)
    return os.path.join(head, f"{TMP_PREFIX}{stem}-{secrets.token_hex(8)}")


def stale_temps(folder: str, final_prefix: str = "") -> list[str]:
    """Temporary files in ``folder`` whose final name starts with ``final_prefix``.

    Only the caller knows whether their writers are dead (it holds the lock
    every writer holds, say); this only finds them.
    """
    pattern = re.compile(
        re.escape(TMP_PREFIX + _temp_stem(final_prefix)) + r".*-[0-9a-f]{16}$",
        re.DOTALL,
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
    file or a symbolic link to one or to nothing (the link is replaced, never
    written through). A folder, a device, a FIFO or a socket is never
    replaced, force or not, nor a link to one (``/dev/stdout``).
    ``force_flag`` is how the caller's user spells force (``"--force"``).
    """
    path = os.fsdecode(os.fspath(path))
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        try:
            target = os.stat(path).st_mode
        except OSError:
            target = stat.S_IFREG  # a dangling link: the link is all there is
        if not stat.S_ISREG(target):
            raise FileExistsError(
                f"refusing to replace {path!r}: it is a symbolic link to "
                f"{file_kind(target)}, and only a regular file (or a link to one) "
                "is ever replaced; choose another name"
            )
    elif not stat.S_ISREG(mode):
        raise FileExistsError(
            f"refusing to replace {path!r}: it is {file_kind(mode)}, and only a "
            "regular file (or a symbolic link, replaced itself) is ever replaced; "
            "choose another name"
        )
    if not force:
        raise FileExistsError(f"{path!r} exists; pass {force_flag} to replace it")


def _create_temp(final: str) -> tuple[str, int]:
    """A new temporary file for ``final`` and a descriptor that locks it.

    The ``flock`` lasts until the descriptor is closed: while it is held, the
    temporary belongs to a live writer (:func:`remove_dead_temps`). The file
    is open for writing, which a lock on a network file system needs.
    """
    tmp = temp_name(final)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
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


@contextlib.contextmanager
def naming(final: str, temporary: str | None = None) -> Iterator[None]:
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
            ours = head == folder and tail.startswith(TMP_PREFIX + _temp_stem(name))
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
    final = resolved(final)
    check_replaceable(final, force=True)
    with naming(final):
        tmp, fd = _create_temp(final)
    try:
        with naming(final, tmp):
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
    path = resolved(path)
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
        final = resolved(final)
        if any(final == staged for _, staged, _ in self._staged):
            raise ValueError(f"{final!r} is staged twice")
        check_replaceable(final, force=True)
        remove_dead_temps(final)
        with naming(final):
            tmp, fd = _create_temp(final)
        self._staged.append((tmp, final, fd))
        with naming(final, tmp):
            with open(tmp, "wb") as file:
                write(file)
            fsync_file(tmp)

    def publish(self) -> None:
        """Rename every staged file into place, then make the renames durable."""
        for _, final, _ in self._staged:
            check_replaceable(final, force=True)
        self._release()
        for tmp, final, _ in self._staged:
            with naming(final, tmp):
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


# Opens without following a link or waiting on a FIFO; for writing, since a
# lock on a network file system needs it.
_OPEN_TO_LOCK = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

# A temporary younger than this may have been created a moment ago by a
# writer that has not yet taken its lock: it is left alone.
_YOUNGEST_DEAD_TEMP_SECONDS = 5.0


def dead_temps(final) -> Iterator[tuple[str, int]]:
    """The temporaries of ``final`` whose writer is dead, each while locked.

    Yields ``(path, descriptor)`` for each regular file named
    ``.tmp-<final's name>-<16 hex digits>`` beside ``final`` whose ``flock``
    this process could take (its writer died: a live one holds it) and that
    is older than a few seconds; the caller removes it (or not) before the
    next item, while the lock keeps any other tidier away. Nothing else is
    opened: links, folders, devices and FIFOs are passed over unopened.
    """
    final = resolved(final)
    folder, name = os.path.split(final)
    own = re.compile(
        re.escape(TMP_PREFIX + _temp_stem(name)) + r"-[0-9a-f]{16}$", re.DOTALL
    )
    for tmp in stale_temps(folder, name):
        if not own.match(os.path.basename(tmp)):
            continue
        try:
            if not stat.S_ISREG(os.lstat(tmp).st_mode):
                continue  # decided before anything is opened
            fd = os.open(tmp, _OPEN_TO_LOCK)
        except OSError:
            continue  # gone, or not ours to open
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                continue
            if time.time() - info.st_mtime < _YOUNGEST_DEAD_TEMP_SECONDS:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its writer is alive
            yield tmp, fd
        finally:
            os.close(fd)


def remove_dead_temps(final) -> list[str]:
    """Remove the temporary files of ``final`` whose writer is dead (see
    :func:`dead_temps`); return what was removed."""
    removed = []
    for tmp, _ in dead_temps(final):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
            removed.append(tmp)
    return removed


def check_writable_folder(final, *, folders_made: bool = False) -> None:
    """Raise the OSError that writing ``final`` would meet, without writing it.

    Creates and removes a temporary file beside ``final``: a missing or
    read-only folder, or one without permission, fails now, before any work
    whose result would have nowhere to go. With ``folders_made`` (the writer
    creates missing folders), the nearest folder that exists is tried.
    """
    final = resolved(final)
    folder = os.path.dirname(final)
    while folders_made and not os.path.lexists(folder):
        final, folder = folder, os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            errno.ENOENT, f"cannot write {final!r}: folder {folder!r} does not exist"
        )
    with naming(final):
        tmp, fd = _create_temp(final)
    os.close(fd)
    os.unlink(tmp)


@contextlib.contextmanager
def folder_locked(folder) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` itself, for steps that go together.

    Writers that must not interleave (the three steps of replacing a model
    and its metadata) take it; it leaves no file behind. Where the file
    system cannot lock a folder (some network ones), the steps run unlocked.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
