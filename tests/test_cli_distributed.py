"""Tests of `tlsk extract --scheduler ADDRESS` and `tlsk extract --workers N`."""

import json
import sys

import dask
import numpy as np
import pytest
from distributed import Client, get_task_stream

from tests._datasets import write_image_folder
from tlsk import VGG16FeatureExtractor
from tlsk.cache import FeatureCache
from tlsk.cli import main
from tlsk.features.distributed import local_cluster

TINY = ["--weights", "none", "--input-size", "32"]


@pytest.fixture(scope="module")
def client():
    with local_cluster(2) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture
def tree(tmp_path):
    """Six images in two classes and a file that is not an image."""
    root = tmp_path / "photos"
    paths, _ = write_image_folder(root, 2)
    (root / "bad.jpg").write_bytes(b"not an image")
    return root, paths


def _extract(*argv):
    return main(["extract", *map(str, argv), *TINY])


def _assert_cache_holds(cache, paths):
    (namespace,) = FeatureCache(cache).info().namespaces
    assert namespace.entries == namespace.rows_written == len(paths)
    extractor = VGG16FeatureExtractor(weights=None, input_size=32, cache=cache)
    local = VGG16FeatureExtractor(weights=None, input_size=32).fit_transform(paths)
    # Read from the cache (the same vectors: computing again would round
    # differently, see tests/test_distributed.py).
    np.testing.assert_allclose(extractor.fit_transform(paths), local, 1e-5, 1e-6)


def test_scheduler_computes_on_the_running_cluster(client, tree, tmp_path, capsys):
    root, paths = tree
    cache = tmp_path / "f.h5"
    address = client.scheduler.address
    with get_task_stream(client) as stream:
        code = _extract(root, "--cache", cache, "--scheduler", address, "--json")
    assert code == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert (summary["images"], summary["computed"], summary["failed"]) == (7, 6, 1)
    assert any(task["key"].startswith("tlsk-shard") for task in stream.data)
    assert "skipped cannot decode" in err and "bad.jpg" in err
    _assert_cache_holds(cache, paths)

    assert _extract(root, "--cache", cache, "--scheduler", address, "-q") == 0
    assert capsys.readouterr().out.startswith("7 images: 0 computed, 6 from the cache")


def test_scheduler_with_on_error_raise_names_the_bad_file(
    client, tree, tmp_path, capsys
):
    root, paths = tree
    cache = tmp_path / "f.h5"
    argv = [root, "--cache", cache, "--scheduler", client.scheduler.address]
    assert _extract(*argv, "--on-error", "raise", "-q") == 1
    assert "bad.jpg" in capsys.readouterr().err
    _assert_cache_holds(cache, paths)  # the good files are kept


def test_workers_start_a_local_cluster_for_the_run(tree, tmp_path, capsys):
    root, paths = tree
    cache = tmp_path / "f.h5"
    assert _extract(root, "--cache", cache, "--workers", "2") == 0
    out, err = capsys.readouterr()
    assert out.startswith("7 images: 6 computed, 0 from the cache, 1 failed")
    assert "Dask: 2 local worker processes" in err
    _assert_cache_holds(cache, paths)


def test_an_unreachable_scheduler_is_one_line_and_exit_code_1(tree, tmp_path, capsys):
    root, _ = tree
    # Port 9 (discard) on loopback: nothing listens, nothing leaves the machine.
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = _extract(
            root, "--cache", tmp_path / "f.h5", "--scheduler", "tcp://127.0.0.1:9"
        )
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in err


@pytest.mark.parametrize(
    "options, message",
    [
        (["--workers", "0"], "argument --workers"),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:9"], "not allowed with"),
    ],
)
def test_bad_dask_options_are_usage_errors(tree, tmp_path, capsys, options, message):
    root, _ = tree
    with pytest.raises(SystemExit) as exit_info:
        _extract(root, "--cache", tmp_path / "f.h5", *options)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_without_distributed_the_error_says_what_to_install(
    tree, tmp_path, capsys, monkeypatch
):
    root, _ = tree
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    assert _extract(root, "--cache", tmp_path / "f.h5", "--workers", "2") == 1
    assert "pip install 'tlsk[dask]'" in capsys.readouterr().err
