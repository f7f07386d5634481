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
    "ViewMean",
    "batches",
    "check_cache_path",
    "progress",
    "warn_undecodable",
]

_NAMED = 5  # bad files named in a warning; the rest are counted


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
