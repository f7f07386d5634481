"""The HDF5 feature cache: float32 vectors under 32-byte keys, in namespaces.

A vector costs seconds to compute and never changes for a given image and
configuration, so it is stored once and found again by the SHA-256 digest of
the image content (the *key*) inside a *namespace*. A namespace is identified
by a *fingerprint*: a JSON-serialisable dict of everything that changes the
output (weights hash, layer, pooling, ...). Its id is the SHA-256 hex digest of
the canonical JSON, ``json.dumps(fp, sort_keys=True, separators=(",", ":"))``.
A vector made under one fingerprint is never returned under another. This
package knows nothing of Keras, images or VGG16.

The cache costs what is asked of it, not what it holds, in the manner of an
LSM-tree (LevelDB, RocksDB): an append writes one new immutable *run* of
sorted keys and publishes it in a small *manifest*; runs are merged in the
background by a size-tiered policy (:mod:`tlsk.cache._merge`) whose lifetime
cost is O(N log N); a lookup of k keys reads, in each run that may hold a
key (its Bloom filter says, :mod:`tlsk.cache._bloom`), one block of 64 keys
and the vector: O(k log N), with an in-memory index of under 2 bytes a key
(32 bytes per 64 keys of fences, and 10 bits a key of filter).

On-disk layout (format version 2)
---------------------------------
All files are HDF5, readable with plain h5py::

    features.h5               the manifest, replaced whenever runs change
      user block (512 bytes): "tlsk-feature-cache manifest sha256:" and the
                              SHA-256 hex digest of every byte after it
      /  attrs: format="tlsk-feature-cache", format_version=2, role="manifest"
      /namespaces/<ns_id>/  attrs: fingerprint=<canonical JSON str>, dim=<int>,
                                   rows_written=<int: rows ever computed,
                                   duplicates included>,
                                   runs=<run file names, oldest first>,
                                   run_rows=<int64 rows of each run>
          keys     (n, 32) uint8     virtual datasets over the runs, in order:
          vectors  (n, dim) float32  one dataset per namespace for h5py users
                                     (attr tlsk_view_runs=<number of runs>)
    features.h5.runs/<ns_id[:16]>-<time_ns>-<token>.h5     one run
      /  attrs: format, format_version=2, role="run"
      /namespaces/<ns_id>/  attrs: fingerprint, dim, rows_written
          keys     (n, 32) uint8     ascending byte order, unique, chunks of 64
          fences   (m, 32) uint8     keys[::64], the in-memory index
          bloom    (b,) uint8        Bloom filter of the keys, 10 bits a key
          vectors  (n, dim) float32  row i belongs to keys[i]
    features.h5.lock          the writers' lock (flock; the file stays empty)
    features.h5.merge.lock    the mergers' lock

``<ns_id>`` is the 64-character SHA-256 hex digest of the ``fingerprint``
attribute. Every dataset of a run is chunked and protected by the fletcher32
checksum filter, so flipped bytes are detected on read. Keys are ``uint8``
rows rather than numpy ``'S32'``, which would strip trailing NUL bytes. The
runs of a namespace never share a key. Reading every vector of a namespace
with plain h5py::

    import h5py
    with h5py.File("features.h5", "r") as f:
        group = f["namespaces"][ns_id]
        keys, vectors = group["keys"][:], group["vectors"][:]

A file (manifest or run) holding soft or external links, another ``format``,
datasets of the wrong dtype or rank, shapes larger than the file could hold,
datasets stored otherwise than tlsk stores them (external storage, virtual
datasets in a run, a contiguous or compact layout, a filter other than
fletcher32, or none; chunks over 1 MiB), or views that read anything but the
namespace's own runs, is refused with a :class:`CacheError` that names it,
before a byte of its data is read (:mod:`tlsk.cache._layout`). A path that
is not a regular file (a link, a folder, a FIFO, a device) is refused
without being opened, and a file that is not tlsk's (no HDF5 signature and
format mark at its start) is refused as "not a tlsk feature cache": neither
is ever moved or replaced. A shard written by :meth:`FeatureCache.write_shard`
has the layout of a run, with any number of namespaces.

tlsk reads format 2 only. A cache of format version 1 (one main file of
unsorted keys, plus ``features.h5.parts/``) is migrated to format 2 the first
time it is used (a lookup, a write, :meth:`FeatureCache.compact`), under the
write lock (:mod:`tlsk.cache._migrate`); one that cannot be written where it
lies raises :class:`CacheError` saying how to migrate it.
:meth:`FeatureCache.info` and :meth:`~FeatureCache.verify` write nothing:
they read a format-1 cache as it is.

Crash and concurrency protocol
------------------------------
No file that readers may see is ever opened for writing: every file is built
under a temporary name, fsynced and renamed into place, and the folder is
fsynced (:mod:`tlsk._util.files`). Each file is absent, or complete.

* **Appending.** Under the exclusive ``flock`` on ``features.h5.lock`` (held
  by :meth:`CacheWriter.claim`; the kernel drops it when a process dies), an
  append writes its new keys as one run and then publishes a manifest that
  names it. Killed before the publish, the run is an orphan nobody reads.
* **Migrating** a format-1 cache holds the write lock: its runs are written,
  then a manifest replaces the main file in one rename, then the parts are
  deleted. Killed anywhere, the cache is the format-1 one or the format-2
  one; its readers wait for the migration, once.
* **Merging** holds only the merge lock while it reads and writes runs, and
  the write lock only to publish (:mod:`tlsk.cache._merge`): neither readers
  nor writers wait for it; killed anywhere, nothing is lost.
* **Reading** takes no lock: read the manifest, open the runs it names. An
  open file stays readable when it is replaced or unlinked; a run merged away
  before it could be opened makes the lookup start again from the new
  manifest.
* **Computing once.** Inside :meth:`CacheWriter.claim` a process holds the
  write lock, so :meth:`CacheWriter.lookup` sees every run published so far:
  two processes sharing a cache compute each key once.
* **Leftovers** (temporary files, orphan runs) are deleted by whoever holds
  both locks: then nobody can be writing them.
* **A damaged file** (truncated, garbage, a checksum that fails, the
  manifest's included, or anything else h5py raises on it) is never
  overwritten and never reused: a lookup or a writer that meets one moves it
  to ``<name>.damaged-<timestamp>``, publishes a manifest without it, and
  warns with a :class:`CacheWarning` (:mod:`tlsk.cache._damage`). Only a
  file of tlsk's is damaged: one of the cache's runs, or a main file that
  shows tlsk's marks.
  :meth:`FeatureCache.info` and :meth:`~FeatureCache.verify` only report it.
  A *refused* file may be someone else's data: it stays where it is and every
  use raises :class:`CacheError`.
* **Scale-out.** Workers on other machines each write their own cache and
  publish it with :meth:`FeatureCache.write_shard`;
  :meth:`FeatureCache.add_shards` joins shards by writing only what they add.
"""

from tlsk.cache._cache import (
    AddedEntries,
    CacheInfo,
    CacheWriter,
    FeatureCache,
    NamespaceInfo,
)
from tlsk.cache._file_keys import FileKeyMemo
from tlsk.cache._keys import KEY_BYTES, namespace_id
from tlsk.cache._layout import (
    FORMAT,
    FORMAT_VERSION,
    CacheError,
    CacheWarning,
    check_cache_file,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "KEY_BYTES",
    "AddedEntries",
    "CacheError",
    "CacheInfo",
    "CacheWarning",
    "CacheWriter",
    "FeatureCache",
    "FileKeyMemo",
    "NamespaceInfo",
    "check_cache_file",
    "namespace_id",
]
