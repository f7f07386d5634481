"""Tests of tlsk.features.distributed on a real Dask cluster of two worker processes.

One cluster serves the whole module (starting workers and importing
TensorFlow in them costs seconds); the test that kills a worker runs last
but one, and Dask's nanny restarts it.
"""

import logging
import os
import re
import shutil
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from distributed import Client, get_task_stream
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

import tlsk.features.distributed as tlsk_distributed
import tlsk.images.keys as tlsk_keys
from tests import _dask_hooks
from tests._datasets import coloured_images, write_image_folder
from tlsk import VGG16FeatureExtractor, clear_caches
from tlsk.cache import FeatureCache
from tlsk.features.distributed import featurize, local_cluster
from tlsk.images.decode import ImageError

TINY = {"weights": None, "input_size": 32}
SHARD = 4


@pytest.fixture(scope="module")
def client():
    with local_cluster(2) as cluster, Client(cluster) as client:
        # Imported ahead so that both workers are ready when the first tasks
        # come; no TensorFlow op runs, so tlsk still sizes the thread pools.
        client.run(_dask_hooks.import_tensorflow)
        yield client


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """36 PNG and JPEG files in three classes: ``(paths, labels)``."""
    return write_image_folder(tmp_path_factory.mktemp("images"), 12)


@pytest.fixture(scope="module")
def reference(images):
    """The features of ``images`` computed here, without Dask or a cache."""
    return VGG16FeatureExtractor(**TINY).fit_transform(images[0])


def _assert_same_features(actual, expected):
    # Shards batch other images together than one local call does, and the
    # sums inside VGG16 then round differently: components near zero differ
    # by ~1e-7 absolute (values are ~0.07), beyond any rtol.
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def _extractor(tmp_path, cls=VGG16FeatureExtractor, **params):
    return cls(**TINY, cache=tmp_path / "features.h5", **params).fit()


def _namespace(extractor):
    (namespace,) = FeatureCache(extractor.cache_path_).info().namespaces
    return namespace


def _shard_tasks(stream):
    return [task for task in stream.data if task["key"].startswith("tlsk-shard")]


def _shard_pids(caplog):
    return [int(pid) for pid in re.findall(r"\(pid (\d+)\)", caplog.text)]


def _assert_complete(extractor, n_images):
    """Every image once, each computed once, every checksum good, no debris."""
    namespace = _namespace(extractor)
    assert namespace.entries == namespace.rows_written == n_images
    assert FeatureCache(extractor.cache_path_).verify() == []
    assert not os.path.exists(extractor.cache_path_ + ".shards")


def test_features_equal_local_ones_and_two_workers_share_the_work(
    client, images, reference, tmp_path, caplog
):
    extractor = _extractor(tmp_path)
    caplog.set_level(logging.DEBUG, logger="tlsk.features.distributed")
    with get_task_stream(client) as stream:
        features = featurize(images[0], extractor, client, shard_size=SHARD)
    _assert_same_features(features, reference)
    assert features.dtype == np.float32
    assert len(_shard_tasks(stream)) == 36 // SHARD
    pids = _shard_pids(caplog)
    assert len(pids) == 36 // SHARD
    workers = set(client.run(os.getpid).values())
    assert len(set(pids)) == 2 and set(pids) <= workers
    _assert_complete(extractor, 36)


def test_worker_threads_follow_the_workers_nthreads(client, images, tmp_path):
    featurize(images[0][:8], _extractor(tmp_path), client, shard_size=1)
    # One thread per worker: one intra-op thread, one inter-op thread.
    threads = client.run(_dask_hooks.tensorflow_threads)
    assert set(map(tuple, threads.values())) == {(1, 1)}


def test_a_second_run_sends_nothing(client, images, reference, tmp_path):
    extractor = _extractor(tmp_path)
    featurize(images[0], extractor, client, shard_size=SHARD)
    with get_task_stream(client) as stream:
        again = featurize(images[0], extractor, client, shard_size=SHARD)
    assert _shard_tasks(stream) == []
    _assert_same_features(again, reference)
    _assert_complete(extractor, 36)


def test_the_client_reads_no_file_the_caches_memo_of_keys_knows(
    client, images, tmp_path, monkeypatch
):
    monkeypatch.setattr("tlsk._util.memo.SETTLED_NS", -1)
    extractor = _extractor(tmp_path)
    clear_caches()  # the files are hashed by this run, and their keys kept
    featurize(images[0], extractor, client, shard_size=SHARD)
    clear_caches()  # as in a new process: only the cache's memo knows the keys
    reads = []
    opener = tlsk_keys.open_regular_file
    monkeypatch.setattr(
        tlsk_keys,
        "open_regular_file",
        lambda path, label=None: reads.append(path) or opener(path, label),
    )
    featurize(images[0], extractor, client, shard_size=SHARD)
    assert reads == []


def test_cached_images_are_not_sent_and_transform_finds_every_image(
    client, images, reference, tmp_path, caplog
):
    paths = images[0]
    extractor = _extractor(tmp_path)
    extractor.transform(paths[:10])  # cached here, beforehand
    caplog.set_level(logging.DEBUG, logger="tlsk.features.distributed")
    featurize(paths, extractor, client, shard_size=SHARD)
    sent = sum(map(int, re.findall(r": (\d+) images,", caplog.text)))
    assert sent == 26
    _assert_complete(extractor, 36)
    # A fresh extractor on the same cache computes nothing: reading proves it.
    assert FeatureCache(extractor.cache_path_).verify() == []
    again = _extractor(tmp_path).transform(paths)
    _assert_same_features(again, reference)
    assert _namespace(extractor).rows_written == 36


def test_identical_images_are_computed_once(client, images, tmp_path):
    paths = images[0][:6]
    twin = tmp_path / "twin.png"
    shutil.copyfile(paths[0], twin)
    extractor = _extractor(tmp_path)
    features = featurize([*paths, str(twin)], extractor, client, shard_size=2)
    np.testing.assert_array_equal(features[6], features[0])
    _assert_complete(extractor, 6)


def test_arrays_work_like_paths(client, tmp_path):
    arrays, _ = coloured_images(3)
    extractor = _extractor(tmp_path)
    features = featurize(arrays, extractor, client, shard_size=SHARD)
    local = VGG16FeatureExtractor(**TINY).fit_transform(arrays)
    _assert_same_features(features, local)
    _assert_complete(extractor, 9)


def test_a_kerashub_preset_folder_is_featurized_like_any_backbone(
    client, images, tmp_path
):
    pytest.importorskip("keras_hub")
    from tests._hub_presets import write_preset
    from tlsk import ImageFeatureExtractor

    folder = write_preset("dinov2_registers", tmp_path / "preset")
    params = {"backbone": folder, "precision": "float32"}
    extractor = ImageFeatureExtractor(**params, cache=str(tmp_path / "c.h5")).fit()
    features = featurize(images[0][:8], extractor, client, shard_size=SHARD)
    local = ImageFeatureExtractor(**params).fit_transform(images[0][:8])
    _assert_same_features(features, local)


def test_return_features_false_fills_the_cache_and_says_what_is_in_it(
    client, images, reference, tmp_path
):
    extractor = _extractor(tmp_path)
    in_cache = featurize(images[0], extractor, client, return_features=False)
    assert in_cache.dtype == bool and in_cache.all() and in_cache.shape == (36,)
    _assert_complete(extractor, 36)
    _assert_same_features(extractor.transform(images[0]), reference)


def test_verbose_shows_a_progress_bar_on_the_client(client, images, tmp_path, capsys):
    extractor = _extractor(tmp_path, verbose=1)
    featurize(images[0][:8], extractor, client, shard_size=SHARD)
    err = capsys.readouterr().err
    assert "VGG16 features" in err and "8/8" in err


def test_the_default_client_is_used(client, images, reference, tmp_path):
    extractor = _extractor(tmp_path)
    features = featurize(images[0][:4], extractor)
    _assert_same_features(features, reference[:4])


@pytest.fixture
def with_a_bad_file(images, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    return [*images[0][:5], str(bad), *images[0][5:8]]


def test_a_bad_file_raises_after_the_others_are_stored(
    client, with_a_bad_file, tmp_path
):
    extractor = _extractor(tmp_path)
    with pytest.raises(ImageError, match=r"cannot decode '.*bad\.jpg'"):
        featurize(with_a_bad_file, extractor, client, shard_size=SHARD)
    _assert_complete(extractor, 8)


def test_a_bad_file_gets_a_nan_row_and_a_warning(
    client, with_a_bad_file, reference, tmp_path
):
    extractor = _extractor(tmp_path, on_error="nan")
    with pytest.warns(UserWarning, match=r"1 of 9 images .*bad\.jpg"):
        features = featurize(with_a_bad_file, extractor, client, shard_size=SHARD)
    assert np.isnan(features[5]).all()
    _assert_same_features(np.delete(features, 5, axis=0), reference[:8])
    with pytest.warns(UserWarning, match="could not be decoded"):
        in_cache = featurize(with_a_bad_file, extractor, client, return_features=False)
    assert in_cache.tolist() == [True] * 5 + [False] + [True] * 3


def test_a_missing_file_raises_before_anything_is_sent(client, images, tmp_path):
    extractor = _extractor(tmp_path)
    with get_task_stream(client) as stream:
        with pytest.raises(ImageError, match="no such file"):
            featurize([*images[0][:3], str(tmp_path / "gone.png")], extractor, client)
    assert _shard_tasks(stream) == []


class _ClientDied(Exception):
    pass


def test_a_rerun_joins_the_shards_an_interrupted_run_finished(
    client, images, reference, tmp_path, monkeypatch
):
    extractor = _extractor(tmp_path)
    join = tlsk_distributed._join

    def die_before_joining(cache, shards, why):
        if shards:
            raise _ClientDied
        join(cache, shards, why)

    monkeypatch.setattr(tlsk_distributed, "_join", die_before_joining)
    with pytest.raises(_ClientDied):
        featurize(images[0], extractor, client, shard_size=SHARD)
    folder = tlsk_distributed._shard_folder(extractor)
    assert len(os.listdir(folder)) == 36 // SHARD
    monkeypatch.undo()
    with get_task_stream(client) as stream:
        features = featurize(images[0], extractor, client, shard_size=SHARD)
    assert _shard_tasks(stream) == []
    _assert_same_features(features, reference)
    _assert_complete(extractor, 36)


def test_a_worker_killed_mid_shard_leaves_a_complete_cache(
    client, images, reference, tmp_path
):
    extractor = _extractor(tmp_path, cls=_dask_hooks.KillOnceExtractor)
    flag = tmp_path / "kill-flag"
    flag.touch()
    extractor.kill_flag_ = str(flag)
    before = set(client.run(os.getpid).values())
    features = featurize(images[0], extractor, client, shard_size=SHARD)
    killed = int((tmp_path / "kill-flag.killed").read_text())
    assert killed in before and not flag.exists()
    _assert_same_features(features, reference)
    # Half a shard was computed before the kill: none of it reached the cache.
    _assert_complete(extractor, 36)


def test_grid_search_on_the_dask_backend_scores_like_the_default_backend(
    client, images, tmp_path
):
    paths, labels = images
    features = featurize(paths, _extractor(tmp_path), client)
    search = GridSearchCV(
        LogisticRegression(max_iter=2000), {"C": [0.01, 0.1, 1.0, 10.0]}, cv=3
    )
    default = search.fit(features, labels).cv_results_["mean_test_score"]
    with get_task_stream(client) as stream, joblib.parallel_backend("dask"):
        on_dask = search.fit(features, labels).cv_results_["mean_test_score"]
    # The fits ran on the workers (joblib batches them into fewer tasks).
    assert any("_fit_and_score" in task["key"] for task in stream.data)
    np.testing.assert_allclose(on_dask, default, rtol=1e-12)


def test_the_user_guides_example_runs_on_the_cluster(client, images, tmp_path, capsys):
    readme = Path(__file__).resolve().parents[1] / "docs" / "guide" / "scale.md"
    section = readme.read_text().split("# Running at scale")[1].split("\n# ")[0]
    (code,) = re.findall(r"```py\n(.*?)```", section, re.S)
    data = os.path.dirname(os.path.dirname(images[0][0]))
    replacements = {
        # The only changes: this cluster, these files, a tiny random VGG16.
        '"tcp://scheduler:8786"': repr(client.scheduler.address),
        '"/shared/pets"': repr(data),
        'cache="/shared/features.h5"': f"cache={str(tmp_path / 'f.h5')!r}, **TINY",
    }
    for old, new in replacements.items():
        assert old in code
        code = code.replace(old, new)
    namespace = {"__name__": "readme", "TINY": TINY}
    try:
        exec(compile(code, str(readme), "exec"), namespace)
    finally:
        namespace["client"].close()
    assert "{'logisticregression__C': " in capsys.readouterr().out
    # The search's fits on the workers found every vector in the cache.
    _assert_complete(namespace["extractor"], 36)


# -- arguments ---------------------------------------------------------------


def test_an_extractor_without_a_cache_is_refused(client):
    extractor = VGG16FeatureExtractor(**TINY).fit()
    with pytest.raises(ValueError, match="extractor must have a feature cache"):
        featurize(["a.png"], extractor, client)


def test_an_unfitted_extractor_is_refused(client, tmp_path):
    with pytest.raises(NotFittedError):
        featurize(["a.png"], VGG16FeatureExtractor(cache=tmp_path / "f.h5"), client)


def test_something_else_than_an_extractor_is_refused(client):
    with pytest.raises(
        TypeError,
        match="fitted tlsk.ImageFeatureExtractor .*; received LogisticRegression",
    ):
        featurize(["a.png"], LogisticRegression(), client)


@pytest.mark.parametrize("shard_size", [0, 2.5, True])
def test_a_bad_shard_size_is_refused(client, tmp_path, shard_size):
    with pytest.raises(ValueError, match=r"shard_size must be an int >= 1; rec"):
        featurize(["a.png"], _extractor(tmp_path), client, shard_size=shard_size)


def test_a_bad_retries_count_is_refused(client, tmp_path):
    with pytest.raises(ValueError, match=r"retries must be an int >= 0; received -1"):
        featurize(["a.png"], _extractor(tmp_path), client, retries=-1)


def test_without_distributed_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'tlsk\[dask\]'"):
        featurize(["a.png"], _extractor(tmp_path))


def test_a_client_of_another_kind_is_refused(tmp_path):
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        featurize(["a.png"], _extractor(tmp_path), "tcp://127.0.0.1:8786")


def test_without_any_client_featurize_says_how_to_get_one(tmp_path, monkeypatch):
    def no_client():
        raise ValueError("No global client found and no address provided")

    # The module's cluster would otherwise be the default client.
    monkeypatch.setattr("distributed.get_client", no_client)
    with pytest.raises(ValueError, match="featurize needs a Dask client"):
        featurize(["a.png"], _extractor(tmp_path))


def test_a_worker_that_cannot_see_the_shard_folder_says_so(
    images, tmp_path, monkeypatch
):
    monkeypatch.setattr(tlsk_distributed, "_VISIBLE_TIMEOUT", 0.0)
    shard = str(tmp_path / "nowhere" / "shard.h5")
    with pytest.raises(FileNotFoundError, match="storage that every worker mounts"):
        tlsk_distributed._featurize_shard(_extractor(tmp_path), images[0][:1], shard)


def test_only_a_run_alone_on_the_cache_tidies_up(tmp_path):
    # Joining leftover shards and deleting temporary files are for a run that
    # is alone: another run's shards and temporaries may be in flight.
    from tlsk.features.distributed import _registered_run

    cache = str(tmp_path / "features.h5")
    with _registered_run(cache) as first:
        with first.alone() as alone:
            assert alone
        with _registered_run(cache) as second:
            for run in (first, second):
                with run.alone() as alone:
                    assert not alone
        with first.alone() as alone:
            assert alone  # the second has ended; the first kept its place
