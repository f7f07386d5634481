"""The bottleneck recipe end to end, offline: ``python -m tlsk.demo``.

Writes a small folder-per-class data set of generated images (three classes
of coloured shapes), lists it with :func:`tlsk.load_image_folder`, extracts
VGG16 features into an HDF5 cache once, and selects a logistic regression with
``GridSearchCV`` on the cached features. Prints accuracy and timings.

It uses the ImageNet weights when Keras's cache has them or they can be
downloaded, and otherwise says so and uses a random initialisation (the
accuracy is then lower: random filters still separate colours and shapes, but
not the way ImageNet's do).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw

from tlsk.backbone import (
    WeightsMismatchError,
    WeightsUnavailableError,
    imagenet_weights_path,
)
from tlsk.cache import FeatureCache
from tlsk.datasets import load_image_folder
from tlsk.features import VGG16FeatureExtractor

SHAPES = ("circle", "square", "triangle")


def write_shapes(root, per_class, seed=0, size=96):
    """One folder per shape; random colours, positions and sizes, as JPEG."""
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        os.makedirs(os.path.join(root, shape), exist_ok=True)
        for i in range(per_class):
            background = tuple(int(v) for v in rng.integers(0, 256, 3))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            image = Image.new("RGB", (size, size), background)
            draw = ImageDraw.Draw(image)
            half = rng.integers(size // 6, size // 3)
            cx, cy = rng.integers(half, size - half, 2)
            box = (cx - half, cy - half, cx + half, cy + half)
            if shape == "circle":
                draw.ellipse(box, fill=colour)
            elif shape == "square":
                draw.rectangle(box, fill=colour)
            else:
                draw.polygon(
                    [(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)],
                    fill=colour,
                )
            image.save(os.path.join(root, shape, f"{shape}_{i:03d}.jpg"), quality=92)


def choose_weights():
    """``("imagenet", None)`` when available, else ``(None, why not)``."""
    try:
        imagenet_weights_path()
    except (WeightsUnavailableError, WeightsMismatchError) as err:
        return None, str(err)
    return "imagenet", None


def main(argv=None):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.pipeline import make_pipeline

    parser = argparse.ArgumentParser(prog="python -m tlsk.demo", description=__doc__)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--out", help="folder for the data and cache (default: temp)")
    args = parser.parse_args(argv)

    weights, why_not = choose_weights()
    if weights is None:
        print(
            "ImageNet weights unavailable, so this demo uses a random VGG16 "
            f"initialisation and its accuracy is lower.\n  ({why_not})",
            file=sys.stderr,
        )
    out = args.out or tempfile.mkdtemp(prefix="tlsk-demo-")
    write_shapes(os.path.join(out, "images"), args.per_class)
    paths, labels = load_image_folder(os.path.join(out, "images"))
    train_paths, test_paths, train_labels, test_labels = train_test_split(
        paths, labels, test_size=0.25, stratify=labels, random_state=0
    )
    cache = os.path.join(out, "features.h5")
    extractor = VGG16FeatureExtractor(
        weights=weights, input_size=args.input_size, cache=cache, verbose=1
    )

    start = time.perf_counter()
    extractor.fit().transform(paths)  # one extraction fills the cache
    extract_seconds = time.perf_counter() - start

    start = time.perf_counter()
    search = GridSearchCV(
        make_pipeline(
            extractor.set_params(verbose=0), LogisticRegression(max_iter=5000)
        ),
        {"logisticregression__C": [0.01, 0.1, 1.0, 10.0]},
        cv=5,
    ).fit(train_paths, train_labels)
    search_seconds = time.perf_counter() - start

    (namespace,) = FeatureCache(cache).info().namespaces
    print(f"images: {len(paths)} in {len(SHAPES)} classes, written to {out}")
    print(f"weights: {weights or 'random (seeded)'}, input {args.input_size} px")
    print(f"feature extraction (cold cache): {extract_seconds:.1f} s")
    print(f"GridSearchCV, 4 values of C x 5 folds (warm cache): {search_seconds:.1f} s")
    print(f"best C: {search.best_params_['logisticregression__C']}")
    accuracy = search.score(test_paths, test_labels)
    print(f"held-out accuracy: {accuracy:.3f} (chance: {1 / len(SHAPES):.3f})")
    print(
        f"cache: {namespace.entries} vectors of {namespace.dim} values, "
        f"each computed {namespace.rows_written / namespace.entries:.0f} time(s)"
    )


if __name__ == "__main__":
    main()
