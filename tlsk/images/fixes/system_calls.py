"""Every change the fixes make to the file system, one system call a function,
so that a test can stop the process before any of them
(``tests/_fixes_worker.py`` kills a child before each call in turn).

Callers name them through this module (``system_calls.link(...)``), never
import them by name: a function replaced here is then the one every caller
calls."""

from __future__ import annotations

import os

__all__ = [
    "READ_CHUNK",
    "copy",
    "link",
    "mkdir",
    "rename",
    "rmdir",
    "truncate",
    "unlink",
    "write_line",
]

READ_CHUNK = 1 << 20


def write_line(fd, data):
    """Append ``data`` and make it durable before anything it describes happens."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def truncate(path, length):
    """Cut a torn last line (a kill while it was written) off the journal."""
    os.truncate(path, length)
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mkdir(path):
    os.mkdir(path)


def rmdir(path):
    os.rmdir(path)


def link(source, destination):
    os.link(source, destination, follow_symlinks=False)


def rename(source, destination):
    os.rename(source, destination)


def unlink(path):
    os.unlink(path)


def copy(source, temporary):
    """Copy ``source`` to a new file ``temporary``, fsynced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o666)
    try:
        with open(source, "rb") as file:
            while chunk := file.read(READ_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
