"""Writing one HDF5 file of the cache, atomically, through :mod:`tlsk._files`."""

from __future__ import annotations

import gc
import io
import traceback
from collections.abc import Callable

import h5py

from tlsk._files import atomic_path
from tlsk.cache._layout import CacheError

# Run files use the newest HDF5 format: a dataset of fixed shape then indexes
# its chunks with a "fixed array", found in one step rather than a B-tree walk.
LIBVER = ("v110", "latest")


def write_h5(
    final: str, build: Callable[[h5py.File], None], *, in_memory: bool = False
) -> None:
    """Build an HDF5 file with ``build(file)`` and make it ``final``, atomically.

    ``in_memory`` (small files) builds it in memory and writes its bytes with
    Python: a full disk is then a plain OSError, never a failed HDF5 write,
    after which h5py may crash the process when it exits. Either failure is a
    :class:`CacheError` that says nothing was replaced.
    """
    try:
        with atomic_path(final) as tmp:
            if in_memory:
                buffer = io.BytesIO()
                with h5py.File(buffer, "w", libver=LIBVER) as f:
                    build(f)
                with open(tmp, "xb") as file:
                    file.write(buffer.getbuffer())
            else:
                with h5py.File(tmp, "w", libver=LIBVER) as f:
                    build(f)
                    f.flush()
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, CacheError):
            raise
        # HDF5 reports a failed write (a full disk, a file size limit) as
        # RuntimeError or OSError; either way nothing was replaced. Its
        # objects must go now, while HDF5 can still close them: freed at
        # exit, the handles of a failed file crash the interpreter.
        traceback.clear_frames(exc.__traceback__)
        gc.collect()
        raise CacheError(
            f"cannot write feature cache file {final!r} ({exc}); is the disk "
            "full? Nothing was replaced: the cache holds what it held before"
        ) from exc
