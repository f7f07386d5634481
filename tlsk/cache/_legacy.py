"""Caches of format version 1: read as they are, migrated on the first write.

A version-1 cache is one main file (``PATH``, keys in insertion order) and
pending part files in ``PATH.parts/``. Readers index it by sorting its keys in
memory (as version 1 itself did, at about 40 bytes a key). The first writer
(an append, a join, a prune, ``tlsk cache compact``) migrates it under the
write lock: every namespace of the main file and the parts becomes one sorted
run, then a version-2 manifest replaces the main file in one rename, and only
then are the parts deleted. Killed before the rename, the cache is still the
version-1 cache (the new runs are orphans, deleted later); after it, the
parts are leftovers nobody reads.
"""

from __future__ import annotations

import contextlib
import os

from tlsk._util.files import fsync_dir
from tlsk.cache._layout import (
    FORMAT_VERSION,
    PART_RE,
    PARTS_SUFFIX,
    check_attrs,
    check_root,
    open_h5,
)
from tlsk.cache._manifest import Manifest, NamespaceEntry, RunRef, write_manifest
from tlsk.cache._merge import opened_sources, union_plan, write_run


def legacy_parts(path: str) -> list[str]:
    """The version-1 part files of the cache at ``path``, oldest first."""
    folder = path + PARTS_SUFFIX
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [os.path.join(folder, n) for n in sorted(names) if PART_RE.match(n)]


def migrate(manifest):
    """Rewrite the version-1 cache ``manifest`` describes as version 2.

    The caller holds the write lock. Returns the new manifest.
    """
    path = manifest.path
    parts = legacy_parts(path)
    sources = [RunRef(p, None, legacy=True) for p in [path, *parts]]
    sources = [s for s in sources if os.path.exists(s.path)]
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
    namespaces = {}
    for ns, entry in sorted(found.items()):
        with opened_sources(sources, ns, entry.fingerprint, entry.dim) as groups:
            keys, blocks = union_plan(groups)
            run = write_run(manifest.runs_dir, entry, keys, blocks, entry.rows_written)
        if run is not None:
            entry.runs = [run]
            namespaces[ns] = entry
    migrated = write_manifest(Manifest(path, FORMAT_VERSION, namespaces))
    for part in parts:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
    if parts:
        fsync_dir(path + PARTS_SUFFIX)
    with contextlib.suppress(OSError):
        os.rmdir(path + PARTS_SUFFIX)
    return migrated
