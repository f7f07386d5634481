"""Finding flipped labels: tlsk's confident learning against the usual ways.

On two labelled sets, 5% of the labels are flipped on purpose (each to
another class, at random; three seeds); each method ranks the images, and
the top k (k = the number flipped) are compared with the flipped ones:
precision at k equals recall at k then. The methods, on the same VGG16
features:

- tlsk suspects: ``find_label_errors`` (5-fold out-of-fold logistic
  regression, cleanlab's confident learning): its suspects, most doubtful
  first, then the other images by label quality; "suspects" is how many it
  flags (its estimate of how many labels are wrong), with their own
  precision and recall;
- tlsk ranking: ``LabelErrors.ranking()``, every image by cleanlab's label
  quality score (the out-of-fold probability of the given label), from the
  same call;
- in-sample top losses: a logistic regression fitted on every (noisy) label,
  images ranked by their loss, as one reads a trained model's top losses;
- random: the expected precision of a random pick (5%).

The sets: real-photo crops (tlsk.images.sample_data, six classes), and scikit-learn's
digits as PNG files. Features are computed once per set; the timings are of
the ranking alone.
"""

from __future__ import annotations

import os
import time

import numpy as np
from _suite import Section, digits, write_digit_files

FRACTION = 0.05
SEEDS = (0, 1, 2)


def run(settings, workdir):
    from tlsk import ImageFeatureExtractor

    size = settings["labels_size"]
    section = Section(
        f"Label errors: {FRACTION:.0%} of the labels flipped, top-k (k = number "
        f"flipped), mean over seeds {SEEDS} (min); VGG16 features at {size} px",
        (
            "data",
            "images",
            "flipped",
            "method",
            "precision@k = recall@k",
            "min",
            "suspects",
            "suspects' precision",
            "suspects' recall",
            "seconds",
        ),
    )
    extractor = ImageFeatureExtractor(
        weights=settings["weights"], input_size=size, verbose=0
    )
    for name, paths, labels in _data_sets(settings, workdir):
        features = extractor.fit_transform(paths)
        results = {}
        for seed in SEEDS:
            noisy, flipped = flip_labels(labels, FRACTION, seed=seed)
            for method, (ranked, suspects, seconds) in _methods(features, noisy):
                k = len(flipped)
                at_k = len(set(np.asarray(ranked[:k]).tolist()) & flipped) / k
                hits = None if suspects is None else len(set(suspects) & flipped)
                results.setdefault(method, []).append(
                    (at_k, suspects, hits, k, seconds)
                )
        for method, runs in results.items():
            at_k = [r[0] for r in runs]
            k = runs[0][3]
            row = [name, len(labels), k, method, _r(np.mean(at_k)), _r(min(at_k))]
            if runs[0][1] is None:
                row += ["", "", ""]
            else:
                row += [
                    _r(np.mean([len(r[1]) for r in runs]), 1),
                    _r(np.mean([r[2] / max(1, len(r[1])) for r in runs])),
                    _r(np.mean([r[2] / r[3] for r in runs])),
                ]
            section.add(*row, _r(np.mean([r[4] for r in runs]), 2))
        k = max(1, round(FRACTION * len(labels)))
        share = _r(k / len(labels))
        section.add(
            name, len(labels), k, "random (expected)", share, "", "", "", "", 0.0
        )
    section.notes.append(
        "tlsk suspects and tlsk ranking come from one find_label_errors call "
        "(its time is on the first); the random row is the expected value, "
        f"not a draw; VGG16 weights: {settings['weights'] or 'seeded random'}"
    )
    return section


def _r(value, digits=3):
    return round(float(value), digits)


def flip_labels(labels, fraction, seed):
    """``(noisy labels, set of flipped indices)``: each flipped to another class."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels).astype(str)
    classes = np.unique(labels)
    k = max(1, round(fraction * len(labels)))
    flipped = rng.choice(len(labels), k, replace=False)
    noisy = labels.copy()
    for i in flipped:
        noisy[i] = rng.choice(classes[classes != labels[i]])
    return noisy, set(flipped.tolist())


def _data_sets(settings, workdir):
    from tlsk.images.sample_data import write_photo_folder

    per_class, size = settings["labels_photos"], settings["labels_size"]
    paths, labels = write_photo_folder(
        os.path.join(workdir, "label_photos"), per_class=per_class, size=size
    )
    yield "photo crops", paths, labels
    n = settings["labels_digits"]
    images, _, targets, _ = digits(n, 10)
    paths = write_digit_files(os.path.join(workdir, "label_digits"), images, size)
    yield "digits", paths, targets.astype(str)


def _methods(features, noisy):
    from tlsk.evaluation.classifiers import bottleneck_classifier
    from tlsk.evaluation.label_errors import find_label_errors

    started = time.perf_counter()
    errors = find_label_errors(features, noisy, extractor="precomputed")
    seconds = time.perf_counter() - started
    suspects = errors.indices.tolist()
    rest = [i for i in errors.ranking().tolist() if i not in set(suspects)]
    yield "tlsk suspects (confident learning)", (suspects + rest, suspects, seconds)
    yield "tlsk ranking (label quality)", (errors.ranking(), None, 0.0)

    started = time.perf_counter()
    classes, encoded = np.unique(noisy, return_inverse=True)
    model = bottleneck_classifier("logreg", noisy).fit(features, noisy)
    p_given = model.predict_proba(features)[np.arange(len(noisy)), encoded]
    seconds = time.perf_counter() - started
    yield "in-sample top losses", (np.argsort(p_given, kind="stable"), None, seconds)
