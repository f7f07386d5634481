"""Merging runs: the policy, the merge itself, and the background merger.

Policy: size-tiered, fanout ``FANOUT``. A run of ``r`` rows is in tier
``floor(log_FANOUT(r))``. When a tier of a namespace holds ``FANOUT`` runs,
they are merged into one run, which lands at least one tier higher (it holds
at least ``FANOUT`` times the smallest run's rows). A row is therefore
rewritten at most once per tier: at most ``log_FANOUT(N)`` times over the life
of a cache of N rows, so filling a cache costs O(N log N) however small the
appends, and a namespace holds at most ``(FANOUT - 1)`` runs per tier, a few
dozen in all (each lookup visits each run once). This is the size-tiered
compaction of Cassandra and of RocksDB's universal style; levelled
compaction (LevelDB) reads less per lookup but rewrites each row about
``FANOUT`` times per level, and a lookup here already reads one block per run.

Protocol (why readers never wait, and why a merge killed anywhere loses
nothing): a merge holds the *merge lock* (``PATH.merge.lock``), never the
write lock, while it reads its input runs and writes the merged run (under a
temporary name, fsynced, renamed). Then it takes the write lock for as long
as it takes to publish a manifest in which the merged run replaces its
inputs, provided they are all still published (a prune may have removed
them); only then does it delete the inputs. Killed before the publish, the
inputs are still the published runs and the merged file is an orphan; killed
after, the inputs are orphans. Orphans and temporary files are deleted by
whoever holds both locks (:func:`tidy`): nobody else can be writing them.

Runs of a namespace never share a key (a writer drops the keys already
stored before it writes a run), so a merge is a union; if a key did appear in
two runs, the older run's vector is kept, as a lookup would return it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from tlsk._util.files import fsync_dir, locked, stale_temps
from tlsk.cache._durable import write_h5
from tlsk.cache._keys import KEY_DTYPE, from_rows
from tlsk.cache._layout import (
    ROLE_RUN,
    CacheError,
    DataNamespace,
    check_data_namespace,
    check_root,
    open_h5,
    read_blocks,
    read_rows,
    refused,
    write_root,
)
from tlsk.cache._manifest import (
    RUN_RE,
    RUNS_SUFFIX,
    NamespaceEntry,
    RunRef,
    new_run_name,
    read_manifest,
    write_manifest,
)
from tlsk.cache._runs import write_namespace

logger = logging.getLogger("tlsk.cache")

FANOUT = 8
# Vectors copied per step of a merge: memory stays flat however large the runs.
_BLOCK_ROWS = 1 << 14


def tier(rows: int) -> int:
    return int(math.log(max(rows, 1), FANOUT) + 1e-9)


def due_merges(entry: NamespaceEntry) -> list[list[RunRef]]:
    """The groups of runs the policy merges now (``FANOUT`` runs of one tier)."""
    tiers: dict[int, list[RunRef]] = {}
    for run in entry.runs:
        tiers.setdefault(tier(run.rows), []).append(run)
    return [runs for _, runs in sorted(tiers.items()) if len(runs) >= FANOUT]


# -- reading sources ----------------------------------------------------------


@contextlib.contextmanager
def opened_sources(
    sources: Sequence[RunRef], ns: str, fp_json: str, dim: int
) -> Iterator[list[tuple[RunRef, DataNamespace]]]:
    """Open and check each source's namespace ``ns``; sources without it are skipped.

    A source is a run (or a shard in a run's layout), or a format-1 file if
    it says so (``legacy``).
    """
    with contextlib.ExitStack() as stack:
        groups = []
        for source in sources:
            try:
                f = stack.enter_context(open_h5(source.path))
            except FileNotFoundError:
                raise CacheError(
                    f"feature cache run {source.path!r} vanished"
                ) from None
            roles = ("legacy",) if source.legacy else (ROLE_RUN,)
            _, ns_ids = check_root(f, source.path, roles)
            if ns not in ns_ids:
                continue
            group = check_data_namespace(f, source.path, ns)
            if group.fingerprint != fp_json or group.dim != dim:
                raise refused(source.path, f"namespace {ns} differs from the cache's")
            groups.append((source, group))
        yield groups


def read_keys(group: DataNamespace, path: str) -> np.ndarray:
    blocks = [from_rows(block) for _, block in read_blocks(group.keys, path)]
    return np.concatenate(blocks) if blocks else np.empty(0, KEY_DTYPE)


def union_plan(
    groups: Sequence[tuple[RunRef, DataNamespace]], exclude=None
) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """``(keys, vector blocks)`` of the union of ``groups``, sorted by key.

    Of two equal keys the older source's (earlier in ``groups``) is kept.
    ``exclude(keys) -> bool mask`` drops keys stored elsewhere already.
    """
    keys, source, row = [], [], []
    for i, (ref, group) in enumerate(groups):
        k = read_keys(group, ref.path)
        keys.append(k)
        source.append(np.full(len(k), i, np.int32))
        row.append(np.arange(len(k), dtype=np.int64))
    if not keys:
        return np.empty(0, KEY_DTYPE), iter(())
    keys, source, row = map(np.concatenate, (keys, source, row))
    # Stable, so the older of two equal keys comes first. Sorted sources make
    # this a merge of runs (timsort finds them), not a full sort.
    order = np.argsort(keys, kind="stable")
    keys, source, row = keys[order], source[order], row[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    if exclude is not None and len(keys):
        first &= ~exclude(keys)
    keys, source, row = keys[first], source[first], row[first]
    return keys, _vector_blocks(groups, source, row)


def _vector_blocks(groups, source, row) -> Iterator[np.ndarray]:
    """The vectors of ``(source, row)`` pairs, in order, a block at a time."""
    for start in range(0, len(source), _BLOCK_ROWS):
        src, rows = (
            source[start : start + _BLOCK_ROWS],
            row[start : start + _BLOCK_ROWS],
        )
        out = None
        for i in np.unique(src).tolist():
            ref, group = groups[i]
            if out is None:
                out = np.empty((len(src), group.dim), np.float32)
            take = np.flatnonzero(src == i)
            wanted = rows[take]
            order = np.argsort(wanted, kind="stable")
            out[take[order]] = read_rows(group.vectors, wanted[order], ref.path)
        yield out


def write_run(
    runs_dir: str,
    entry: NamespaceEntry,
    keys: np.ndarray,
    blocks,
    rows_written: int,
    in_memory: bool = False,
) -> RunRef | None:
    """Write ``keys`` (sorted, unique) and their vector blocks as a new run."""
    if not len(keys):
        return None
    os.makedirs(runs_dir, exist_ok=True)
    path = os.path.join(runs_dir, new_run_name(entry.id))

    def build(f):
        namespaces = write_root(f, ROLE_RUN)
        write_namespace(
            namespaces,
            entry.id,
            entry.fingerprint,
            entry.dim,
            rows_written,
            keys,
            blocks,
        )

    write_h5(path, build, in_memory=in_memory)
    fsync_dir(runs_dir)
    return RunRef(path, len(keys))


# -- merging ------------------------------------------------------------------


def merge(
    lock_path: str, manifest_path: str, ns: str, inputs: Sequence[RunRef]
) -> bool:
    """Merge ``inputs`` (runs of ``ns``) into one run; see the module docstring.

    The caller holds the merge lock. True if the merged run was published.
    """
    manifest = read_manifest(manifest_path)
    entry = manifest.namespaces.get(ns)
    if entry is None or not {r.path for r in inputs} <= {r.path for r in entry.runs}:
        return False
    with opened_sources(inputs, ns, entry.fingerprint, entry.dim) as groups:
        keys, blocks = union_plan(groups)
        rows_written = sum(group.rows_written for _, group in groups)
        merged = write_run(manifest.runs_dir, entry, keys, blocks, rows_written)
    with locked(lock_path):
        current = read_manifest(manifest_path)
        now = current.namespaces.get(ns)
        gone = {r.path for r in inputs}
        if now is None or not gone <= {r.path for r in now.runs}:
            _unlink([merged.path] if merged else [])
            return False
        runs, placed = [], False
        for run in now.runs:
            if run.path in gone:
                if not placed and merged is not None:
                    runs.append(merged)
                placed = True
            else:
                runs.append(run)
        entry = NamespaceEntry(ns, now.fingerprint, now.dim, now.rows_written, runs)
        write_manifest(current.with_namespace(entry, ns))
    _unlink(sorted(gone))
    fsync_dir(manifest.runs_dir)
    return True


def merge_due(
    lock_path: str, merge_lock_path: str, manifest_path: str, everything: bool = False
) -> int:
    """Run the merges due (``everything``: one run per namespace); count them.

    Returns -1 without merging if another process holds the merge lock.
    """
    done = 0
    with locked(merge_lock_path, blocking=everything) as held:
        if not held:
            return -1
        tidy(lock_path, merge_lock_path, manifest_path)
        while True:
            manifest = read_manifest(manifest_path)
            groups = [
                (ns, entry.runs if everything else due)
                for ns, entry in sorted(manifest.namespaces.items())
                for due in ([entry.runs] if everything else due_merges(entry))
                if len(due) > 1
            ]
            if not groups:
                return done
            for ns, inputs in groups:
                done += merge(lock_path, manifest_path, ns, inputs)


def tidy(lock_path: str, merge_lock_path: str, manifest_path: str) -> None:
    """Delete orphan runs and temporary files, if nobody can be writing them.

    Needs both locks: every writer holds the write lock, every merge the
    merge lock, so whatever is unpublished now belongs to the dead.
    """
    with locked(merge_lock_path, blocking=False) as merging:
        if not merging:
            return
        with locked(lock_path, blocking=False) as writing:
            if not writing:
                return
            manifest = read_manifest(manifest_path)
            folder = os.path.dirname(manifest_path) or "."
            stale = stale_temps(folder, os.path.basename(manifest_path))
            stale += stale_temps(manifest.runs_dir)
            live = {r.name for e in manifest.namespaces.values() for r in e.runs}
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                stale += [
                    os.path.join(manifest.runs_dir, name)
                    for name in os.listdir(manifest.runs_dir)
                    if RUN_RE.match(name) and name not in live
                ]
            _unlink(stale)


def has_leftovers(manifest_path: str, orphans: bool = False) -> bool:
    """Whether temporary files (or, with ``orphans``, unpublished runs) lie around.

    Cheap, and taking no lock: two listings (and, with ``orphans``, a third
    and the manifest, mostly not parsed again). A run being published now
    counts too; :func:`tidy` decides under the locks.
    """
    folder = os.path.dirname(manifest_path) or "."
    runs_dir = manifest_path + RUNS_SUFFIX
    if stale_temps(folder, os.path.basename(manifest_path)) or stale_temps(runs_dir):
        return True
    if not orphans:
        return False
    try:
        names = {n for n in os.listdir(runs_dir) if RUN_RE.match(n)}
    except (FileNotFoundError, NotADirectoryError):
        return False
    manifest = read_manifest(manifest_path)
    live = {r.name for e in manifest.namespaces.values() for r in e.runs}
    return bool(names - live)


def _unlink(paths) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# -- the background merger ----------------------------------------------------


class BackgroundMerger:
    """One thread per cache and process that runs the merges due, then ends.

    Not a daemon: a process that exits normally finishes the merge under way
    (a kill loses nothing either, see the module docstring).
    """

    def __init__(self, lock_path: str, merge_lock_path: str, manifest_path: str):
        self._paths = (lock_path, merge_lock_path, manifest_path)
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self._pid = os.getpid()

    def request(self) -> None:
        """Ask for the due merges to run soon, in the background."""
        with self._guard:
            self._wanted.set()
            if os.getpid() != self._pid:  # a forked child has no thread
                self._thread, self._pid = None, os.getpid()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="tlsk-cache-merge", daemon=False
                )
                self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no merge is under way here; False on timeout."""
        thread = self._thread
        if thread is not None and os.getpid() == self._pid:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _work(self) -> None:
        while True:
            with self._guard:
                if not self._wanted.is_set():
                    self._thread = None
                    return
                self._wanted.clear()
            try:
                merge_due(*self._paths)
            except Exception as exc:  # noqa: BLE001 - a merge may fail; data stays
                # Nothing was replaced (see the module docstring): the runs
                # stay published and the next writer's merge tries again.
                logger.warning("background merge of %r failed: %s", self._paths[2], exc)


_MERGERS: dict[str, BackgroundMerger] = {}
_MERGERS_LOCK = threading.Lock()


def background_merger(lock_path, merge_lock_path, manifest_path) -> BackgroundMerger:
    key = os.path.abspath(manifest_path)
    with _MERGERS_LOCK:
        merger = _MERGERS.get(key)
        if merger is None:
            merger = _MERGERS[key] = BackgroundMerger(
                os.path.abspath(lock_path), os.path.abspath(merge_lock_path), key
            )
        return merger
