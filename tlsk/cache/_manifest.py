"""The manifest: the small file that names the live runs of each namespace.

The cache's path (``features.h5``) is the manifest. Publishing a change (a new
run, a merge, a prune) is writing a new manifest and renaming it over the old
one: readers see the runs before or after, never a mixture. Its size grows
with the number of runs (a few dozen per namespace), never with the vectors.

For plain h5py, each namespace group also holds ``keys`` and ``vectors`` as
HDF5 virtual datasets: one dataset over the namespace's runs, in order.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import threading
import time

import h5py
import numpy as np

from tlsk._files import file_identity
from tlsk.cache._durable import write_h5
from tlsk.cache._keys import KEY_BYTES
from tlsk.cache._layout import (
    FORMAT_VERSION,
    ROLE_MANIFEST,
    attr_str,
    check_attrs,
    check_root,
    hard_children,
    open_h5,
    open_identity,
    refused,
    write_root,
)

RUNS_SUFFIX = ".runs"
RUN_RE = re.compile(r"^[0-9a-f]{16}-\d{20}-[0-9a-f]{8}\.h5$")


def new_run_name(ns: str) -> str:
    return f"{ns[:16]}-{time.time_ns():020d}-{secrets.token_hex(4)}.h5"


@dataclasses.dataclass(frozen=True)
class RunRef:
    """One file holding a namespace's rows: a run, or a version-1 file (``legacy``)."""

    path: str
    rows: int | None  # None: a version-1 part, counted when opened
    legacy: bool = False

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


@dataclasses.dataclass
class NamespaceEntry:
    id: str
    fingerprint: str
    dim: int
    rows_written: int
    runs: list[RunRef]

    @property
    def entries(self) -> int:
        return sum(run.rows for run in self.runs)


@dataclasses.dataclass
class Manifest:
    """What a manifest says, and the identity of the file it was read from."""

    path: str
    version: int
    namespaces: dict[str, NamespaceEntry]
    identity: tuple | None = None

    @property
    def runs_dir(self) -> str:
        return self.path + RUNS_SUFFIX

    def with_namespace(self, entry: NamespaceEntry | None, ns: str) -> Manifest:
        namespaces = dict(self.namespaces)
        if entry is None or not entry.runs:
            namespaces.pop(ns, None)
        else:
            namespaces[ns] = entry
        return Manifest(self.path, self.version, namespaces)


def empty_manifest(path: str) -> Manifest:
    return Manifest(path, FORMAT_VERSION, {})


def read_manifest(path: str) -> Manifest:
    """The manifest at ``path`` (an empty one if there is no file).

    A version-1 file is read as a manifest whose every namespace's runs are
    the file itself (its parts are listed by :mod:`tlsk.cache._legacy`).
    """
    try:
        f = open_h5(path)
    except FileNotFoundError:
        return empty_manifest(path)
    with f:
        identity = open_identity(f)
        publish_id = attr_str(f.attrs, "publish_id")
        known = _PARSED.get(path)
        if known is not None and publish_id is not None and identity is not None:
            if known[:2] == (identity, publish_id):
                return _copy(known[2], path)
        manifest = _parse(f, path)
    _remember(path, identity, publish_id, manifest)
    return _copy(manifest, path)


# Manifests parsed, by path as given (their runs' paths are spelled after it).
# One read again unchanged costs an open and one attribute, not a parse:
# "unchanged" is the same identity (not rewritten in place) and the same
# random publish_id (not a newer file that reuses the inode number and the
# times of the one parsed). Callers get copies, theirs to change.
_PARSED: dict[str, tuple[tuple, str, Manifest]] = {}
_PARSED_MAX = 16
_PARSED_LOCK = threading.Lock()


def _remember(path, identity, publish_id, manifest) -> None:
    if publish_id is None or identity is None:
        return
    with _PARSED_LOCK:
        _PARSED.pop(path, None)
        if len(_PARSED) >= _PARSED_MAX:
            del _PARSED[next(iter(_PARSED))]
        _PARSED[path] = (identity, publish_id, manifest)


def _copy(manifest: Manifest, path: str) -> Manifest:
    namespaces = {
        ns: dataclasses.replace(entry, runs=list(entry.runs))
        for ns, entry in manifest.namespaces.items()
    }
    return Manifest(path, manifest.version, namespaces, manifest.identity)


def _parse(f: h5py.File, path: str) -> Manifest:
    version, ns_ids = check_root(f, path, (ROLE_MANIFEST, "legacy"))
    namespaces = {}
    for ns in ns_ids:
        group = f["namespaces"][ns]
        attrs = check_attrs(group, path, ns)
        if version == 1:
            runs = [RunRef(path, None, legacy=True)]
        else:
            runs = _run_refs(group, path, ns)
        namespaces[ns] = NamespaceEntry(
            ns, attrs.fingerprint, attrs.dim, attrs.rows_written, runs
        )
    return Manifest(path, version, namespaces, open_identity(f))


def _run_refs(group: h5py.Group, path: str, ns: str) -> list[RunRef]:
    hard_children(group, path)
    names, rows = group.attrs.get("runs"), group.attrs.get("run_rows")
    if names is None or rows is None or len(names) != len(rows):
        raise refused(path, f"/namespaces/{ns} lacks matching runs and run_rows")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    bad = [n for n in names if not (RUN_RE.match(n) and n.startswith(ns[:16]))]
    if bad or np.asarray(rows).dtype.kind not in "iu" or (np.asarray(rows) < 1).any():
        raise refused(path, f"/namespaces/{ns} names runs {bad or names!r}")
    _check_views(group, path, ns, int(np.sum(rows)))
    runs_dir = path + RUNS_SUFFIX
    return [
        RunRef(os.path.join(runs_dir, name), int(count))
        for name, count in zip(names, rows.tolist(), strict=True)
    ]


def _check_views(group: h5py.Group, path: str, ns: str, rows: int) -> None:
    """The virtual keys and vectors must span exactly the runs' rows.

    tlsk reads the runs, not these views, but plain h5py users read the views:
    a manifest whose views say something else is refused, not half-trusted.
    """
    where = f"/namespaces/{ns}"
    if sorted(group.keys()) != ["keys", "vectors"]:
        raise refused(path, f"{where} must hold exactly 'keys' and 'vectors'")
    for name in ("keys", "vectors"):
        ds = group[name]
        if not isinstance(ds, h5py.Dataset) or ds.shape is None or not ds.shape:
            raise refused(path, f"{where}/{name} is not a dataset of rows")
        if ds.shape[0] != rows:
            raise refused(
                path,
                f"{where}/{name} declares {ds.shape[0]} rows; its runs hold {rows}",
            )


def write_manifest(manifest: Manifest) -> Manifest:
    """Publish ``manifest`` (atomically) and return it with its new identity."""
    path = manifest.path
    folder = os.path.basename(manifest.runs_dir)

    publish_id = secrets.token_hex(16)

    def build(f: h5py.File) -> None:
        namespaces = write_root(f, ROLE_MANIFEST)
        f.attrs["publish_id"] = publish_id
        for ns, entry in sorted(manifest.namespaces.items()):
            group = namespaces.create_group(ns)
            group.attrs["fingerprint"] = entry.fingerprint
            group.attrs["dim"] = np.int64(entry.dim)
            group.attrs["rows_written"] = np.int64(entry.rows_written)
            group.attrs["runs"] = np.array([run.name for run in entry.runs], "S")
            group.attrs["run_rows"] = np.array(
                [run.rows for run in entry.runs], np.int64
            )
            _virtual(group, "keys", entry, KEY_BYTES, np.uint8, folder, ns)
            _virtual(group, "vectors", entry, entry.dim, np.float32, folder, ns)

    write_h5(path, build, in_memory=True)
    identity = file_identity(path)
    # What a reader of the file parses, remembered: the next read is cheap.
    written = Manifest(
        path,
        FORMAT_VERSION,
        {
            ns: NamespaceEntry(
                ns,
                entry.fingerprint,
                entry.dim,
                entry.rows_written,
                [
                    RunRef(os.path.join(manifest.runs_dir, r.name), r.rows)
                    for r in entry.runs
                ],
            )
            for ns, entry in manifest.namespaces.items()
        },
        identity,
    )
    _remember(path, identity, publish_id, written)
    return _copy(written, path)


def _virtual(group, name, entry, width, dtype, folder, ns):
    layout = h5py.VirtualLayout((entry.entries, width), dtype)
    start = 0
    for run in entry.runs:
        source = h5py.VirtualSource(
            f"{folder}/{run.name}", f"/namespaces/{ns}/{name}", (run.rows, width)
        )
        layout[start : start + run.rows] = source
        start += run.rows
    group.create_virtual_dataset(
        name, layout, fillvalue=np.nan if width != KEY_BYTES else 0
    )
