"""Feature extraction in one process vs on a 2-worker Dask LocalCluster.

Measured side by side in one run, on the same JPEG files this script writes,
each side into its own empty feature cache:

1. one process: ``VGG16FeatureExtractor(cache=...).transform(paths)``, with
   TensorFlow using every core and decoding in threads;
2. Dask: ``tlsk.features.distributed.featurize(paths, extractor, client)`` on
   ``local_cluster(2)``: two worker processes of one thread each, shards of
   ``--shard-size`` images, shard files joined into the cache at the end.

Both sides are warmed up first on other images (graph tracing; for Dask also
starting the workers, importing TensorFlow and building VGG16 in each), and
those one-off costs are printed apart. The images are split into rounds that
both sides compute in turn, and each side's best round counts: on a shared
machine a burst of someone else's work then hits one round, not one side.
Random weights (the same cost as ImageNet's). With 2 cores the one process
already uses both, so the cluster can at best match it: the ratio shows what
two processes gain over TensorFlow's own threads, less Dask's overhead
(hashing and lookups on the client, tasks, shard files and their join).
Usage::

    python benchmarks/bench_distributed.py              # 1,800 images at 64 px (~3 min)
    python benchmarks/bench_distributed.py --images 200 --quick
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tlsk import VGG16FeatureExtractor  # noqa: E402
from tlsk.cache import FeatureCache  # noqa: E402

WARM_UP_IMAGES = 16


def write_jpegs(folder, count, seed):
    """Photo-sized JPEGs (around 400x300) with smooth content and some noise."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        width, height = rng.integers(320, 480), rng.integers(240, 360)
        y, x = np.mgrid[0:height, 0:width] / max(width, height)
        phase = rng.uniform(0, 6)
        waves = np.stack([x * 9 + phase, y * 7 + phase, (x + y) * 5], axis=-1)
        noise = rng.normal(0, 12, waves.shape)
        image = np.clip(127 + 100 * np.sin(waves) + noise, 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"img_{seed}_{i:05d}.jpg")
        Image.fromarray(image).save(path, quality=90)
        paths.append(path)
    return paths


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def warmed_up(folder, name, params, warm_up, compute):
    """A fitted extractor with its own cache, warmed up: ``(extractor, seconds)``."""
    extractor = VGG16FeatureExtractor(
        **params, cache=os.path.join(folder, f"{name}.h5")
    ).fit()
    seconds, _ = timed(compute, extractor, warm_up, len(warm_up) // 2)
    return extractor, seconds


def entries(extractor):
    (namespace,) = FeatureCache(extractor._cache_path).info().namespaces
    return namespace.entries


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1800)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="the images are split into rounds, each computed by both sides in "
        "turn; the best round of each side counts (the machine may be shared)",
    )
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="48 px, a smoke run")
    args = parser.parse_args(argv)
    params = {
        "weights": None,
        "input_size": 48 if args.quick else args.input_size,
        "batch_size": args.batch_size,
        "precision": "float32",
    }
    if "precision" not in VGG16FeatureExtractor().get_params():
        del params["precision"]  # a tlsk from before precision existed

    from distributed import Client

    from tlsk.features.distributed import featurize, local_cluster

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        paths = write_jpegs(folder, args.images, seed=0)
        warm_up = write_jpegs(folder, WARM_UP_IMAGES, seed=1)
        per_round = -(-len(paths) // args.rounds)
        rounds = [paths[i : i + per_round] for i in range(0, len(paths), per_round)]
        start = time.perf_counter()
        with local_cluster(2) as cluster, Client(cluster) as client:
            cluster_start = time.perf_counter() - start
            sides = {
                "one process (TensorFlow on all cores)": (
                    lambda extractor, images, _: extractor.transform(images)
                ),
                "Dask, 2 workers x 1 thread": (
                    lambda extractor, images, shard_size: featurize(
                        images, extractor, client, shard_size=shard_size
                    )
                ),
            }
            extractors, warm_seconds = {}, {}
            for number, (name, compute) in enumerate(sides.items()):
                extractors[name], warm_seconds[name] = warmed_up(
                    folder, f"side{number}", params, warm_up, compute
                )
            seconds = {name: [] for name in sides}
            features = {}
            for images in rounds:  # the two sides in turn, round after round
                for name, compute in sides.items():
                    elapsed, features[name] = timed(
                        compute, extractors[name], images, args.shard_size
                    )
                    seconds[name].append(elapsed)
        n = len(paths)
        for extractor in extractors.values():
            assert entries(extractor) == n + len(warm_up)
        # Batches differ between the two sides: sums round differently.
        one, dask = features.values()
        np.testing.assert_allclose(dask, one, 1e-5, 1e-6)
    load_after = os.getloadavg()[0]

    import keras

    size = params["input_size"]
    print(
        f"# VGG16 features into an empty cache, {n} JPEG files (~400x300) in "
        f"{len(rounds)} rounds, {size} px, batch {args.batch_size}, float32, "
        f"shards of {args.shard_size}"
    )
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"keras {keras.__version__}, load average {load_before:.1f} before, "
        f"{load_after:.1f} after"
    )
    rates = {
        name: [len(images) / t for images, t in zip(rounds, times, strict=True)]
        for name, times in seconds.items()
    }
    print(f"{'run':<40}{'best':>8}   rounds (images/s)")
    for name, values in rates.items():
        listed = " ".join(f"{rate:.1f}" for rate in values)
        print(f"{name:<40}{max(values):>8.1f}   {listed}")
    one_name, dask_name = rates
    print(
        "Dask / one process, best rounds: "
        f"{max(rates[dask_name]) / max(rates[one_name]):.2f}x"
    )
    # Each side with its own one-off costs: Dask's cluster start and workers'
    # warm-up, the one process's own warm-up (building VGG16, tracing).
    whole = n / (cluster_start + warm_seconds[dask_name] + sum(seconds[dask_name]))
    one_whole = n / (warm_seconds[one_name] + sum(seconds[one_name]))
    print(
        f"with one-off costs, all {n} images: Dask {whole:.1f} images/s, one "
        f"process {one_whole:.1f} images/s, {whole / one_whole:.2f}x"
    )
    print(
        f"one-off costs: cluster start {cluster_start:.1f} s, workers' warm-up "
        f"{warm_seconds[dask_name]:.1f} s (one process: "
        f"{warm_seconds[one_name]:.1f} s)"
    )


if __name__ == "__main__":
    main()
