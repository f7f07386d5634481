"""What feature extraction in this process and on a Dask cluster share.

:mod:`tlsk.features.extractor` (the transformers) and
:mod:`tlsk.features.distributed` (shards
on workers) both show progress, warn about images that could not be decoded, check a
cache path and average vectors over the views of test-time augmentation;
each of those lives here, once. Content keys are :mod:`tlsk.images.keys`'.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

from tlsk.images.errors import UndecodableImageWarning

__all__ = [
    "ContentGroups",
    "ViewMean",
    "batches",
    "check_cache_path",
    "lookups",
    "progress",
    "warn_undecodable",
]

_NAMED = 5  # bad files named in a warning; the rest are counted
_LOOKUP_BLOCK = 1 << 14  # keys looked up at once: bounded memory


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


class ContentGroups:
    """The images of one call grouped by content: each content is done once.

    The same image twice (a copied file, an array passed twice) is looked
    up, computed and stored once, under its first index, then copied to the
    others. ``keys``: each image's content key, None for one that could not
    be read; ``failures``: indices left out (unreadable).

    Examples
    --------
    >>> groups = ContentGroups([b"a", b"b", b"a", None], failures={3: "gone"})
    >>> groups.unique_keys(), groups.first_indices().tolist()
    ([b'a', b'b'], [0, 1])
    >>> list(groups.copies()), groups.members(0)
    ([(2, 0)], [0, 2])
    """

    def __init__(self, keys, failures=()):
        self.keys = keys
        self._first = {}
        for index, key in enumerate(keys):
            if key is not None and index not in failures:
                self._first.setdefault(key, index)
        self._members = None

    def unique_keys(self):
        """Each content's key once, in the order of first appearance."""
        return list(self._first)

    def first_indices(self):
        """The index of each content's first image, as :meth:`unique_keys`."""
        return np.fromiter(self._first.values(), dtype=np.intp, count=len(self._first))

    def copies(self):
        """Yield ``(index, first)`` for each image whose content came first earlier."""
        for index, key in enumerate(self.keys):
            first = self._first.get(key)
            if first is not None and first != index:
                yield index, first

    def members(self, index):
        """Every index whose content is that of ``index`` (itself included)."""
        if self._members is None:
            self._members = {}
            for i, key in enumerate(self.keys):
                if key is not None:
                    self._members.setdefault(key, []).append(i)
        return self._members[self.keys[index]]


def lookups(cache, fingerprint, keys, dim):
    """Yield ``(start, found, vectors)`` for ``keys`` in blocks of bounded size.

    The one way features look vectors up: a cache keeps its key index
    between lookups of one process, and a block's vectors are at most
    ``_LOOKUP_BLOCK`` rows, so a million keys never need a million rows at once.
    """
    for start in range(0, len(keys), _LOOKUP_BLOCK):
        block = keys[start : start + _LOOKUP_BLOCK]
        found, vectors = cache.lookup(fingerprint, block, dim)
        yield start, found, vectors


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
