"""The feature cache: cold vs warm transforms, and GridSearchCV three ways.

Warm transforms are timed in this process (file keys already known, as in a
GridSearchCV) and in a new process (file keys from the cache's memo of file
identities, so no file is read). GridSearchCV
runs 5 folds x 10 values of C over a bottleneck pipeline with the tlsk cache,
with scikit-learn's ``Pipeline(memory=joblib.Memory(...))`` and with no cache,
against the floor: one extraction plus the same classifier fits on the
features.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import joblib
import numpy as np
from _suite import (
    Section,
    best_seconds,
    digits,
    seconds,
    write_digit_files,
    write_photos,
)
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tlsk import VGG16FeatureExtractor

C_VALUES = np.logspace(-3, 2, 10)


def run(settings, workdir):
    section = Section(
        "Feature cache (512-d vectors: block5_pool + avg)",
        ("run", "images", "seconds", "images/s"),
    )
    _cold_and_warm(section, settings, workdir)
    _grid_search(section, settings, workdir)
    return section


def _extractor(settings, size, **params):
    return VGG16FeatureExtractor(weights=settings["weights"], input_size=size, **params)


def _cold_and_warm(section, settings, workdir):
    n, size = settings["cache_images"], settings["cache_size"]
    paths = write_photos(
        os.path.join(workdir, "cache_photos"),
        n,
        seed=1,
        width=(224, 300),
        height=(224, 300),
    )
    cache = os.path.join(workdir, "warm.h5")
    extractor = _extractor(settings, size, cache=cache).fit()
    _extractor(settings, size).fit().transform(paths[:32])  # tracing, uncached
    cold, features = seconds(extractor.transform, paths)
    warm = best_seconds(lambda: extractor.transform(paths), 5)
    assert np.array_equal(extractor.transform(paths), features)
    fresh = _warm_in_new_process(paths, cache, settings, size)
    section.add(
        f"cold transform ({size} px inputs, hashing and storing)",
        n,
        round(cold, 3),
        round(n / cold, 1),
    )
    section.add("warm transform, same process", n, round(warm, 4), round(n / warm))
    section.add(
        "warm transform, new process (file-key memo)",
        n,
        round(fresh, 4),
        round(n / fresh),
    )
    section.target("warm cache images/s (same process)", n / warm, ">=", 144_000)
    section.target("warm cache images/s (new process)", n / fresh, ">=", 50_000)


def _warm_in_new_process(paths, cache, settings, size):
    listing = os.path.join(os.path.dirname(cache), "paths.json")
    with open(listing, "w") as file:
        json.dump(
            {
                "paths": paths,
                "cache": cache,
                "size": size,
                "weights": settings["weights"],
            },
            file,
        )
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), listing],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _grid_search(section, settings, workdir):
    n, size = settings["grid_images"], settings["grid_size"]
    X, _, y, _ = digits(n, 10)
    paths = write_digit_files(os.path.join(workdir, "grid_digits"), X, size)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)

    def classifier():
        return [("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=2000))]

    def search(pipeline, X):
        return GridSearchCV(pipeline, {"clf__C": C_VALUES}, cv=folds).fit(X, y)

    _extractor(settings, size).fit().transform(paths[:32])  # tracing
    extract, features = seconds(_extractor(settings, size).fit_transform, paths)
    fits, floor_search = seconds(search, Pipeline(classifier()), features)
    floor = extract + fits
    runs = {
        "tlsk cache": Pipeline(
            [
                (
                    "features",
                    _extractor(settings, size, cache=os.path.join(workdir, "grid.h5")),
                )
            ]
            + classifier()
        ),
        "Pipeline(memory=joblib.Memory)": Pipeline(
            [("features", _extractor(settings, size))] + classifier(),
            memory=joblib.Memory(os.path.join(workdir, "joblib"), verbose=0),
        ),
        "no cache": Pipeline([("features", _extractor(settings, size))] + classifier()),
    }
    section.add(
        f"one extraction ({size} px digits) + the 51 classifier fits",
        n,
        round(floor, 2),
        None,
    )
    scores = floor_search.cv_results_["mean_test_score"]
    elapsed = {}
    for name, pipeline in runs.items():
        elapsed[name], fitted = seconds(search, pipeline, paths)
        drift = np.abs(fitted.cv_results_["mean_test_score"] - scores).max()
        section.add(
            f"GridSearchCV 5 folds x 10 C, {name}", n, round(elapsed[name], 2), None
        )
        section.notes.append(
            f"{name}: largest cv score difference to the floor's {drift:.2g}"
        )
    section.target(
        "GridSearchCV with tlsk cache / (one extraction + fits)",
        elapsed["tlsk cache"] / floor,
        "<=",
        1.1,
    )
    section.notes.append(
        "GridSearchCV / floor: "
        + ", ".join(f"{name} {value / floor:.2f}x" for name, value in elapsed.items())
        + f" (one extraction {extract:.2f} s, fits {fits:.2f} s)"
    )


def _child(listing):
    """A new process's warm transform; prints its seconds (imports excluded)."""
    with open(listing) as file:
        job = json.load(file)
    extractor = VGG16FeatureExtractor(
        weights=job["weights"], input_size=job["size"], cache=job["cache"]
    ).fit()
    elapsed, _ = seconds(extractor.transform, job["paths"])
    print(elapsed)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _child(sys.argv[1])
