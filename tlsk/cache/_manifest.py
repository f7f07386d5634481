"""The manifest: the small file that names the live runs of each namespace.

The cache's path (``features.h5``) is the manifest. Publishing a change (a new
run, a merge, a prune) is writing a new manifest and renaming it over the old
one: readers see the runs before or after, never a mixture. Its size grows
with the number of runs (a few dozen per namespace), never with the vectors.

For plain h5py, each namespace group also holds ``keys`` and ``vectors`` as
HDF5 virtual datasets: one dataset over the namespace's runs, in order. tlsk
never reads through them, but it checks that they map the namespace's own
runs and nothing else, so that a plain h5py reader reads no other file.

A manifest is checksummed as a whole: it begins with a user block (which
HDF5 skips) holding ``MANIFEST_MARK`` and the SHA-256 of every byte after
it, and it is read whole (it is small) and checked before HDF5 parses a byte
of it. A manifest whose bytes changed is damaged, even where HDF5 keeps no
checksum of its own: in the global heap, which holds the string attributes
and the mappings of the virtual datasets (where a flipped byte can crash
HDF5 when the dataset is opened; the views of a manifest whose checksum
fails are therefore not opened, unless they lack the ``VIEW_MARK``
attribute that marks the views tlsk wrote: someone else put them there). A manifest
without the user block is parsed with every check but the checksum, and the
next change rewrites it with one.

A format-1 cache at the manifest's path is not read as a manifest: reading
it raises :class:`~tlsk.cache._layout.Format1Error`, and the caller migrates
it (:mod:`tlsk.cache._migrate`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import secrets
import stat
import time

import h5py
import numpy as np

from tlsk._util.files import file_identity
from tlsk._util.memo import Memo
from tlsk.cache._durable import write_h5
from tlsk.cache._keys import KEY_BYTES
from tlsk.cache._layout import (
    FORMAT_VERSION,
    LEGACY_VERSION,
    MANIFEST_MARK,
    MAX_MANIFEST_BYTES,
    ROLE_MANIFEST,
    RUN_RE,
    RUNS_SUFFIX,
    USER_BLOCK_BYTES,
    CacheFile,
    DamagedError,
    Format1Error,
    attr_value,
    check_attrs,
    check_regular,
    check_root,
    hard_children,
    heap_problem,
    not_a_cache,
    open_h5,
    open_identity,
    refused,
    write_root,
)

_DIGEST_HEX = 64
_VIEWS = ("keys", "vectors")
# Each view tlsk writes carries this attribute (its number of runs), in its
# object header, which HDF5 checksums.
VIEW_MARK = "tlsk_view_runs"


def new_run_name(ns: str) -> str:
    return f"{ns[:16]}-{time.time_ns():020d}-{secrets.token_hex(4)}.h5"


@dataclasses.dataclass(frozen=True)
class RunRef:
    """One file holding a namespace's rows: a run, or a format-1 file (``legacy``)."""

    path: str
    rows: int | None  # None: a file joined or migrated, counted when opened
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

    A format-1 file raises :class:`~tlsk.cache._layout.Format1Error`.
    """
    try:
        check_regular(path)
    except FileNotFoundError:
        return empty_manifest(path)
    sealed = _read_sealed(path)
    if sealed is None:  # no user block: an unsealed manifest, or a format-1 file
        with open_h5(path) as f:
            return _parse(f, path, open_identity(f), intact=None)
    data, identity, digest, intact = sealed
    known = _PARSED.get(path)
    if intact and known is not None and known[0] == digest:
        return _copy(known[1], path, identity)
    with _in_memory(data, path, identity) as f:
        manifest = _parse(f, path, identity, intact=intact)
    if not intact:
        raise DamagedError(
            path,
            "its bytes do not match the checksum it was written with (changed, "
            "truncated or extended)",
            identity,
        )
    _remember(path, digest, manifest)
    return _copy(manifest, path, identity)


def _read_sealed(path: str):
    """``(bytes, identity, digest, intact)`` of a checksummed manifest, else None.

    Opened without following a link and without waiting: a FIFO put in its
    place since :func:`check_regular` is refused, not waited on.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None  # replaced meanwhile: open_h5 looks again
    except OSError as exc:
        raise not_a_cache(path, str(exc)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise not_a_cache(path, "it is not a regular file")
        if os.pread(fd, len(MANIFEST_MARK), 0) != MANIFEST_MARK:
            return None
        if st.st_size > MAX_MANIFEST_BYTES:
            raise refused(
                path,
                f"a manifest of {st.st_size} bytes (at most {MAX_MANIFEST_BYTES})",
            )
        data = _read_all(fd, st.st_size)
    finally:
        os.close(fd)
    start = len(MANIFEST_MARK)
    stored = data[start : start + _DIGEST_HEX]
    digest = hashlib.sha256(data[USER_BLOCK_BYTES:]).hexdigest().encode()
    intact = len(data) > USER_BLOCK_BYTES and stored == digest
    return data, file_identity(path, st), digest, intact


def _read_all(fd: int, size: int) -> bytes:
    chunks, offset = [], 0
    while offset <= size:
        chunk = os.pread(fd, max(size - offset, 0) + 1, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        if offset > MAX_MANIFEST_BYTES:
            break
    return b"".join(chunks)


def _in_memory(data: bytes, path: str, identity: tuple | None) -> CacheFile:
    """The manifest's bytes, opened by h5py; its errors sorted as for a file."""
    stall = heap_problem(lambda offset, n: data[offset : offset + n])
    if stall is not None:
        raise DamagedError(path, stall, identity)
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except Exception as exc:  # noqa: BLE001 - a file of tlsk's mark: damage
        raise DamagedError(path, exc, identity) from None
    return CacheFile(path, f, identity)


# Manifests parsed, by path as given (their runs' paths are spelled after it),
# with the digest of their bytes: one read again unchanged costs a read and a
# hash, not a parse. Callers get copies, theirs to change.
_PARSED = Memo("parsed cache manifests", max_entries=16)


def _remember(path: str, digest: bytes, manifest: Manifest) -> None:
    _PARSED.put(path, (digest, manifest))


def _copy(manifest: Manifest, path: str, identity: tuple | None) -> Manifest:
    namespaces = {
        ns: dataclasses.replace(entry, runs=list(entry.runs))
        for ns, entry in manifest.namespaces.items()
    }
    return Manifest(path, manifest.version, namespaces, identity)


def _parse(f: h5py.File, path: str, identity, intact: bool | None) -> Manifest:
    """Check and read a manifest.

    ``intact``: True when its checksum held, False when it failed (then
    only the views that are not tlsk's own objects are opened, to say why
    they are refused), None for a manifest written without one.
    """
    version, ns_ids = check_root(f, path, (ROLE_MANIFEST, "legacy"))
    if version == LEGACY_VERSION:
        if intact is not None:  # format 1 has no user block: not tlsk's
            raise refused(path, "it has a manifest's user block and format_version 1")
        raise Format1Error(path)
    namespaces = {}
    for ns in ns_ids:
        group = f["namespaces"][ns]
        attrs = check_attrs(group, path, ns)
        runs = _run_refs(group, path, ns, attrs.dim, intact)
        namespaces[ns] = NamespaceEntry(
            ns, attrs.fingerprint, attrs.dim, attrs.rows_written, runs
        )
    return Manifest(path, version, namespaces, identity)


def _run_refs(
    group: h5py.Group, path: str, ns: str, dim: int, intact: bool | None
) -> list[RunRef]:
    hard_children(group, path)
    names = attr_value(group.attrs, "runs", path)
    rows = attr_value(group.attrs, "run_rows", path)
    if (
        not isinstance(names, np.ndarray)
        or not isinstance(rows, np.ndarray)
        or names.ndim != 1
        or rows.shape != names.shape
    ):
        raise refused(path, f"/namespaces/{ns} lacks matching runs and run_rows")
    names = [
        n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names
    ]
    bad = [n for n in names if not (RUN_RE.match(n) and n.startswith(ns[:16]))]
    if bad or rows.dtype.kind not in "iu" or (rows < 1).any():
        raise refused(path, f"/namespaces/{ns} names runs {bad or names!r}")
    _check_views(group, path, ns, names, rows.tolist(), dim, intact)
    runs_dir = path + RUNS_SUFFIX
    return [
        RunRef(os.path.join(runs_dir, name), int(count))
        for name, count in zip(names, rows.tolist(), strict=True)
    ]


def _check_views(group, path, ns, names, rows, dim, intact) -> None:
    """The virtual keys and vectors must map exactly the namespace's runs.

    tlsk reads the runs, not these views, but plain h5py users read the views:
    a manifest whose views say something else, or read other files, is
    refused, not half-trusted.
    """
    where = f"/namespaces/{ns}"
    if sorted(group.keys()) != list(_VIEWS):
        raise refused(path, f"{where} must hold exactly 'keys' and 'vectors'")
    for name in _VIEWS:
        if intact is False and _own_view(group, name, len(names)):
            continue  # tlsk's own view, whose mapping no checksum vouches for now
        _check_view(group[name], path, f"{where}/{name}", ns, names, rows, dim)


def _own_view(group: h5py.Group, name: str, runs: int) -> bool:
    """Whether a view is one tlsk wrote, from its header alone (never opened).

    Opening a virtual dataset decodes its mapping, which HDF5 keeps without a
    checksum (a flipped byte there can crash HDF5): a view that carries
    ``VIEW_MARK`` is left closed, and one that does not (put there by someone
    else) is opened and checked.
    """
    mark, member = VIEW_MARK.encode(), name.encode()
    if not h5py.h5a.exists(group.id, mark, obj_name=member):
        return False
    attr = h5py.h5a.open(group.id, mark, obj_name=member)
    if attr.shape != () or attr.dtype.kind not in "iu":
        return False
    value = np.empty((), attr.dtype)
    attr.read(value)
    return int(value) == runs


def _check_view(ds, path, where, ns, names, rows, dim) -> None:
    name = where.rsplit("/", 1)[1]
    width, dtype = (KEY_BYTES, np.uint8) if name == "keys" else (dim, np.float32)
    if not isinstance(ds, h5py.Dataset) or ds.shape is None or not ds.shape:
        raise refused(path, f"{where} is not a dataset of rows")
    total = sum(rows)
    if ds.shape[0] != total:
        raise refused(
            path, f"{where} declares {ds.shape[0]} rows; its runs hold {total}"
        )
    if ds.shape != (total, width) or ds.dtype != dtype:
        raise refused(
            path,
            f"{where} is {ds.dtype} {ds.shape}; expected {np.dtype(dtype)} "
            f"{(total, width)}",
        )
    plist = ds.id.get_create_plist()
    if plist.get_external_count():
        raise refused(path, f"{where} keeps its data in other files (external storage)")
    if plist.get_layout() != h5py.h5d.VIRTUAL or plist.get_nfilters():
        raise refused(path, f"{where} is not a virtual dataset over the runs")
    expected = f"/namespaces/{ns}/{name}"
    count = plist.get_virtual_count()
    for i in range(count):
        # First what a read would open: the namespace's own runs, only.
        source = plist.get_virtual_filename(i)
        target = plist.get_virtual_dsetname(i)
        if target != expected or not any(_own_run(source, run) for run in names):
            raise refused(
                path,
                f"{where} reads {target!r} of {source!r}; tlsk's views read "
                f"{expected!r} of the namespace's own runs, in the folder of runs "
                "beside the manifest",
            )
    if count != len(names):
        raise refused(
            path, f"{where} maps {count} sources; the namespace has {len(names)} runs"
        )
    start = 0
    for i, (run, run_rows) in enumerate(zip(names, rows, strict=True)):
        source = plist.get_virtual_filename(i)
        if not _own_run(source, run):
            raise refused(path, f"{where} maps {source!r} where {run!r} belongs")
        bounds = plist.get_virtual_vspace(i).get_select_bounds()
        if bounds != ((start, 0), (start + run_rows - 1, width - 1)):
            raise refused(
                path, f"{where} maps {source!r} to rows {bounds}, not to its own"
            )
        start += run_rows


def _own_run(source: str, run: str) -> bool:
    """Whether a view's source names the run ``run`` in a folder of runs beside it.

    The folder is the manifest's name and ``RUNS_SUFFIX`` when tlsk wrote
    it; any such folder is accepted (a cache renamed with its runs keeps
    working): none lies outside the manifest's folder.
    """
    folder, _, name = source.partition("/")
    return (
        name == run
        and folder.endswith(RUNS_SUFFIX)
        and folder != RUNS_SUFFIX
        and "%" not in source  # HDF5 expands %b in source names
        and "\\" not in source
    )


def write_manifest(manifest: Manifest) -> Manifest:
    """Publish ``manifest`` (atomically) and return it with its new identity."""
    path = manifest.path
    folder = os.path.basename(manifest.runs_dir)

    def build(f: h5py.File) -> None:
        namespaces = write_root(f, ROLE_MANIFEST)
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

    sealed = {}

    def seal(rest: bytes) -> bytes:
        sealed["digest"] = hashlib.sha256(rest).hexdigest().encode()
        return MANIFEST_MARK + sealed["digest"] + b"\n"

    write_h5(path, build, in_memory=True, user_block=seal)
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
    _remember(path, sealed["digest"], written)
    return _copy(written, path, identity)


def _virtual(group, name, entry, width, dtype, folder, ns):
    layout = h5py.VirtualLayout((entry.entries, width), dtype)
    start = 0
    for run in entry.runs:
        source = h5py.VirtualSource(
            f"{folder}/{run.name}", f"/namespaces/{ns}/{name}", (run.rows, width)
        )
        layout[start : start + run.rows] = source
        start += run.rows
    view = group.create_virtual_dataset(
        name, layout, fillvalue=np.nan if width != KEY_BYTES else 0
    )
    view.attrs[VIEW_MARK] = np.int64(len(entry.runs))
