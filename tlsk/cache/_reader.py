"""Lock-free lookups: a snapshot of the manifest, then the runs it names.

A reader takes no lock. It reads the manifest (again only when the file's
identity changed), then opens the runs it names, oldest first, each for the
keys still missing. A run is never changed once published, so its index is
kept by path for as long as the manifest names it. A run merged away and
deleted after the manifest was read is missing when opened: the lookup starts
again from the new manifest, which names the merged run.

A reader knows format 2 only: a format-1 cache makes it raise
:class:`~tlsk.cache._layout.Format1Error`, holding no lock, and its caller
migrates the cache (:mod:`tlsk.cache._migrate`) and asks again.
"""

from __future__ import annotations

import os
import threading

import h5py
import numpy as np

from tlsk._util.files import file_identity
from tlsk._util.memo import Memo
from tlsk.cache._keys import check_keys
from tlsk.cache._layout import (
    ROLE_RUN,
    CacheError,
    DataNamespace,
    Vanished,
    check_data_namespace,
    check_root,
    open_h5,
    refused,
)
from tlsk.cache._manifest import Manifest, RunRef, read_manifest
from tlsk.cache._runs import RunIndex

# A reader keeps a namespace's vectors in memory up to this size (all its
# runs): the fifty transforms of a GridSearchCV then read no file.
MEMORY_COPY_BYTES = 1 << 26
_RETRIES = 50


class Reader:
    """Lookups in one namespace of one cache; share it between lookups."""

    def __init__(self, path: str, ns: str, fp_json: str, dim: int):
        self.path = os.path.abspath(path)  # shared readers outlive a chdir
        self.ns, self.fp_json, self.dim = ns, fp_json, dim
        self._manifest: Manifest | None = None
        self._indexes: dict[str, RunIndex] = {}
        self._namespace_fits = False
        self.lock = threading.Lock()  # for readers shared between threads

    @property
    def memory_bytes(self) -> int:
        """Bytes of index (and resident vectors) this reader keeps."""
        return sum(index.memory_bytes for index in self._indexes.values())

    def remember(self, path: str, keys: np.ndarray) -> None:
        """Index a run this process just wrote by its (sorted) keys.

        A lookup then opens it only for the keys it holds: a writer's next
        batch, all new keys, does not open it. Its vectors are read from the
        file when asked for (checksums and all), then kept as any run's.
        """
        with self.lock:
            self._indexes[path] = RunIndex(len(keys), None, keys, provisional=True)

    def forget(self) -> None:
        self._manifest, self._indexes = None, {}

    def lookup(self, keys) -> tuple[np.ndarray, np.ndarray]:
        query = check_keys(keys)
        unique, inverse = np.unique(query, return_inverse=True)
        for _ in range(_RETRIES):
            try:
                found, vectors = self._find(unique)
                break
            except Vanished:
                self._manifest = None
        else:
            raise CacheError(
                f"feature cache {self.path!r} kept changing during {_RETRIES} "
                "read attempts"
            )
        return found[inverse], vectors[inverse]

    def runs(self) -> list[RunRef]:
        """The runs of the namespace now, oldest first."""
        identity = file_identity(self.path)
        if self._manifest is None or identity != self._manifest.identity:
            self._manifest = read_manifest(self.path)
        manifest = self._manifest
        entry = manifest.namespaces.get(self.ns)
        if entry is not None:
            if entry.fingerprint != self.fp_json:
                raise refused(
                    self.path, f"namespace {self.ns} stores another fingerprint"
                )
            if entry.dim != self.dim:
                raise CacheError(
                    f"feature cache {self.path!r}: namespace {self.ns} holds "
                    f"vectors of dim {entry.dim}; requested dim={self.dim}"
                )
        return list(entry.runs) if entry is not None else []

    def _find(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        runs = self.runs()
        # Vectors are kept in memory only when the whole namespace fits: a
        # larger one's first lookup then reads what it asks for, not 64 MB.
        total = sum(run.rows for run in runs)
        self._namespace_fits = total * (4 * self.dim + 32) <= MEMORY_COPY_BYTES
        live = {run.path for run in runs}
        self._indexes = {p: ix for p, ix in self._indexes.items() if p in live}
        found = np.zeros(len(query), dtype=bool)
        vectors = np.zeros((len(query), self.dim), dtype=np.float32)
        pending = np.arange(len(query))
        for run in runs:
            if not len(pending):
                break
            index = self._indexes.get(run.path)
            rows = None
            if index is not None and index.bloom is not None:
                if not index.may_hold(query[pending]).any():
                    continue  # its filter rules every key out: not opened
            if index is not None and index.keys is not None:
                # Its keys are in memory: a run without any of them is not
                # opened, one whose vectors are in memory neither.
                rows = index.rows_of(query[pending], None, run.path)
                if not (rows >= 0).any():
                    continue
                if index.vectors is not None:
                    pending = self._take(
                        index, None, run.path, query, pending, found, vectors, rows
                    )
                    continue
            try:
                opened = open_h5(run.path)
            except FileNotFoundError:
                raise Vanished from None
            with opened as f:
                group = self._group(f, run)
                if index is None or index.provisional:
                    index = self._indexes[run.path] = RunIndex.load(
                        group, run.path, self._resident(group)
                    )
                pending = self._take(
                    index, group, run.path, query, pending, found, vectors, rows
                )
        return found, vectors

    def _kept_bytes(self) -> int:
        return sum(
            ix.vectors.nbytes for ix in self._indexes.values() if ix.vectors is not None
        )

    def _resident(self, group: DataNamespace) -> bool:
        if not self._namespace_fits:
            return False
        return self._kept_bytes() + group.n * (4 * group.dim + 32) <= MEMORY_COPY_BYTES

    def _group(self, f: h5py.File, run: RunRef) -> DataNamespace:
        _, ns_ids = check_root(f, run.path, (ROLE_RUN,))
        if self.ns not in ns_ids:
            raise refused(run.path, f"it lacks namespace {self.ns}")
        group = check_data_namespace(f, run.path, self.ns)
        if group.fingerprint != self.fp_json or group.dim != self.dim:
            raise refused(
                run.path, f"namespace {self.ns} stores another fingerprint or dim"
            )
        if group.n != run.rows:
            raise refused(
                run.path, f"it holds {group.n} rows where the manifest says {run.rows}"
            )
        return group

    @staticmethod
    def _take(index, group, path, query, pending, found, vectors, rows=None):
        if rows is None:
            rows = index.rows_of(query[pending], group, path)
        hit = rows >= 0
        if hit.any():
            vectors[pending[hit]] = index.vectors_at(rows[hit], group, path)
            found[pending[hit]] = True
        return pending[~hit]


# Readers kept across lookups, so that the index of an unchanged cache is read
# once per process, not once per transform. A few at most.
_READERS = Memo("feature-cache readers", max_entries=4)


def shared_reader(path: str, ns: str, fp_json: str, dim: int) -> Reader:
    return _READERS.get_or_build(
        (os.path.abspath(path), fp_json, dim), lambda: Reader(path, ns, fp_json, dim)
    )
