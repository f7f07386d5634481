"""The on-disk layout: what a cache file must look like, and the errors.

Every file is opened read-only through :func:`open_h5` (the manifest through
:mod:`tlsk.cache._manifest`, which reads it whole) and checked before a byte
of its data is used: a regular file (never a link, a folder, a FIFO or a
device, which are not even opened), only hard links, the expected attributes,
dtypes and ranks, shapes the file could hold, and datasets stored as tlsk
stores them (chunked, in the file itself, with the fletcher32 checksum and
no other filter). A file that fails is *refused* (:class:`CacheError`, left
where it is: it may be someone else's data); a file of tlsk's that cannot be
read (truncated, garbage, a checksum that fails) is *damaged*
(:class:`DamagedError`, which carries what identifies the file, so that it
can be moved aside if it is still that file).

Damage is found in one place: any error that h5py raises while a cache file
is open in :func:`open_h5` (or while :func:`read` reads a dataset) becomes a
:class:`DamagedError` if the file is tlsk's (:func:`foreign_reason`), and a
refusal saying it is not a tlsk feature cache otherwise. A damaged file that
is not recognisably tlsk's is therefore never moved.

Bounds, checked before anything is read, so that no file makes a reader
allocate more than the file could hold: a dataset's rows times their width
at most the file's size; one chunk (read whole by HDF5) at most
``MAX_CHUNK_BYTES``; one attribute at most ``MAX_ATTR_BYTES``; a manifest
(read whole) at most ``MAX_MANIFEST_BYTES``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import traceback
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from tlsk._util.files import file_identity, file_kind
from tlsk.cache._bloom import size_bytes as bloom_size
from tlsk.cache._keys import KEY_BYTES, MAX_DIM, sha256_hex

FORMAT = "tlsk-feature-cache"
FORMAT_VERSION = 2
LEGACY_VERSION = 1
ROLE_MANIFEST = "manifest"
ROLE_RUN = "run"
# One fence (the first key) per this many sorted rows of a run: the in-memory
# index of a run is 32 bytes per FENCE_ROWS keys. The keys are chunked by
# fence, so finding a key reads one 2 KiB chunk.
FENCE_ROWS = 64
NS_RE = re.compile(r"^[0-9a-f]{64}$")
# Files tlsk names itself: a cache's runs, and the parts of a version-1 cache.
RUNS_SUFFIX = ".runs"
RUN_RE = re.compile(r"^[0-9a-f]{16}-\d{20}-[0-9a-f]{8}\.h5$")
PARTS_SUFFIX = ".parts"
PART_RE = re.compile(r"^part-\d{20}-\d+-[0-9a-f]{8}\.h5$")
# A manifest begins with a user block (HDF5 skips it) that holds this mark
# and the SHA-256 hex digest of every byte after the user block.
USER_BLOCK_BYTES = 512
MANIFEST_MARK = b"tlsk-feature-cache manifest sha256:"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_CHUNK_BYTES = 1 << 20  # tlsk writes chunks of at most 64 KiB
MAX_ATTR_BYTES = 1 << 20
MAX_MANIFEST_BYTES = 1 << 26  # a manifest holds a few dozen runs a namespace
# How far into a file its format mark is looked for: the global heap that
# holds the ``format`` attribute follows the root group's header.
_MARK_WINDOW = 1 << 16
_READ_RETRIES = 50
_READ_BLOCK_BYTES = 1 << 24
_GAP_ROWS = 16


class CacheError(RuntimeError):
    """A feature cache file is damaged, refused, or inconsistent with a request."""


class CacheWarning(UserWarning):
    """A damaged cache file was moved aside; its vectors will be computed again."""


class DamagedError(CacheError):
    """A damaged file, with its identity when found damaged (None if unknown)."""

    def __init__(self, path: str, reason: Any, identity: tuple | None):
        super().__init__(
            f"feature cache {path!r} is damaged ({reason}); move it away or "
            "delete it and tlsk will rebuild it"
        )
        self.path, self.reason, self.identity = path, str(reason), identity

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.identity))


class Format1Error(CacheError):
    """The cache is in format 1: read once migrated (:mod:`tlsk.cache._migrate`)."""

    def __init__(self, path: str):
        super().__init__(
            f"feature cache {path!r} is in format 1; tlsk migrates it to format 2 "
            f"when it is used, or now with `tlsk cache compact {path}`"
        )
        self.path = path

    def __reduce__(self):
        return (type(self), (self.path,))


class Vanished(Exception):
    """A file named by the manifest read was merged away before it was opened."""


def refused(path: str, reason: str) -> CacheError:
    return CacheError(
        f"feature cache {path!r} is refused: {reason}; tlsk reads only files in "
        "its own layout, move it away or delete it"
    )


def not_a_cache(path: str, reason: str) -> CacheError:
    """The error for a file that is not tlsk's: it is left as it is."""
    return CacheError(
        f"{path!r} is not a tlsk feature cache ({reason}); tlsk leaves it as it "
        "is: name another file as the cache, or move this one away"
    )


def check_regular(path: str) -> os.stat_result:
    """``lstat(path)`` of a regular file; FileNotFoundError if nothing is there.

    A link, a folder, a FIFO or a device is refused without being opened:
    opening a FIFO waits for a writer, a device may never end.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CacheError(f"cannot read feature cache {path!r}: {exc}") from None
    if not stat.S_ISREG(st.st_mode):
        hint = ": name the file it points to" if stat.S_ISLNK(st.st_mode) else ""
        raise not_a_cache(path, f"it is {file_kind(st.st_mode)}{hint}")
    return st


def _tlsk_name(path: str) -> bool:
    """A run of a cache or a part of a version-1 cache: tlsk's by its place."""
    folder, name = os.path.split(os.path.abspath(path))
    return (folder.endswith(RUNS_SUFFIX) and bool(RUN_RE.match(name))) or (
        folder.endswith(PARTS_SUFFIX) and bool(PART_RE.match(name))
    )


def foreign_reason(path: str) -> str | None:
    """Why the file at ``path`` is not tlsk's; None if it is (or is gone).

    tlsk's files are its runs and parts (only tlsk names files so in the
    folders beside a cache) and any regular file that begins with a
    manifest's mark, or with the HDF5 signature (at 0, or after the user
    block) and holds the format attribute's value near its start. A tlsk
    file truncated or with flipped bytes still shows these marks; someone
    else's model, image, text or HDF5 file does not.
    """
    if _tlsk_name(path):
        return None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return str(exc)
    if not stat.S_ISREG(st.st_mode):
        return f"it is {file_kind(st.st_mode)}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        return str(exc)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "it is not a regular file"
        head = os.pread(fd, 2 * USER_BLOCK_BYTES, 0)
        if not head:
            return "it is empty"
        if head.startswith(MANIFEST_MARK):
            return None
        signatures = (head[:8], head[USER_BLOCK_BYTES : USER_BLOCK_BYTES + 8])
        if HDF5_SIGNATURE not in signatures:
            return "it is not an HDF5 file"
        if FORMAT.encode() not in os.pread(fd, _MARK_WINDOW, 0):
            return f"an HDF5 file without the format attribute {FORMAT!r}"
    finally:
        os.close(fd)
    return None


def check_cache_file(path: str | os.PathLike) -> None:
    """Refuse a file at ``path`` that is not a tlsk feature cache; nothing is fine.

    What :func:`foreign_reason` says, without reading more than the start of
    the file. A damaged tlsk cache passes: using it sets it aside.
    """
    path = os.fspath(path)
    foreign = foreign_reason(path)
    if foreign is not None:
        raise not_a_cache(path, foreign)


def damage(path: str, reason: Any, identity: tuple | None) -> CacheError:
    """A :class:`DamagedError` if the file is tlsk's, else a refusal."""
    foreign = foreign_reason(path)
    if foreign is None:
        return DamagedError(path, reason, identity)
    return not_a_cache(path, foreign)


_H5PY_FILES = ("h5py/", os.path.dirname(os.path.abspath(h5py.__file__)) + os.sep)


def raised_by_h5py(exc: BaseException) -> bool:
    """Whether ``exc`` passed through h5py (its Cython or Python frames)."""
    return any(
        frame.f_code.co_filename.startswith(_H5PY_FILES)
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def as_damage(exc: BaseException, path: str, identity: tuple | None):
    """What an exception from h5py on a cache file means; None: not h5py's.

    Every error h5py raises on a file tlsk has opened (a ``KeyError`` for a
    header whose checksum fails, an ``OSError`` for a truncated file, a
    ``ValueError`` for a selection that does not decode, ...) is damage,
    whatever its type: the file is not what tlsk wrote. An error the
    operating system gives (no permission, too many open files) is not.
    """
    if (
        not isinstance(exc, Exception)
        or isinstance(exc, (CacheError, Vanished, MemoryError))
        or not raised_by_h5py(exc)
    ):
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        return CacheError(f"cannot read feature cache {path!r}: {exc}")
    return damage(path, exc, identity)


class CacheFile:
    """A cache file open read-only: ``with open_h5(path) as f``.

    Whatever h5py raises inside the ``with`` is translated by
    :func:`as_damage`. Built by :func:`open_h5`.
    """

    def __init__(self, path: str, file: h5py.File, identity: tuple | None):
        self.path, self.file, self.identity = path, file, identity

    def __enter__(self) -> h5py.File:
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.file.close()
        except Exception:  # noqa: BLE001 - closing a damaged file may fail too
            pass
        translated = None if exc is None else as_damage(exc, self.path, self.identity)
        if translated is not None:
            raise translated from None


def open_h5(path: str) -> CacheFile:
    """Open read-only; FileNotFoundError passes, any other failure is damage.

    Only a regular file is opened (:func:`check_regular`); one that h5py
    cannot open is damaged if it is tlsk's (:func:`damage`), and refused as
    not a cache otherwise.
    """
    for _ in range(_READ_RETRIES):
        before = file_identity(path, check_regular(path))
        stall = _heap_problem(path)
        if stall is not None:
            if file_identity(path) != before:
                continue
            raise damage(path, stall, before)
        try:
            f = h5py.File(path, "r")
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - sorted by as_damage
            # HDF5 looks at a file by name more than once while opening it: a
            # file replaced meanwhile is no damage.
            if file_identity(path) != before:
                continue
            translated = as_damage(exc, path, before)
            if translated is None:
                raise
            raise translated from None
        identity = open_identity(f)
        if None not in (identity, before) and identity != before:
            f.close()  # replaced between the check and the open: look again
            continue
        return CacheFile(path, f, identity)
    raise CacheError(f"feature cache {path!r} kept changing while being opened")


def _heap_problem(path: str) -> str | None:
    """Why HDF5 would stall on a global heap near the start of the file, or None.

    A global heap collection (``GCOL``: where the string attributes live)
    has no checksum, and HDF5 1.14 loops forever on one whose object header
    says "free space of size 0" (a zeroed range does). The collections among
    the first ``_HEAP_WINDOW`` bytes (tlsk's files hold theirs there: their
    string attributes are written first) are walked as HDF5 walks them
    before HDF5 sees the file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # gone or unreadable: h5py says so
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "it is not a regular file"
        return heap_problem(lambda offset, n: os.pread(fd, n, offset))
    finally:
        os.close(fd)


_GCOL = b"GCOL"
_HEAP_HEADER = 16  # signature, version, reserved, collection size
_OBJECT_HEADER = 16  # index, reference count, reserved, object size
_MAX_HEAP_BYTES = 1 << 24  # tlsk's collections hold a few strings: 4 KiB
# tlsk's files hold their first collection within this window (about byte
# 200 in a run, 750 in a manifest, 2,100 in a format-1 file).
_HEAP_WINDOW = 1 << 13


def heap_problem(read_at) -> str | None:
    """:func:`_heap_problem` of the bytes ``read_at(offset, n)`` returns."""
    head = read_at(0, _HEAP_WINDOW)
    start = head.find(_GCOL)
    while start != -1:
        header = read_at(start, _HEAP_HEADER)
        size = int.from_bytes(header[8:16], "little")
        # HDF5 reads only a version-1 collection, and whole: one of another
        # version, or longer than the file, is an error it reports.
        if (
            len(header) == _HEAP_HEADER
            and header[4] == 1
            and _HEAP_HEADER < size <= _MAX_HEAP_BYTES
        ):
            heap = read_at(start, size)
            if len(heap) == size:
                problem = _heap_objects_problem(heap)
                if problem is not None:
                    return f"its global heap at byte {start} {problem}"
        start = head.find(_GCOL, start + 1)
    return None


def _heap_objects_problem(heap: bytes) -> str | None:
    p, end = _HEAP_HEADER, len(heap)
    while p < end:
        if p + _OBJECT_HEADER > end:
            return None  # too short for an object: free space
        index = int.from_bytes(heap[p : p + 2], "little")
        size = int.from_bytes(heap[p + 8 : p + 16], "little")
        need = size if index == 0 else _OBJECT_HEADER + -(-size // 8) * 8
        if need == 0 or need > end - p:
            return f"holds an object of {size} bytes at offset {p}"
        p += need
    return None


def open_identity(f: h5py.File) -> tuple | None:
    """The :func:`~tlsk._util.files.file_identity` of an open file (the one read)."""
    try:
        return file_identity(f.filename, os.fstat(f.id.get_vfd_handle()))
    except (OSError, ValueError, RuntimeError):
        return None


def attr_value(attrs: h5py.AttributeManager, name: str, path: str) -> Any:
    """The attribute ``name`` (None if absent), refused before reading if large."""
    try:
        aid = attrs.get_id(name)
    except KeyError:
        if name in attrs:  # there, yet not opened: h5py raises again, as damage
            raise
        return None
    shape = aid.shape or ()
    declared = int(np.prod(shape, dtype=np.float64)) * aid.dtype.itemsize
    if max(declared, aid.get_storage_size()) > MAX_ATTR_BYTES:
        raise refused(
            path,
            f"attribute {name!r} declares {max(declared, aid.get_storage_size())} "
            f"bytes (at most {MAX_ATTR_BYTES})",
        )
    return attrs[name]


def attr_str(attrs: h5py.AttributeManager, name: str, path: str) -> str | None:
    value = attr_value(attrs, name, path)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def attr_int(attrs: h5py.AttributeManager, name: str, path: str) -> int | None:
    value = attr_value(attrs, name, path)
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
        value = value.reshape(())[()]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return None


_LINK_CLASSES = {
    h5py.h5l.TYPE_SOFT: "SoftLink",
    h5py.h5l.TYPE_EXTERNAL: "ExternalLink",
}


def hard_children(group: h5py.Group, path: str) -> list[str]:
    """The names in ``group``; a soft or external link among them is refused."""
    names = list(group.keys())
    links = group.id.links
    for name in names:
        kind = links.get_info(name.encode("utf-8", "surrogateescape")).type
        if kind != h5py.h5l.TYPE_HARD:
            where = f"{group.name.rstrip('/')}/{name}"
            what = _LINK_CLASSES.get(kind, "user-defined link")
            raise refused(path, f"{where} is a {what}")
    return names


def write_root(f: h5py.File, role: str) -> h5py.Group:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = np.int64(FORMAT_VERSION)
    f.attrs["role"] = role
    return f.create_group("namespaces")


def check_root(f: h5py.File, path: str, roles: tuple[str, ...]) -> tuple[int, list]:
    """Check the root; return ``(format_version, namespace ids)``.

    ``roles`` are the roles accepted ("legacy" stands for a version-1 file).
    """
    fmt = attr_str(f.attrs, "format", path)
    if fmt != FORMAT:
        raise not_a_cache(path, f"its format attribute is {fmt!r}, not {FORMAT!r}")
    version = attr_int(f.attrs, "format_version", path)
    if version == LEGACY_VERSION:
        role = "legacy"
    elif version == FORMAT_VERSION:
        role = attr_str(f.attrs, "role", path)
    else:
        raise refused(
            path,
            f"format_version is {version!r}, this tlsk reads {LEGACY_VERSION} "
            f"and {FORMAT_VERSION}",
        )
    if role not in roles:
        raise refused(path, f"it is a {role!r} file where a {roles[0]!r} was expected")
    # Indexed, not .get(): h5py's get() turns a header that fails its
    # checksum into None, and damage into a refusal.
    namespaces = f["namespaces"] if hard_children(f, path) == ["namespaces"] else None
    if not isinstance(namespaces, h5py.Group):
        raise refused(path, "the root must hold exactly one group, 'namespaces'")
    ns_ids = hard_children(namespaces, path)
    for ns in ns_ids:
        if not NS_RE.match(ns):
            raise refused(path, f"/namespaces/{ns} is not a namespace id")
        if not isinstance(namespaces[ns], h5py.Group):
            raise refused(path, f"/namespaces/{ns} is not a group")
    return version, ns_ids


def _hash_of(fingerprint: str) -> str | None:
    try:
        return sha256_hex(fingerprint)
    except UnicodeEncodeError:  # undecodable bytes: it hashes to no name
        return None


@dataclasses.dataclass
class NamespaceAttrs:
    id: str
    fingerprint: str
    dim: int
    rows_written: int


def check_attrs(group: h5py.Group, path: str, ns: str) -> NamespaceAttrs:
    where = f"/namespaces/{ns}"
    fingerprint = attr_str(group.attrs, "fingerprint", path)
    if fingerprint is None or _hash_of(fingerprint) != ns:
        raise refused(
            path, f"the fingerprint attribute of {where} does not hash to its name"
        )
    dim = attr_int(group.attrs, "dim", path)
    rows_written = attr_int(group.attrs, "rows_written", path)
    if dim is None or not 1 <= dim <= MAX_DIM:
        raise refused(path, f"{where} has dim={attr_value(group.attrs, 'dim', path)!r}")
    if rows_written is None or rows_written < 0:
        raise refused(
            path,
            f"{where} has rows_written="
            f"{attr_value(group.attrs, 'rows_written', path)!r}",
        )
    return NamespaceAttrs(ns, fingerprint, dim, rows_written)


@dataclasses.dataclass
class DataNamespace(NamespaceAttrs):
    """A checked namespace of a run file (or of a version-1 file)."""

    keys: h5py.Dataset
    vectors: h5py.Dataset
    fences: h5py.Dataset | None  # None in a version-1 file: its keys are unsorted
    bloom: h5py.Dataset | None = None  # None in a version-1 file

    @property
    def n(self) -> int:
        return self.keys.shape[0]


def check_data_namespace(f: h5py.File, path: str, ns: str) -> DataNamespace:
    """Check a namespace holding data (a run's, or a version-1 file's)."""
    group = f["namespaces"][ns]
    hard_children(group, path)
    attrs = check_attrs(group, path, ns)
    where, dim = f"/namespaces/{ns}", attrs.dim
    legacy = attr_int(f.attrs, "format_version", path) == LEGACY_VERSION
    expected = ["keys", "vectors"] if legacy else ["bloom", "fences", "keys", "vectors"]
    if sorted(group.keys()) != expected:
        names = " and ".join(repr(n) for n in expected)
        raise refused(path, f"{where} must hold exactly {names}")
    datasets = {name: group[name] for name in expected if name != "bloom"}
    widths = {"keys": KEY_BYTES, "fences": KEY_BYTES, "vectors": dim}
    for name, ds in datasets.items():
        dtype = np.dtype("<f4") if name == "vectors" else np.dtype(np.uint8)
        if not isinstance(ds, h5py.Dataset):
            raise refused(path, f"{where}/{name} is not a dataset")
        if ds.dtype != dtype or ds.shape is None or len(ds.shape) != 2:
            raise refused(
                path,
                f"{where}/{name} is {ds.dtype} with shape {ds.shape}, expected "
                f"{dtype} with shape (n, {widths[name]})",
            )
        if ds.shape[1] != widths[name]:
            raise refused(
                path,
                f"{where}/{name} has shape {ds.shape}, expected (n, {widths[name]})",
            )
    keys, vectors = datasets["keys"], datasets["vectors"]
    n = keys.shape[0]
    if n != vectors.shape[0]:
        raise refused(path, f"{where} holds {n} keys but {vectors.shape[0]} vectors")
    declared = n * (KEY_BYTES + 4 * dim)
    size = f.id.get_filesize()
    if declared > size:
        raise refused(
            path,
            f"{where} declares {n} rows of dim {dim} ({declared} bytes) "
            f"in a file of {size} bytes",
        )
    fences = datasets.get("fences")
    if fences is not None and fences.shape[0] != -(-n // FENCE_ROWS):
        raise refused(path, f"{where} holds {fences.shape[0]} fences for {n} keys")
    bloom = None if legacy else group["bloom"]
    if bloom is not None and (
        not isinstance(bloom, h5py.Dataset)
        or bloom.dtype != np.uint8
        or bloom.shape != (bloom_size(n),)
    ):
        raise refused(
            path,
            f"{where}/bloom must be {bloom_size(n)} uint8 bytes for {n} keys; it is "
            f"{getattr(bloom, 'dtype', type(bloom).__name__)} "
            f"{getattr(bloom, 'shape', '')}",
        )
    stored = {"keys": keys, "vectors": vectors, "fences": fences, "bloom": bloom}
    for name, ds in stored.items():
        if ds is not None:
            check_storage(ds, path, f"{where}/{name}")
    return DataNamespace(
        **dataclasses.asdict(attrs),
        keys=keys,
        vectors=vectors,
        fences=fences,
        bloom=bloom,
    )


_LAYOUTS = {
    h5py.h5d.COMPACT: "a compact",
    h5py.h5d.CONTIGUOUS: "a contiguous",
    h5py.h5d.VIRTUAL: "a virtual (its data lies in other files)",
}


def check_storage(ds: h5py.Dataset, path: str, where: str) -> None:
    """Refuse a dataset stored otherwise than tlsk stores data, before reading it.

    tlsk stores each dataset of a run chunked, inside the file, with the
    fletcher32 checksum as its only filter (so every read is checked), in
    chunks of at most ``MAX_CHUNK_BYTES``. External storage and virtual
    datasets would make a read open other files; other filters would
    decompress to sizes the file does not bound.
    """
    plist = ds.id.get_create_plist()
    if plist.get_external_count():
        raise refused(path, f"{where} keeps its data in other files (external storage)")
    layout = plist.get_layout()
    if layout != h5py.h5d.CHUNKED:
        kind = _LAYOUTS.get(layout, "an unknown kind of")
        raise refused(path, f"{where} is {kind} dataset; tlsk writes chunked ones")
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if filters != [h5py.h5z.FILTER_FLETCHER32]:
        raise refused(
            path,
            f"{where} has the filters {filters}; tlsk writes exactly one, the "
            f"fletcher32 checksum ({h5py.h5z.FILTER_FLETCHER32})",
        )
    chunks = tuple(plist.get_chunk())
    chunk_bytes = int(np.prod(chunks, dtype=np.float64)) * ds.dtype.itemsize
    if len(chunks) != len(ds.shape) or min(chunks) < 1 or chunk_bytes > MAX_CHUNK_BYTES:
        raise refused(
            path,
            f"{where} has chunks of shape {chunks} ({chunk_bytes} bytes; tlsk "
            f"reads chunks of at most {MAX_CHUNK_BYTES})",
        )


def read(ds: h5py.Dataset, sel: Any, path: str) -> np.ndarray:
    """``ds[sel]``; whatever h5py raises (a checksum, a truncated file) is damage."""
    try:
        return ds[sel]
    except Exception as exc:  # noqa: BLE001 - sorted by as_damage
        translated = as_damage(exc, path, open_identity(ds.file))
        if translated is None:
            raise
        if isinstance(translated, DamagedError):
            translated = DamagedError(
                path, f"cannot read {ds.name}: {exc}", translated.identity
            )
        raise translated from None


def read_blocks(ds: h5py.Dataset, path: str) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` over a whole dataset, in bounded memory."""
    n, width = ds.shape
    step = max(1, _READ_BLOCK_BYTES // (ds.dtype.itemsize * width))
    for start in range(0, n, step):
        yield start, read(ds, slice(start, min(start + step, n)), path)


def read_rows(ds: h5py.Dataset, rows: np.ndarray, path: str) -> np.ndarray:
    """Rows ``rows`` (sorted, unique) of a 2-d dataset.

    Rows close together are read as one slice (a few rows too many cost less
    than another call), and the others one slice each: never one
    fancy-indexed or hyperslab-union read, whose selection HDF5 processes
    row by row, slower than a slice per row (figures in benchmarks/README.md).
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), ds.shape[1]), dtype=ds.dtype)
    if not len(rows):
        return out
    breaks = np.flatnonzero(np.diff(rows) > _GAP_ROWS) + 1
    bounds = np.r_[0, breaks, len(rows)].tolist()
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        first, last = int(rows[lo]), int(rows[hi - 1]) + 1
        block = read(ds, slice(first, last), path)
        out[lo:hi] = block if last - first == hi - lo else block[rows[lo:hi] - first]
    return out
