"""Caches of format 1 are migrated to format 2 the first time they are used.

A format-1 cache is one main file (``PATH``: keys in insertion order, no
fences, no filter) and complete part files in ``PATH.parts/``. tlsk reads
only format 2: whatever finds a format-1 file at ``PATH`` (the manifest's
reader raises :class:`~tlsk.cache._layout.Format1Error`) calls
:func:`migrate`, then starts again.

The migration holds the writers' lock, which format-1 writers held too, so
no part appears while it runs. Every file's layout is checked before a byte
is written; then each namespace of the main file and its parts becomes one
sorted run, a format-2 manifest replaces the main file in one rename, and
only then are the parts deleted. Killed before the rename, the cache is the
format-1 cache and the new runs are orphans (the next writer's tidy deletes
them); killed after it, the cache is the format-2 cache and the parts are
files nobody reads. What it removes is what tlsk wrote: the main file, once
checked as a tlsk format-1 file, is replaced; in ``PATH.parts/`` only the
files named as tlsk names parts (``PART_RE``) that it migrated are deleted,
and the folder is removed only if that leaves it empty.

A format-1 cache that cannot be written where it lies (a read-only file
system, a folder its user cannot write) is never read in format 1: using it
raises a :class:`CacheError` that says how to migrate it.
:meth:`FeatureCache.info <tlsk.cache.FeatureCache.info>` and
:meth:`~tlsk.cache.FeatureCache.verify`, which never write, read it as it is
(:func:`survey`, :func:`parts`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

import numpy as np

from tlsk._util.files import fsync_dir, locked
from tlsk.cache._layout import (
    FORMAT_VERSION,
    LEGACY_VERSION,
    PART_RE,
    PARTS_SUFFIX,
    CacheError,
    Format1Error,
    check_attrs,
    check_cache_file,
    check_root,
    open_h5,
)
from tlsk.cache._manifest import (
    RUNS_SUFFIX,
    Manifest,
    NamespaceEntry,
    RunRef,
    read_manifest,
    write_manifest,
)
from tlsk.cache._merge import opened_sources, read_keys, union_plan, write_run


def parts(path: str) -> list[str]:
    """The part files of the format-1 cache at ``path``, oldest first."""
    folder = path + PARTS_SUFFIX
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [os.path.join(folder, n) for n in sorted(names) if PART_RE.match(n)]


def migrate(path: str, lock_path: str) -> Manifest:
    """The manifest of the cache at ``path``, a format-1 cache migrated first.

    Takes the writers' lock ``lock_path`` (re-entrant: a writer inside
    ``claim`` holds it already). A cache migrated meanwhile by another
    process is read, not migrated again.
    """
    try:
        check_cache_file(path)
        with locked(lock_path):
            with contextlib.suppress(Format1Error):
                return read_manifest(path)
            return _migrate(path)
    except OSError as exc:
        raise CacheError(
            f"feature cache {path!r} is in format 1, which tlsk reads only once "
            f"it is migrated to format 2, and it cannot be migrated where it lies "
            f"({exc}); run `tlsk cache compact {path}` once as a user who can "
            f"write its folder, or copy it (with {path + PARTS_SUFFIX!r}, if there "
            "is one) to a folder you can write and use the copy"
        ) from None


def survey(path: str) -> tuple[Manifest, list[str]]:
    """What the format-1 cache at ``path`` holds, read as it is; and its parts.

    Each namespace is shown as the one run its migration makes: its
    ``entries`` are the distinct keys of the main file and the parts.
    """
    found = parts(path)
    sources = _sources(path, found)
    namespaces = _namespaces(sources)
    for ns, entry in namespaces.items():
        with opened_sources(sources, ns, entry.fingerprint, entry.dim) as groups:
            keys = [read_keys(group, ref.path) for ref, group in groups]
        entries = len(np.unique(np.concatenate(keys))) if keys else 0
        entry.runs = [RunRef(path, entries, legacy=True)]
    return Manifest(path, LEGACY_VERSION, namespaces), found


def _migrate(path: str) -> Manifest:
    """Rewrite the format-1 cache at ``path`` as format 2; the lock is held."""
    found = parts(path)
    sources = _sources(path, found)
    namespaces = _namespaces(sources)
    for ns, entry in namespaces.items():  # every layout checked before a write
        with opened_sources(sources, ns, entry.fingerprint, entry.dim):
            pass
    folder = os.path.dirname(os.path.abspath(path))
    runs_dir = path + RUNS_SUFFIX
    os.makedirs(runs_dir, exist_ok=True)
    for where in (folder, runs_dir):
        if not os.access(where, os.W_OK):
            raise PermissionError(f"{where!r} is not writable")
    migrated = {}
    for ns, entry in sorted(namespaces.items()):
        with opened_sources(sources, ns, entry.fingerprint, entry.dim) as groups:
            keys, blocks = union_plan(groups)
            run = write_run(runs_dir, entry, keys, blocks, entry.rows_written)
        if run is not None:
            migrated[ns] = dataclasses.replace(entry, runs=[run])
    manifest = write_manifest(Manifest(path, FORMAT_VERSION, migrated))
    for part in found:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
    if found:
        fsync_dir(path + PARTS_SUFFIX)
    with contextlib.suppress(OSError):
        os.rmdir(path + PARTS_SUFFIX)
    return manifest


def _sources(path: str, found: list[str]) -> list[RunRef]:
    return [RunRef(p, None, legacy=True) for p in [path, *found] if os.path.exists(p)]


def _namespaces(sources: list[RunRef]) -> dict[str, NamespaceEntry]:
    """Each namespace of the sources, its ``rows_written`` summed over them."""
    found: dict[str, NamespaceEntry] = {}
    for source in sources:
        with open_h5(source.path) as f:
            _, ns_ids = check_root(f, source.path, ("legacy",))
            for ns in ns_ids:
                attrs = check_attrs(f["namespaces"][ns], source.path, ns)
                entry = found.setdefault(
                    ns, NamespaceEntry(ns, attrs.fingerprint, attrs.dim, 0, [])
                )
                entry.rows_written += attrs.rows_written
    return found
