"""Scale-out on Dask: features of a long image list, computed on a cluster.

:func:`featurize` fills a fitted :class:`~tlsk.ImageFeatureExtractor`'s HDF5
feature cache with the help of Dask's ``distributed`` scheduler
(``pip install "tlsk[dask]"``). Nothing here is cluster code of its own: Dask
places the tasks, retries them and restarts dead workers.

How a run goes
--------------
1. **On the client.** Every image is hashed (its cache key is the SHA-256 of
   its content) and looked up in the cache (with test-time augmentation,
   in the namespace of each view); what is found is not sent.
   Identical images are computed once. The rest is cut into shards of
   ``shard_size`` images.
2. **On the workers.** A task gets the fitted extractor (a few kB: its
   configuration, never a Keras model), the absolute paths of its shard's
   images and the path of its shard file. The worker process builds the
   backbone once (:func:`tlsk.networks.backbone.get_backbone`), computes the vectors
   into a private cache in the worker's local scratch folder, and writes all
   of it as one file (:meth:`tlsk.cache.FeatureCache.write_shard`) to
   ``<cache>.shards/<namespace>/shard-<digest>.h5`` under a temporary name,
   then renames it (``os.replace``). A worker killed
   at any moment leaves either no shard file or a complete one; Dask runs the
   task again elsewhere (``retries=`` counts failures raised by the task;
   ``distributed.scheduler.allowed-failures`` counts workers that died).
3. **On the client again.** The finished shards join the cache in one
   :meth:`tlsk.cache.FeatureCache.add_shards` (under the cache's lock, the
   vectors the cache lacks written as one new run, published in one replace
   of the small manifest: the join costs what the shards add, never a copy
   of the cache) and are deleted. Shard files left by an
   interrupted run are complete by construction: the next run joins them
   first and computes only what is still missing.

The shard's name is the digest of its keys (in its fingerprint's folder), so a
task run twice writes the same file and a finished shard is never recomputed.
Several runs may share one cache: each holds ``<cache>.runs.lock`` shared
while it runs, and only a run that is alone joins shards it did not make or
deletes temporary files (another run's may still be in flight).
Workers need the image files and the cache's folder at the same paths as the
client (shared storage); they take no lock on it, only the client does.

Worker threads
--------------
In a worker process run by a nanny (what ``dask worker`` and
``LocalCluster(processes=True)`` start), the first tlsk task sizes
TensorFlow's thread pools to the worker's ``nthreads`` (intra-op) and one
inter-op thread (a backbone is a chain of ops), and each task decodes with one
thread, so ``nthreads`` tasks in flight use ``nthreads`` decoders and the
machine is not oversubscribed. If TensorFlow already ran an op in that
process its pools are fixed: they stay as they are and the features are the
same. A worker in the client's own process (``processes=False``) keeps the
user's settings.

Model selection on the cluster
------------------------------
Once the cache holds the features, scikit-learn's model selection runs on
the cluster through joblib's Dask backend; see the example of
:func:`featurize`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
import re
import tempfile
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral

import numpy as np
from sklearn.utils.validation import check_is_fitted

from tlsk._util.files import TMP_PREFIX
from tlsk.cache import CacheError, FeatureCache, FileKeyMemo, namespace_id
from tlsk.features.extraction import (
    ContentGroups,
    ViewMean,
    lookups,
    progress,
    warn_undecodable,
)
from tlsk.features.extractor import ImageFeatureExtractor
from tlsk.images.decode import (
    ArrayInput,
    ImageError,
    UndecodableImageWarning,
    decode_threads,
    image_inputs,
)
from tlsk.images.keys import content_keys

__all__ = ["featurize", "local_cluster"]

SHARD_SIZE = 256
_SHARD_RE = re.compile(r"^shard-[0-9a-f]{32}\.h5$")
# Keys looked up per call: bounds the memory of the vectors read back.
_VISIBLE_TIMEOUT = 60.0  # seconds; see _wait_until_visible

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Shard:
    """One task's work: input indices (first of each key), what to send, where."""

    indices: list[int]
    payload: list
    path: str


@dataclasses.dataclass(frozen=True)
class _ShardReport:
    """What a worker says about a shard it finished."""

    path: str | None  # None when every image of the shard failed
    computed: int
    failures: list[tuple[int, str]]  # (position in the shard, reason)
    reused: bool  # the file was there already: an earlier attempt wrote it
    pid: int
    worker: str


def featurize(
    X,
    extractor,
    client=None,
    *,
    shard_size=SHARD_SIZE,
    retries=2,
    return_features=True,
):
    """Compute the features of ``X`` on a Dask cluster into the extractor's cache.

    Images already in the cache (under the extractor's fingerprint) are not
    sent; the others go to the workers in shards, each worker writes its own
    shard file, and the shards join the cache. Afterwards, any
    ``extractor.transform`` that sees the cache's file finds every image as a
    hit. Running it again after an interruption computes only what is missing.

    Parameters
    ----------
    X : sequence of paths, array (N, H, W, 3) or (N, H, W), or list of arrays
        The images, as for :meth:`ImageFeatureExtractor.transform`. File paths
        are made absolute and must name the same files on every worker
        (shared storage); arrays travel inside the tasks, so file paths are
        the input to use at scale.
    extractor : ImageFeatureExtractor
        Fitted, with a ``cache``. With ``tta``, the workers compute every
        view into its namespace, and the returned vectors are the views'
        means, as ``transform`` gives them. Its cache's folder must be writable by the
        workers at the same path: shard files are written to
        ``<cache>.shards/``. Its ``on_error`` applies as in ``transform``; its
        ``verbose`` shows a progress bar on the client.
    client : distributed.Client or None, default=None
        The cluster to use; ``None`` means Dask's default client (the one
        created last).
    shard_size : int, default=256
        Images per task and per shard file. A killed worker loses at most one
        shard's work; each shard costs one task and one small file.
    retries : int, default=2
        How many times Dask runs a task again after it raised (a network file
        system that hiccups). Dead workers are counted apart, by Dask's
        ``distributed.scheduler.allowed-failures``.
    return_features : bool, default=True
        ``False``: only fill the cache, for lists whose features do not fit
        in memory, and return which images are in it. Their vectors are then
        read back by slices with ``extractor.transform`` (or
        :meth:`tlsk.cache.FeatureCache.lookup`).

    Returns
    -------
    features : ndarray of shape (n_images, n_features), float32
        In the order of ``X``, ``extractor.n_features_out_`` columns; NaN rows
        for images that could not be decoded when ``on_error="nan"``.
    in_cache : ndarray of shape (n_images,), bool
        Instead of ``features`` when ``return_features=False``: True where
        the image's vector is in the cache, False where it could not be
        decoded.

    Raises
    ------
    tlsk.images.decode.ImageError
        An image that cannot be decoded, with ``on_error="raise"`` (the
        shards finished before are joined first).
    ValueError
        An extractor without a cache, or no Dask client.

    See Also
    --------
    tlsk.cache.FeatureCache.add_shards : how shards join the cache.

    Examples
    --------
    Fit the extractor with a cache, fill the cache on the cluster, then use
    the extractor as usual: every image is a hit.

    >>> import os, tempfile
    >>> import numpy as np
    >>> from distributed import Client
    >>> from tlsk import VGG16FeatureExtractor
    >>> from tlsk.features.distributed import featurize, local_cluster
    >>> tmp = tempfile.TemporaryDirectory()
    >>> rng = np.random.default_rng(0)
    >>> images = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    >>> extractor = VGG16FeatureExtractor(
    ...     weights=None, input_size=32, cache=os.path.join(tmp.name, "f.h5")
    ... ).fit()
    >>> cluster = local_cluster(1, processes=False)  # one worker in this process
    >>> client = Client(cluster)
    >>> features = featurize(images, extractor, client, shard_size=4)
    >>> features.shape
    (8, 512)
    >>> np.allclose(extractor.transform(images), features)  # read from the cache
    True

    Model selection on the cached features, with joblib's Dask backend (the
    fits run on the cluster's workers):

    >>> import joblib
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import GridSearchCV
    >>> y = np.array([0, 1] * 4)
    >>> search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=2)
    >>> with joblib.parallel_backend("dask"):
    ...     search = search.fit(features, y)
    >>> search.cv_results_["mean_test_score"].shape
    (2,)
    >>> client.close(); cluster.close(); tmp.cleanup()

    On a real cluster: ``client = Client("tcp://scheduler:8786")`` and
    image paths on storage every worker mounts.
    """
    distributed = _import_distributed()
    _check_extractor(extractor)
    shard_size = _check_int("shard_size", shard_size, minimum=1)
    retries = _check_int("retries", retries, minimum=0)
    client = _client_or_default(client, distributed)
    cache = FeatureCache(extractor.cache_path_)
    inputs = image_inputs(X)
    keys, failures = _hash(inputs, extractor, cache)
    if failures and extractor.on_error == "raise":
        raise failures[min(failures)]
    folder = _shard_folder(extractor)
    with _registered_run(extractor.cache_path_) as run:
        with run.alone() as alone:
            # Another run's finished shards are its own to join.
            if alone:
                _join(cache, _finished_shards(folder), "left by an interrupted run")
        groups = ContentGroups(keys, failures)
        indices = _missing(cache, extractor, groups)
        shards = _plan(inputs, keys, indices, shard_size, folder)
        reports = _run(client, distributed, extractor, shards, retries, cache, run)
        for shard, report in reports:
            for position, reason in report.failures:
                for index in groups.members(shard.indices[position]):
                    failures[index] = ImageError(inputs[index].label, reason)
        if failures and extractor.on_error == "raise":
            raise failures[min(failures)]
        if return_features:
            result = _read_back(cache, extractor, keys, failures)
        else:
            result = np.ones(len(inputs), dtype=bool)
            result[list(failures)] = False
        if failures:
            warn_undecodable(failures, len(inputs), stacklevel=3)
        return result


def local_cluster(n_workers, *, threads_per_worker=1, processes=True):
    """A Dask cluster on this machine, reachable only through 127.0.0.1.

    No dashboard, and Dask's own HTTP endpoint on a free loopback port (not
    8787), so that several clusters, or a user's own, never compete for a
    port. Use it as a context manager, or close it.

    Parameters
    ----------
    n_workers : int
        Worker processes (or in-process workers with ``processes=False``).
    threads_per_worker : int, default=1
        Tasks each worker runs at once; TensorFlow's intra-op threads follow.
    processes : bool, default=True
        ``False``: the workers run in this process (quick to start; for
        examples and debugging).

    Returns
    -------
    distributed.LocalCluster

    Examples
    --------
    >>> from distributed import Client
    >>> from tlsk.features.distributed import local_cluster
    >>> with local_cluster(1, processes=False) as cluster, Client(cluster) as client:
    ...     client.submit(sum, [1, 2, 3]).result()
    6
    """
    distributed = _import_distributed()
    n_workers = _check_int("n_workers", n_workers, minimum=1)
    threads_per_worker = _check_int("threads_per_worker", threads_per_worker, 1)
    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=processes,
        host="127.0.0.1",
        protocol="tcp://",
        dashboard_address=None,
        # The scheduler serves HTTP (health, metrics) even without a dashboard.
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )


# -- the client's side -------------------------------------------------------


def _import_distributed():
    try:
        import distributed
    except ImportError as err:
        raise ImportError(
            "tlsk.featurize needs Dask's distributed package; install it with "
            "pip install 'tlsk[dask]'"
        ) from err
    return distributed


def _check_extractor(extractor):
    if not isinstance(extractor, ImageFeatureExtractor):
        raise TypeError(
            "extractor must be a fitted tlsk.ImageFeatureExtractor (or "
            f"VGG16FeatureExtractor); received {type(extractor).__name__}"
        )
    check_is_fitted(extractor)
    if extractor.cache_path_ is None:
        raise ValueError(
            "extractor must have a feature cache, which featurize fills: fit "
            "ImageFeatureExtractor(cache='features.h5', ...) on a file the "
            "workers can reach; received an extractor fitted with cache=None"
        )


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; received {value!r}")
    return int(value)


def _client_or_default(client, distributed):
    if client is None:
        try:
            return distributed.get_client()
        except ValueError:
            raise ValueError(
                "featurize needs a Dask client: pass client=Client('tcp://host:8786') "
                "(a running scheduler) or Client(LocalCluster()) (this machine), "
                "or create one first; received client=None and there is none"
            ) from None
    if not isinstance(client, distributed.Client):
        raise TypeError(
            f"client must be a distributed.Client or None; received "
            f"{type(client).__name__}"
        )
    return client


def _hash(inputs, extractor, cache):
    """``(keys, failures)`` of every input, hashed in threads on the client.

    Files whose keys the cache's memo knows (a transform or an earlier run
    hashed them) are not read again.
    """
    n_threads = decode_threads(extractor.n_jobs)
    with ThreadPoolExecutor(n_threads, "tlsk-hash") as pool:
        return content_keys(inputs, pool, n_threads, memo=FileKeyMemo(cache))


def _shard_folder(extractor):
    """``<cache>.shards/<namespace id>``: one folder per fingerprint."""
    return os.path.join(
        extractor.cache_path_ + ".shards", namespace_id(extractor.fingerprint_)
    )


def _finished_shards(folder):
    """Complete shard files in ``folder`` (temporary files never match)."""
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    return [os.path.join(folder, name) for name in names if _SHARD_RE.match(name)]


def _missing(cache, extractor, groups):
    """The first index of each content the cache lacks in any view's namespace.

    A worker computes every view of the images it is sent (the views the
    cache holds already are then not added twice).
    """
    unique, unique_keys = groups.first_indices(), groups.unique_keys()
    missing = np.zeros(len(unique_keys), dtype=bool)
    dim = extractor.n_features_out_
    for fingerprint in extractor.view_fingerprints().values():
        for start, found, _ in lookups(cache, fingerprint, unique_keys, dim):
            missing[start : start + len(found)] |= ~found
    return unique[missing].tolist()


def _plan(inputs, keys, indices, shard_size, folder):
    """Cut the indices to compute into shards named after their keys."""
    shards = []
    for start in range(0, len(indices), shard_size):
        chunk = indices[start : start + shard_size]
        payload = [_payload(inputs[i]) for i in chunk]
        digest = hashlib.sha256(b"".join(sorted(keys[i] for i in chunk)))
        name = f"shard-{digest.hexdigest()[:32]}.h5"
        shards.append(_Shard(chunk, payload, os.path.join(folder, name)))
    return shards


def _payload(item):
    """What a worker needs to read one image: an absolute path, or the array."""
    if isinstance(item, ArrayInput):
        return item.array
    return os.path.abspath(item.path)


def _run(client, distributed, extractor, shards, retries, cache, run):
    """Run the shards' tasks; join the finished shards (also on failure)."""
    if not shards:
        return []
    os.makedirs(os.path.dirname(shards[0].path), exist_ok=True)
    futures = {
        client.submit(
            _featurize_shard,
            extractor,
            shard.payload,
            shard.path,
            key=f"tlsk-shard-{uuid.uuid4().hex}",
            retries=retries,
        ): shard
        for shard in shards
    }
    reports = []
    try:
        total = sum(len(shard.indices) for shard in shards)
        with progress(
            total, extractor.verbose, f"{extractor.network_} features"
        ) as bar:
            for future in distributed.as_completed(futures):
                shard = futures[future]
                report = future.result()
                reports.append((shard, report))
                _log_report(shard, report)
                bar.update(len(shard.indices))
    except Exception:
        client.cancel(list(futures))
        # Kept either way: a shard file not joined now is joined by the next run.
        with contextlib.suppress(Exception):
            _join(cache, [r.path for _, r in reports if r.path], why="finished")
        raise
    except BaseException:  # Ctrl-C: stop at once; the next run joins the shards
        client.cancel(list(futures))
        raise
    _join(cache, [report.path for _, report in reports if report.path], "computed")
    with run.alone() as alone:
        if alone:  # another run's temporary files may be live
            _remove_temporaries(os.path.dirname(shards[0].path))
    return reports


def _log_report(shard, report):
    logger.debug(
        "shard %s: %d images, %d computed%s, %d failed, worker %s (pid %d)",
        os.path.basename(shard.path),
        len(shard.indices),
        report.computed,
        " earlier" if report.reused else "",
        len(report.failures),
        report.worker,
        report.pid,
    )


def _join(cache, shards, why):
    """Join complete shard files into the cache and delete them.

    A shard that vanished meanwhile was joined by another run on the same
    cache: its vectors are in the cache, which the read-back checks.
    """
    if not shards:
        return
    _wait_until_visible(shards)
    for _ in range(3):
        present = [path for path in shards if os.path.exists(path)]
        try:
            added = cache.add_shards(present, remove=True)
            break
        except FileNotFoundError:
            continue  # joined by another run between the check and the join
    else:
        added = 0
    logger.info("joined %d shards (%s): %d new vectors", len(present), why, added)
    _remove_if_empty(os.path.dirname(shards[0]))


class _RegisteredRun:
    """A featurize run, known to the others on the same cache by a shared flock.

    Tidying up (joining shards left by interrupted runs, deleting temporary
    files) is done only by a run that is alone: another run's shards and
    temporary files may still be in flight.
    """

    def __init__(self, fd):
        self._fd = fd

    @contextlib.contextmanager
    def alone(self):
        """Yield whether no other run is active, exclusive meanwhile."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # A failed conversion may have dropped the shared lock: take it
            # again (flock(2) does not promise to convert atomically).
            fcntl.flock(self._fd, fcntl.LOCK_SH)
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_SH)


@contextlib.contextmanager
def _registered_run(cache_path):
    """Hold ``<cache>.runs.lock`` shared for the run (the file stays, empty)."""
    fd = os.open(cache_path + ".runs.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield _RegisteredRun(fd)
    finally:
        os.close(fd)


def _wait_until_visible(paths):
    """Wait, a minute at most, until this machine sees files other machines wrote.

    A network file system's client may cache "no such file" for a while
    (NFS: up to ``acdirmax``, 60 s by default) after another machine created
    it. A file still missing then is reported by ``add_shards``.
    """
    deadline = time.monotonic() + _VISIBLE_TIMEOUT
    missing = [path for path in paths if not os.path.exists(path)]
    while missing and time.monotonic() < deadline:
        time.sleep(0.5)
        with contextlib.suppress(OSError):
            os.listdir(os.path.dirname(missing[0]))  # a fresh read helps
        missing = [path for path in missing if not os.path.exists(path)]


def _remove_if_empty(folder):
    """Remove the shard folder and ``<cache>.shards`` when nothing is left."""
    for empty in (folder, os.path.dirname(folder)):
        with contextlib.suppress(OSError):
            os.rmdir(empty)  # refused when not empty: another run uses it


def _remove_temporaries(folder):
    """Delete temporary files left in ``folder`` by killed attempts of this run."""
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            if name.startswith(TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
    _remove_if_empty(folder)


def _read_back(cache, extractor, keys, failures):
    """Each image's vector (its views' mean) from the cache; NaN for failures."""
    dim = extractor.n_features_out_
    fingerprints = extractor.view_fingerprints()
    out = ViewMean(len(keys), dim, len(fingerprints))
    rows = [i for i in range(len(keys)) if i not in failures]
    for fingerprint in fingerprints.values():
        looked_up = lookups(cache, fingerprint, [keys[i] for i in rows], dim)
        for start, found, vectors in looked_up:
            if not found.all():
                raise CacheError(
                    f"feature cache {cache.path!r} lacks {int((~found).sum())} "
                    "vectors that were just computed (an image file changed "
                    "meanwhile, or the cache was pruned or replaced?); run "
                    "featurize again"
                )
            out.add(rows[start : start + len(found)], vectors)
    features = out.mean()
    features[list(failures)] = np.nan
    return features


# -- the worker's side -------------------------------------------------------


def _featurize_shard(extractor, payload, shard_path):
    """Run on a worker: compute one shard into a complete shard file.

    Returns a :class:`_ShardReport`; an image that cannot be decoded is
    reported, not raised (retrying would not help; the client decides).
    """
    worker = _current_worker()
    nthreads = _limit_worker_threads(worker)
    folder = os.path.dirname(shard_path)
    _wait_until_visible([folder])  # the client created it a moment ago
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"shard folder {folder!r} does not exist on worker "
            f"{_worker_name(worker)}: the cache's folder must be on storage that "
            "every worker mounts at the same path as the client"
        )
    if os.path.exists(shard_path):
        return _report(shard_path, 0, [], reused=True, worker=worker)
    scratch = worker.local_directory if worker is not None else None
    with tempfile.TemporaryDirectory(prefix="tlsk-shard-", dir=scratch) as private:
        # A copy: the original may be shared by other tasks.
        local = extractor.with_cache_file(os.path.join(private, "shard.h5"))
        local.set_params(on_error="nan", verbose=0)
        if nthreads is not None:
            # One decoder per task: the worker runs nthreads tasks at once.
            local.set_params(n_jobs=1)
        with warnings.catch_warnings():
            # Reported to the client below, each image with its reason.
            warnings.simplefilter("ignore", UndecodableImageWarning)
            vectors = local.transform(payload)
        failed = np.flatnonzero(np.isnan(vectors).any(axis=1))
        failures = [
            (int(i), _reason(payload[i], local.max_image_pixels)) for i in failed
        ]
        computed = len(payload) - len(failed)
        if computed:
            # One self-contained file, atomically: a retried task writes the
            # same content, so replacing is harmless.
            FeatureCache(local.cache_path_).write_shard(shard_path)
    return _report(shard_path if computed else None, computed, failures, False, worker)


def _report(path, computed, failures, reused, worker):
    return _ShardReport(
        path, computed, failures, reused, os.getpid(), _worker_name(worker)
    )


def _current_worker():
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:  # called outside a Dask worker (tests, debugging)
        return None


def _worker_name(worker):
    return worker.address if worker is not None else "<no worker>"


def _reason(item, max_pixels):
    """Why an image failed on this worker, read again: failures are few."""
    try:
        image_inputs([item])[0].load(max_pixels)
    except ImageError as err:
        return err.reason
    return "could not be decoded during extraction (it changed meanwhile?)"


_threads_limited = False
_threads_lock = threading.Lock()


def _limit_worker_threads(worker):
    """Size TensorFlow's pools to the worker's threads, once per process.

    Returns the worker's ``nthreads``, or None when the worker shares the
    client's process (then nothing is changed: those settings are the user's).
    """
    global _threads_limited
    if worker is None or worker.nanny is None:
        return None
    nthreads = max(1, int(worker.state.nthreads))
    with _threads_lock:
        if not _threads_limited:
            _threads_limited = True
            import tensorflow as tf

            try:
                tf.config.threading.set_intra_op_parallelism_threads(nthreads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:
                # TensorFlow ran an op in this process already: its pools are
                # fixed. The features are the same; only threads may contend.
                logger.debug("TensorFlow initialised already; thread pools kept")
    return nthreads
