"""Writing one HDF5 file of the cache, atomically, through :mod:`tlsk._util.files`."""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import h5py

from tlsk._util.files import atomic_path
from tlsk.cache._layout import USER_BLOCK_BYTES, CacheError

# Run files use the newest HDF5 format: a dataset of fixed shape then indexes
# its chunks with a "fixed array", found in one step rather than a B-tree walk.
LIBVER = ("v110", "latest")


def write_h5(
    final: str,
    build: Callable[[h5py.File], None],
    *,
    in_memory: bool = False,
    user_block: Callable[[bytes], bytes] | None = None,
) -> None:
    """Build an HDF5 file with ``build(file)`` and make it ``final``, atomically.

    ``in_memory`` (small files) builds it in memory and writes its bytes with
    Python; a large file is written as it is built, through
    :class:`_FailSoftFile`. Either way HDF5 never sees a failed write (after
    one, h5py may crash the process), and a full disk is a
    :class:`CacheError` that says nothing was replaced.

    ``user_block`` (in memory only): the file begins with a user block of
    ``USER_BLOCK_BYTES`` bytes (HDF5 skips it) holding what
    ``user_block(rest)`` returns for the bytes after it.
    """
    try:
        with atomic_path(final) as tmp:
            if in_memory:
                buffer = io.BytesIO()
                options = {"userblock_size": USER_BLOCK_BYTES} if user_block else {}
                with h5py.File(buffer, "w", libver=LIBVER, **options) as f:
                    build(f)
                data = buffer.getvalue()
                if user_block is not None:
                    rest = data[USER_BLOCK_BYTES:]
                    data = user_block(rest).ljust(USER_BLOCK_BYTES, b"\0") + rest
                with open(tmp, "wb") as file:
                    file.write(data)
            else:
                with _FailSoftFile(tmp) as file:
                    with h5py.File(file, "w", libver=LIBVER) as f:
                        build(f)
                    if file.error is not None:
                        raise file.error
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, CacheError):
            raise
        raise CacheError(
            f"cannot write feature cache file {final!r} ({exc}); is the disk "
            "full? Nothing was replaced: the cache holds what it held before"
        ) from exc


class _FailSoftFile(io.RawIOBase):
    """A new file that HDF5 writes through, hiding failed writes from it.

    The first failed write (a full disk, a file size limit) is kept in
    ``error`` and every later write is dropped, while HDF5 is told each one
    succeeded: it finishes and closes the file normally (a file whose writes
    failed leaves HDF5 handles that crash the interpreter when freed), and
    the caller raises ``error`` and discards the file.
    """

    def __init__(self, path: str):
        # ``path`` is the temporary file atomic_path made (and locks).
        self._fd = os.open(path, os.O_RDWR | os.O_TRUNC)
        self._pos = 0
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            self._pos = offset
        elif whence == os.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = os.fstat(self._fd).st_size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer) -> int:
        n = os.preadv(self._fd, [buffer], self._pos)
        self._pos += n
        return n

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            done = 0
            try:
                while done < len(view):
                    done += os.pwrite(self._fd, view[done:], self._pos + done)
            except OSError as exc:
                self.error = exc
        self._pos += len(view)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as exc:
                self.error = exc
        return size

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
