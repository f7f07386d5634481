"""Merges and appends under kill -9, races and a full disk (issue 12).

Each test ends the same way: the cache opens, verifies clean, serves every
vector that was published, and once tidied holds no stray file.

- kill -9 at each file operation of a merge, and of an append:
    test_sigkill_at_each_step_of_a_merge_loses_nothing
    test_sigkill_at_each_step_of_an_append_keeps_the_cache
- kill -9 at a random moment while merges run in the background:
    test_cache::test_sigkill_at_a_random_moment_keeps_completed_batches
- a merge racing two writers and a reader:
    test_two_writers_merging_while_a_reader_looks_up
- a full disk during a merge:
    test_a_full_disk_during_a_merge_keeps_the_runs
"""

import signal
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from tests._cache_files import leftover_files, run_files
from tests._cache_worker import DIM, FINGERPRINT, fake_key, fake_vectors
from tests.robustness._support import REPO, python
from tlsk.cache import FeatureCache
from tlsk.cache._merge import FANOUT

# Seven runs of 500 keys: a tier one run short of a background merge, which
# compact() merges into one.
RUNS, RUN_KEYS = FANOUT - 1, 500


def _keys(stop, start=0):
    return [fake_key(i) for i in range(start, stop)]


def _fill(cache, runs=RUNS, run_keys=RUN_KEYS):
    with cache.writer(FINGERPRINT, DIM) as writer, writer.claim():
        for run in range(runs):
            keys = _keys((run + 1) * run_keys, run * run_keys)
            writer.append(keys, fake_vectors(keys))
    cache.wait_for_merges()


def _assert_healthy(cache, keys, folder):
    assert cache.verify() == []
    found, vectors = cache.lookup(FINGERPRINT, keys, DIM)
    assert found.all()
    np.testing.assert_array_equal(vectors, fake_vectors(keys))
    # What the dead left (a temp, an orphan run) goes with the next writer.
    with cache.writer(FINGERPRINT, DIM):
        pass
    assert leftover_files(folder) == []
    assert cache.verify() == []


# Kills the process just before its N-th os.replace or os.unlink: the steps
# that publish or delete a file (writing bytes into a temp is not a step:
# killed there, the temp is all there is).
_KILL_AT_STEP = """
import os, signal, sys
from tests._cache_worker import DIM, FINGERPRINT, fake_key, fake_vectors
from tlsk.cache import FeatureCache
from tlsk.cache._merge import FANOUT
cache, action, kill_at = FeatureCache(sys.argv[1]), sys.argv[2], int(sys.argv[3])
steps = []
def step(name, function):
    def counted(*args, **kwargs):
        steps.append(name)
        if len(steps) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)
    return counted
os.replace = step("replace", os.replace)
os.unlink = step("unlink", os.unlink)
if action == "compact":
    cache.compact()
else:
    keys = [fake_key(i) for i in range(100_000, 100_040)]
    with cache.writer(FINGERPRINT, DIM) as writer, writer.claim():
        writer.append(keys, fake_vectors(keys))
print(" ".join(steps))
"""


def _run_until_step(cache, action, kill_at):
    child = python(
        _KILL_AT_STEP,
        cache.path,
        action,
        kill_at,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(REPO),
    )
    out, err = child.communicate(timeout=120)
    return child.returncode, out, err


def test_a_merge_takes_the_steps_the_kill_tests_expect(tmp_path):
    cache = FeatureCache(tmp_path / "features.h5")
    _fill(cache)
    code, out, err = _run_until_step(cache, "compact", 0)
    assert code == 0, err
    # The merged run, the manifest naming it, then the inputs.
    assert out.split() == ["replace", "replace"] + ["unlink"] * RUNS
    assert cache.info().runs == 1
    # An append: its run, then the manifest naming it.
    code, out, err = _run_until_step(cache, "append", 0)
    assert code == 0 and out.split() == ["replace", "replace"], err


@pytest.mark.parametrize(
    "kill_at",
    [1, 2, 3, 6, RUNS + 2],
    ids=lambda n: {
        1: "before-the-merged-run-is-renamed",
        2: "before-the-manifest-is-published",
        3: "before-the-first-input-is-deleted",
        6: "with-half-the-inputs-deleted",
        RUNS + 2: "before-the-last-input-is-deleted",
    }[n],
)
def test_sigkill_at_each_step_of_a_merge_loses_nothing(tmp_path, kill_at):
    cache = FeatureCache(tmp_path / "features.h5")
    _fill(cache)
    code, _, err = _run_until_step(cache, "compact", kill_at)
    assert code == -signal.SIGKILL, err
    assert cache.info().runs == (RUNS if kill_at <= 2 else 1)
    _assert_healthy(cache, _keys(RUNS * RUN_KEYS), tmp_path)
    cache.compact()
    assert cache.info().runs == 1 and cache.verify() == []


@pytest.mark.parametrize(
    "kill_at", [1, 2], ids=["before-the-run-is-renamed", "before-the-manifest"]
)
def test_sigkill_at_each_step_of_an_append_keeps_the_cache(tmp_path, kill_at):
    cache = FeatureCache(tmp_path / "features.h5")
    _fill(cache, runs=2)
    code, _, err = _run_until_step(cache, "append", kill_at)
    assert code == -signal.SIGKILL, err
    new = [fake_key(i) for i in range(100_000, 100_040)]
    assert not cache.lookup(FINGERPRINT, new, DIM)[0].any()  # never published
    _assert_healthy(cache, _keys(2 * RUN_KEYS), tmp_path)


# Appends batches of 4 keys from a shuffled range, one claim each, merging in
# the background as tiers fill; prints each batch once it is published.
_WRITE_BATCHES = """
import random, sys
from tests._cache_worker import DIM, FINGERPRINT, fake_key, fake_vectors
from tlsk.cache import FeatureCache
from tlsk.cache._merge import FANOUT
cache = FeatureCache(sys.argv[1])
start, stop, seed = map(int, sys.argv[2:5])
order = list(range(start, stop))
random.Random(seed).shuffle(order)
with cache.writer(FINGERPRINT, DIM) as writer:
    for i in range(0, len(order), 4):
        with writer.claim():
            found, _ = writer.lookup([fake_key(k) for k in order[i : i + 4]])
            keys = [fake_key(k) for k, hit in zip(order[i : i + 4], found) if not hit]
            if keys:
                writer.append(keys, fake_vectors(keys))
        print(*order[i : i + 4], flush=True)
cache.wait_for_merges()
"""


def test_two_writers_merging_while_a_reader_looks_up(tmp_path):
    cache = FeatureCache(tmp_path / "features.h5")
    ranges = [(0, 400, 1), (200, 600, 2)]  # half of each range is the other's
    published: list[int] = []
    lock = threading.Lock()

    def follow(stdout):
        for line in stdout:
            with lock:
                published.extend(map(int, line.split()))

    writers = [
        python(
            _WRITE_BATCHES,
            cache.path,
            *bounds,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=str(REPO),
        )
        for bounds in ranges
    ]
    followers = [
        threading.Thread(target=follow, args=(w.stdout,), daemon=True) for w in writers
    ]
    for follower in followers:
        follower.start()
    lookups = 0
    try:
        while any(w.poll() is None for w in writers) or lookups == 0:
            with lock:
                seen = list(published)
            keys = [fake_key(k) for k in seen]
            found, vectors = cache.lookup(FINGERPRINT, keys, DIM)
            assert found.all(), f"lookup {lookups} missed published vectors"
            np.testing.assert_array_equal(vectors, fake_vectors(keys))
            lookups += 1
    finally:
        for w in writers:
            w.kill()
    errors = [w.communicate(timeout=60)[1] for w in writers]
    for follower in followers:
        follower.join(timeout=60)
    assert [w.returncode for w in writers] == [0, 0], errors
    assert lookups > 5
    (info,) = cache.info().namespaces
    assert info.entries == info.rows_written == 600  # each key written once
    assert info.runs <= (FANOUT - 1) * 3  # of some 150 appends: merges ran
    _assert_healthy(cache, _keys(600), tmp_path)


_COMPACT_UNDER_A_SIZE_LIMIT = """
import resource, signal, sys
from tlsk.cache import CacheError, FeatureCache
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails instead
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    FeatureCache(sys.argv[1]).compact()
except CacheError as err:
    print(err, file=sys.stderr)
    sys.exit(1)
"""


def test_a_full_disk_during_a_merge_keeps_the_runs(tmp_path):
    cache = FeatureCache(tmp_path / "features.h5")
    _fill(cache)
    runs = run_files(cache.path)
    before = {path: Path(path).read_bytes() for path in [cache.path, *runs]}
    largest = max(len(data) for data in before.values())
    child = python(
        _COMPACT_UNDER_A_SIZE_LIMIT,
        cache.path,
        2 * largest,  # the merged run needs about RUNS times a run
        stderr=subprocess.PIPE,
        cwd=str(REPO),
    )
    _, err = child.communicate(timeout=120)
    assert child.returncode == 1, err
    assert "cannot write feature cache file" in err and "File too large" in err
    assert {path: Path(path).read_bytes() for path in before} == before
    assert leftover_files(tmp_path) == []  # the half-written run was removed
    _assert_healthy(cache, _keys(RUNS * RUN_KEYS), tmp_path)
