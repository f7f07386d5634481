"""Peak memory of extraction: does it grow with the number of images?

Each count runs in a new process that extracts features of that many JPEG
files (no cache) and reports its peak resident set size (``ru_maxrss``),
and its RSS after building VGG16, before the first image.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

from _suite import Section, write_photos


def run(settings, workdir):
    small, large = settings["memory_images"]
    size = settings["memory_size"]
    paths = write_photos(
        os.path.join(workdir, "memory_photos"),
        large,
        seed=2,
        width=(224, 300),
        height=(224, 300),
    )
    section = Section(
        f"Peak memory: extraction from 224-300 px JPEG files at {size} px inputs, "
        "batch 32, no cache (each count in a new process)",
        (
            "images",
            "RSS before the first image (MB)",
            "peak RSS (MB)",
            "peak - before (MB)",
        ),
    )
    peaks = {}
    for count in (small, large):
        before, peak = _measure(paths[:count], size, settings["weights"], workdir)
        peaks[count] = peak
        section.add(count, round(before), round(peak), round(peak - before))
    section.target(
        f"peak RSS {large} images / {small} images",
        peaks[large] / peaks[small],
        "<=",
        1.1,
    )
    section.notes.append(
        f"the returned feature matrix itself is {large * 512 * 4 / 2**20:.1f} MB "
        f"for {large} images"
    )
    return section


def _measure(paths, size, weights, workdir):
    listing = os.path.join(workdir, f"memory_{len(paths)}.json")
    with open(listing, "w") as file:
        json.dump({"paths": paths, "size": size, "weights": weights}, file)
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), listing],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["before_mb"], result["peak_mb"]


def _rss_mb():
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _child(listing):
    from tlsk import VGG16FeatureExtractor

    with open(listing) as file:
        job = json.load(file)
    extractor = VGG16FeatureExtractor(
        weights=job["weights"], input_size=job["size"]
    ).fit()
    before = _rss_mb()
    features = extractor.transform(job["paths"])
    assert features.shape == (len(job["paths"]), extractor.n_features_out_)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"before_mb": before, "peak_mb": peak}))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _child(sys.argv[1])
