"""What feature extraction in this process and on a Dask cluster share.

:mod:`tlsk.features.extractor` (the transformers) and
:mod:`tlsk.features.distributed` (shards
on workers) both key images by content, show progress, warn about images
that could not be decoded, check a cache path and average vectors over the
views of test-time augmentation; each of those lives here, once.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

from tlsk.images.decode import (
    ImageError,
    UndecodableImageWarning,
    remember_key,
    remembered_key,
)

__all__ = [
    "ViewMean",
    "batches",
    "check_cache_path",
    "content_keys",
    "content_keys_with_memo",
    "progress",
    "warn_undecodable",
]

_NAMED = 5  # bad files named in a warning; the rest are counted
# Contents this large on average are hashed in threads (see content_keys).
_THREADED_HASH_BYTES = 64 * 1024
_SIZE_SAMPLE = 16


def warn_undecodable(failures, n_images, stacklevel):
    """One :class:`UndecodableImageWarning` for ``{index: ImageError}``."""
    errors = [failures[i] for i in sorted(failures)]
    named = "; ".join(str(err) for err in errors[:_NAMED])
    more = len(errors) - _NAMED
    warnings.warn(
        f"{len(errors)} of {n_images} images could not be decoded; their rows "
        f"are NaN: {named}" + (f"; and {more} more" if more > 0 else ""),
        UndecodableImageWarning,
        stacklevel=stacklevel + 1,
    )


def content_keys(inputs, pool, n_threads, known=None):
    """``(keys, failures)``: the SHA-256 key of each input, None where unreadable.

    ``known``: each input's key if known already (else None), when the caller
    has looked them up (else each input's ``known_key()`` is asked).

    hashlib releases the GIL, so threads help for large contents. For small
    files (typical JPEGs) the per-file Python work dominates, and threads
    fighting over the GIL are slower than one (2,000 files of 16 kB: 23,000
    keys/s in one thread, 14,000 in two), so those are hashed here. A few
    large tasks rather than one per image: per-task overhead would dominate.
    """

    def key_or_error(item):
        try:
            return item.content_key()
        except ImageError as err:
            return err

    # Files hashed before in this process and unchanged since need no thread.
    results = list(known) if known is not None else [i.known_key() for i in inputs]
    unknown = [i for i, key in enumerate(results) if key is None]
    sample = [inputs[i].size_hint() for i in unknown[:_SIZE_SAMPLE]]
    if not sample or sum(sample) < _THREADED_HASH_BYTES * len(sample):
        for i in unknown:
            results[i] = key_or_error(inputs[i])
        unknown = []
    step = max(1, -(-len(unknown) // (4 * n_threads)))
    chunks = [unknown[start : start + step] for start in range(0, len(unknown), step)]
    keyed = pool.map(lambda chunk: [key_or_error(inputs[i]) for i in chunk], chunks)
    for chunk, chunk_results in zip(chunks, keyed, strict=True):
        for index, result in zip(chunk, chunk_results, strict=True):
            results[index] = result
    failures = {i: r for i, r in enumerate(results) if isinstance(r, ImageError)}
    keys = [None if i in failures else r for i, r in enumerate(results)]
    return keys, failures


def check_cache_path(cache):
    """The cache file's absolute path; a ValueError naming ``cache`` if unusable.

    A file already there must be a tlsk feature cache (damaged or not): any
    other file (a model, an image, someone's HDF5 file, a link, a FIFO) is
    refused at once with a :class:`tlsk.cache.CacheError` naming it, before
    any work, and is never touched.
    """
    from tlsk.cache import check_cache_file

    path = os.path.abspath(os.fspath(cache))
    folder = os.path.dirname(path)
    if os.path.isdir(path) or not os.path.isdir(folder):
        raise ValueError(
            "cache must be the path of an HDF5 file in an existing folder; "
            f"received {os.fspath(cache)!r}"
            + (", which is a folder" if os.path.isdir(path) else "")
        )
    check_cache_file(path)
    return path


def batches(items, size):
    """Lists of ``size`` consecutive items (the last may be shorter)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def progress(total, verbose, desc):
    """A tqdm progress bar on stderr, shown when ``verbose`` and there is work."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="img",
        disable=not verbose or total == 0,
        file=sys.stderr,
    )


def content_keys_with_memo(inputs, pool, n_threads, memo):
    """:func:`content_keys`, with the file keys a cache's memo remembers.

    ``memo`` is a :class:`tlsk.cache.FileKeyMemo` (or None). Files it knows
    by identity are not read; the keys of files hashed now, once settled
    (see :mod:`tlsk.images.decode`), are added to it.
    """
    if memo is None or os.environ.get("TLSK_FILE_KEY_MEMO", "1") == "0":
        return content_keys(inputs, pool, n_threads)
    # One stat per file: its identity serves the memo and content_keys both.
    identities = [getattr(item, "identity", lambda: None)() for item in inputs]
    unknown = [i for i in identities if i is not None and remembered_key(i) is None]
    unknown = list(dict.fromkeys(unknown))
    from_memo = set()
    for identity, key in zip(unknown, memo.get(unknown), strict=True):
        if key is not None:
            remember_key(identity, key)
            from_memo.add(identity)
    known = [
        remembered_key(identity) if identity is not None else item.known_key()
        for item, identity in zip(inputs, identities, strict=True)
    ]
    keys, failures = content_keys(inputs, pool, n_threads, known)
    new = [
        ident
        for ident in unknown
        if ident not in from_memo and remembered_key(ident) is not None
    ]
    if new:
        memo.put(new, [remembered_key(ident) for ident in new])
    return keys, failures


class ViewMean:
    """Each row's feature vectors, averaged over the views of test-time augmentation.

    Vectors arrive view by view, some from a cache and some computed, in an
    order that depends on what the cache held. With one view (no TTA) they
    are kept as they come, float32, with no arithmetic. With several they
    are summed in float64, where the order of ten additions of float32
    values practically never shows in the float32 mean: a transform gives
    the same vectors whatever its cache held.

    Parameters
    ----------
    n_rows, dim : int
        The shape of the result.
    n_views : int
        How many vectors each row receives.
    """

    def __init__(self, n_rows, dim, n_views):
        self._n_views = n_views
        dtype = np.float32 if n_views == 1 else np.float64
        self._sums = np.zeros((n_rows, dim), dtype=dtype)

    def add(self, rows, vectors):
        """Add one view's ``vectors`` to ``rows`` (distinct row indices)."""
        if self._n_views == 1:
            self._sums[rows] = vectors
        else:
            self._sums[rows] += vectors

    def copy_row(self, to, source):
        """Row ``to`` gets what row ``source`` has (the same image twice)."""
        self._sums[to] = self._sums[source]

    def mean(self):
        """The float32 ``(n_rows, dim)`` mean over the views."""
        if self._n_views == 1:
            return self._sums
        return (self._sums / self._n_views).astype(np.float32)
