"""Faults: kill -9, damaged caches, full disks, bad weights, repeated fits.

Each row of issue 7 and the tests that prove it:

- SIGKILL of an extraction at random moments (12 seeded trials: 2 in the
  default run, 10 more with --runslow):
    test_sigkill_of_an_extraction_leaves_a_cache_a_rerun_completes
    test_cache::test_sigkill_at_a_random_moment_keeps_completed_batches
- a cache truncated or with flipped bytes: detected, set aside, rebuilt:
    test_a_damaged_cache_is_set_aside_and_rebuilt_never_reused
- a cache written under another fingerprint: never reused:
    test_another_fingerprints_vectors_are_never_reused
    test_a_forged_namespace_is_refused_with_what_to_do
- two processes writing one cache at the same time:
    test_features::test_two_processes_sharing_one_cache_compute_each_image_once
    test_cache::test_two_processes_compute_each_key_once
- disk full during a cache write:
    test_a_file_size_limit_during_a_cache_write_keeps_the_cache
    test_disk_full_in_train_keeps_the_cache_and_exits_1
- disk full during a model write:
    test_disk_full_while_saving_a_model_keeps_the_previous_one
- SIGKILL during ``tlsk train`` writing its model:
    test_sigkill_while_a_model_is_saved_leaves_a_model_that_loads (each step)
    test_sigkill_of_tlsk_train_leaves_a_model_that_loads (slow)
- a weights file that is truncated or tampered with:
    test_truncated_imagenet_weights_are_refused_offline_at_once
    test_a_truncated_weights_file_is_refused_naming_it
    test_backbone::test_tampered_imagenet_weights_are_refused
- 20 fits in a loop: memory bounded:
    test_keras_estimators::test_twenty_fits_grow_memory_by_less_than_a_quarter
"""

import errno
import hashlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import h5py
import joblib
import numpy as np
import pytest

from tests._cache_files import flip_a_vector_byte, run_files
from tests._datasets import write_image_folder
from tests._weights import (
    pin_weights,
    random_vgg16_notop,
    write_keras3_weights,
    write_legacy_h5_weights,
)
from tests.robustness._support import leftovers, python, tiny
from tlsk.cache import CacheError, CacheWarning, FeatureCache, namespace_id
from tlsk.cli import main
from tlsk.networks import backbone as bb
from tlsk.persistence.model_files import load_model_with_metadata, save_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """24 image files (PNG and JPEG) and their uncached features."""
    paths, labels = write_image_folder(tmp_path_factory.mktemp("images"), 8)
    return paths, labels, tiny().fit().transform(paths)


# -- kill -9 during an extraction ---------------------------------------------

_EXTRACT = """
import sys
from tlsk import VGG16FeatureExtractor
extractor = VGG16FeatureExtractor(
    weights=None, input_size=32, batch_size=2, cache=sys.argv[1]
).fit()
print("ready", flush=True)
sys.stdin.readline()
paths = sys.argv[2:]
for start in range(0, len(paths), 8):  # three writing sessions, three merges
    extractor.transform(paths[start : start + 8])
print("done", flush=True)
"""


@pytest.mark.parametrize(
    "seed",
    [0, 1] + [pytest.param(seed, marks=pytest.mark.slow) for seed in range(2, 12)],
)
def test_sigkill_of_an_extraction_leaves_a_cache_a_rerun_completes(
    tmp_path, files, seed
):
    paths, _, expected = files
    cache = tmp_path / "features.h5"
    child = python(
        _EXTRACT, cache, *paths, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout.readline() == "ready\n"
        child.stdin.write("go\n")
        child.stdin.flush()
        # The three transforms take about a second on 2 cores.
        time.sleep(random.Random(seed).uniform(0.0, 1.2))
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=60)
    finally:
        child.kill()
    assert FeatureCache(cache).verify() == []
    # A temporary younger than 5 s may be a live writer's that has not taken
    # its lock yet, and is left for a later run (tlsk._util.files.dead_temps): the
    # killed writer's are made older, as they are for a rerun some time later.
    past = time.time() - 10
    for name in leftovers(tmp_path):
        os.utime(tmp_path / name, (past, past))
    rerun = tiny(batch_size=2, cache=str(cache)).fit().transform(paths)
    np.testing.assert_allclose(rerun, expected, rtol=1e-5, atol=1e-6)
    # The rerun may have started a merge in the background: its temporary
    # file is live, not left over, until the merge ends.
    assert FeatureCache(cache).wait_for_merges(timeout=60)
    assert leftovers(tmp_path) == []
    assert FeatureCache(cache).verify() == []


# -- damaged caches -----------------------------------------------------------


def _truncate(path):
    with open(path, "r+b") as file:
        file.truncate(os.path.getsize(path) // 2)


def _first_run(cache, namespace):
    return Path(run_files(cache, namespace)[0])


@pytest.mark.parametrize(
    "damaged, damage",
    [
        (_first_run, _truncate),
        (_first_run, flip_a_vector_byte),
        (lambda cache, namespace: cache, _truncate),  # the manifest itself
    ],
    ids=["run-truncated", "run-flipped-byte", "manifest-truncated"],
)
def test_a_damaged_cache_is_set_aside_and_rebuilt_never_reused(
    tmp_path, files, damaged, damage
):
    paths, _, expected = files
    cache = tmp_path / "features.h5"
    extractor = tiny(cache=str(cache)).fit()
    extractor.transform(paths)
    target = damaged(cache, namespace_id(extractor.fingerprint_))
    damage(target)
    damaged_bytes = target.read_bytes()
    assert FeatureCache(cache).verify() != []
    with pytest.warns(CacheWarning, match="is damaged.*moved it to") as record:
        out = extractor.transform(paths)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    (aside,) = target.parent.glob(f"{target.name}.damaged-*")
    assert str(aside) in str(record[0].message)
    assert aside.read_bytes() == damaged_bytes  # kept for the user, untouched
    assert FeatureCache(cache).verify() == []
    assert FeatureCache(cache).info().namespaces[0].entries == len(paths)


def test_another_fingerprints_vectors_are_never_reused(tmp_path, files):
    paths, _, expected = files
    cache = str(tmp_path / "features.h5")
    tiny(cache=cache, pooling="max").fit().transform(paths)  # same width, 512
    out = tiny(cache=cache).fit().transform(paths)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert len(FeatureCache(cache).info().namespaces) == 2


def test_a_forged_namespace_is_refused_with_what_to_do(tmp_path, files):
    paths, _, _ = files
    cache = str(tmp_path / "features.h5")
    tiny(cache=cache, pooling="max").fit().transform(paths[:4])
    avg = tiny(cache=cache).fit()
    # Another fingerprint's vectors under this configuration's namespace id,
    # in the manifest and in the run files it names.
    forged = namespace_id(avg.fingerprint_)
    (name,) = FeatureCache(cache).info().namespaces
    for path in [cache, *run_files(cache, name.id)]:
        with h5py.File(path, "r+") as f:
            f["namespaces"].move(name.id, forged)
    with pytest.raises(CacheError, match="does not hash to its name.*move it away"):
        avg.transform(paths[:4])
    assert not list(tmp_path.glob("*.damaged-*"))  # refused files are not moved


# -- full disks ---------------------------------------------------------------

_FILL_UNDER_A_SIZE_LIMIT = """
import resource, signal, sys
from tests._cache_worker import DIM, FINGERPRINT, fake_key, fake_vectors
from tlsk.cache import CacheError, FeatureCache
cache = FeatureCache(sys.argv[1])
keys = [fake_key(i) for i in range(1000, 3000)]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails instead
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    with cache.writer(FINGERPRINT, DIM) as writer:
        with writer.claim():
            writer.append(keys, fake_vectors(keys))
except CacheError as err:
    print(err, file=sys.stderr)
    sys.exit(1)
"""


def test_a_file_size_limit_during_a_cache_write_keeps_the_cache(tmp_path):
    from tests._cache_worker import DIM, FINGERPRINT, fake_key, fake_vectors

    cache = FeatureCache(tmp_path / "features.h5")
    keys = [fake_key(i) for i in range(1000)]
    with cache.writer(FINGERPRINT, DIM) as writer, writer.claim():
        writer.append(keys, fake_vectors(keys))
    before = Path(cache.path).read_bytes()
    child = python(
        _FILL_UNDER_A_SIZE_LIMIT,
        cache.path,
        len(before) // 2,
        stderr=subprocess.PIPE,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    _, err = child.communicate(timeout=60)
    assert child.returncode == 1, err
    assert "cannot write feature cache file" in err and "is the disk full" in err
    assert "File too large" in err
    assert Path(cache.path).read_bytes() == before
    assert cache.verify() == [] and leftovers(tmp_path) == []
    found, vectors = cache.lookup(FINGERPRINT, keys, DIM)
    assert found.all()
    np.testing.assert_array_equal(vectors, fake_vectors(keys))


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A class-per-folder tree and a bottleneck model trained on it."""
    root = tmp_path_factory.mktemp("train")
    write_image_folder(root / "data", 4, formats=("png",))
    model = root / "model.joblib"
    argv = ["train", str(root / "data"), "--weights", "none", "--input-size", "32"]
    argv += ["--cache", str(root / "features.h5"), "--out", str(model), "-q"]
    assert main(argv) == 0
    return root, argv


def _model_state(root):
    files = ("model.joblib", "model.json", "features.h5")
    return {name: (root / name).read_bytes() for name in files}


def test_disk_full_in_train_keeps_the_cache_and_exits_1(
    tmp_path, trained, monkeypatch, capsys
):
    root, argv = trained
    before = _model_state(root)
    more = tmp_path / "more"
    write_image_folder(more, 4, seed=1, formats=("png",))  # new images: new vectors
    monkeypatch.setattr("tlsk._util.files.fsync_file", _no_space)
    new_argv = [str(more) if a == str(root / "data") else a for a in argv]
    assert main([*new_argv, "--force"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err, err
    assert "cannot write feature cache file" in err
    assert _model_state(root) == before  # cache, model and metadata untouched
    assert FeatureCache(root / "features.h5").verify() == []
    assert leftovers(root) == []


def test_disk_full_while_saving_a_model_keeps_the_previous_one(
    trained, monkeypatch, capsys
):
    root, argv = trained
    before = _model_state(root)
    monkeypatch.setattr(joblib, "dump", _no_space)
    assert main([*argv, "--force"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert _model_state(root) == before
    model, metadata = load_model_with_metadata(root / "model.joblib")
    assert metadata["classes"] == ["blue", "green", "red"]
    assert leftovers(root) == []


# -- kill -9 while a model is saved -------------------------------------------

_SAVE_AND_DIE = """
import os, signal, sys
from tlsk.persistence import model_files
kill_at = int(sys.argv[2])  # die just before the kill_at-th os.replace (1-based)
calls = 0
replace = os.replace
def replace_or_die(src, dst):
    global calls
    calls += 1
    if calls == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    replace(src, dst)
    if calls == kill_at - 1 and kill_at == 4:
        os.kill(os.getpid(), signal.SIGKILL)  # just after the last one
os.replace = replace_or_die
model_files.save_model({"model": "new"}, sys.argv[1], {"classes": ["new"]}, force=True)
"""


@pytest.mark.parametrize(
    "kill_at, survivor",
    [(1, "old"), (2, "old"), (3, "new"), (4, "new")],
    ids=["before-metadata", "before-model", "before-final-metadata", "after-all"],
)
def test_sigkill_while_a_model_is_saved_leaves_a_model_that_loads(
    tmp_path, kill_at, survivor
):
    path = tmp_path / "model.joblib"
    save_model({"model": "old"}, str(path), {"classes": ["old"]})
    child = python(_SAVE_AND_DIE, path, kill_at, stderr=subprocess.PIPE)
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    model, metadata = load_model_with_metadata(path)
    assert model == {"model": survivor} and metadata["classes"] == [survivor]
    assert "previous" not in metadata


_TRAIN_AND_DIE = """
import os, signal, sys
from tlsk.persistence import model_files
from tlsk.cli import main
kill_at = int(sys.argv[1])
save_model = model_files.save_model
def save_and_die(*args, **kwargs):
    calls = [0]
    replace = os.replace
    def replace_or_die(src, dst):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        replace(src, dst)
    os.replace = replace_or_die
    save_model(*args, **kwargs)
model_files.save_model = save_and_die  # before tlsk.cli.train imports it
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [1, 2, 3, None])
def test_sigkill_of_tlsk_train_leaves_a_model_that_loads(tmp_path, trained, kill_at):
    root, argv = trained
    work = tmp_path / "work"
    work.mkdir()
    for name in ("model.joblib", "model.json", "features.h5"):
        (work / name).write_bytes((root / name).read_bytes())
    argv = [
        a.replace(str(root / "model.joblib"), str(work / "model.joblib")) for a in argv
    ]
    old_sha = hashlib.sha256((work / "model.joblib").read_bytes()).hexdigest()
    if kill_at is None:  # a random moment of the whole run
        child = python(_TRAIN_AND_DIE, 0, *argv, "--force", "--seed", "1")
        time.sleep(random.Random(7).uniform(2.0, 12.0))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=120)
    else:
        child = python(_TRAIN_AND_DIE, kill_at, *argv, "--force", "--seed", "1")
        assert child.wait(timeout=300) == -signal.SIGKILL
    model, metadata = load_model_with_metadata(work / "model.joblib")
    assert (
        metadata["model_sha256"]
        == hashlib.sha256((work / "model.joblib").read_bytes()).hexdigest()
    )
    if kill_at in (1, 2):
        assert metadata["model_sha256"] == old_sha
    assert set(model.classes_) == {"blue", "green", "red"}


# -- weights ------------------------------------------------------------------


def test_truncated_imagenet_weights_are_refused_offline_at_once(tmp_path, monkeypatch):
    source = tmp_path / "published.h5"
    write_legacy_h5_weights(random_vgg16_notop(seed=3), str(source))
    data = source.read_bytes()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    pin_weights(monkeypatch, source, "http://127.0.0.1:9/never")
    cached = tmp_path / "keras_home" / "models" / bb.IMAGENET_WEIGHTS_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data[: len(data) // 2])
    start = time.monotonic()
    with pytest.raises(bb.WeightsMismatchError, match=r"SHA-256|size"):
        bb.imagenet_weights_path()
    assert time.monotonic() - start < 5


def test_a_truncated_weights_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "vgg16.weights.h5"
    write_keras3_weights(random_vgg16_notop(seed=4), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises((bb.WeightsMismatchError, ValueError), match="vgg16.weights.h5"):
        tiny(weights=str(path)).fit()
