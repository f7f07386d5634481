"""The on-disk layout: what a cache file must look like, and the errors.

Every file is opened read-only through :func:`open_h5` and checked before a
byte of its data is used: only hard links, the expected attributes, dtypes and
ranks, and shapes the file could hold. A file that fails is *refused*
(:class:`CacheError`, left where it is: it may be someone else's data); a file
that cannot be read (truncated, garbage, a checksum that fails) is *damaged*
(:class:`DamagedError`, which carries what identifies the file, so that it can
be moved aside if it is still that file).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from tlsk._files import file_identity
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


class Vanished(Exception):
    """A file named by the manifest read was merged away before it was opened."""


def refused(path: str, reason: str) -> CacheError:
    return CacheError(
        f"feature cache {path!r} is refused: {reason}; tlsk reads only files in "
        "its own layout, move it away or delete it"
    )


def open_h5(path: str) -> h5py.File:
    """Open read-only; FileNotFoundError passes, any other failure is damage."""
    for _ in range(_READ_RETRIES):
        before = file_identity(path)
        try:
            return h5py.File(path, "r")
        except FileNotFoundError:
            raise
        except OSError as exc:
            # HDF5 looks at a file by name more than once while opening it: a
            # file replaced meanwhile is no damage.
            if file_identity(path) == before:
                raise DamagedError(path, exc, before) from None
    raise CacheError(f"feature cache {path!r} kept changing while being opened")


def open_identity(f: h5py.File) -> tuple | None:
    """The :func:`~tlsk._files.file_identity` of an open file (the one read)."""
    try:
        return file_identity(f.filename, os.fstat(f.id.get_vfd_handle()))
    except (OSError, ValueError, RuntimeError):
        return None


def attr_str(attrs: h5py.AttributeManager, name: str) -> str | None:
    value = attrs.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def attr_int(attrs: h5py.AttributeManager, name: str) -> int | None:
    value = attrs.get(name)
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
    fmt = attr_str(f.attrs, "format")
    if fmt != FORMAT:
        raise refused(path, f"format attribute is {fmt!r}, expected {FORMAT!r}")
    version = attr_int(f.attrs, "format_version")
    if version == LEGACY_VERSION:
        role = "legacy"
    elif version == FORMAT_VERSION:
        role = attr_str(f.attrs, "role")
    else:
        raise refused(
            path,
            f"format_version is {version!r}, this tlsk reads {LEGACY_VERSION} "
            f"and {FORMAT_VERSION}",
        )
    if role not in roles:
        raise refused(path, f"it is a {role!r} file where a {roles[0]!r} was expected")
    namespaces = (
        f.get("namespaces") if hard_children(f, path) == ["namespaces"] else None
    )
    if not isinstance(namespaces, h5py.Group):
        raise refused(path, "the root must hold exactly one group, 'namespaces'")
    ns_ids = hard_children(namespaces, path)
    for ns in ns_ids:
        if not NS_RE.match(ns):
            raise refused(path, f"/namespaces/{ns} is not a namespace id")
        if not isinstance(namespaces[ns], h5py.Group):
            raise refused(path, f"/namespaces/{ns} is not a group")
    return version, ns_ids


@dataclasses.dataclass
class NamespaceAttrs:
    id: str
    fingerprint: str
    dim: int
    rows_written: int


def check_attrs(group: h5py.Group, path: str, ns: str) -> NamespaceAttrs:
    where = f"/namespaces/{ns}"
    fingerprint = attr_str(group.attrs, "fingerprint")
    if fingerprint is None or sha256_hex(fingerprint) != ns:
        raise refused(
            path, f"the fingerprint attribute of {where} does not hash to its name"
        )
    dim = attr_int(group.attrs, "dim")
    rows_written = attr_int(group.attrs, "rows_written")
    if dim is None or not 1 <= dim <= MAX_DIM:
        raise refused(path, f"{where} has dim={group.attrs.get('dim')!r}")
    if rows_written is None or rows_written < 0:
        raise refused(
            path, f"{where} has rows_written={group.attrs.get('rows_written')!r}"
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
    legacy = attr_int(f.attrs, "format_version") == LEGACY_VERSION
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
    return DataNamespace(
        **dataclasses.asdict(attrs),
        keys=keys,
        vectors=vectors,
        fences=fences,
        bloom=bloom,
    )


def read(ds: h5py.Dataset, sel: Any, path: str) -> np.ndarray:
    """``ds[sel]``; a failed read (a checksum, a truncated file) is damage."""
    try:
        return ds[sel]
    except OSError as exc:
        raise DamagedError(
            path, f"cannot read {ds.name}: {exc}", open_identity(ds.file)
        ) from None


def read_blocks(ds: h5py.Dataset, path: str) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` over a whole dataset, in bounded memory."""
    n, width = ds.shape
    step = max(1, _READ_BLOCK_BYTES // (ds.dtype.itemsize * width))
    for start in range(0, n, step):
        yield start, read(ds, slice(start, min(start + step, n)), path)


def read_rows(ds: h5py.Dataset, rows: np.ndarray, path: str) -> np.ndarray:
    """Rows ``rows`` (sorted, unique) of a 2-d dataset.

    Rows close together are read as one slice (a few rows too many cost less
    than another call); measured with h5py 3 on 1,000 scattered rows of a
    chunked dataset, one slice per row is 4x faster than one fancy-indexed or
    hyperslab-union read, whose selection HDF5 processes row by row.
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
