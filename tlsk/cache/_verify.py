"""Reading a whole cache to find what is wrong with it (``tlsk cache verify``).

Verifying writes nothing: a format-1 cache is checked as it is, file by file.
"""

from __future__ import annotations

import numpy as np

from tlsk.cache._bloom import may_hold
from tlsk.cache._keys import KEY_DTYPE, from_rows
from tlsk.cache._layout import (
    FENCE_ROWS,
    ROLE_RUN,
    CacheError,
    Format1Error,
    check_data_namespace,
    check_root,
    open_h5,
    read,
    read_blocks,
)
from tlsk.cache._manifest import RunRef, read_manifest
from tlsk.cache._migrate import parts

_RETRIES = 10


def verify_cache(path: str) -> list[str]:
    """Every problem found in the cache at ``path``; [] when healthy."""
    for _ in range(_RETRIES):
        try:
            manifest = read_manifest(path)
        except Format1Error:
            return _verify_format_1(path)
        except CacheError as exc:
            return [str(exc)]
        problems, vanished = [], False
        for ns, entry in sorted(manifest.namespaces.items()):
            keys = []
            for run in entry.runs:
                try:
                    opened = open_h5(run.path)
                except FileNotFoundError:
                    vanished = True  # merged meanwhile, or lost: look again
                    break
                except CacheError as exc:
                    problems.append(str(exc))
                    continue
                try:
                    with opened as f:
                        run_keys, run_problems = _verify_run(f, run, entry)
                except CacheError as exc:  # what h5py raised, as damage
                    run_keys, run_problems = np.empty(0, KEY_DTYPE), [str(exc)]
                problems += run_problems
                keys.append(run_keys)
            if vanished:
                break
            problems += _check_disjoint(path, ns, keys, entry)
        if not vanished:
            return problems
        if read_manifest(path).identity == manifest.identity:
            return problems + [
                f"feature cache {path!r}: a run named by the manifest is missing "
                f"({run.path!r})"
            ]
    raise CacheError(f"feature cache {path!r} kept changing while verified")


def _verify_run(f, run: RunRef, entry) -> tuple[np.ndarray, list[str]]:
    where = f"{run.path!r} /namespaces/{entry.id}"
    empty = np.empty(0, KEY_DTYPE)
    try:
        _, ns_ids = check_root(f, run.path, (ROLE_RUN,))
        if entry.id not in ns_ids:
            return empty, [f"{where}: the namespace is missing"]
        group = check_data_namespace(f, run.path, entry.id)
        if group.fingerprint != entry.fingerprint or group.dim != entry.dim:
            return empty, [f"{where}: fingerprint or dim differ from the manifest's"]
        if group.n != run.rows:
            return empty, [f"{where}: {group.n} rows, the manifest says {run.rows}"]
        keys = np.concatenate(
            [from_rows(b) for _, b in read_blocks(group.keys, run.path)] or [empty]
        )
        fences = from_rows(read(group.fences, slice(None), run.path))
        bloom = read(group.bloom, slice(None), run.path)
        problems = _vector_problems(group, run.path, where)
    except CacheError as exc:
        return empty, [str(exc)]
    if len(keys) > 1 and not (keys[1:] > keys[:-1]).all():
        problems.append(f"{where}: keys are not sorted and unique")
    if not np.array_equal(fences, keys[::FENCE_ROWS]):
        problems.append(f"{where}: fences do not match the keys")
    if not may_hold(bloom, keys).all():
        problems.append(f"{where}: the Bloom filter misses keys the run holds")
    return keys, problems


def _vector_problems(group, path: str, where: str) -> list[str]:
    for start, block in read_blocks(group.vectors, path):
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            return [
                f"{where}: vector at row {start + int(np.argmax(bad))} is not finite"
            ]
    return []


def _check_disjoint(path, ns, keys, entry) -> list[str]:
    problems = []
    if len(keys) > 1:
        every = np.concatenate(keys)
        duplicates = len(every) - len(np.unique(every))
        if duplicates:
            problems.append(
                f"{path!r} /namespaces/{ns}: {duplicates} keys stored in two runs"
            )
    if entry.rows_written < entry.entries:
        problems.append(
            f"{path!r} /namespaces/{ns}: rows_written={entry.rows_written} is less "
            f"than its {entry.entries} entries"
        )
    return problems


def _verify_format_1(path: str) -> list[str]:
    """A format-1 cache: each file on its own, as format 1 checked it."""
    problems = []
    for source in [path, *parts(path)]:
        try:
            opened = open_h5(source)
        except FileNotFoundError:
            continue
        except CacheError as exc:
            problems.append(str(exc))
            continue
        try:
            with opened as f:
                problems += _verify_format_1_file(f, source)
        except CacheError as exc:  # what h5py raised, as damage
            problems.append(str(exc))
    return problems


def _verify_format_1_file(f, source: str) -> list[str]:
    """The problems of one format-1 file (the main file or a part)."""
    problems = []
    try:
        _, ns_ids = check_root(f, source, ("legacy",))
    except CacheError as exc:
        return [str(exc)]
    for ns in ns_ids:
        where = f"{source!r} /namespaces/{ns}"
        try:
            group = check_data_namespace(f, source, ns)
            keys = np.concatenate(
                [from_rows(b) for _, b in read_blocks(group.keys, source)]
                or [np.empty(0, KEY_DTYPE)]
            )
            problems += _vector_problems(group, source, where)
        except CacheError as exc:
            problems.append(str(exc))
            continue
        duplicates = len(keys) - len(np.unique(keys))
        if duplicates:
            problems.append(f"{where}: {duplicates} duplicate keys")
        if group.rows_written < group.n:
            problems.append(
                f"{where}: rows_written={group.rows_written} is less than "
                f"its {group.n} entries"
            )
    return problems
