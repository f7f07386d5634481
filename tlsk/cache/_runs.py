"""Runs: immutable files of sorted keys and their vectors, and their indexes.

A run file holds, per namespace, the keys in ascending byte order (unique),
the vectors in the same order, and the *fences*: every ``FENCE_ROWS``-th key.
A run is written once, complete, and never changed; merging runs writes a new
one. Its in-memory index (:class:`RunIndex`) is the fences, 32 bytes per
``FENCE_ROWS`` keys, and its Bloom filter (:mod:`tlsk.cache._bloom`). Finding
k keys reads, for each key the filter lets through, its fence block (one
2 KiB chunk of keys), then the vectors: O(k log N), whatever the run holds.

A namespace small enough to keep whole in memory (``resident``) is read once
and served from memory while its runs stay published: the repeated
transforms of a GridSearchCV neither open nor read a file again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import h5py
import numpy as np

from tlsk.cache._bloom import build as build_bloom
from tlsk.cache._bloom import may_hold
from tlsk.cache._keys import KEY_BYTES, KEY_DTYPE, as_rows, from_rows
from tlsk.cache._layout import FENCE_ROWS, DataNamespace, read, read_blocks, read_rows

# Vectors are chunked in about 32 KiB: a lookup reads whole chunks (each one
# checksum-verified), so smaller chunks read less per key; larger ones read
# faster in sequence (merges); benchmarks/README.md says how it was chosen.
_VECTOR_CHUNK_BYTES = 1 << 15
# Runs up to this many keys keep all their keys in memory (128 KiB): smaller
# than a fence lookup's reads would be.
SMALL_RUN_ROWS = 4096


def write_namespace(
    namespaces: h5py.Group,
    ns: str,
    fingerprint: str,
    dim: int,
    rows_written: int,
    keys: np.ndarray,
    vector_blocks: Iterable[np.ndarray],
) -> None:
    """Write one namespace of a run: ``keys`` sorted and unique, vectors in order."""
    n = len(keys)
    group = namespaces.create_group(ns)
    group.attrs["fingerprint"] = fingerprint
    group.attrs["dim"] = np.int64(dim)
    group.attrs["rows_written"] = np.int64(rows_written)
    fences = keys[::FENCE_ROWS]

    def dataset(name, shape, dtype, chunk_rows, data=None):
        return group.create_dataset(
            name,
            shape=shape,
            dtype=dtype,
            data=data,
            chunks=(max(1, min(chunk_rows, shape[0])), shape[1]),
            fletcher32=True,
        )

    dataset("keys", (n, KEY_BYTES), np.uint8, FENCE_ROWS, as_rows(keys))
    dataset("fences", (len(fences), KEY_BYTES), np.uint8, 1024, as_rows(fences))
    bloom = build_bloom(keys)
    group.create_dataset(
        "bloom", data=bloom, chunks=(min(len(bloom), 1 << 16),), fletcher32=True
    )
    vectors = dataset("vectors", (n, dim), np.float32, _VECTOR_CHUNK_BYTES // (4 * dim))
    start = 0
    for block in vector_blocks:
        vectors[start : start + len(block)] = block
        start += len(block)
    if start != n:
        raise AssertionError(f"{start} vectors written for {n} keys")


@dataclasses.dataclass
class RunIndex:
    """What a reader keeps of one namespace of one immutable file."""

    n: int
    fences: np.ndarray | None  # S32, None when ``keys`` is kept whole
    keys: np.ndarray | None = None  # S32, sorted
    vectors: np.ndarray | None = None  # resident copy, row order of the file
    provisional: bool = False  # keys known from the writer, file not read yet
    bloom: np.ndarray | None = None  # with fences: the run's Bloom filter

    @classmethod
    def load(cls, group: DataNamespace, path: str, resident: bool) -> RunIndex:
        if resident or group.n <= SMALL_RUN_ROWS:
            index = cls(group.n, None, from_rows(read(group.keys, slice(None), path)))
        else:
            index = cls(group.n, from_rows(read(group.fences, slice(None), path)))
            index.bloom = read(group.bloom, slice(None), path)
        if resident:
            index.vectors = np.empty((group.n, group.dim), np.float32)
            for start, block in read_blocks(group.vectors, path):
                index.vectors[start : start + len(block)] = block
        return index

    @property
    def memory_bytes(self) -> int:
        arrays = (self.fences, self.bloom, self.keys, self.vectors)
        return sum(a.nbytes for a in arrays if a is not None)

    def rows_of(
        self, query: np.ndarray, group: DataNamespace | None, path: str
    ) -> np.ndarray:
        """The row of each key of ``query`` (S32, sorted), -1 where absent."""
        if self.keys is not None:
            if not self.n:
                return np.full(len(query), -1, np.int64)
            position = np.searchsorted(self.keys, query)
            clipped = np.minimum(position, self.n - 1)
            hit = self.keys[clipped] == query
            return np.where(hit, clipped, -1).astype(np.int64)
        return self._rows_through_fences(query, group, path)

    def may_hold(self, query: np.ndarray) -> np.ndarray | None:
        """False for keys this run cannot hold (None: no filter, ask the file)."""
        return None if self.bloom is None else may_hold(self.bloom, query)

    def _rows_through_fences(self, query, group, path):
        rows = np.full(len(query), -1, np.int64)
        block = np.searchsorted(self.fences, query, side="right") - 1
        block[~self.may_hold(query)] = -1  # not here: no block to read
        inside = np.flatnonzero(block >= 0)
        if not len(inside):
            return rows
        blocks, which = np.unique(block[inside], return_inverse=True)
        wanted = (blocks[:, None] * FENCE_ROWS + np.arange(FENCE_ROWS)).ravel()
        wanted = wanted[wanted < self.n]  # only the run's last block is short
        table = np.zeros(len(blocks) * FENCE_ROWS, KEY_DTYPE)
        table[: len(wanted)] = from_rows(read_rows(group.keys, wanted, path))
        equal = table.reshape(len(blocks), FENCE_ROWS)[which] == query[inside, None]
        offset = equal.argmax(axis=1)
        found = equal[np.arange(len(inside)), offset]
        rows[inside[found]] = blocks[which[found]] * FENCE_ROWS + offset[found]
        return rows

    def vectors_at(
        self, rows: np.ndarray, group: DataNamespace | None, path: str
    ) -> np.ndarray:
        """The vectors of ``rows`` (any order)."""
        if self.vectors is not None:
            return self.vectors[rows]
        order = np.argsort(rows)
        out = np.empty((len(rows), group.dim), np.float32)
        out[order] = read_rows(group.vectors, rows[order], path)
        return out
