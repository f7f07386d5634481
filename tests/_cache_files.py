"""Looking inside a feature cache's files as plain h5py sees them, for tests."""

import contextlib
import os
from pathlib import Path

import h5py
import numpy as np


def run_files(cache_path, ns=None):
    """The run files the manifest names (of namespace ``ns``, or of all), in order."""
    with h5py.File(cache_path, "r") as f:
        groups = [f["namespaces"][ns]] if ns else list(f["namespaces"].values())
        names = [n.decode() for g in groups for n in g.attrs["runs"]]
    return [os.path.join(f"{cache_path}.runs", name) for name in names]


def flip_a_vector_byte(path, ns=None):
    """Flip one byte of the first vector chunk of a data file (a run, a v1 file)."""
    with h5py.File(path, "r") as f:
        ns = ns or next(iter(f["namespaces"]))
        offset = f["namespaces"][ns]["vectors"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as file:
        file.seek(offset + 5)
        byte = file.read(1)
        file.seek(offset + 5)
        file.write(bytes([byte[0] ^ 0xFF]))


def write_v1_cache(path, fingerprint_json, ns, keys, vectors, rows_written=None):
    """A format-version-1 cache file, as tlsk before version 2 wrote it."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "tlsk-feature-cache"
        f.attrs["format_version"] = np.int64(1)
        group = f.create_group("namespaces").create_group(ns)
        group.attrs["fingerprint"] = fingerprint_json
        group.attrs["dim"] = np.int64(vectors.shape[1])
        group.attrs["rows_written"] = np.int64(rows_written or len(keys))
        for name, data in (
            ("keys", np.frombuffer(b"".join(keys), np.uint8).reshape(-1, 32)),
            ("vectors", np.asarray(vectors, np.float32)),
        ):
            group.create_dataset(
                name,
                data=data,
                maxshape=(None, data.shape[1]),
                chunks=(max(1, min(len(data), 64)), data.shape[1]),
                fletcher32=True,
            )


def leftover_files(folder):
    """Temporary files, version-1 parts and orphan runs anywhere under ``folder``."""
    live = set()
    for manifest in Path(folder).rglob("*.h5"):
        if manifest.parent.name.endswith(".runs") or ".damaged-" in manifest.name:
            continue
        with contextlib.suppress(OSError, KeyError):
            live.update(run_files(str(manifest)))
    return sorted(
        str(p.relative_to(folder))
        for p in Path(folder).rglob("*")
        if p.name.startswith(".tmp-")
        or p.name.startswith("part-")
        or (
            p.parent.name.endswith(".runs")
            and p.is_file()
            and str(p) not in live
            and ".damaged-" not in p.name
        )
    )
