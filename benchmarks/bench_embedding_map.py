"""The map of the images: what t-SNE costs by size, and the page it makes.

Vectors of 512 dimensions (as VGG16's pooled features) in 20 clusters of
unequal size and spread, stand-ins for a test set's features. For each size:
the time of :func:`tlsk.evaluation.embedding_map.embedding_map` (PCA to 50
dimensions, then scikit-learn's Barnes-Hut t-SNE) beside scikit-learn's
``TSNE`` on the 512 dimensions as they are (what one writes without tlsk),
measured in the same run (best and median of interleaved rounds: on a
shared machine one run's time varies several-fold), and how well each map
keeps the clusters: the
share of each point's 10 nearest neighbours on the map that are of its
cluster (in the 512 dimensions the same share is given as "features").
Then the map's page section for the largest size: its HTML bytes, and the
time headless Chromium takes to load a page holding it (when Chromium and
chromedriver are installed). Usage::

    python benchmarks/bench_embedding_map.py                     # 1,000 5,000 10,000
    python benchmarks/bench_embedding_map.py --sizes 500 --no-plain
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

from tlsk.evaluation.embedding_map import embedding_map
from tlsk.evaluation.report._map import MAP_SCRIPT, map_section
from tlsk.evaluation.report._page import page


def clustered(n, dimensions=512, clusters=20, seed=0):
    """``n`` vectors in ``clusters`` Gaussian clusters of unequal size and spread."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.3, 1.0, clusters)
    labels = rng.choice(clusters, size=n, p=weights / weights.sum())
    # Apart enough that 60 % of a point's 10 nearest neighbours share its
    # cluster in the 512 dimensions: classes that overlap, as real ones do.
    centres = rng.normal(0, 1, (clusters, dimensions)) * 0.6
    spread = rng.uniform(0.6, 1.4, clusters)
    vectors = centres[labels] + rng.normal(0, 1, (n, dimensions)) * spread[labels, None]
    # Pooled ReLU features are non-negative.
    return np.maximum(vectors, 0).astype(np.float32), labels


def kept(points, labels, k=10):
    """The mean share of each point's ``k`` nearest neighbours of its own label."""
    index = NearestNeighbors(n_neighbors=k + 1).fit(points)
    neighbours = index.kneighbors(points, return_distance=False)[:, 1:]
    return float((labels[neighbours] == labels[:, None]).mean())


def page_load_seconds(html_path):
    """Navigation start to the load event in headless Chromium; None without it."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        options.add_argument(argument)
    options.binary_location = browser
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        times = []
        for _ in range(3):
            chrome.get("file://" + html_path)
            times.append(
                chrome.execute_script(
                    "var t = performance.getEntriesByType('navigation')[0];"
                    "return t.loadEventEnd - t.startTime;"
                )
                / 1000
            )
        return min(times)
    finally:
        chrome.quit()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument(
        "--no-plain", action="store_true", help="skip scikit-learn's TSNE alone"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"# 512-d vectors in 20 clusters; {os.cpu_count()} CPUs; best and median "
        f"of {args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f} "
        "at the start"
    )
    print(
        f"{'points':>7} {'tlsk best':>9} {'median':>7} {'TSNE 512-d best':>15} "
        f"{'median':>7} {'ratio':>6} {'kept: tlsk':>10} {'TSNE':>6} {'features':>8}"
    )
    # One small map first: the first call pays for imports and thread pools.
    embedding_map(clustered(100)[0], method="tsne")
    TSNE(perplexity=10, init="pca").fit_transform(clustered(100)[0])
    loads = []
    for n in args.sizes:
        vectors, labels = clustered(n)
        ours, plain = [], []
        plain_kept = float("nan")
        for _ in range(args.rounds):
            start = time.perf_counter()
            coords, mapped, how = embedding_map(
                vectors, method="tsne", max_points=None, random_state=0
            )
            ours.append(time.perf_counter() - start)
            loads.append(os.getloadavg()[0])
            if not args.no_plain:
                start = time.perf_counter()
                layout = TSNE(random_state=0, init="pca").fit_transform(vectors)
                plain.append(time.perf_counter() - start)
                plain_kept = kept(layout, labels)
        plain = plain or [float("nan")]
        print(
            f"{n:>7,} {min(ours):>9.1f} {np.median(ours):>7.1f} {min(plain):>15.1f} "
            f"{np.median(plain):>7.1f} {min(plain) / min(ours):>6.2f} "
            f"{kept(coords, labels):>10.3f} {plain_kept:>6.3f} "
            f"{kept(vectors, labels):>8.3f}",
            flush=True,
        )
    print(
        f"# load average (1 min) after each map: {min(loads):.1f} to {max(loads):.1f}"
    )
    print(f"# last map: {how}; load average {os.getloadavg()[0]:.1f} at the end")

    n = len(mapped)
    names = [f"class_{label:02d}/image_{i:06d}.jpg" for i, label in enumerate(labels)]
    classes = [f"class_{k:02d}" for k in range(20)]
    truth = [classes[label] for label in labels]
    rng = np.random.default_rng(1)
    predicted = [
        classes[rng.integers(20)] if rng.random() < 0.1 else label for label in truth
    ]
    marks = {int(i): "suspect" for i in rng.choice(n, size=n // 100, replace=False)}
    start = time.perf_counter()
    section = map_section(
        coords,
        indices=mapped,
        names=names,
        labels=truth,
        predicted=predicted,
        marks=marks,
        thumbnails={i: f"{i}.jpg" for i in range(n)},
        note=how,
    )
    html = page("Map", "now", [section], scripts=(MAP_SCRIPT,))
    render = time.perf_counter() - start
    folder = tempfile.mkdtemp(prefix="tlsk-map-")
    path = os.path.join(folder, "index.html")
    with open(path, "w", encoding="utf-8") as file:
        file.write(html)
    size = len(section.encode("utf-8"))
    load = page_load_seconds(path)
    print(
        f"# map section of {n:,} images (10% mistakes, 1% suspects, every one a "
        f"thumbnail name): {size / 1e6:.2f} MB, {size / n:.0f} bytes a point, "
        f"rendered in {render:.2f} s; Chromium load "
        + ("not measured (no chromium)" if load is None else f"{load:.2f} s")
    )
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
