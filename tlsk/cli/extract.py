"""Compute VGG16 features of images into a feature cache, ahead of training.

Every file named, and every non-hidden file below each folder named (at any
depth, in sorted order), is decoded, run through VGG16 and stored in the HDF5
feature cache under the fingerprint of the extractor's options. Images already
in the cache for those options are not computed again; identical files are
computed once. 'tlsk train' with the same options and --cache then reads the
vectors instead of computing them.

A summary goes to stdout (--json for machines): images, vectors newly
computed, images whose vector was already cached (or computed for an
identical file), failures, seconds. Files that cannot be
decoded are named on stderr and skipped (--on-error skip, the default: the
exit code is 0 unless every file failed), or stop the run (--on-error raise:
exit code 1, and the batches finished before stay in the cache).
"""

from __future__ import annotations

import os
import sys
import time
import warnings

from tlsk.cli import CommandError
from tlsk.cli._common import (
    add_extractor_options,
    extractor_params,
    image_files,
    print_json,
)

HELP = "compute VGG16 features of images into an HDF5 feature cache"
EXAMPLE = """example:
  tlsk extract photos/ --cache features.h5 --layer block5_pool --pooling avg
  tlsk train photos/ --method bottleneck --cache features.h5 --out model.joblib
"""

# Images per transform call: bounds the memory the returned vectors take.
_CHUNK_BYTES = 1 << 28


def add_arguments(parser):
    parser.add_argument(
        "paths", nargs="+", metavar="DIR|FILE", help="image files or folders of them"
    )
    parser.add_argument(
        "--cache", required=True, metavar="FILE.h5", help="the HDF5 feature cache"
    )
    parser.add_argument(
        "--on-error",
        choices=("skip", "raise"),
        default="skip",
        help="files that cannot be decoded: name them on stderr and go on "
        "(default), or stop with exit code 1",
    )
    parser.add_argument("--json", action="store_true", help="summary as JSON")
    add_extractor_options(parser)


def list_files(paths):
    """The files named and every non-hidden file below the folders named, sorted."""
    files = image_files(paths)
    for path in files:
        if not os.path.isfile(path):
            raise CommandError(f"no such file or folder: {path!r}")
    return files


def run(args):
    import numpy as np

    from tlsk.cache import FeatureCache, namespace_id
    from tlsk.features import VGG16FeatureExtractor

    files = list_files(args.paths)
    if not files:
        raise CommandError(f"no files found in {', '.join(map(repr, args.paths))}")
    start = time.perf_counter()
    extractor = VGG16FeatureExtractor(
        **extractor_params(
            args,
            cache=args.cache,
            on_error="raise" if args.on_error == "raise" else "nan",
        )
    ).fit()
    cache = FeatureCache(extractor._cache_path)
    namespace = namespace_id(extractor.fingerprint_)
    before = _entries(cache, namespace)
    chunk = max(args.batch_size, _CHUNK_BYTES // (4 * extractor.n_features_out_))
    failed = []
    for offset in range(0, len(files), chunk):
        paths = files[offset : offset + chunk]
        with warnings.catch_warnings():
            # The bad rows are reported below, each file with its reason.
            warnings.filterwarnings(
                "ignore", message=r".* could not be decoded", category=UserWarning
            )
            features = extractor.transform(paths)
        for row in np.flatnonzero(np.isnan(features).any(axis=1)):
            failed.append(_reason(paths[row]))
    for err in failed:
        # Not silenced by --quiet: a skipped file is a result, not a remark.
        print(f"tlsk extract: skipped {err}", file=sys.stderr)
    summary = {
        "images": len(files),
        "computed": _entries(cache, namespace) - before,
        "cached": 0,
        "failed": len(failed),
        "seconds": round(time.perf_counter() - start, 3),
        "cache": args.cache,
        "namespace": namespace,
    }
    summary["cached"] = summary["images"] - summary["failed"] - summary["computed"]
    if args.json:
        print_json({**summary, "failures": [str(err) for err in failed]})
    else:
        print(
            f"{summary['images']} images: {summary['computed']} computed, "
            f"{summary['cached']} from the cache, {summary['failed']} failed, "
            f"in {summary['seconds']:.1f} s; namespace {namespace[:12]} in "
            f"{args.cache}"
        )
    if failed and len(failed) == len(files):
        raise CommandError(f"none of the {len(files)} files could be decoded")
    return 0


def _entries(cache, namespace):
    for ns in cache.info().namespaces:
        if ns.id == namespace:
            return ns.entries
    return 0


def _reason(path):
    """The error of a file that failed, read again: failures are few."""
    from tlsk.images import ImageError, read_image

    try:
        read_image(path)
    except ImageError as err:
        return err
    # Readable now: it changed while it was being extracted.
    return ImageError(path, "could not be decoded during extraction")
