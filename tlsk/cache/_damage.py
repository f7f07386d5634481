"""Damaged files: moved aside (never reused, never overwritten), then unpublished.

When a lookup or a writer meets a damaged file, it takes the write lock,
checks that the file is still the one it found damaged (a reader takes no
lock: the file may have been merged or set aside since), renames it to
``<name>.damaged-<timestamp>`` (kept for the user to inspect or delete) and,
for a run, publishes a manifest without it. The vectors it held are computed
again. Only the cache's own files are moved: its runs, and its main file if
it shows tlsk's marks (:func:`tlsk.cache._layout.foreign_reason`); a shard
given to ``add_shards`` is reported, not touched.
"""

from __future__ import annotations

import itertools
import os
import time
import warnings

from tlsk._util.files import file_identity, fsync_dir, locked
from tlsk.cache._layout import (
    PARTS_SUFFIX,
    RUNS_SUFFIX,
    CacheWarning,
    DamagedError,
    foreign_reason,
)
from tlsk.cache._manifest import read_manifest, write_manifest

_ATTEMPTS = 4


def without_damaged_files(cache_path: str, lock_path: str, operation):
    """Run ``operation()``; a damaged file of the cache is moved aside, then again."""
    for _ in range(_ATTEMPTS):
        try:
            return operation()
        except DamagedError as err:
            if not set_aside(cache_path, lock_path, err):
                raise
    return operation()


def _owned(cache_path: str, path: str) -> bool:
    """Whether ``path`` is the cache's own: its runs and parts, or its main file.

    The main file is the cache's only if it shows tlsk's marks: the path a
    user names as the cache may hold anything, and only a tlsk file is moved.
    """
    folder = os.path.dirname(os.path.abspath(path))
    cache_path = os.path.abspath(cache_path)
    if os.path.abspath(path) == cache_path:
        return foreign_reason(path) is None
    return folder in (cache_path + RUNS_SUFFIX, cache_path + PARTS_SUFFIX)


def set_aside(cache_path: str, lock_path: str, err: DamagedError) -> bool:
    """Move the damaged file aside; True if the operation may be tried again."""
    path = err.path
    if not _owned(cache_path, path):
        return False
    with locked(lock_path):
        identity = file_identity(path)
        if identity is None:
            return True  # gone meanwhile (merged, set aside): look again
        if err.identity is not None and identity != err.identity:
            return True  # replaced since: look again
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = f"{path}.damaged-{stamp}"
        for n in itertools.count(2):
            if not os.path.lexists(aside):
                break
            aside = f"{path}.damaged-{stamp}-{n}"
        try:
            os.rename(path, aside)
            fsync_dir(os.path.dirname(path))
        except OSError:
            return False  # a read-only folder, say: report the damage
        if os.path.dirname(os.path.abspath(path)) == os.path.abspath(
            cache_path + RUNS_SUFFIX
        ):
            _unpublish(cache_path, path)
    warnings.warn(
        f"feature cache {err.path!r} is damaged ({err.reason}); moved it to "
        f"{aside!r} (delete that once inspected): the cache goes on without "
        "it, and the vectors it held will be computed again",
        CacheWarning,
        stacklevel=5,
    )
    return True


def _unpublish(cache_path: str, run_path: str) -> None:
    run_path = os.path.abspath(run_path)
    manifest = read_manifest(cache_path)
    for ns, entry in manifest.namespaces.items():
        kept = [r for r in entry.runs if os.path.abspath(r.path) != run_path]
        if len(kept) != len(entry.runs):
            entry.runs = kept
            write_manifest(manifest.with_namespace(entry, ns))
            return
