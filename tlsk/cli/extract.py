"""Compute features of images into a feature cache, ahead of training.

Every file named, and every non-hidden file below each folder named (at any
depth, in sorted order), is decoded, run through the backbone (--backbone,
VGG16 by default; 'tlsk backbones' lists them) and stored in the HDF5
feature cache under the fingerprint of the extractor's options. Images already
in the cache for those options are not computed again; identical files are
computed once. The cache is the one every command shares ($TLSK_CACHE, else
~/.cache/tlsk/features.h5) unless --cache names another: 'tlsk train' and
'tlsk check --label-errors' with the same options (and the same --cache, if
one is given) then read the vectors instead of computing them.

A summary goes to stdout (--json for machines): images, vectors this run
computed and added to the cache (counted as they are published: what other
runs on the same cache add meanwhile is theirs), images whose vector was
already cached (or computed for an identical file), failures, seconds.
Files that cannot be decoded are named on stderr and skipped (--on-error
skip, the default: the exit code is 0 unless every file failed), or stop the
run (--on-error raise: exit code 1, and the batches finished before stay in
the cache).

With --scheduler ADDRESS the images are computed on a running Dask cluster,
with --workers N on N worker processes started on this machine (one thread
each); see tlsk.features.distributed. Workers read the files and write shard files
beside the cache at the same paths as this machine (shared storage); the
shards join the cache once, at the end.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings

from tlsk.cli import CommandError
from tlsk.cli._folders import image_files
from tlsk.cli._options import (
    SHARED_CACHE_HELP,
    add_extractor_options,
    calibration_images,
    extractor_params,
    int_at_least,
    shared_cache,
)
from tlsk.cli._output import counted, note, print_json

HELP = "compute bottleneck features of images into an HDF5 feature cache"
EXAMPLE = """example:
  tlsk extract photos/ --cache features.h5 --layer block5_pool --pooling avg
  tlsk extract photos/ --cache features.h5 --backbone efficientnet_b0
  tlsk train photos/ --method bottleneck --cache features.h5 --out model.joblib
  tlsk extract /shared/photos --cache /shared/features.h5 --scheduler tcp://host:8786
  tlsk extract photos/ --cache features.h5 --workers 2
"""

# Images per transform call: bounds the memory the returned vectors take.
_CHUNK_BYTES = 1 << 28


def add_arguments(parser):
    parser.add_argument(
        "paths", nargs="+", metavar="DIR|FILE", help="image files or folders of them"
    )
    parser.add_argument(
        "--cache",
        metavar="FILE.h5",
        help="the HDF5 feature cache (default: " + SHARED_CACHE_HELP + ")",
    )
    parser.add_argument(
        "--on-error",
        choices=("skip", "raise"),
        default="skip",
        help="files that cannot be decoded: name them on stderr and go on "
        "(default), or stop with exit code 1",
    )
    parser.add_argument("--json", action="store_true", help="summary as JSON")
    dask = parser.add_argument_group(
        "Dask (pip install 'tlsk[dask]')"
    ).add_mutually_exclusive_group()
    dask.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="compute on the running Dask cluster whose scheduler is at ADDRESS "
        "(e.g. tcp://host:8786); its workers must see the files and the "
        "cache's folder at the same paths",
    )
    dask.add_argument(
        "--workers",
        type=int_at_least(1),
        metavar="N",
        help="compute on a Dask cluster of N worker processes (one thread each) "
        "started on this machine for this run",
    )
    add_extractor_options(parser)


def list_files(paths):
    """The files named and every non-hidden file below the folders named, sorted."""
    files = image_files(paths)
    for path in files:
        # Only a name that is not there at all is a mistake in the command; a
        # broken link, a FIFO or a device is a file that fails, skipped with
        # its reason as any other (--on-error).
        if not os.path.lexists(path):
            raise CommandError(f"no such file or folder: {path!r}")
    return files


def run(args):
    import numpy as np

    from tlsk.cache import FeatureCache, namespace_id
    from tlsk.features.extractor import ImageFeatureExtractor
    from tlsk.images.decode import UndecodableImageWarning

    if args.scheduler and not args.cache:
        # The workers of a cluster write beside the cache: a folder of this
        # machine's user is no place they all see.
        args.usage_error("--scheduler needs --cache: a FILE.h5 the workers share")
    args.cache = args.cache or shared_cache()
    files = list_files(args.paths)
    if not files:
        raise CommandError(f"no files found in {', '.join(map(repr, args.paths))}")
    start = time.perf_counter()
    extractor = ImageFeatureExtractor(
        **extractor_params(
            args,
            cache=args.cache,
            on_error="raise" if args.on_error == "raise" else "nan",
        )
    ).fit(calibration_images(args, files))
    cache = FeatureCache(extractor.cache_path_)
    namespace = namespace_id(extractor.fingerprint_)
    with (
        cache.count_added(extractor.fingerprint_) as added,
        _dask_client(args) as client,
        warnings.catch_warnings(),
    ):
        # The bad rows are reported below, each file with its reason.
        warnings.simplefilter("ignore", UndecodableImageWarning)
        if client is None:
            bad_rows = _extract_here(files, extractor, extractor.batch_size)
        else:
            from tlsk.features.distributed import featurize

            # One call: its shards join the cache once, whatever the count.
            in_cache = featurize(files, extractor, client, return_features=False)
            bad_rows = np.flatnonzero(~in_cache)
    failed = [_reason(files[row]) for row in bad_rows]
    for err in failed:
        # Not silenced by --quiet: a skipped file is a result, not a remark.
        print(f"tlsk extract: skipped {err}", file=sys.stderr)
    decoded = len(files) - len(failed)
    # Shards an interrupted earlier run left are joined (and counted) too.
    computed = min(added.entries, decoded)
    summary = {
        "images": len(files),
        "computed": computed,
        "cached": decoded - computed,
        "failed": len(failed),
        "seconds": round(time.perf_counter() - start, 3),
        "cache": args.cache,
        "namespace": namespace,
    }
    if args.json:
        print_json({**summary, "failures": [str(err) for err in failed]})
    else:
        print(
            f"{counted(summary['images'], 'image')}: {summary['computed']} computed, "
            f"{summary['cached']} from the cache, {summary['failed']} failed, "
            f"in {summary['seconds']:.1f} s; namespace {namespace[:12]} in "
            f"{args.cache}"
        )
    if failed and len(failed) == len(files):
        raise CommandError(
            "the one file given could not be decoded"
            if len(files) == 1
            else f"none of the {len(files)} files could be decoded"
        )
    return 0


def _extract_here(files, extractor, batch_size):
    """Features in this process, by chunks; return the rows that failed."""
    import numpy as np

    chunk = max(batch_size, _CHUNK_BYTES // (4 * extractor.n_features_out_))
    bad_rows = []
    for offset in range(0, len(files), chunk):
        features = extractor.transform(files[offset : offset + chunk])
        bad_rows.extend(offset + np.flatnonzero(np.isnan(features).any(axis=1)))
    return bad_rows


@contextlib.contextmanager
def _dask_client(args):
    """A Dask client for --scheduler or --workers, closed afterwards; else None."""
    if args.scheduler is None and args.workers is None:
        yield None
        return
    try:
        from distributed import Client

        from tlsk.features.distributed import local_cluster
    except ImportError as err:
        raise CommandError(
            "--scheduler and --workers need Dask's distributed package; install "
            "it with pip install 'tlsk[dask]'"
        ) from err
    if args.scheduler is not None:
        try:
            client = Client(args.scheduler)
        except (OSError, ValueError) as err:
            raise CommandError(
                f"cannot reach the Dask scheduler at {args.scheduler!r}: {err}"
            ) from err
        with client:
            note(
                args,
                f"Dask: {counted(_workers(client), 'worker')} at {args.scheduler}",
            )
            yield client
        return
    import dask

    # The workers print to this terminal: their TensorFlow start-up lines are
    # hidden as the command's own are.
    preload = [] if args.debug else ["tlsk.cli._quiet_worker"]
    with (
        dask.config.set({"distributed.worker.preload": preload}),
        local_cluster(args.workers) as cluster,
        Client(cluster) as client,
    ):
        note(
            args,
            "Dask: "
            + counted(args.workers, "local worker process", "local worker processes"),
        )
        yield client


def _workers(client):
    return len(client.scheduler_info().get("workers", {}))


def _reason(path):
    """The error of a file that failed, read again: failures are few."""
    from tlsk.images.decode import ImageError, read_image

    try:
        read_image(path)
    except ImageError as err:
        return err
    # Readable now: it changed while it was being extracted.
    return ImageError(path, "could not be decoded during extraction")
