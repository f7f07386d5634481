"""Tests of `tlsk extract` and `tlsk cache`: generated trees, real cache files."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests._cache_files import flip_a_vector_byte, run_files
from tests._cache_worker import DIM, FINGERPRINT, fake_key, fake_vectors
from tests._image_files import random_rgb
from tlsk import VGG16FeatureExtractor
from tlsk.cache import FORMAT_VERSION, FeatureCache
from tlsk.cli import main

TINY = ["--weights", "none", "--input-size", "32"]


@pytest.fixture
def tree(tmp_path):
    """Six images (nested, hostile names), a hidden file, a bad file last."""
    root = tmp_path / "photos"
    names = [
        "a/0.png",
        "a/deep/1.jpg",
        "b/with space.png",
        "b/été ü.png",
        "b/-dash.png",
        "top.png",
    ]
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(random_rgb(24 + i, 30, seed=i)).save(path)
    (root / ".hidden").mkdir()
    Image.fromarray(random_rgb(8, 8)).save(root / ".hidden" / "x.png")
    Image.fromarray(random_rgb(8, 8)).save(root / "a" / ".also_hidden.png")
    (root / "z").mkdir()
    (root / "z" / "bad.jpg").write_bytes(b"not an image")
    return root


def _extract(*argv):
    return main(["extract", *map(str, argv), *TINY])


def _namespaces(cache_path):
    return FeatureCache(cache_path).info().namespaces


def test_extract_fills_the_cache_with_the_extractors_vectors(tree, tmp_path, capsys):
    cache = tmp_path / "f.h5"
    assert _extract(tree / "a", tree / "b", tree / "top.png", "--cache", cache) == 0
    out = capsys.readouterr().out
    assert out.startswith("6 images: 6 computed, 0 from the cache, 0 failed")
    files = sorted(str(p) for p in tree.rglob("*.*") if "hidden" not in str(p))
    files.remove(str(tree / "z" / "bad.jpg"))
    extractor = VGG16FeatureExtractor(weights=None, input_size=32, cache=cache)
    (ns,) = _namespaces(cache)
    assert ns.entries == 6
    # All six come from the cache now: computing them differently would differ.
    reference = VGG16FeatureExtractor(weights=None, input_size=32).fit_transform(files)
    np.testing.assert_allclose(extractor.fit_transform(files), reference, rtol=1e-5)


def test_a_second_run_computes_nothing_and_says_so_in_json(tree, tmp_path, capsys):
    cache = tmp_path / "f.h5"
    assert _extract(tree / "a", "--cache", cache, "--quiet") == 0
    capsys.readouterr()
    assert _extract(tree / "a", tree / "b", "--cache", cache, "--json", "-q") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 5
    assert (summary["computed"], summary["cached"], summary["failed"]) == (3, 2, 0)
    assert len(summary["namespace"]) == 64


def test_identical_files_are_computed_once(tmp_path, capsys):
    root = tmp_path / "twins"
    root.mkdir()
    for name in ("x.png", "y.png"):
        Image.fromarray(random_rgb(16, 16, seed=7)).save(root / name)
    assert _extract(root, "--cache", tmp_path / "f.h5", "--json", "-q") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["computed"], summary["cached"]) == (1, 1)


def test_bad_files_are_named_on_stderr_and_skipped(tree, tmp_path, capsys):
    cache = tmp_path / "f.h5"
    assert _extract(tree, "--cache", cache, "--quiet") == 0
    captured = capsys.readouterr()
    assert "7 images: 6 computed, 0 from the cache, 1 failed" in captured.out
    bad = str(tree / "z" / "bad.jpg")
    assert captured.err.splitlines() == [
        f"tlsk extract: skipped cannot decode {bad!r}: not an image file in a "
        "supported format (JPEG, PNG, BMP, GIF, TIFF, WEBP, AVIF)"
    ]
    assert _namespaces(cache)[0].entries == 6


def test_every_file_failing_exits_with_1(tree, tmp_path, capsys):
    assert _extract(tree / "z", "--cache", tmp_path / "f.h5", "-q") == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "tlsk extract: error: the one file given could not be decoded"
    )


def test_on_error_raise_stops_but_keeps_the_finished_batches(tree, tmp_path, capsys):
    cache = tmp_path / "f.h5"
    argv = [tree, "--cache", cache, "--on-error", "raise", "--batch-size", "2", "-q"]
    assert _extract(*argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("tlsk extract: error: cannot decode ")
    assert "bad.jpg" in err and "Traceback" not in err and err.count("\n") == 1
    # The bad file sorts last: the six images before it are cached.
    assert _namespaces(cache)[0].entries == 6


def test_progress_bar_on_stderr_unless_quiet(tree, tmp_path, capsys):
    assert _extract(tree / "a", "--cache", tmp_path / "f.h5") == 0
    assert "VGG16 features" in capsys.readouterr().err
    assert _extract(tree / "b", "--cache", tmp_path / "f.h5", "--quiet") == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "argv, message",
    [
        (["missing"], "no such file or folder: "),
        (["empty"], "no files found in "),
    ],
)
def test_extract_refuses_what_it_cannot_read(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    paths = [tmp_path / name for name in argv]
    assert _extract(*paths, "--cache", tmp_path / "f.h5") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"tlsk extract: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "f.h5").exists()


def test_extract_help_shows_an_example(capsys):
    with pytest.raises(SystemExit) as info:
        main(["extract", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "tlsk extract photos/ --cache features.h5" in out
    assert "--on-error {skip,raise}" in out


def test_extract_on_a_cluster_requires_the_cache_option(tree, capsys):
    # Without --scheduler, the shared cache is the default (test_cli_first_hour).
    with pytest.raises(SystemExit) as info:
        main(["extract", str(tree), "--scheduler", "tcp://127.0.0.1:1"])
    assert info.value.code == 2
    assert "--scheduler needs --cache" in capsys.readouterr().err


def test_extract_in_a_real_process(tree, tmp_path):
    cache = tmp_path / "f.h5"
    result = subprocess.run(
        [sys.executable, "-m", "tlsk", "extract", str(tree), "--cache", str(cache)]
        + TINY
        + ["--json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["images"], summary["computed"], summary["failed"]) == (7, 6, 1)
    assert "skipped cannot decode" in result.stderr


# -- tlsk cache ------------------------------------------------------------


@pytest.fixture
def filled(tree, tmp_path, capsys, monkeypatch):
    """A cache with two namespaces: avg (6 entries) and max (2 entries).

    Files count as settled at once, so the file-key memo remembers all seven.
    """
    monkeypatch.setattr("tlsk._util.memo.SETTLED_NS", -1)
    cache = tmp_path / "f.h5"
    assert _extract(tree, "--cache", cache, "-q") == 0
    assert _extract(tree / "a", "--cache", cache, "-q", "--pooling", "max") == 0
    capsys.readouterr()
    return cache


def test_cache_info_lists_each_namespace(filled, capsys):
    assert main(["cache", "info", str(filled)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{filled}: 8 entries in 2 namespaces, ")
    assert f", format {FORMAT_VERSION}\n" in out
    assert "file-key memo: 7 files" in out  # all it hashed, the bad one too
    assert "  runs         1" in out
    for ns in _namespaces(filled):
        assert f"namespace {ns.id[:12]}  ({ns.id})" in out
    assert "pooling:         max" in out and "pooling:         avg" in out
    assert "input_size:      32" in out


def test_cache_info_json(filled, capsys):
    assert main(["cache", "info", str(filled), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["entries"] == 8 and data["pending_parts"] == 0
    by_pooling = {ns["fingerprint"]["pooling"]: ns for ns in data["namespaces"]}
    assert by_pooling["avg"]["entries"] == 6 and by_pooling["max"]["entries"] == 2
    assert by_pooling["avg"]["dim"] == 512
    files = [filled, *Path(f"{filled}.runs").iterdir()]
    assert data["size_bytes"] == sum(map(os.path.getsize, files))
    assert data["format_version"] == FORMAT_VERSION
    assert data["runs"] == 3 and data["file_keys"]["entries"] == 7
    assert 0 < data["index_bytes"] <= 40 * (8 + 6)


def test_cache_compact_merges_each_namespace_into_one_run(filled, capsys):
    (avg,) = [ns for ns in _namespaces(filled) if ns.fingerprint["pooling"] == "avg"]
    cache = FeatureCache(filled)
    keys = [bytes([i]) * 32 for i in range(3)]
    with cache.writer(avg.fingerprint, 512) as writer, writer.claim():
        for key in keys:  # one run per append
            writer.append([key], np.full((1, 512), key[0], np.float32))
    before = cache.info()
    assert before.runs == 6
    assert main(["cache", "compact", str(filled)]) == 0
    assert capsys.readouterr().out.startswith(f"compacted {filled}: 6 runs -> 3, ")
    assert cache.info().runs == 3 and cache.verify() == []
    assert len(list(Path(f"{filled}.runs").iterdir())) == 3
    found, vectors = cache.lookup(avg.fingerprint, keys, 512)
    assert found.all() and vectors[2, 0] == 2
    assert [ns.entries for ns in cache.info().namespaces] == [
        ns.entries for ns in before.namespaces
    ]


def test_cache_compact_migrates_a_format_1_cache(tmp_path, capsys):
    fixture = Path(__file__).parent / "fixtures" / "vgg16_cache_v0" / "cache.h5"
    cache = tmp_path / "old.h5"
    shutil.copyfile(fixture, cache)
    entries = [ns.entries for ns in FeatureCache(cache).info().namespaces]
    assert main(["cache", "compact", str(cache), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["format_version_before"], data["format_version"]) == (1, 2)
    info = FeatureCache(cache).info()
    assert [ns.entries for ns in info.namespaces] == entries
    assert info.runs == len(entries) and FeatureCache(cache).verify() == []


def test_cache_verify_says_ok(filled, capsys):
    assert main(["cache", "verify", str(filled)]) == 0
    assert capsys.readouterr().out == "ok\n"


def test_cache_verify_reports_damage_and_exits_1(filled, capsys):
    damaged = run_files(filled)[0]
    flip_a_vector_byte(damaged)
    assert main(["cache", "verify", str(filled)]) == 1
    captured = capsys.readouterr()
    assert captured.out and captured.out != "ok\n"
    assert damaged in captured.out
    last = captured.err.splitlines()[-1]
    assert last.startswith("tlsk cache: error: ") and "problem" in last


def test_cache_prune_removes_one_namespace_by_prefix(filled, capsys):
    (avg,) = [ns for ns in _namespaces(filled) if ns.fingerprint["pooling"] == "avg"]
    assert main(["cache", "prune", str(filled), avg.id[:8]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"removed namespace {avg.id} (6 entries, dim 512) from ")
    assert "pooling=avg" in out
    assert [ns.fingerprint["pooling"] for ns in _namespaces(filled)] == ["max"]


def test_cache_prune_needs_a_namespace(filled, capsys):
    with pytest.raises(SystemExit) as info:
        main(["cache", "prune", str(filled)])
    assert info.value.code == 2
    assert "prune needs the namespace to remove" in capsys.readouterr().err


@pytest.mark.parametrize(
    "namespace, message",
    [("abc", "at least 8"), ("f" * 12, "matches no namespace")],
)
def test_cache_prune_refuses_a_bad_namespace(filled, capsys, namespace, message):
    assert main(["cache", "prune", str(filled), namespace]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tlsk cache: error: ") and message in err
    assert err.count("\n") == 1
    assert len(_namespaces(filled)) == 2


@pytest.mark.parametrize("action", ["info", "verify"])
def test_a_missing_or_damaged_cache_is_one_line_and_exit_1(tmp_path, capsys, action):
    assert main(["cache", action, str(tmp_path / "none.h5")]) == 1
    err = capsys.readouterr().err
    missing = str(tmp_path / "none.h5")
    assert err == f"tlsk cache: error: no feature cache at {missing!r}\n"
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is no HDF5 file" * 10)
    truncated = tmp_path / "truncated.h5"
    cache = FeatureCache(truncated)
    with cache.writer(FINGERPRINT, DIM) as writer, writer.claim():
        writer.append([fake_key(0)], fake_vectors([fake_key(0)]))
    os.truncate(truncated, os.path.getsize(truncated) // 2)
    # A file that is not tlsk's is said to be so, never called damaged.
    for path, says in (
        (garbage, "is not a tlsk feature cache"),
        (truncated, "is damaged"),
    ):
        assert main(["cache", action, str(path)]) == 1
        captured = capsys.readouterr()
        assert captured.err.startswith("tlsk cache: error: ")
        assert captured.err.count("\n") == 1
        # info says why on stderr; verify lists it as the problem it found.
        assert says in (captured.err if action == "info" else captured.out)


def test_cache_in_a_real_process(filled):
    result = subprocess.run(
        [sys.executable, "-m", "tlsk", "cache", "info", str(filled), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["entries"] == 8
