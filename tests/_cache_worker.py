"""A process that writes a FeatureCache, for the tests in tests/test_cache.py.

Usage::

    python _cache_worker.py crash PATH              # append batches until killed
    python _cache_worker.py share PATH START STOP   # the extractor's claim loop
    python _cache_worker.py migrate PATH MOMENT     # open a format-1 cache

Every mode prints ``ready`` once imported. ``crash`` prints ``done I`` after
batch I is written; ``share`` waits for a line on stdin, then computes the
missing vectors of keys START..STOP-1 and prints ``computed N``. ``migrate``
looks a key up in the format-1 cache at PATH, which migrates it; at MOMENT
of the migration it prints MOMENT and waits to be killed:

- ``writing``: the first run written, the second being written (its
  temporary file open, half-built);
- ``publishing``: every run written, the manifest not yet in place;
- ``published``: the manifest in place, the format-1 parts not yet deleted.
"""

import hashlib
import sys
import time

import numpy as np

from tlsk.cache import FeatureCache

FINGERPRINT = {"weights": "sha256:test", "layer": "block5_pool", "pooling": "avg"}
DIM = 8
BATCH = 4


def fake_key(i):
    return hashlib.sha256(f"image-{i}".encode()).digest()


def fake_vectors(keys):
    """Deterministic vectors, so any process can check any other's results."""
    digests = [hashlib.sha512(k).digest()[:DIM] for k in keys]
    data = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(keys), DIM)
    return data.astype(np.float32) / 7


def crash(path):
    cache = FeatureCache(path)
    batch = 0
    while batch < 100_000:
        # A new writing session every 3 batches, so kills also land in
        # consolidation.
        with cache.writer(FINGERPRINT, DIM) as writer:
            for _ in range(3):
                keys = [fake_key(batch * BATCH + j) for j in range(BATCH)]
                with writer.claim():
                    writer.append(keys, fake_vectors(keys))
                print(f"done {batch}", flush=True)
                batch += 1


def share(path, start, stop):
    cache = FeatureCache(path)
    sys.stdin.readline()
    keys = [fake_key(i) for i in range(start, stop)]
    found, _ = cache.lookup(FINGERPRINT, keys, DIM)
    missing = [k for k, hit in zip(keys, found, strict=True) if not hit]
    computed = 0
    with cache.writer(FINGERPRINT, DIM) as writer:
        for i in range(0, len(missing), BATCH):
            batch = missing[i : i + BATCH]
            with writer.claim():
                hit, _ = writer.lookup(batch)
                todo = [k for k, h in zip(batch, hit, strict=True) if not h]
                time.sleep(0.01 * len(todo))  # the expensive part
                writer.append(todo, fake_vectors(todo))
                computed += len(todo)
    print(f"computed {computed}", flush=True)


def migrate(path, moment):
    from tlsk.cache import _merge, _migrate

    def stop():
        print(moment, flush=True)
        time.sleep(600)

    write_namespace, write_manifest = _merge.write_namespace, _migrate.write_manifest
    written = []

    def writing(*args, **kwargs):
        write_namespace(*args, **kwargs)
        written.append(args[1])
        if moment == "writing" and len(written) == 2:
            stop()

    def publishing(manifest):
        if moment == "publishing":
            stop()
        published = write_manifest(manifest)
        if moment == "published":
            stop()
        return published

    _merge.write_namespace, _migrate.write_manifest = writing, publishing
    FeatureCache(path).lookup(FINGERPRINT, [fake_key(0)], DIM)
    print("done", flush=True)


if __name__ == "__main__":
    mode, path, *rest = sys.argv[1:]
    print("ready", flush=True)
    if mode == "crash":
        crash(path)
    elif mode == "migrate":
        migrate(path, *rest)
    else:
        share(path, *map(int, rest))
