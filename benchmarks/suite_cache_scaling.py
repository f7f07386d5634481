"""The feature cache at scale: format 2 (runs) beside format 1 (one main file).

For caches of 10,000 to 1,000,000 vectors of 512 floats, each filled by one
bulk append, it times:

- adding 32 vectors (a whole writer session: ``with cache.writer(...) as w,
  w.claim(): w.append(...)``), the median of a few, format 2 and format 1
  taking turns, after an untimed ``sync`` of what the bulk fills wrote;
  format 2's background merges are waited for between turns, untimed (they
  are off the writer's path, which is the point);
- a cold lookup of 1,000 stored keys in a new process, and how much its
  resident memory grew, the median of a few, taking turns;
- filling the cache by appends of 100 vectors (a writer session each, as
  one ``transform`` of 100 images is), merges included, against one bulk fill.

Format 1 is the pinned copy of the old writer in ``_cache_v1.py``. Its small-
append fill is quadratic; it is measured only up to ``scaling_v1_fill_max``
vectors (1,000,000 would take hours), and the ratio is then not printed.
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


def run(settings, workdir):
    section = Section(
        f"Feature cache at scale ({DIM}-d vectors, format 2 vs format 1)",
        ("vectors", "measure", "format 2", "format 1", "format 1 / format 2"),
    )
    sizes = settings["scaling_sizes"]
    rounds = settings["scaling_rounds"]
    results = {}
    for n in sizes:
        results[n] = _measure_size(section, settings, workdir, n, rounds)
    small, large = results[sizes[0]], results[sizes[-1]]
    span = f"{sizes[-1]:,} vs {sizes[0]:,}"
    section.target(
        f"add {ADD_KEYS}: {span} vectors (format 2)",
        large["add"] / small["add"],
        "<=",
        2.0,
    )
    section.target(
        f"cold {LOOKUP_KEYS:,}-key lookup: {span} vectors (format 2)",
        large["lookup"] / small["lookup"],
        "<=",
        3.0,
    )
    section.target(
        f"cold {LOOKUP_KEYS:,}-key lookup seconds at {sizes[-1]:,} (format 2)",
        large["lookup"],
        "<=",
        0.3,
    )
    section.target(
        "the same, in the cache filled by appends (format 2)",
        large["lookup_many_runs"],
        "<=",
        0.3,
    )
    for n, figures in results.items():
        section.target(
            f"fill by appends of {settings['scaling_append']} / bulk fill, "
            f"{n:,} vectors (format 2)",
            figures["fill_ratio"],
            "<=",
            3.0,
        )
    return section


def _measure_size(section, settings, workdir, n, rounds):
    import _cache_v1

    from tlsk import cache as v2

    keys = _keys(n)
    vectors = _vectors(n)
    folder = os.path.join(workdir, f"scaling-{n}")
    os.makedirs(folder, exist_ok=True)
    caches = {
        "2": v2.FeatureCache(os.path.join(folder, "v2.h5")),
        "1": _cache_v1.FeatureCache(os.path.join(folder, "v1.h5")),
    }
    bulk = {}
    for version, cache in caches.items():
        bulk[version] = _timed(_append, cache, keys, vectors)
    caches["2"].wait_for_merges()
    size = {v: c.info().size_bytes for v, c in caches.items()}
    section.add(n, "file size, GB", *_pair(size, 1e-9, 3), None)
    section.add(n, "bulk fill, s", *_pair(bulk, 1, 2), _ratio(bulk))

    # The bulk fills left gigabytes of dirty pages: flushed first, untimed, so
    # that the small appends' fsyncs do not wait behind them.
    os.sync()
    add = {"1": [], "2": []}
    for round_ in range(2 * rounds - 1):
        extra = _keys(ADD_KEYS, start=n + (round_ + 1) * 1_000_000)
        for version, cache in caches.items():
            add[version].append(_timed(_append, cache, extra, _vectors(ADD_KEYS)))
        caches["2"].wait_for_merges()
    add = {v: statistics.median(t) for v, t in add.items()}
    section.add(n, f"add {ADD_KEYS} vectors, s", *_pair(add, 1, 4), _ratio(add))

    wanted = os.path.join(folder, "wanted.npy")
    picks = np.random.default_rng(n).choice(n, LOOKUP_KEYS, replace=False)
    np.save(wanted, np.frombuffer(b"".join(keys[i] for i in picks), np.uint8))
    cold = {"1": [], "2": []}
    for _ in range(rounds):
        for version, cache in caches.items():
            cold[version].append(_cold_lookup(version, cache.path, wanted))
    lookup = {
        v: statistics.median(r["seconds"] for r in runs) for v, runs in cold.items()
    }
    rss = {v: statistics.median(r["rss_mb"] for r in runs) for v, runs in cold.items()}
    index = caches["2"].info().index_bytes
    section.add(
        n, f"cold {LOOKUP_KEYS:,}-key lookup, s", *_pair(lookup, 1, 4), _ratio(lookup)
    )
    section.add(n, "  its RSS growth, MB", *_pair(rss, 1, 1), _ratio(rss))
    section.add(
        n, "  format 2 index in memory, bytes a key", round(index / n, 2), None, None
    )

    step = settings["scaling_append"]
    fill = {"2": _fill_by_appends(v2, folder, "v2-fill.h5", keys, vectors, step)}
    if n <= settings["scaling_v1_fill_max"]:
        fill["1"] = _fill_by_appends(
            _cache_v1, folder, "v1-fill.h5", keys, vectors, step
        )
    else:
        section.notes.append(
            f"{n:,} vectors: format 1 not filled by appends of {step} (quadratic: "
            f"each of the {n // step:,} appends copies the whole file)"
        )
    section.add(
        n,
        f"fill by {n // step:,} appends of {step}, s",
        round(fill["2"], 2),
        round(fill["1"], 2) if "1" in fill else None,
        _ratio(fill) if "1" in fill else None,
    )
    # The same cold lookup in the cache filled by appends: many runs, not one.
    filled = v2.FeatureCache(os.path.join(folder, "v2-fill.h5"))
    runs = filled.info().runs
    many = statistics.median(
        _cold_lookup("2", filled.path, wanted)["seconds"] for _ in range(rounds)
    )
    section.add(
        n,
        f"cold {LOOKUP_KEYS:,}-key lookup, filled by appends ({runs} runs), s",
        round(many, 4),
        None,
        None,
    )
    _remove_cache(filled.path)
    if "1" in fill:
        _remove_cache(os.path.join(folder, "v1-fill.h5"))
    fill_ratio = fill["2"] / bulk["2"]
    section.add(
        n,
        "  fill by appends / bulk fill",
        round(fill_ratio, 2),
        round(fill["1"] / bulk["1"], 2) if "1" in fill else None,
        None,
    )
    for version in ("1", "2"):
        _remove_cache(caches[version].path)
    return {
        "add": add["2"],
        "lookup": lookup["2"],
        "lookup_many_runs": many,
        "fill_ratio": fill_ratio,
    }


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


def _fill_by_appends(module, folder, name, keys, vectors, step):
    cache = module.FeatureCache(os.path.join(folder, name))
    start = time.perf_counter()
    for i in range(0, len(keys), step):
        _append(cache, keys[i : i + step], vectors[i : i + step])
    if hasattr(cache, "wait_for_merges"):
        cache.wait_for_merges()  # the background merges are part of the cost
    return time.perf_counter() - start


def _remove_cache(path):
    for suffix in ("", ".lock", ".merge.lock"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    for suffix in (".runs", ".parts"):
        shutil.rmtree(path + suffix, ignore_errors=True)


def _cold_lookup(version, path, wanted):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), version, path, wanted],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.getcwd()])},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pair(values, scale, digits):
    return tuple(
        round(values[v] * scale, digits) if v in values else None for v in ("2", "1")
    )


def _ratio(values):
    return round(values["1"] / values["2"], 2)


def _rss_mb():
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _child(version, path, wanted):
    """A new process's first lookup: prints its seconds and RSS growth."""
    if version == "1":
        import _cache_v1 as module
    else:
        from tlsk import cache as module
    raw = np.load(wanted)
    keys = [raw[i : i + 32].tobytes() for i in range(0, len(raw), 32)]
    cache = module.FeatureCache(path)
    before = _rss_mb()
    start = time.perf_counter()
    found, _ = cache.lookup(FINGERPRINT, keys, DIM)
    elapsed = time.perf_counter() - start
    grown = _rss_mb() - before
    assert found.all(), f"{int((~found).sum())} keys not found in {path}"
    print(json.dumps({"seconds": elapsed, "rss_mb": grown}))


if __name__ == "__main__":
    _child(*sys.argv[1:4])
