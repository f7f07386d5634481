"""PINNED COPY of tlsk/cache.py at format 1 (commit 2720b36), for benchmarks.

A vector costs seconds to compute and never changes for a given image and
configuration, so it is stored once and found again by the SHA-256 digest of
the image content (the *key*) inside a *namespace*. A namespace is identified
by a *fingerprint*: a JSON-serialisable dict of everything that changes the
output (weights hash, layer, pooling, ...). Its id is the SHA-256 hex digest of
the canonical JSON, ``json.dumps(fp, sort_keys=True, separators=(",", ":"))``.
A vector made under one fingerprint is never returned under another. This
module knows nothing of Keras, images or VGG16.

On-disk layout
--------------
The main file ``PATH`` and every part or shard file share one layout, readable
with plain h5py::

    /                         attrs: format="tlsk-feature-cache", format_version=1
    /namespaces/              group
    /namespaces/<ns_id>/      attrs: fingerprint=<canonical JSON str>, dim=<int>,
                                     rows_written=<int: rows ever computed into
                                     this namespace, duplicates included>
        keys     (n, 32) uint8    raw 32-byte SHA-256 digests, one per row
        vectors  (n, dim) float32 row i belongs to keys[i]

``<ns_id>`` is the 64-character SHA-256 hex digest of the ``fingerprint``
attribute. Both datasets are chunked, resizable along the first axis and
protected by the fletcher32 checksum filter, so flipped bytes are detected on
read. Keys are stored as ``uint8`` rather than numpy ``'S32'``, which would
strip trailing NUL bytes. Only hard links are accepted; a file holding soft or
external links, another ``format``, datasets of the wrong dtype or rank, keys and
vectors of different lengths, or shapes larger than the file could hold, is
refused with a :class:`CacheError` that names it.

Beside the main file live ``PATH + ".parts/"`` (complete part files, named
``part-<time_ns>-<pid>-<token>.h5``) and ``PATH + ".lock"`` (an empty file, only
ever locked with ``fcntl.flock``). A temporary file is named
``.tmp-<final name>-<16 hex digits>`` and lives in the folder of the file it
will replace.

Crash and concurrency protocol
------------------------------
HDF5 files are not safe to modify in place under ``kill -9``, so no file that
readers may see is ever opened for writing. Every write builds a temporary
file in the destination folder, flushes, closes and fsyncs it, moves it into
place with ``os.replace`` and fsyncs the folder: each file is either absent, or
old, or new, and always complete.

* **Writing.** Every write happens while holding the exclusive ``flock`` on
  ``PATH.lock``; the kernel drops it when a process dies. A writer appends each
  batch as one new part file.
* **Consolidating.** When a writing session ends (also on an exception), the
  writer takes the lock, deletes stale temporary files (any temporary file seen
  while holding the lock belongs to a dead process), copies the main file to a
  temporary file, appends the parts' new keys and vectors (deduplicated against
  the main file and among the parts), adds the parts' ``rows_written``, fsyncs,
  replaces the main file, fsyncs the folder and only then deletes the merged
  parts. Killed anywhere, the main file is old or new and the parts remain
  until deleted. A part still present after its merge is harmless: a key always
  maps to the same vector and reads deduplicate; only ``rows_written`` may then
  count that batch twice.
* **Pruning** and **joining shards** are consolidations too: under the lock,
  one replace of the main file (pruning builds a fresh file without the
  namespace, as HDF5 never gives back the space of deleted objects).
* **Reading.** Reads take no lock: list the parts, open the main file, open the
  parts. An open file stays readable after it is replaced or unlinked, so a
  reader sees a consistent snapshot; if a part vanished before it could be
  opened (someone merged it), the read starts again and finds it in the new
  main file.
* **Computing once.** Inside :meth:`CacheWriter.claim` a process holds the
  lock, so :meth:`CacheWriter.lookup` sees every part written by anyone so far:
  two processes sharing a cache compute each key once.
* **A damaged file** (truncated, garbage, a checksum that fails) is never
  overwritten and never reused. When a lookup or a writer meets one, it takes
  the lock, checks that the file is still the one it found damaged, renames it
  to ``<name>.damaged-<timestamp>`` (kept for the user to inspect or delete),
  warns with a :class:`CacheWarning` naming both names, and goes on without
  it: the vectors it held are computed again. :meth:`FeatureCache.info`,
  :meth:`~FeatureCache.verify`, :meth:`~FeatureCache.prune` and
  :meth:`~FeatureCache.add_shards` only report it (:class:`CacheError`). A
  *refused* file (another layout, links, absurd shapes) may be someone else's
  data: it is left where it is and every use raises :class:`CacheError`.
* **Scale-out.** Workers on other machines each write their own cache file (a
  *shard*, same layout) with their own :class:`FeatureCache`;
  :meth:`FeatureCache.add_shards` joins complete shards into the cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gc
import hashlib
import io
import itertools
import json
import os
import re
import secrets
import shutil
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import h5py
import numpy as np

__all__ = [
    "CacheError",
    "CacheInfo",
    "CacheWarning",
    "CacheWriter",
    "FeatureCache",
    "NamespaceInfo",
    "namespace_id",
]

FORMAT = "tlsk-feature-cache"
FORMAT_VERSION = 1
KEY_BYTES = 32

_MAX_DIM = 1 << 20
_TMP_PREFIX = ".tmp-"
_PART_RE = re.compile(r"^part-\d{20}-\d+-[0-9a-f]{8}\.h5$")
_NS_RE = re.compile(r"^[0-9a-f]{64}$")
# 64 KiB chunks: chunks are allocated whole, so a small cache stays small, and a
# lookup of a few rows reads (and checksums) little; sequential reads stay fast.
_CHUNK_BYTES = 1 << 16
# Reads go block by block so that memory stays flat however large the file.
_READ_BLOCK_BYTES = 1 << 25
_READ_RETRIES = 50
# A namespace up to this size is kept in memory by a reader between lookups.
_MEMORY_COPY_BYTES = 1 << 26
_KEY_VOID = np.dtype((np.void, KEY_BYTES))
# Damaged files one operation may move aside before it gives up.
_SET_ASIDE_ATTEMPTS = 4


class CacheError(RuntimeError):
    """A feature cache file is damaged, refused, or inconsistent with a request."""


class CacheWarning(UserWarning):
    """A damaged cache file was moved aside; its vectors will be computed again."""


class _DamagedError(CacheError):
    """A damaged file, with what identifies it, so that it can be moved aside.

    ``signature`` is the file's ``_stat_signature`` when it was found damaged
    (None if unknown): a file replaced since then is not the damaged one.
    """

    def __init__(self, path: str, reason: Any, signature: tuple | None):
        super().__init__(
            f"feature cache {path!r} is damaged ({reason}); move it away or "
            "delete it and tlsk will rebuild it"
        )
        self.path, self.reason, self.signature = path, str(reason), signature

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.signature))


def namespace_id(fingerprint: Mapping) -> str:
    """Return the namespace id of a fingerprint.

    Parameters
    ----------
    fingerprint : Mapping
        JSON-serialisable description of everything that changes the vectors.

    Returns
    -------
    str
        SHA-256 hex digest of ``json.dumps(fingerprint, sort_keys=True,
        separators=(",", ":"))``.
    """
    return _sha256_hex(_canonical_json(fingerprint))


@dataclasses.dataclass(frozen=True)
class NamespaceInfo:
    """What one namespace holds (see :meth:`FeatureCache.info`)."""

    id: str
    fingerprint: dict
    dim: int
    entries: int
    rows_written: int


@dataclasses.dataclass(frozen=True)
class CacheInfo:
    """Summary of a feature cache, main file and pending parts together."""

    path: str
    size_bytes: int
    pending_parts: int
    namespaces: list[NamespaceInfo]


# --------------------------------------------------------------------------
# Small helpers: names, arguments, durability, locking.


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical_json(fingerprint: Mapping) -> str:
    if not isinstance(fingerprint, Mapping):
        raise TypeError(
            "fingerprint must be a JSON-serialisable dict; "
            f"received {type(fingerprint).__name__}"
        )
    try:
        return json.dumps(
            dict(fingerprint), sort_keys=True, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"fingerprint must be JSON-serialisable; {exc}") from None


def _check_dim(dim: Any) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"dim must be an int; received {dim!r}")
    if not 1 <= dim <= _MAX_DIM:
        raise ValueError(f"dim must be between 1 and {_MAX_DIM}; received {dim}")
    return int(dim)


def _check_keys(keys: Iterable) -> list[bytes]:
    if isinstance(keys, (str, bytes, bytearray)):
        raise TypeError(
            "keys must be a sequence of 32-byte digests, not a single "
            f"{type(keys).__name__}"
        )
    keys = list(keys)
    # The common case, checked at C speed: a list of 32-byte bytes objects.
    if set(map(type, keys)) <= {bytes} and set(map(len, keys)) <= {KEY_BYTES}:
        return keys
    out = []
    for i, key in enumerate(keys):
        if not (isinstance(key, bytes) and len(key) == KEY_BYTES):
            original = key
            try:
                key = bytes(memoryview(key)) if not isinstance(key, str) else None
            except TypeError:
                key = None
            if key is None or len(key) != KEY_BYTES:
                raise ValueError(
                    f"keys must be {KEY_BYTES}-byte SHA-256 digests (bytes); "
                    f"received {original!r} at position {i}"
                )
        out.append(key)
    return out


def _keys_to_array(keys: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)


def _array_to_keys(array: np.ndarray) -> list[bytes]:
    # A void view turns each row into one bytes object without stripping NULs.
    return np.ascontiguousarray(array).view(_KEY_VOID).ravel().tolist()


def _row_index(keys: list[bytes]) -> dict[bytes, int]:
    return dict(zip(keys, range(len(keys)), strict=True))


def _chunk_rows(row_bytes: int, rows: int | None = None) -> int:
    best = max(1, _CHUNK_BYTES // row_bytes)
    return best if rows is None else max(1, min(best, rows))


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    # Makes the rename itself durable, not only the file's content.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(final: str) -> str:
    head, tail = os.path.split(final)
    return os.path.join(head, f"{_TMP_PREFIX}{tail}-{secrets.token_hex(8)}")


def _write_atomically(
    final: str,
    build: Callable[[h5py.File], None],
    start_from: str | None = None,
    in_memory: bool = False,
) -> None:
    """Build an HDF5 file in a temporary file, then move it over ``final``.

    ``in_memory`` (small files: a batch's part) builds it in memory and writes
    its bytes with Python: a full disk is then a plain OSError, never a failed
    HDF5 write, after which h5py may crash the process when it exits.
    """
    tmp = _temp_name(final)
    try:
        if in_memory:
            buffer = io.BytesIO()
            with h5py.File(buffer, "w") as f:
                f.attrs["format"] = FORMAT
                f.attrs["format_version"] = np.int64(FORMAT_VERSION)
                f.create_group("namespaces")
                build(f)
            with open(tmp, "xb") as file:
                file.write(buffer.getbuffer())
        elif start_from is not None:
            shutil.copyfile(start_from, tmp)
        if not in_memory:
            _build_on_disk(tmp, build, start_from)
        _fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError | RuntimeError) and not isinstance(exc, CacheError):
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
        raise
    _fsync_dir(os.path.dirname(final) or ".")


def _build_on_disk(
    tmp: str, build: Callable[[h5py.File], None], start_from: str | None
) -> None:
    with h5py.File(tmp, "r+" if start_from is not None else "w") as f:
        if start_from is None:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = np.int64(FORMAT_VERSION)
            f.create_group("namespaces")
        build(f)
        f.flush()


_held_locks = threading.local()


@contextlib.contextmanager
def _exclusive_lock(lock_path: str) -> Iterator[None]:
    """Hold the inter-process lock; re-entrant within one thread."""
    lock_path = os.path.abspath(lock_path)
    counts = _held_locks.__dict__.setdefault("counts", {})
    if counts.get(lock_path):
        # flock locks belong to open file descriptions: taking it again through
        # a second descriptor would deadlock this very thread.
        counts[lock_path] += 1
        try:
            yield
        finally:
            counts[lock_path] -= 1
        return
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        counts[lock_path] = 1
        try:
            yield
        finally:
            del counts[lock_path]
    finally:
        os.close(fd)  # releases the flock


# --------------------------------------------------------------------------
# Reading and checking files.


def _refused(path: str, reason: str) -> CacheError:
    return CacheError(
        f"feature cache {path!r} is refused: {reason}; tlsk reads only files in "
        "its own layout, move it away or delete it"
    )


def _stat_signature(path: str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _open(path: str) -> h5py.File:
    """Open read-only; FileNotFoundError passes, any other failure is damage."""
    for _ in range(_READ_RETRIES):
        before = _stat_signature(path)
        try:
            return h5py.File(path, "r")
        except FileNotFoundError:
            raise
        except OSError as exc:
            # HDF5 looks at a file by name more than once while opening it: a
            # part merged, or a main file replaced, meanwhile is no damage.
            if _stat_signature(path) == before:
                raise _DamagedError(path, exc, before) from None
    raise CacheError(f"feature cache {path!r} kept changing while being opened")


def _hard_children(group: h5py.Group, path: str) -> list[str]:
    names = list(group.keys())
    for name in names:
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            where = f"{group.name.rstrip('/')}/{name}"
            raise _refused(path, f"{where} is a {type(link).__name__}")
    return names


def _attr_str(attrs: h5py.AttributeManager, name: str) -> str | None:
    value = attrs.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _attr_int(attrs: h5py.AttributeManager, name: str) -> int | None:
    value = attrs.get(name)
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
        value = value.reshape(())[()]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return None


def _check_file(f: h5py.File, path: str) -> list[str]:
    """Check links and root attributes; return the namespace ids."""
    fmt = _attr_str(f.attrs, "format")
    if fmt != FORMAT:
        raise _refused(path, f"format attribute is {fmt!r}, expected {FORMAT!r}")
    version = _attr_int(f.attrs, "format_version")
    if version != FORMAT_VERSION:
        raise _refused(
            path, f"format_version is {version!r}, this tlsk reads {FORMAT_VERSION}"
        )
    if _hard_children(f, path) != ["namespaces"] or not isinstance(
        f["namespaces"], h5py.Group
    ):
        raise _refused(path, "the root must hold exactly one group, 'namespaces'")
    ns_ids = _hard_children(f["namespaces"], path)
    for ns in ns_ids:
        if not _NS_RE.match(ns):
            raise _refused(path, f"/namespaces/{ns} is not a namespace id")
        group = f["namespaces"][ns]
        if not isinstance(group, h5py.Group):
            raise _refused(path, f"/namespaces/{ns} is not a group")
        _hard_children(group, path)
    return ns_ids


@dataclasses.dataclass
class _Namespace:
    """A checked namespace group of one open file."""

    id: str
    fingerprint: str
    dim: int
    rows_written: int
    keys: h5py.Dataset
    vectors: h5py.Dataset

    @property
    def n(self) -> int:
        return self.keys.shape[0]


def _check_namespace(f: h5py.File, path: str, ns: str) -> _Namespace:
    group = f["namespaces"][ns]
    where = f"/namespaces/{ns}"
    fingerprint = _attr_str(group.attrs, "fingerprint")
    if fingerprint is None or _sha256_hex(fingerprint) != ns:
        raise _refused(
            path, f"the fingerprint attribute of {where} does not hash to its name"
        )
    dim = _attr_int(group.attrs, "dim")
    rows_written = _attr_int(group.attrs, "rows_written")
    if dim is None or not 1 <= dim <= _MAX_DIM:
        raise _refused(path, f"{where} has dim={group.attrs.get('dim')!r}")
    if rows_written is None or rows_written < 0:
        raise _refused(
            path, f"{where} has rows_written={group.attrs.get('rows_written')!r}"
        )
    if sorted(group.keys()) != ["keys", "vectors"]:
        raise _refused(path, f"{where} must hold exactly 'keys' and 'vectors'")
    keys, vectors = group["keys"], group["vectors"]
    for name, ds, dtype, width in (
        ("keys", keys, np.dtype(np.uint8), KEY_BYTES),
        ("vectors", vectors, np.dtype("<f4"), dim),
    ):
        if not isinstance(ds, h5py.Dataset):
            raise _refused(path, f"{where}/{name} is not a dataset")
        if ds.dtype != dtype or ds.shape is None or len(ds.shape) != 2:
            raise _refused(
                path,
                f"{where}/{name} is {ds.dtype} with shape {ds.shape}, expected "
                f"{dtype} with shape (n, {width})",
            )
        if ds.shape[1] != width:
            raise _refused(
                path, f"{where}/{name} has shape {ds.shape}, expected (n, {width})"
            )
    if keys.shape[0] != vectors.shape[0]:
        raise _refused(
            path,
            f"{where} holds {keys.shape[0]} keys but {vectors.shape[0]} vectors",
        )
    declared = keys.shape[0] * (KEY_BYTES + 4 * dim)
    size = f.id.get_filesize()
    if declared > size:
        raise _refused(
            path,
            f"{where} declares {keys.shape[0]} rows of dim {dim} ({declared} bytes) "
            f"in a file of {size} bytes",
        )
    return _Namespace(ns, fingerprint, dim, rows_written, keys, vectors)


def _matching_namespace(
    f: h5py.File, path: str, ns: str, fp_json: str, dim: int
) -> _Namespace | None:
    """The checked namespace ``ns`` of an open file, None if absent."""
    if ns not in _check_file(f, path):
        return None
    group = _check_namespace(f, path, ns)
    if group.fingerprint != fp_json:
        raise _refused(path, f"namespace {ns} stores another fingerprint")
    if group.dim != dim:
        raise CacheError(
            f"feature cache {path!r}: namespace {ns} holds vectors of dim "
            f"{group.dim}; requested dim={dim}"
        )
    return group


def _open_signature(f: h5py.File) -> tuple | None:
    """The ``_stat_signature`` of an open file (the one read, whatever its name)."""
    try:
        st = os.fstat(f.id.get_vfd_handle())
    except (OSError, ValueError, RuntimeError):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read(ds: h5py.Dataset, sel: Any, path: str) -> np.ndarray:
    try:
        return ds[sel]
    except OSError as exc:  # fletcher32 mismatch, truncated data, ...
        raise _DamagedError(
            path, f"cannot read {ds.name}: {exc}", _open_signature(ds.file)
        ) from None


def _read_all(ds: h5py.Dataset, path: str) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` over a whole dataset, in bounded memory."""
    n, width = ds.shape
    step = max(1, _READ_BLOCK_BYTES // (ds.dtype.itemsize * width))
    for start in range(0, n, step):
        yield start, _read(ds, slice(start, min(start + step, n)), path)


def _read_keys(ds: h5py.Dataset, path: str) -> list[bytes]:
    keys: list[bytes] = []
    for _, block in _read_all(ds, path):
        keys.extend(_array_to_keys(block))
    return keys


def _read_rows(ds: h5py.Dataset, rows: np.ndarray, path: str) -> np.ndarray:
    """Read ``rows`` (sorted, unique) of a 2-d dataset."""
    n, width = ds.shape
    out = np.empty((len(rows), width), dtype=ds.dtype)
    block = max(1, _READ_BLOCK_BYTES // (ds.dtype.itemsize * width))
    i = 0
    while i < len(rows):
        first = int(rows[i])
        j = int(np.searchsorted(rows, min(first + block, n)))
        sel = rows[i:j]
        last = int(sel[-1]) + 1
        # h5py's fancy indexing costs per row; a dense run is cheaper read whole.
        if (last - first) <= 8 * len(sel):
            out[i:j] = _read(ds, slice(first, last), path)[sel - first]
        else:
            out[i:j] = _read(ds, sel, path)
        i = j
    return out


class _PartVanished(Exception):
    """A listed part was merged and deleted before it could be opened."""


def _list_parts(parts_dir: str) -> list[str]:
    try:
        names = os.listdir(parts_dir)
    except FileNotFoundError:
        return []
    return [os.path.join(parts_dir, n) for n in sorted(names) if _PART_RE.match(n)]


class _Reader:
    """Lock-free snapshot lookups of one namespace, with cached key indexes.

    Part files never change once in place, so their key index is kept by name;
    the main file's index is kept while its inode, size and mtime stay the same.
    A main file is never changed in place either (it is replaced), so while
    its signature stays the same a small namespace's vectors are served from
    a copy in memory: the repeated transforms of a GridSearchCV then neither
    open nor check the file again.
    """

    def __init__(self, path: str, ns: str, fp_json: str, dim: int):
        path = os.path.abspath(path)  # shared readers outlive a chdir
        self.path = path
        self.parts_dir = path + ".parts"
        self.ns, self.fp_json, self.dim = ns, fp_json, dim
        self._main: tuple[tuple, dict[bytes, int]] | None = None
        self._main_vectors: np.ndarray | None = None  # of self._main's file
        self._parts: dict[str, dict[bytes, int]] = {}
        self.lock = threading.Lock()  # for readers shared between threads

    def remember_part(self, part: str, keys: list[bytes]) -> None:
        self._parts[part] = _row_index(keys)

    def lookup(self, keys: Iterable[bytes]) -> tuple[np.ndarray, np.ndarray]:
        keys = _check_keys(keys)
        position = _row_index(list(dict.fromkeys(keys)))
        inverse = np.fromiter(
            map(position.__getitem__, keys), dtype=np.intp, count=len(keys)
        )
        found = np.zeros(len(position), dtype=bool)
        vectors = np.zeros((len(position), self.dim), dtype=np.float32)
        for _ in range(_READ_RETRIES):
            try:
                self._fill(_Pending(list(position)), found, vectors)
                break
            except _PartVanished:
                found[:] = False
        else:
            raise CacheError(
                f"feature cache {self.path!r} kept changing during "
                f"{_READ_RETRIES} read attempts"
            )
        return found[inverse], vectors[inverse]

    def _take_from_memory(self, pending: _Pending, found, vectors) -> bool:
        """Serve from the in-memory copy if the main file is still that file."""
        if self._main_vectors is None:
            return False
        try:
            signature = _stat_signature(self.path)
        except FileNotFoundError:
            return False
        if signature != self._main[0]:
            return False
        copy = self._main_vectors
        pending.take_rows(copy.__getitem__, self._main[1], found, vectors)
        return True

    def _take_from_main_file(self, pending: _Pending, found, vectors) -> None:
        try:
            f = _open(self.path)
        except FileNotFoundError:
            return
        with f:
            st = os.fstat(f.id.get_vfd_handle())
            sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            group = _matching_namespace(f, self.path, self.ns, self.fp_json, self.dim)
            if self._main is None or self._main[0] != sig:
                # Both or neither: a read that fails half-way (a bad checksum)
                # must leave no half-filled copy behind for this signature.
                self._main, self._main_vectors = None, None
                index = self._index(group, self.path)
                copy = None
                if group is not None and group.n * self.dim * 4 <= _MEMORY_COPY_BYTES:
                    copy = np.empty((group.n, self.dim), np.float32)
                    for start, block in _read_all(group.vectors, self.path):
                        copy[start : start + len(block)] = block
                self._main, self._main_vectors = (sig, index), copy
            pending.take(group, self.path, self._main[1], found, vectors)

    def _index(self, group: _Namespace | None, path: str) -> dict[bytes, int]:
        if group is None:
            return {}
        return _row_index(_read_keys(group.keys, path))

    def _fill(self, pending: _Pending, found, vectors) -> None:
        # Parts are listed before the main file is opened: a part merged in
        # between is then either in the opened main file or missing on open.
        parts = _list_parts(self.parts_dir)
        listed = set(parts)
        self._parts = {p: ix for p, ix in self._parts.items() if p in listed}
        if not self._take_from_memory(pending, found, vectors):
            self._take_from_main_file(pending, found, vectors)
        for part in parts:
            if not pending.keys:
                break
            index = self._parts.get(part)
            if index is not None and not any(map(index.__contains__, pending.keys)):
                continue  # known part, nothing we need: no need to open it
            try:
                f = _open(part)
            except FileNotFoundError:
                raise _PartVanished from None
            with f:
                group = _matching_namespace(f, part, self.ns, self.fp_json, self.dim)
                if index is None:
                    index = self._parts[part] = self._index(group, part)
                pending.take(group, part, index, found, vectors)


# Readers kept across lookups, so that the key index of an unchanged main file
# is read once per process, not once per transform (GridSearchCV transforms
# the same data fifty times). A few at most: an index costs ~250 bytes a key,
# and a namespace up to _MEMORY_COPY_BYTES is also kept in memory.
_READERS: dict[tuple, _Reader] = {}
_READERS_MAX = 4
_READERS_LOCK = threading.Lock()


def _shared_reader(path: str, fp_json: str, dim: int) -> _Reader:
    key = (os.path.abspath(path), fp_json, dim)
    with _READERS_LOCK:
        reader = _READERS.pop(key, None)
        if reader is None:
            reader = _Reader(path, _sha256_hex(fp_json), fp_json, dim)
        _READERS[key] = reader  # now the most recently used
        while len(_READERS) > _READERS_MAX:
            del _READERS[next(iter(_READERS))]
    return reader


class _Pending:
    """The query's unique keys not found yet, and their positions."""

    def __init__(self, keys: list[bytes]):
        self.keys = keys
        self.positions = np.arange(len(keys), dtype=np.intp)

    def take(self, group, path, index, found, vectors) -> None:
        """Copy the vectors of the pending keys that ``index`` holds."""
        self.take_rows(
            lambda rows: _read_rows(group.vectors, rows, path), index, found, vectors
        )

    def take_rows(self, read_rows, index, found, vectors) -> None:
        """Like :meth:`take`, with ``read_rows(sorted rows) -> vectors``."""
        rows = np.fromiter(
            map(index.get, self.keys, itertools.repeat(-1)),
            dtype=np.int64,
            count=len(self.keys),
        )
        hit = rows >= 0
        if not hit.any():
            return
        targets, rows = self.positions[hit], rows[hit]
        order = np.argsort(rows)
        vectors[targets[order]] = read_rows(rows[order])
        found[targets] = True
        self.keys = list(itertools.compress(self.keys, (~hit).tolist()))
        self.positions = self.positions[~hit]


def _create_namespace(
    parent: h5py.Group, ns: str, fp_json: str, dim: int, rows: int | None = None
) -> h5py.Group:
    group = parent.create_group(ns)
    group.attrs["fingerprint"] = fp_json
    group.attrs["dim"] = np.int64(dim)
    group.attrs["rows_written"] = np.int64(0)
    for name, width, dtype in (
        ("keys", KEY_BYTES, np.uint8),
        ("vectors", dim, np.float32),
    ):
        itemsize = np.dtype(dtype).itemsize
        group.create_dataset(
            name,
            shape=(0, width),
            maxshape=(None, width),
            dtype=dtype,
            chunks=(_chunk_rows(width * itemsize, rows), width),
            fletcher32=True,
        )
    return group


def _append_rows(group: h5py.Group, keys: np.ndarray, vectors: np.ndarray) -> None:
    n = group["keys"].shape[0]
    for name, data in (("keys", keys), ("vectors", vectors)):
        group[name].resize(n + len(data), axis=0)
        group[name][n:] = data


# --------------------------------------------------------------------------
# Public classes.


class FeatureCache:
    """A crash-safe, multi-process HDF5 store of float32 feature vectors.

    Vectors are stored under 32-byte keys (SHA-256 digests of image content)
    inside namespaces identified by a fingerprint dict; see the module
    docstring for the file layout and the crash/concurrency protocol.

    Parameters
    ----------
    path : str or os.PathLike
        The main HDF5 file, e.g. ``"features.h5"``. Part files go to
        ``path + ".parts/"`` and the lock to ``path + ".lock"``. Nothing is
        read or created until the cache is used.

    Attributes
    ----------
    path : str
        The main file's path, as given.

    See Also
    --------
    CacheWriter : adds vectors, one atomic part file per batch.
    namespace_id : the id of a fingerprint's namespace.

    Examples
    --------
    >>> import hashlib, os, tempfile
    >>> import numpy as np
    >>> from tlsk.cache import FeatureCache
    >>> tmp = tempfile.TemporaryDirectory()
    >>> cache = FeatureCache(os.path.join(tmp.name, "features.h5"))
    >>> fp = {"weights": "sha256:0f3c", "layer": "block5_pool", "pooling": "avg"}
    >>> cat, dog, owl = (hashlib.sha256(s).digest() for s in (b"cat", b"dog", b"owl"))
    >>> with cache.writer(fp, dim=3) as writer:
    ...     with writer.claim():
    ...         writer.append([cat, dog], np.array([[1, 2, 3], [4, 5, 6]]))
    >>> found, vectors = cache.lookup(fp, [dog, owl, cat], dim=3)
    >>> found
    array([ True, False,  True])
    >>> vectors
    array([[4., 5., 6.],
           [0., 0., 0.],
           [1., 2., 3.]], dtype=float32)
    >>> cache.lookup({**fp, "pooling": "max"}, [cat], dim=3)[0]
    array([False])
    >>> [(ns.entries, ns.rows_written) for ns in cache.info().namespaces]
    [(2, 2)]
    >>> cache.verify()
    []
    >>> tmp.cleanup()
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    def __repr__(self) -> str:
        return f"FeatureCache({self.path!r})"

    @property
    def _parts_dir(self) -> str:
        return self.path + ".parts"

    @property
    def _lock_path(self) -> str:
        return self.path + ".lock"

    def lookup(
        self, fingerprint: Mapping, keys: Sequence[bytes], dim: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Find vectors by key, without taking the lock.

        Parameters
        ----------
        fingerprint : Mapping
            The namespace's fingerprint.
        keys : sequence of bytes
            32-byte digests; duplicates are allowed.
        dim : int
            The vectors' length; a namespace stored with another dim raises.

        Returns
        -------
        found : ndarray of bool, shape (N,)
        vectors : ndarray of float32, shape (N, dim)
            In the order of ``keys``, zeros where not found.
        """
        fp_json = _canonical_json(fingerprint)
        reader = _shared_reader(self.path, fp_json, _check_dim(dim))
        self._remove_stale_temps_if_idle()

        def locked_lookup():
            with reader.lock:
                return reader.lookup(keys)

        return self._without_damaged_files(locked_lookup)

    def writer(self, fingerprint: Mapping, dim: int) -> CacheWriter:
        """A :class:`CacheWriter` for one namespace (use it as a context manager)."""
        return CacheWriter(self, fingerprint, dim)

    def info(self) -> CacheInfo:
        """Sizes, pending parts and per-namespace counts (main and parts)."""
        for _ in range(_READ_RETRIES):
            try:
                return self._info_once()
            except _PartVanished:
                continue
        raise CacheError(f"feature cache {self.path!r} kept changing while read")

    def _info_once(self) -> CacheInfo:
        parts = _list_parts(self._parts_dir)
        with contextlib.ExitStack() as stack:
            files = []
            for path in [self.path, *parts]:
                try:
                    files.append((path, stack.enter_context(_open(path))))
                except FileNotFoundError:
                    if path != self.path:
                        raise _PartVanished from None
            stats: dict[str, dict] = {}
            for path, f in files:
                for ns in _check_file(f, path):
                    group = _check_namespace(f, path, ns)
                    entry = stats.setdefault(
                        ns, {"group": group, "rows": 0, "keys": None, "main": 0}
                    )
                    entry["rows"] += group.rows_written
                    if path == self.path:
                        entry["main"] = group.n  # consolidation keeps main unique
                        continue
                    if entry["keys"] is None:
                        # Entries in parts count only if new: start from main's.
                        entry["keys"] = set()
                        if entry["group"] is not group:
                            entry["keys"].update(
                                _read_keys(entry["group"].keys, self.path)
                            )
                    entry["keys"].update(_read_keys(group.keys, path))
            namespaces = [
                NamespaceInfo(
                    id=ns,
                    fingerprint=json.loads(entry["group"].fingerprint),
                    dim=entry["group"].dim,
                    entries=len(entry["keys"])
                    if entry["keys"] is not None
                    else entry["main"],
                    rows_written=entry["rows"],
                )
                for ns, entry in sorted(stats.items())
            ]
            size = sum(f.id.get_filesize() for _, f in files)
        return CacheInfo(self.path, size, len(parts), namespaces)

    def verify(self) -> list[str]:
        """Read every file fully and return the problems found.

        Checks links, attributes, dtypes and shapes, every checksum (all data
        is read, so fletcher32 detects flipped bytes), duplicate keys, non-finite
        vectors, and that each fingerprint hashes to its namespace's name.

        Returns
        -------
        list of str
            One message per problem; an empty list means healthy.
        """
        problems: list[str] = []
        for path in [self.path, *_list_parts(self._parts_dir)]:
            try:
                f = _open(path)
            except FileNotFoundError:
                continue  # no cache yet, or a part merged meanwhile
            except CacheError as exc:
                problems.append(str(exc))
                continue
            with f:
                problems.extend(_verify_open_file(f, path))
        return problems

    def prune(self, namespace: str) -> int:
        """Remove one namespace from the main file and the parts.

        Parameters
        ----------
        namespace : str
            A namespace id, or a unique prefix of at least 8 hex characters.

        Returns
        -------
        int
            The number of entries (unique keys) removed.
        """
        if not (
            isinstance(namespace, str) and re.fullmatch(r"[0-9a-f]{8,64}", namespace)
        ):
            raise ValueError(
                "namespace must be a namespace id or a prefix of at least 8 "
                f"lowercase hex characters; received {namespace!r}"
            )
        with _exclusive_lock(self._lock_path):
            known = {ns.id for ns in self.info().namespaces}
            matches = sorted(ns for ns in known if ns.startswith(namespace))
            if len(matches) != 1:
                what = "matches no namespace" if not matches else "is ambiguous"
                raise ValueError(
                    f"namespace {namespace!r} {what} in feature cache "
                    f"{self.path!r}; known namespaces: {sorted(known)}"
                )
            return self._consolidate(drop=matches[0])

    def add_shards(
        self, paths: Iterable[str | os.PathLike], *, remove: bool = False
    ) -> int:
        """Join complete shard files (same layout as the cache) into the cache.

        A shard is the main file of another :class:`FeatureCache`, for instance
        written by a worker on another machine; it must have no pending parts.
        Shards are merged under the lock in one atomic replace of the main file.

        Parameters
        ----------
        paths : iterable of path-like
            The shard files.
        remove : bool, default=False
            Delete the shard files once joined. A crash between the join and the
            deletion leaves them in place; joining them again adds no entries.

        Returns
        -------
        int
            The number of new entries.
        """
        shards = [os.fspath(p) for p in paths]
        for shard in shards:
            if os.path.abspath(shard) == os.path.abspath(self.path):
                raise ValueError(f"cannot add the cache {self.path!r} to itself")
            if not os.path.isfile(shard):
                raise FileNotFoundError(f"shard file {shard!r} does not exist")
            if _list_parts(shard + ".parts"):
                raise CacheError(
                    f"shard {shard!r} has pending parts in {shard + '.parts'!r}; "
                    "end its writer (which consolidates them) before adding it"
                )
        if not shards:
            return 0
        return self._consolidate(shards=shards, remove_shards=remove)

    # -- damaged files --------------------------------------------------------

    def _without_damaged_files(self, operation: Callable[[], Any]) -> Any:
        """Run ``operation``; a damaged file it meets is moved aside, then again."""
        for _ in range(_SET_ASIDE_ATTEMPTS):
            try:
                return operation()
            except _DamagedError as err:
                if not self._set_aside(err):
                    raise
        return operation()

    def _set_aside(self, err: _DamagedError) -> bool:
        """Rename the damaged file ``err`` names to ``<name>.damaged-<timestamp>``.

        Only the main file and part files, under the lock, and only if the
        file is still the one found damaged (a reader takes no lock: the file
        may have been set aside, or merged, since). True if the operation may
        be tried again; False if the file could not be moved (the error stands).
        """
        path = os.path.abspath(err.path)
        own = path == os.path.abspath(self.path) or (
            os.path.dirname(path) == os.path.abspath(self._parts_dir)
            and _PART_RE.match(os.path.basename(path))
        )
        if not own or err.signature is None:
            return False
        with _exclusive_lock(self._lock_path):
            try:
                if _stat_signature(path) != err.signature:
                    return True  # replaced or moved meanwhile: look again
            except FileNotFoundError:
                return True
            stamp = time.strftime("%Y%m%d-%H%M%S")
            aside = f"{path}.damaged-{stamp}"
            for n in itertools.count(2):
                if not os.path.lexists(aside):
                    break
                aside = f"{path}.damaged-{stamp}-{n}"
            try:
                os.rename(path, aside)
                _fsync_dir(os.path.dirname(path))
            except OSError:
                return False  # a read-only folder, say: report the damage
        warnings.warn(
            f"feature cache {err.path!r} is damaged ({err.reason}); moved it to "
            f"{aside!r} (delete that once inspected): the cache goes on without "
            "it, and the vectors it held will be computed again",
            CacheWarning,
            stacklevel=4,
        )
        return True

    # -- consolidation ------------------------------------------------------

    def _remove_stale_temps_if_idle(self) -> None:
        """Delete temporary files of dead writers, if nobody holds the lock now.

        A process killed while writing leaves a temporary file (as large as
        the main file, when it died consolidating); the next writer removes
        it, and so does a lookup, so that a rerun that finds every vector
        leaves no stray file either. Costs a directory listing; never waits.
        """
        if not self._stale_temp_candidates():
            return
        lock_path = os.path.abspath(self._lock_path)
        if _held_locks.__dict__.get("counts", {}).get(lock_path):
            return  # this thread is writing: its temporary files are live
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError:
            return  # a read-only folder: leave it to a writer
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return  # someone is writing: their temporary files are live
        try:
            self._remove_stale_temps()
        finally:
            os.close(fd)

    def _stale_temp_candidates(self) -> list[str]:
        folder = os.path.dirname(self.path) or "."
        own = re.compile(
            re.escape(_TMP_PREFIX + os.path.basename(self.path)) + r"-[0-9a-f]{16}$"
        )
        try:
            candidates = [
                os.path.join(folder, n) for n in os.listdir(folder) if own.match(n)
            ]
        except FileNotFoundError:
            return []
        with contextlib.suppress(FileNotFoundError):
            candidates += [
                os.path.join(self._parts_dir, n)
                for n in os.listdir(self._parts_dir)
                if n.startswith(_TMP_PREFIX)
            ]
        return candidates

    def _remove_stale_temps(self) -> None:
        # Called with the lock held: every writer holds it, so any temporary
        # file seen now was left by a process that died.
        for path in self._stale_temp_candidates():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _consolidate(
        self,
        shards: Sequence[str] = (),
        drop: str | None = None,
        remove_shards: bool = False,
        set_aside_damaged: bool = False,
    ) -> int:
        """Merge parts (and shards) into main, dropping ``drop``; see module doc.

        Returns the number of new entries, or of removed entries when dropping.
        With ``set_aside_damaged`` (a writer's consolidation), damaged files are
        moved aside rather than reported.
        """

        def once():
            return self._consolidate_once(shards, drop, remove_shards)

        if set_aside_damaged:
            return self._without_damaged_files(once)
        return once()

    def _consolidate_once(
        self, shards: Sequence[str], drop: str | None, remove_shards: bool
    ) -> int:
        with _exclusive_lock(self._lock_path):
            if not os.path.isdir(os.path.dirname(self.path) or "."):
                return 0
            self._remove_stale_temps()
            parts = _list_parts(self._parts_dir)
            sources = parts + list(shards)
            if not sources and drop is None:
                return 0
            try:
                main = _open(self.path)
            except FileNotFoundError:
                main = None
            counts = {"new": 0, "removed": set()}
            if main is not None:
                # The copy is read, not main: its damage is main's.
                counts["main_signature"] = _open_signature(main)
            with main if main is not None else contextlib.nullcontext():
                if main is not None:
                    # Checked before anything is written: a writer never
                    # replaces a main file it could not read.
                    for ns in _check_file(main, self.path):
                        _check_namespace(main, self.path, ns)

                def build(out: h5py.File) -> None:
                    self._merge_into(out, main, sources, drop, counts)

                copy_main = main is not None and drop is None
                _write_atomically(
                    self.path, build, start_from=self.path if copy_main else None
                )
            merged = parts + (list(shards) if remove_shards else [])
            for path in merged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            if parts:
                _fsync_dir(self._parts_dir)
            return len(counts["removed"]) if drop is not None else counts["new"]

    def _merge_into(self, out, main, sources, drop, counts) -> None:
        out_ns = out["namespaces"]
        if main is not None and drop is not None:
            # Rebuild rather than delete in place: HDF5 never gives back the
            # space of deleted objects.
            for ns in main["namespaces"]:
                if ns == drop:
                    counts["removed"].update(
                        _read_keys(main["namespaces"][ns]["keys"], self.path)
                    )
                else:
                    main.copy(main["namespaces"][ns], out_ns, name=ns)
        known: dict[str, set[bytes]] = {}
        for source in sources:
            try:
                f = _open(source)
            except FileNotFoundError:
                raise CacheError(f"feature cache part {source!r} vanished") from None
            with f:
                for ns in _check_file(f, source):
                    group = _check_namespace(f, source, ns)
                    keys = _read_keys(group.keys, source)
                    if ns == drop:
                        counts["removed"].update(keys)
                        continue
                    if ns not in out_ns:
                        _create_namespace(out_ns, ns, group.fingerprint, group.dim)
                    target = out_ns[ns]
                    if int(target.attrs["dim"]) != group.dim:
                        raise CacheError(
                            f"feature cache {source!r}: namespace {ns} holds dim "
                            f"{group.dim} but the cache holds dim "
                            f"{int(target.attrs['dim'])}; delete this file"
                        )
                    if ns not in known:
                        try:
                            known[ns] = set(_read_keys(target["keys"], self.path))
                        except _DamagedError as err:
                            raise _DamagedError(
                                self.path, err.reason, counts.get("main_signature")
                            ) from None
                    seen = known[ns]
                    rows = []
                    for row, key in enumerate(keys):
                        if key not in seen:
                            seen.add(key)
                            rows.append(row)
                    # In blocks, so that joining a large shard needs little memory.
                    step = max(1, _READ_BLOCK_BYTES // (4 * group.dim))
                    for start in range(0, len(rows), step):
                        block = rows[start : start + step]
                        _append_rows(
                            target,
                            _keys_to_array([keys[r] for r in block]),
                            _read_rows(group.vectors, np.asarray(block), source),
                        )
                    target.attrs["rows_written"] = np.int64(
                        int(target.attrs["rows_written"]) + group.rows_written
                    )
                    counts["new"] += len(rows)


def _verify_open_file(f: h5py.File, path: str) -> list[str]:
    try:
        ns_ids = _check_file(f, path)
    except CacheError as exc:
        return [str(exc)]
    problems = []
    for ns in ns_ids:
        where = f"{path!r} /namespaces/{ns}"
        try:
            group = _check_namespace(f, path, ns)
            keys = _read_keys(group.keys, path)
            for start, block in _read_all(group.vectors, path):
                bad = ~np.isfinite(block).all(axis=1)
                if bad.any():
                    row = start + int(np.argmax(bad))
                    problems.append(f"{where}: vector at row {row} is not finite")
                    break
        except CacheError as exc:
            problems.append(str(exc))
            continue
        duplicates = len(keys) - len(set(keys))
        if duplicates:
            problems.append(f"{where}: {duplicates} duplicate keys")
        if group.rows_written < group.n:
            problems.append(
                f"{where}: rows_written={group.rows_written} is less than its "
                f"{group.n} entries"
            )
    return problems


class CacheWriter:
    """Adds vectors to one namespace of a :class:`FeatureCache`.

    Obtain it with :meth:`FeatureCache.writer` and use it as a context manager:
    each :meth:`append` writes one part file atomically; leaving the ``with``
    block (also on an exception) consolidates the parts into the main file.
    One writer belongs to one thread.

    Parameters
    ----------
    cache : FeatureCache
    fingerprint : Mapping
        The namespace's fingerprint.
    dim : int
        The length of every vector.

    Examples
    --------
    The loop that lets several processes share a cache and compute each key
    once (``compute`` stands for the expensive part)::

        found, vectors = cache.lookup(fp, keys, dim)
        with cache.writer(fp, dim) as writer:
            for batch in batches_of_missing_keys:
                with writer.claim():
                    hit, _ = writer.lookup(batch)
                    todo = [k for k, h in zip(batch, hit) if not h]
                    writer.append(todo, compute(todo))
    """

    def __init__(self, cache: FeatureCache, fingerprint: Mapping, dim: int):
        self._cache = cache
        self._fp_json = _canonical_json(fingerprint)
        self._ns = _sha256_hex(self._fp_json)
        self._dim = _check_dim(dim)
        self._reader = _Reader(cache.path, self._ns, self._fp_json, self._dim)
        self._active = False
        self._claims = 0

    def __repr__(self) -> str:
        return f"CacheWriter({self._cache.path!r}, namespace={self._ns[:12]!r})"

    def __enter__(self) -> CacheWriter:
        if self._active:
            raise RuntimeError("this CacheWriter is already in use")
        os.makedirs(self._cache._parts_dir, exist_ok=True)
        self._active = True
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._active = False
        if exc_type is None:
            self._cache._consolidate(set_aside_damaged=True)
            return
        # The body's error matters more; the parts stay for the next writer.
        with contextlib.suppress(CacheError, OSError):
            self._cache._consolidate(set_aside_damaged=True)

    @contextlib.contextmanager
    def claim(self) -> Iterator[CacheWriter]:
        """Hold the cache's exclusive inter-process lock.

        Inside, :meth:`lookup` sees every part written by anyone so far and
        nobody else writes, so a key found missing can be computed once.
        """
        with _exclusive_lock(self._cache._lock_path):
            self._claims += 1
            try:
                yield self
            finally:
                self._claims -= 1

    def lookup(self, keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`FeatureCache.lookup`, reading only parts not seen yet."""
        return self._cache._without_damaged_files(lambda: self._reader.lookup(keys))

    def append(self, keys: Sequence[bytes], vectors: Any) -> None:
        """Write one batch as one part file, atomically.

        Parameters
        ----------
        keys : sequence of bytes
            32-byte digests; a key repeated in the batch is stored once.
        vectors : array-like of shape (len(keys), dim)
            Finite real numbers, stored as float32.
        """
        if not self._active or not self._claims:
            raise RuntimeError(
                "CacheWriter.append must be called inside `with cache.writer(...) "
                "as w:` and `with w.claim():`"
            )
        keys = _check_keys(keys)
        array = np.asarray(vectors)
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"vectors must be real numbers; received dtype {array.dtype}"
            )
        if len(keys) == 0 and array.size == 0:
            return
        if array.shape != (len(keys), self._dim):
            raise ValueError(
                f"vectors must have shape ({len(keys)}, {self._dim}) for "
                f"{len(keys)} keys; received {array.shape}"
            )
        with np.errstate(over="ignore"):
            array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise ValueError(
                "vectors must be finite float32 values; received NaN or inf"
            )
        first = {}
        for row, key in enumerate(keys):
            first.setdefault(key, row)
        unique = list(first)
        rows = np.fromiter(first.values(), dtype=np.intp, count=len(first))

        def build(f: h5py.File) -> None:
            group = _create_namespace(
                f["namespaces"], self._ns, self._fp_json, self._dim, rows=len(unique)
            )
            _append_rows(group, _keys_to_array(unique), array[rows])
            group.attrs["rows_written"] = np.int64(len(keys))

        name = f"part-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.h5"
        part = os.path.join(self._cache._parts_dir, name)
        _write_atomically(part, build, in_memory=True)
        self._reader.remember_part(part, unique)
