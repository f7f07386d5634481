"""The feature cache at scale: each size beside the smallest, in one run.

For caches of 10,000 to 1,000,000 vectors of 512 floats, each filled by one
bulk append, it times:

- adding 32 vectors (a whole writer session: ``with cache.writer(...) as w,
  w.claim(): w.append(...)``), the median of a few, after an untimed ``sync``
  of what the bulk fill wrote; the background merges are waited for between
  adds, untimed (they are off the writer's path, which is the point);
- a cold lookup of 1,000 stored keys in a new process, and how much its
  resident memory grew, the median of a few;
- filling the cache by appends of 100 vectors (a writer session each, as
  one ``transform`` of 100 images is), merges included, against one bulk fill.

The claim is that these costs follow the work asked, not the cache's size:
each figure is printed beside its ratio to the same figure at the smallest
size, measured in the same run. The previous format's figures (format 1,
whose appends grew with the cache) were measured by a copy of its code that
is gone; benchmarks/README.md keeps them with the commit that measured them.
Files live in the work folder; the page cache is warm (the files were just
written), as on a machine that uses its cache daily.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
from _suite import Section

DIM = 512
FINGERPRINT = {"benchmark": "cache-scaling", "layer": "block5_pool", "dim": DIM}
LOOKUP_KEYS = 1000
ADD_KEYS = 32
HERE = os.path.dirname(os.path.abspath(__file__))
RATIO = "/ smallest cache"


def run(settings, workdir):
    section = Section(
        f"Feature cache at scale ({DIM}-d vectors, format 2)",
        ("vectors", "measure", "format 2", RATIO),
    )
    sizes = settings["scaling_sizes"]
    rounds = settings["scaling_rounds"]
    results = {n: _measure_size(settings, workdir, n, rounds) for n in sizes}
    smallest = results[sizes[0]]
    for n, figures in results.items():
        for key, (measure, value, digits) in figures.items():
            base = smallest[key][1]
            ratio = round(value / base, 2) if key in _SCALED and base else None
            section.add(n, measure, round(value, digits), ratio)
    small, large = results[sizes[0]], results[sizes[-1]]
    span = f"{sizes[-1]:,} vs {sizes[0]:,}"
    section.target(
        f"add {ADD_KEYS}: {span} vectors (format 2)",
        large["add"][1] / small["add"][1],
        "<=",
        2.0,
    )
    section.target(
        f"cold {LOOKUP_KEYS:,}-key lookup: {span} vectors (format 2)",
        large["lookup"][1] / small["lookup"][1],
        "<=",
        3.0,
    )
    section.target(
        f"cold {LOOKUP_KEYS:,}-key lookup seconds at {sizes[-1]:,} (format 2)",
        large["lookup"][1],
        "<=",
        0.3,
    )
    section.target(
        "the same, in the cache filled by appends (format 2)",
        large["lookup_many_runs"][1],
        "<=",
        0.3,
    )
    for n, figures in results.items():
        section.target(
            f"fill by appends of {settings['scaling_append']} / bulk fill, "
            f"{n:,} vectors (format 2)",
            figures["fill_ratio"][1],
            "<=",
            3.0,
        )
    return section


# The figures whose ratio to the smallest cache says whether a cost grows with
# the cache's size (file sizes and fill times grow with the work asked).
_SCALED = ("add", "lookup", "rss", "lookup_many_runs", "fill_ratio")


def _measure_size(settings, workdir, n, rounds):
    """``{key: (measure, value, digits)}`` for a cache of ``n`` vectors."""
    from tlsk.cache import FeatureCache

    keys = _keys(n)
    vectors = _vectors(n)
    folder = os.path.join(workdir, f"scaling-{n}")
    os.makedirs(folder, exist_ok=True)
    cache = FeatureCache(os.path.join(folder, "bulk.h5"))
    figures = {}
    bulk = _timed(_append, cache, keys, vectors)
    cache.wait_for_merges()
    figures["size"] = ("file size, GB", cache.info().size_bytes * 1e-9, 3)
    figures["bulk"] = ("bulk fill, s", bulk, 2)

    # The bulk fill left gigabytes of dirty pages: flushed first, untimed, so
    # that the small appends' fsyncs do not wait behind them.
    os.sync()
    add = []
    for round_ in range(2 * rounds - 1):
        extra = _keys(ADD_KEYS, start=n + (round_ + 1) * 1_000_000)
        add.append(_timed(_append, cache, extra, _vectors(ADD_KEYS)))
        cache.wait_for_merges()
    figures["add"] = (f"add {ADD_KEYS} vectors, s", statistics.median(add), 4)

    wanted = os.path.join(folder, "wanted.npy")
    picks = np.random.default_rng(n).choice(n, LOOKUP_KEYS, replace=False)
    np.save(wanted, np.frombuffer(b"".join(keys[i] for i in picks), np.uint8))
    cold = [_cold_lookup(cache.path, wanted) for _ in range(rounds)]
    figures["lookup"] = (
        f"cold {LOOKUP_KEYS:,}-key lookup, s",
        statistics.median(r["seconds"] for r in cold),
        4,
    )
    figures["rss"] = (
        "  its RSS growth, MB",
        statistics.median(r["rss_mb"] for r in cold),
        1,
    )
    figures["index"] = (
        "  index in memory, bytes a key",
        cache.info().index_bytes / n,
        2,
    )

    step = settings["scaling_append"]
    filled = FeatureCache(os.path.join(folder, "appends.h5"))
    fill = _fill_by_appends(filled, keys, vectors, step)
    figures["fill"] = (f"fill by {n // step:,} appends of {step}, s", fill, 2)
    # The same cold lookup in the cache filled by appends: many runs, not one.
    runs = filled.info().runs
    many = statistics.median(
        _cold_lookup(filled.path, wanted)["seconds"] for _ in range(rounds)
    )
    figures["lookup_many_runs"] = (
        f"cold {LOOKUP_KEYS:,}-key lookup, filled by appends ({runs} runs), s",
        many,
        4,
    )
    figures["fill_ratio"] = ("  fill by appends / bulk fill", fill / bulk, 2)
    _remove_cache(filled.path)
    _remove_cache(cache.path)
    return figures


def _keys(n, start=0):
    return [hashlib.sha256(str(i).encode()).digest() for i in range(start, start + n)]


def _vectors(n):
    rng = np.random.default_rng(n)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        out[start:stop] = rng.standard_normal((stop - start, DIM), np.float32)
    return out


def _append(cache, keys, vectors):
    with cache.writer(FINGERPRINT, DIM) as writer, writer.claim():
        writer.append(keys, vectors)


def _timed(function, *args):
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def _fill_by_appends(cache, keys, vectors, step):
    start = time.perf_counter()
    for i in range(0, len(keys), step):
        _append(cache, keys[i : i + step], vectors[i : i + step])
    cache.wait_for_merges()  # the background merges are part of the cost
    return time.perf_counter() - start


def _remove_cache(path):
    for suffix in ("", ".lock", ".merge.lock"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    shutil.rmtree(path + ".runs", ignore_errors=True)


def _cold_lookup(path, wanted):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), path, wanted],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.getcwd()])},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _rss_mb():
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _child(path, wanted):
    """A new process's first lookup: prints its seconds and RSS growth."""
    from tlsk.cache import FeatureCache

    raw = np.load(wanted)
    keys = [raw[i : i + 32].tobytes() for i in range(0, len(raw), 32)]
    cache = FeatureCache(path)
    before = _rss_mb()
    start = time.perf_counter()
    found, _ = cache.lookup(FINGERPRINT, keys, DIM)
    elapsed = time.perf_counter() - start
    grown = _rss_mb() - before
    assert found.all(), f"{int((~found).sum())} keys not found in {path}"
    print(json.dumps({"seconds": elapsed, "rss_mb": grown}))


if __name__ == "__main__":
    _child(*sys.argv[1:3])
