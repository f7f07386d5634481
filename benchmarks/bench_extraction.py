"""Extraction throughput: tlsk from JPEG files vs plain Keras on decoded arrays.

Measured side by side in one run, on JPEG files this script writes:

1. model only: ``keras.applications.VGG16(include_top=False, pooling="avg")``
   on the same images, already decoded, resized and preprocessed in memory
   (the bound: no I/O, no decoding), called both ways plain Keras offers:
   ``Model.predict`` on the whole array, and ``Model.predict_on_batch`` per
   batch; the faster of the two is the bound;
2. tlsk from files: ``VGG16FeatureExtractor(cache=None).transform(paths)``,
   which reads, decodes and resizes in threads while VGG16 runs;
3. tlsk with a cold HDF5 cache (hashing and storing included), then warm.

Both networks use random weights (the speed is the same as with ImageNet's,
which cannot be downloaded everywhere). Usage::

    python benchmarks/bench_extraction.py            # 96 images at 224 px
    python benchmarks/bench_extraction.py --images 32 --quick
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
from tlsk.images import image_inputs, preprocess_vgg16, resize_image  # noqa: E402


def write_jpegs(folder, count, seed=0):
    """Photo-sized JPEGs (varied sizes around 400x300) with smooth content."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        width, height = rng.integers(320, 480), rng.integers(240, 360)
        y, x = np.mgrid[0:height, 0:width] / max(width, height)
        phase = rng.uniform(0, 6)
        waves = [x * 9 + phase, y * 7 + phase, (x + y) * 5 + phase]
        rgb = 127 + 100 * np.sin(np.stack(waves, axis=-1))
        noise = rng.normal(0, 12, rgb.shape)
        image = np.clip(rgb + noise, 0, 255).astype(np.uint8)
        path = os.path.join(folder, f"img_{i:05d}.jpg")
        Image.fromarray(image).save(path, quality=90)
        paths.append(path)
    return paths


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--quick", action="store_true", help="112 px inputs, for a smoke run"
    )
    args = parser.parse_args(argv)
    size = 112 if args.quick else args.input_size

    import keras

    with tempfile.TemporaryDirectory() as folder:
        paths = write_jpegs(folder, args.images)
        n = len(paths)

        # The model-only bound: everything decoded and preprocessed beforehand.
        arrays = np.stack(
            [resize_image(item.load()[1], size) for item in image_inputs(paths)]
        )
        batch = preprocess_vgg16(arrays)
        model = keras.applications.VGG16(
            include_top=False, weights=None, pooling="avg", input_shape=(size, size, 3)
        )
        model.predict(batch[: args.batch_size], batch_size=args.batch_size, verbose=0)
        model.predict_on_batch(batch[: args.batch_size])
        keras_seconds, _ = timed(
            lambda: model.predict(batch, batch_size=args.batch_size, verbose=0)
        )
        step = args.batch_size
        on_batch_seconds, _ = timed(
            lambda: [
                model.predict_on_batch(batch[i : i + step]) for i in range(0, n, step)
            ]
        )

        extractor = VGG16FeatureExtractor(
            weights=None, input_size=size, batch_size=args.batch_size
        ).fit()
        extractor.transform(paths[: args.batch_size])  # warm-up: graph tracing
        files_seconds, _ = timed(extractor.transform, paths)

        cached = VGG16FeatureExtractor(
            weights=None,
            input_size=size,
            batch_size=args.batch_size,
            cache=os.path.join(folder, "features.h5"),
        ).fit()
        cold_seconds, cold = timed(cached.transform, paths)
        # The best of five: a warm pass takes milliseconds, so one stray
        # scheduler hiccup would otherwise dominate it.
        warm_runs = [timed(cached.transform, paths) for _ in range(5)]
        warm_seconds = min(seconds for seconds, _ in warm_runs)
        assert all(np.array_equal(cold, warm) for _, warm in warm_runs)

    rate = {
        "keras_predict_in_memory": n / keras_seconds,
        "keras_predict_on_batch_in_memory": n / on_batch_seconds,
        "tlsk_from_jpeg_files": n / files_seconds,
        "tlsk_cold_cache": n / cold_seconds,
        "tlsk_warm_cache": n / warm_seconds,
    }
    print(
        f"# VGG16 feature extraction, {n} JPEG files, {size} px, batch "
        f"{args.batch_size}, float32"
    )
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"keras {keras.__version__}"
    )
    print(f"{'run':<34}{'images/s':>10}")
    for name, value in rate.items():
        print(f"{name:<34}{value:>10.1f}")
    bound = max(
        rate["keras_predict_in_memory"], rate["keras_predict_on_batch_in_memory"]
    )
    from_files = rate["tlsk_from_jpeg_files"] / bound
    warm_vs_cold = rate["tlsk_warm_cache"] / rate["tlsk_cold_cache"]
    print(f"tlsk from files / best Keras in memory: {from_files:.3f}x (target >= 0.9x)")
    print(
        f"warm cache / cold cache:                {warm_vs_cold:.0f}x (target >= 1000x)"
    )


if __name__ == "__main__":
    main()
