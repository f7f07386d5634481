"""The public classes: :class:`FeatureCache` and :class:`CacheWriter`."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from tlsk._util.files import fsync_dir, locked
from tlsk.cache._bloom import size_bytes as bloom_size
from tlsk.cache._damage import without_damaged_files
from tlsk.cache._durable import write_h5
from tlsk.cache._file_keys import MEMO_FINGERPRINT
from tlsk.cache._keys import (
    KEY_BYTES,
    canonical_json,
    check_dim,
    check_keys,
    first_occurrences,
    namespace_id,
    sha256_hex,
)
from tlsk.cache._layout import (
    FENCE_ROWS,
    FORMAT_VERSION,
    ROLE_MANIFEST,
    ROLE_RUN,
    CacheError,
    DamagedError,
    Format1Error,
    attr_str,
    check_attrs,
    check_cache_file,
    check_root,
    open_h5,
    write_root,
)
from tlsk.cache._manifest import (
    RUNS_SUFFIX,
    Manifest,
    NamespaceEntry,
    RunRef,
    read_manifest,
    write_manifest,
)
from tlsk.cache._merge import (
    background_merger,
    due_merges,
    has_leftovers,
    merge_due,
    opened_sources,
    tidy,
    union_plan,
    write_run,
)
from tlsk.cache._migrate import migrate, parts, survey
from tlsk.cache._reader import Reader, shared_reader
from tlsk.cache._runs import SMALL_RUN_ROWS, write_namespace


@dataclasses.dataclass(frozen=True)
class NamespaceInfo:
    """What one namespace holds (see :meth:`FeatureCache.info`).

    ``index_bytes`` is the memory a process's lookups keep for its index
    (fences and Bloom filters, and the keys of small runs), vectors kept in
    memory aside.
    """

    id: str
    fingerprint: dict
    dim: int
    entries: int
    rows_written: int
    runs: int = 0
    index_bytes: int = 0


@dataclasses.dataclass(frozen=True)
class CacheInfo:
    """Summary of a feature cache: its files, runs and namespaces.

    ``namespaces`` are the feature namespaces; ``file_keys`` is the memo of
    file content keys (:class:`FileKeyMemo`), counted apart. ``runs`` and
    ``index_bytes`` count both.
    """

    path: str
    size_bytes: int
    pending_parts: int  # format-1 part files, migrated when the cache is used
    namespaces: list[NamespaceInfo]
    format_version: int = FORMAT_VERSION
    runs: int = 0
    index_bytes: int = 0
    file_keys: NamespaceInfo | None = None  # the memo of file keys, if any


@dataclasses.dataclass
class AddedEntries:
    """Entries one thread added to one namespace of a cache (see
    :meth:`FeatureCache.count_added`)."""

    path: str
    namespace: str
    entries: int = 0


# The counters open in this thread's context: what it publishes is counted
# where it happens, never as a difference of sizes that other processes,
# merges and prunes change meanwhile.
_COUNTERS: contextvars.ContextVar[tuple[AddedEntries, ...]] = contextvars.ContextVar(
    "tlsk_cache_counters", default=()
)


def _count_added(path: str, ns: str, entries: int) -> None:
    if not entries:
        return
    path = os.path.abspath(path)
    for counter in _COUNTERS.get():
        if counter.namespace == ns and counter.path == path:
            counter.entries += entries


_MEMO_NS = namespace_id(MEMO_FINGERPRINT)
# An append this small builds its run in memory, then writes it at once.
IN_MEMORY_BYTES = 1 << 26


def _index_bytes(runs: Sequence[RunRef]) -> int:
    total = 0
    for run in runs:
        if run.rows <= SMALL_RUN_ROWS:
            total += run.rows * 32
        else:  # fences and the Bloom filter
            total += -(-run.rows // FENCE_ROWS) * KEY_BYTES + bloom_size(run.rows)
    return total


class FeatureCache:
    """A crash-safe, multi-process HDF5 store of float32 feature vectors.

    Vectors are stored under 32-byte keys (SHA-256 digests of image content)
    inside namespaces identified by a fingerprint dict; see
    :mod:`tlsk.cache` for the file layout, the merge policy and the
    crash/concurrency protocol.

    Parameters
    ----------
    path : str or os.PathLike
        The cache's manifest file, e.g. ``"features.h5"``. Runs go to
        ``path + ".runs/"``, locks to ``path + ".lock"`` and
        ``path + ".merge.lock"``. Nothing is read or created until the cache
        is used.

    Attributes
    ----------
    path : str
        The manifest's path, as given.

    See Also
    --------
    CacheWriter : adds vectors, one atomic run file per batch.
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
    >>> [(ns.entries, ns.rows_written, ns.runs) for ns in cache.info().namespaces]
    [(2, 2, 1)]
    >>> cache.verify()
    []
    >>> tmp.cleanup()
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    def __repr__(self) -> str:
        return f"FeatureCache({self.path!r})"

    @property
    def _lock_path(self) -> str:
        return self.path + ".lock"

    @property
    def _merge_lock_path(self) -> str:
        return self.path + ".merge.lock"

    @property
    def _runs_dir(self) -> str:
        return self.path + RUNS_SUFFIX

    # -- reading --------------------------------------------------------------

    def lookup(
        self, fingerprint: Mapping, keys: Sequence[bytes], dim: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Find vectors by key, without taking any lock.

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
        fp_json = canonical_json(fingerprint)
        reader = shared_reader(self.path, sha256_hex(fp_json), fp_json, check_dim(dim))

        def locked_lookup():
            with reader.lock:
                return reader.lookup(keys)

        found = self._guarded(locked_lookup)
        self._tidy_if_idle()  # after the lookup, which left the cache in format 2
        return found

    def writer(self, fingerprint: Mapping, dim: int) -> CacheWriter:
        """A :class:`CacheWriter` for one namespace (use it as a context manager)."""
        return CacheWriter(self, fingerprint, dim)

    @contextlib.contextmanager
    def count_added(self, fingerprint: Mapping) -> Iterator[AddedEntries]:
        """Count the entries this thread adds to one namespace, while inside.

        Every entry that an append (:meth:`CacheWriter.append`) or a join
        (:meth:`add_shards`) made in this thread publishes is counted once,
        when it is published: entries that another process added meanwhile,
        merges and prunes change nothing. A writer computes only what the
        cache lacks under its lock, so this is what this thread computed.

        Yields
        ------
        AddedEntries
            Its ``entries`` grow as entries are published.
        """
        counter = AddedEntries(os.path.abspath(self.path), namespace_id(fingerprint))
        token = _COUNTERS.set((*_COUNTERS.get(), counter))
        try:
            yield counter
        finally:
            _COUNTERS.reset(token)

    def info(self) -> CacheInfo:
        """Files, runs, entries and index sizes, from the manifest alone.

        Writes nothing: a format-1 cache is read in full to count its entries
        (each namespace shown as the one run its migration makes), and
        reported as format 1.
        """
        try:
            manifest, pending = read_manifest(self.path), []
        except Format1Error:
            manifest, pending = survey(self.path)
        namespaces = [
            NamespaceInfo(
                id=ns,
                fingerprint=json.loads(entry.fingerprint),
                dim=entry.dim,
                entries=entry.entries,
                rows_written=entry.rows_written,
                runs=len(entry.runs),
                index_bytes=_index_bytes(entry.runs),
            )
            for ns, entry in sorted(manifest.namespaces.items())
        ]
        files = {self.path, *pending} | {
            run.path for e in manifest.namespaces.values() for run in e.runs
        }
        size = sum(os.path.getsize(p) for p in files if os.path.exists(p))
        memo = [ns for ns in namespaces if ns.id == _MEMO_NS]
        return CacheInfo(
            path=self.path,
            size_bytes=size,
            pending_parts=len(pending),
            namespaces=[ns for ns in namespaces if ns.id != _MEMO_NS],
            format_version=manifest.version,
            runs=sum(ns.runs for ns in namespaces),
            index_bytes=sum(ns.index_bytes for ns in namespaces),
            file_keys=memo[0] if memo else None,
        )

    def verify(self) -> list[str]:
        """Read every file fully and return the problems found.

        Checks links, attributes, dtypes and shapes, every checksum (all data
        is read, so fletcher32 detects flipped bytes), that each run's keys are
        sorted and unique and its fences right, that the runs of a namespace
        share no key, non-finite vectors, and that each fingerprint hashes to
        its namespace's name.

        Returns
        -------
        list of str
            One message per problem; an empty list means healthy.
        """
        from tlsk.cache._verify import verify_cache

        return verify_cache(self.path)

    # -- writing --------------------------------------------------------------

    def _current(self) -> Manifest:
        """The manifest, a format-1 cache migrated first; call with the write lock."""
        try:
            return read_manifest(self.path)
        except Format1Error:
            return migrate(self.path, self._lock_path)

    def prune(self, namespace: str) -> int:
        """Remove one namespace (its runs are deleted).

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
        with self._locked(self._lock_path):
            manifest = self._current()
            known = sorted(manifest.namespaces)
            matches = [ns for ns in known if ns.startswith(namespace)]
            if len(matches) != 1:
                what = "matches no namespace" if not matches else "is ambiguous"
                raise ValueError(
                    f"namespace {namespace!r} {what} in feature cache "
                    f"{self.path!r}; known namespaces: {known}"
                )
            entry = manifest.namespaces[matches[0]]
            write_manifest(manifest.with_namespace(None, entry.id))
        for run in entry.runs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(run.path)
        return entry.entries

    def add_shards(
        self, paths: Iterable[str | os.PathLike], *, remove: bool = False
    ) -> int:
        """Join complete shard files into the cache.

        A shard is a file written by :meth:`write_shard` (a worker's cache,
        say), or a whole cache of either format version. Only the shards'
        vectors that the cache lacks are written, as one new run per
        namespace: the cost is the shards', not the cache's. They are
        published together, in one replace of the manifest.

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
            if parts(shard):
                raise CacheError(
                    f"shard {shard!r} has pending parts in {shard + '.parts'!r}; "
                    f"run `tlsk cache compact {shard}` (which migrates them into "
                    "format 2) before adding it"
                )
        if not shards:
            return 0
        sources = [source for shard in shards for source in _shard_sources(shard)]
        with self._locked(self._lock_path):
            manifest = self._current()
            added, namespaces, counts = 0, dict(manifest.namespaces), {}
            for ns, (fp_json, dim) in _source_namespaces(sources).items():
                entry = namespaces.get(ns) or NamespaceEntry(ns, fp_json, dim, 0, [])
                if entry.dim != dim:
                    raise CacheError(
                        f"feature cache shard: namespace {ns} holds dim {dim} but "
                        f"the cache {self.path!r} holds dim {entry.dim}"
                    )
                stored = Reader(self.path, ns, fp_json, dim).lookup
                with opened_sources(sources, ns, fp_json, dim) as groups:
                    keys, blocks = union_plan(groups, lambda k, f=stored: f(k)[0])
                    written = sum(group.rows_written for _, group in groups)
                    run = write_run(manifest.runs_dir, entry, keys, blocks, written)
                runs = entry.runs + ([run] if run is not None else [])
                namespaces[ns] = NamespaceEntry(
                    ns, entry.fingerprint, dim, entry.rows_written + written, runs
                )
                added += len(keys)
                counts[ns] = len(keys)
            merged = Manifest(
                self.path,
                FORMAT_VERSION,
                {ns: e for ns, e in namespaces.items() if e.runs},
            )
            write_manifest(merged)
            for ns, count in counts.items():
                _count_added(self.path, ns, count)
        if remove:
            for shard in shards:
                _remove_shard(shard)
        self._request_merges(merged)
        return added

    def write_shard(self, path: str | os.PathLike) -> int:
        """Write everything the cache holds into one self-contained file.

        The file (atomically written) has the layout of a run file, with one
        group per namespace: :meth:`add_shards` joins it into another cache,
        and plain h5py reads it. Returns the number of entries written.
        """
        path = os.fspath(path)
        # The merge lock: no merge (this process's background one included)
        # deletes a run while it is copied.
        with self._locked(self._merge_lock_path):
            with self._locked(self._lock_path):
                manifest = self._current()
            return self._write_shard(path, manifest)

    def _write_shard(self, path: str, manifest: Manifest) -> int:
        total = 0

        def build(f):
            nonlocal total
            namespaces = write_root(f, ROLE_RUN)
            for ns, entry in sorted(manifest.namespaces.items()):
                with opened_sources(entry.runs, ns, entry.fingerprint, entry.dim) as g:
                    keys, blocks = union_plan(g)
                    write_namespace(
                        namespaces,
                        ns,
                        entry.fingerprint,
                        entry.dim,
                        entry.rows_written,
                        keys,
                        blocks,
                    )
                total += len(keys)

        write_h5(path, build)
        return total

    def compact(self) -> int:
        """Merge every namespace into one run now (and migrate a version-1 cache).

        Waits for a merge under way in another process. Returns the number of
        runs there were before minus those there are after.
        """
        with self._locked(self._lock_path):
            before = sum(len(e.runs) for e in self._current().namespaces.values())
        merge_due(self._lock_path, self._merge_lock_path, self.path, everything=True)
        after = read_manifest(self.path)
        return before - sum(len(e.runs) for e in after.namespaces.values())

    def wait_for_merges(self, timeout: float | None = None) -> bool:
        """Wait for this process's background merges of the cache to end.

        Returns False if one is still running after ``timeout`` seconds.
        """
        return background_merger(
            self._lock_path, self._merge_lock_path, self.path
        ).wait(timeout)

    # -- housekeeping ---------------------------------------------------------

    def _request_merges(self, manifest: Manifest) -> None:
        if any(due_merges(entry) for entry in manifest.namespaces.values()):
            background_merger(
                self._lock_path, self._merge_lock_path, self.path
            ).request()

    def _tidy_if_idle(self) -> None:
        """Delete what dead writers left, if nobody writes now (never waits).

        A process killed while writing leaves a temporary file (as large as a
        run, when it died merging); a lookup removes it, so that a rerun that
        finds every vector leaves no stray file either. Costs two listings.
        """
        if has_leftovers(self.path):
            tidy(self._lock_path, self._merge_lock_path, self.path)

    def _locked(self, lock_path: str):
        """Take a lock of the cache, once its path is known to be no one else's.

        The lock file is created beside the cache: beside a file that is not
        a tlsk cache, nothing is created (:func:`check_cache_file` refuses).
        """
        check_cache_file(self.path)
        return locked(lock_path)

    def _guarded(self, operation):
        """``operation()``, once the cache is in format 2 and without damaged files.

        A format-1 cache that it meets is migrated, a damaged file set aside;
        then it runs again.
        """

        def in_format_2():
            try:
                return operation()
            except Format1Error:
                migrate(self.path, self._lock_path)
            return operation()

        return without_damaged_files(self.path, self._lock_path, in_format_2)


def _shard_sources(shard: str) -> list[RunRef]:
    """The files holding a shard's rows: itself, or a whole cache's runs."""
    try:
        with open_h5(shard) as f:
            version, _ = check_root(f, shard, (ROLE_RUN, ROLE_MANIFEST, "legacy"))
            role = "legacy" if version == 1 else attr_str(f.attrs, "role", shard)
    except DamagedError as err:
        raise CacheError(str(err)) from None  # someone else's file: reported only
    if role == ROLE_MANIFEST:
        manifest = read_manifest(shard)
        return [run for e in manifest.namespaces.values() for run in e.runs]
    return [RunRef(shard, None, legacy=role == "legacy")]


def _source_namespaces(sources: Sequence[RunRef]) -> dict[str, tuple[str, int]]:
    found: dict[str, tuple[str, int]] = {}
    for source in sources:
        with open_h5(source.path) as f:
            roles = ("legacy",) if source.legacy else (ROLE_RUN,)
            _, ns_ids = check_root(f, source.path, roles)
            for ns in ns_ids:
                attrs = check_attrs(f["namespaces"][ns], source.path, ns)
                found.setdefault(ns, (attrs.fingerprint, attrs.dim))
    return found


def _remove_shard(shard: str) -> None:
    manifest = None  # a run's layout, or format 1: the file alone
    with contextlib.suppress(CacheError, OSError):
        manifest = read_manifest(shard)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(shard)
    if manifest is not None:
        for entry in manifest.namespaces.values():
            for run in entry.runs:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(run.path)
        with contextlib.suppress(OSError):
            os.rmdir(shard + RUNS_SUFFIX)
    fsync_dir(os.path.dirname(shard))


class CacheWriter:
    """Adds vectors to one namespace of a :class:`FeatureCache`.

    Obtain it with :meth:`FeatureCache.writer` and use it as a context manager;
    each :meth:`append` (inside :meth:`claim`) writes one run file and
    publishes it at once: the cost of an append is what it adds, whatever the
    cache holds. Runs are merged in the background (see :mod:`tlsk.cache`).
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
        self._fp_json = canonical_json(fingerprint)
        self._ns = sha256_hex(self._fp_json)
        self._dim = check_dim(dim)
        # The process's shared reader: a writing session then reads only the
        # runs published since the last one, not every run's index again.
        self._reader = shared_reader(cache.path, self._ns, self._fp_json, self._dim)
        self._active = False
        self._claims = 0

    def __repr__(self) -> str:
        return f"CacheWriter({self._cache.path!r}, namespace={self._ns[:12]!r})"

    def __enter__(self) -> CacheWriter:
        if self._active:
            raise RuntimeError("this CacheWriter is already in use")
        # What dead writers left (temporary files, orphan runs) goes now.
        cache = self._cache
        with contextlib.suppress(CacheError, OSError):
            if has_leftovers(cache.path, orphans=True):
                tidy(cache._lock_path, cache._merge_lock_path, cache.path)
        self._active = True
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._active = False

    @contextlib.contextmanager
    def claim(self) -> Iterator[CacheWriter]:
        """Hold the cache's exclusive inter-process write lock.

        Inside, :meth:`lookup` sees every run published by anyone so far and
        nobody else writes, so a key found missing can be computed once.
        """
        with self._cache._locked(self._cache._lock_path):
            self._claims += 1
            try:
                yield self
            finally:
                self._claims -= 1

    def lookup(self, keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`FeatureCache.lookup`, through this writer's own index."""
        return self._cache._guarded(lambda: self._locked_lookup(keys))

    def _locked_lookup(self, keys) -> tuple[np.ndarray, np.ndarray]:
        with self._reader.lock:
            return self._reader.lookup(keys)

    def append(self, keys: Sequence[bytes], vectors: Any) -> None:
        """Write one batch as one run file and publish it, atomically.

        Parameters
        ----------
        keys : sequence of bytes
            32-byte digests; a key repeated in the batch, or stored already,
            is stored once.
        vectors : array-like of shape (len(keys), dim)
            Finite real numbers, stored as float32.
        """
        if not self._active or not self._claims:
            raise RuntimeError(
                "CacheWriter.append must be called inside `with cache.writer(...) "
                "as w:` and `with w.claim():`"
            )
        keys = check_keys(keys)
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
        unique, first = first_occurrences(keys)
        self._cache._guarded(lambda: self._publish(unique, array[first], len(keys)))

    def _publish(self, keys: np.ndarray, vectors: np.ndarray, rows: int) -> None:
        manifest = self._cache._current()
        new = ~self._locked_lookup(keys)[0]
        keys, vectors = keys[new], vectors[new]
        entry = manifest.namespaces.get(self._ns) or NamespaceEntry(
            self._ns, self._fp_json, self._dim, 0, []
        )
        run = write_run(
            manifest.runs_dir,
            entry,
            keys,
            [vectors],
            rows,
            in_memory=vectors.nbytes <= IN_MEMORY_BYTES,
        )
        if run is not None:
            self._reader.remember(run.path, keys)
        entry = NamespaceEntry(
            self._ns,
            entry.fingerprint,
            entry.dim,
            entry.rows_written + rows,
            entry.runs + ([run] if run is not None else []),
        )
        write_manifest(manifest.with_namespace(entry, self._ns))
        _count_added(self._cache.path, self._ns, len(keys))
        if due_merges(entry):
            background_merger(
                self._cache._lock_path, self._cache._merge_lock_path, self._cache.path
            ).request()
