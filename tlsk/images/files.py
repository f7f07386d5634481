"""Opening an image file safely: a regular file of bounded size, read in chunks.

The one place tlsk opens an image file. A FIFO, a device, a socket or a
directory in an image's place is refused before anything is read (and
without waiting for a writer), and a file larger than :data:`MAX_FILE_BYTES`
is refused, each with an :class:`~tlsk.images.errors.ImageError` naming it.
"""

import contextlib
import os
import stat

from tlsk.images.errors import ImageError

__all__ = [
    "CHUNK_BYTES",
    "MAX_FILE_BYTES",
    "open_regular_file",
    "read_all",
    "read_chunk",
    "too_large",
]

# The largest file read as one image (1 GiB). An image of DEFAULT_MAX_PIXELS
# stored uncompressed at the most bytes a pixel any mode here takes (4: RGBA,
# CMYK, 32-bit gray, float) is 358 MB, so no image tlsk decodes by default
# needs more; a larger file is no photograph (a disk image named .jpg, a
# sparse file), and hashing it whole would cost minutes for nothing. Read at
# each call: raise it to read larger trusted files.
MAX_FILE_BYTES: int = 1 << 30

CHUNK_BYTES = 1 << 20  # files are hashed and read in chunks of this
# Opening a FIFO for reading waits for a writer; O_NONBLOCK makes the open
# return at once, so the descriptor can be checked before anything is read.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def read_all(file, label, size):
    """The bytes of an open file of ``size`` bytes (fstat), at most MAX_FILE_BYTES."""
    # One byte more than fstat said: a file that grows meanwhile is read on,
    # chunk by chunk, to its end or to the bound.
    chunks, n_bytes, step = [], 0, size + 1
    while True:
        chunk = read_chunk(file, label, step)
        n_bytes += len(chunk)
        if n_bytes > MAX_FILE_BYTES:
            raise too_large(label, f"at least {n_bytes}")
        chunks.append(chunk)
        if len(chunk) < step:  # a buffered read is short only at the end
            return b"".join(chunks)
        step = CHUNK_BYTES


def read_chunk(file, label, size):
    try:
        return file.read(size)
    except OSError as err:  # EIO from a failing disk, a network file system
        raise ImageError(
            label, f"cannot read the file ({err.strerror or err})"
        ) from err


def too_large(label, n_bytes):
    return ImageError(
        label,
        f"larger than the {MAX_FILE_BYTES} bytes an image file may have "
        f"(tlsk.images.files.MAX_FILE_BYTES): {n_bytes} bytes; save the image "
        "compressed (PNG, JPEG) or raise tlsk.images.files.MAX_FILE_BYTES "
        "if you trust this file",
    )


def _special_kind(mode):
    """What a file that is not regular is, for an error message."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _check_regular(label, result):
    """Refuse what ``os.stat`` / ``os.fstat`` says is no regular file or too large."""
    if stat.S_ISDIR(result.st_mode):
        raise ImageError(label, "is a directory, not an image file")
    if not stat.S_ISREG(result.st_mode):
        raise ImageError(
            label,
            f"not a regular file: {_special_kind(result.st_mode)}; tlsk reads "
            "images from regular files only",
        )
    if result.st_size > MAX_FILE_BYTES:
        raise too_large(label, result.st_size)


def _read_error(label, path, err):
    """The :class:`ImageError` of an ``OSError`` raised opening or reading a file."""
    if isinstance(err, FileNotFoundError):
        return ImageError(label, "no such file; check the path")
    if isinstance(err, IsADirectoryError):
        return ImageError(label, "is a directory, not an image file")
    if isinstance(err, PermissionError):
        # Windows reports a directory as PermissionError.
        if os.path.isdir(path):
            return ImageError(label, "is a directory, not an image file")
        return ImageError(label, "permission denied")
    return ImageError(label, f"cannot read the file ({err.strerror or err})")


@contextlib.contextmanager
def open_regular_file(path, label=None):
    """Open an image file for reading, if it is a regular file tlsk may read.

    The one place tlsk opens an image file. Only a regular file (after
    following symbolic links) of at most :data:`MAX_FILE_BYTES` is opened:
    a FIFO would block the reader until someone writes to it, a device
    (``/dev/zero``) never ends. ``os.stat`` decides before the open; the
    open itself does not block (``O_NONBLOCK``), and ``os.fstat`` of the
    opened descriptor decides again, so a FIFO put in the file's place
    between the two cannot hang the reader.

    Parameters
    ----------
    path : str
    label : str, optional
        What errors name (default: ``path``).

    Yields
    ------
    file : binary file object
        Buffered, blocking, at offset 0; closed on leaving the block.

    Raises
    ------
    ImageError
        Naming ``label``: no such file, a directory, not a regular file (a
        FIFO, a device, a socket), larger than ``MAX_FILE_BYTES``, or
        unreadable.
    """
    label = path if label is None else label
    try:
        _check_regular(label, os.stat(path))
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as err:
        raise _read_error(label, path, err) from err
    try:
        _check_regular(label, os.fstat(fd))
        os.set_blocking(fd, True)
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with file:
        yield file
