"""Runs, merges, format-1 caches and the file-key memo of tlsk.cache."""

import errno
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests._cache_files import run_files, write_v1_cache
from tests._cache_worker import DIM, FINGERPRINT, fake_key, fake_vectors
from tests._datasets import write_image_folder
from tlsk.cache import CacheError, FeatureCache, FileKeyMemo, namespace_id
from tlsk.cache._bloom import may_hold
from tlsk.cache._keys import canonical_json
from tlsk.cache._manifest import NamespaceEntry, RunRef
from tlsk.cache._merge import FANOUT, due_merges, tier
from tlsk.images import decode as images

NS = namespace_id(FINGERPRINT)
REPO = Path(__file__).resolve().parents[1]


def _keys(stop, start=0):
    return [fake_key(i) for i in range(start, stop)]


def _append(cache, keys):
    with cache.writer(FINGERPRINT, DIM) as writer, writer.claim():
        writer.append(keys, fake_vectors(keys))


def _assert_serves(cache, keys):
    found, vectors = cache.lookup(FINGERPRINT, keys, DIM)
    assert found.all()
    np.testing.assert_array_equal(vectors, fake_vectors(keys))


@pytest.fixture
def cache(tmp_path):
    return FeatureCache(tmp_path / "features.h5")


# -- the policy ---------------------------------------------------------------


def _simulate(appends, rows_per_append):
    """Rows written and the most runs held, filling a namespace append by append."""
    entry = NamespaceEntry(NS, "{}", DIM, 0, [])
    written = most_runs = 0
    for i in range(appends):
        entry.runs.append(RunRef(f"append-{i}", rows_per_append))
        written += rows_per_append
        while due := due_merges(entry):
            for inputs in due:
                merged = RunRef(f"merged-{written}", sum(r.rows for r in inputs))
                entry.runs = [r for r in entry.runs if r not in inputs] + [merged]
                written += merged.rows
        most_runs = max(most_runs, len(entry.runs))
    return written, most_runs, entry.runs


def test_filling_by_ten_thousand_appends_rewrites_each_row_log_n_times():
    written, most_runs, runs = _simulate(10_000, 100)
    n = 10_000 * 100
    assert sum(r.rows for r in runs) == n
    # Each merge lifts its rows a tier at least: a row is written once, then
    # at most once per tier between an append's and the whole cache's.
    assert written <= n * (1 + math.ceil(math.log(n / 100, FANOUT)))
    assert written / n < 6
    assert most_runs <= (FANOUT - 1) * (tier(n) + 1)


def test_a_merged_run_lands_a_tier_higher():
    for rows in (1, 7, 100, 4095, 50_000):
        assert tier(rows * FANOUT) >= tier(rows) + 1


# -- merges in a real cache -----------------------------------------------------


def test_a_full_tier_is_merged_in_the_background(cache, tmp_path):
    keys = _keys(4 * FANOUT)
    for start in range(0, len(keys), 4):
        _append(cache, keys[start : start + 4])
    assert cache.wait_for_merges(timeout=60)
    (ns,) = cache.info().namespaces
    assert (ns.runs, ns.entries, ns.rows_written) == (1, len(keys), len(keys))
    assert sorted(Path(f"{cache.path}.runs").iterdir()) == [
        Path(p) for p in run_files(cache.path)
    ]
    assert cache.verify() == []
    _assert_serves(cache, keys)


def test_compact_leaves_one_run_per_namespace(cache):
    other = {**FINGERPRINT, "pooling": "max"}
    for start in range(0, 12, 3):
        _append(cache, _keys(start + 3, start))
    with cache.writer(other, DIM) as writer, writer.claim():
        writer.append(_keys(2), fake_vectors(_keys(2)))
        writer.append(_keys(4, 2), fake_vectors(_keys(4, 2)))
    assert cache.info().runs == 6
    assert cache.compact() == 4
    info = cache.info()
    assert info.runs == 2 and [ns.runs for ns in info.namespaces] == [1, 1]
    assert len(list(Path(f"{cache.path}.runs").iterdir())) == 2
    assert cache.verify() == []
    _assert_serves(cache, _keys(12))
    assert cache.compact() == 0  # nothing left to merge


def test_a_lookup_after_a_merge_reads_the_merged_run(cache):
    for start in range(0, 6, 2):
        _append(cache, _keys(start + 2, start))
    _assert_serves(cache, _keys(6))  # this process now knows the three runs
    cache.compact()
    _assert_serves(cache, _keys(6))  # they are gone: the manifest is read again


# -- caches of format 1 ---------------------------------------------------------


def _v1_cache(path, keys, rows_written=None):
    write_v1_cache(
        path, canonical_json(FINGERPRINT), NS, keys, fake_vectors(keys), rows_written
    )


def _v1_cache_with_a_part(cache):
    """A format-1 main file of keys 0-4 and a part of keys 5-7; the part."""
    _v1_cache(cache.path, _keys(5))
    part = Path(f"{cache.path}.parts") / ("part-" + "0" * 20 + "-1-0123abcd.h5")
    part.parent.mkdir()
    _v1_cache(part, _keys(8, 5))  # a part not merged yet
    return part


def test_a_format_1_cache_is_migrated_by_its_first_lookup(cache):
    part = _v1_cache_with_a_part(cache)
    main = Path(cache.path).read_bytes()
    info = cache.info()  # reports, writes nothing
    assert (info.format_version, info.pending_parts) == (1, 1)
    assert info.namespaces[0].entries == 8
    assert cache.verify() == []
    assert Path(cache.path).read_bytes() == main and part.exists()
    assert sorted(os.listdir(Path(cache.path).parent)) == [
        "features.h5",
        "features.h5.parts",
    ]
    _assert_serves(cache, _keys(8))  # the lookup migrated it first
    with h5py.File(cache.path, "r") as f:
        assert (f.attrs["format_version"], f.attrs["role"]) == (2, "manifest")
    info = cache.info()
    assert (info.format_version, info.pending_parts) == (2, 0)
    assert (info.namespaces[0].entries, info.namespaces[0].runs) == (8, 1)
    assert not part.parent.exists()
    assert cache.verify() == []
    _append(cache, _keys(10, 6))  # 2 new keys
    info = cache.info()
    assert (info.namespaces[0].entries, info.namespaces[0].runs) == (10, 2)
    assert cache.verify() == []
    _assert_serves(cache, _keys(10))


def test_a_format_1_cache_is_migrated_by_its_first_write(cache):
    part = _v1_cache_with_a_part(cache)
    _append(cache, _keys(10, 6))  # 2 new keys: the writer looks up first
    info = cache.info()
    assert (info.format_version, info.pending_parts) == (2, 0)
    assert (info.namespaces[0].entries, info.namespaces[0].runs) == (10, 2)
    assert info.namespaces[0].rows_written == 5 + 3 + 4
    assert not part.parent.exists() and cache.verify() == []
    _assert_serves(cache, _keys(10))


def test_the_committed_format_1_cache_is_migrated_when_opened(tmp_path):
    """The fixture tlsk wrote before format 2: same vectors, to the bit."""
    fixture = REPO / "tests" / "fixtures" / "vgg16_cache_v0" / "cache.h5"
    copy = tmp_path / "cache.h5"
    shutil.copyfile(fixture, copy)
    with h5py.File(copy, "r") as f:
        stored = {
            ns: (
                json.loads(group.attrs["fingerprint"]),
                [row.tobytes() for row in group["keys"][:]],
                group["vectors"][:],
            )
            for ns, group in f["namespaces"].items()
        }
    cache = FeatureCache(copy)
    for fingerprint, keys, vectors in stored.values():
        found, got = cache.lookup(fingerprint, keys, vectors.shape[1])
        assert found.all()  # nothing to compute again
        np.testing.assert_array_equal(got, vectors)
    info = cache.info()
    assert (info.format_version, info.runs) == (2, len(stored))
    assert sorted(ns.id for ns in info.namespaces) == sorted(stored)
    assert [ns.entries for ns in info.namespaces] == [3, 3, 3]
    assert cache.verify() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cache.h5",
        "cache.h5.lock",
        "cache.h5.runs",
    ]


def test_a_format_1_cache_that_cannot_be_written_is_refused_and_kept(
    cache, monkeypatch
):
    part = _v1_cache_with_a_part(cache)
    before = {p: p.read_bytes() for p in (Path(cache.path), part)}
    folder = Path(cache.path).parent
    listing = sorted(os.listdir(folder))
    opener = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return opener(path, flags, *args, **kwargs)

    def no_mkdir(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    with monkeypatch.context() as m:  # a read-only file system
        m.setattr(os, "open", read_only)
        m.setattr(os, "mkdir", no_mkdir)
        message = (
            f"feature cache {cache.path!r} is in format 1, which tlsk reads only "
            "once it is migrated to format 2, and it cannot be migrated where it "
            "lies ([Errno 30] Read-only file system"
        )
        with pytest.raises(CacheError, match=re.escape(message)) as raised:
            cache.lookup(FINGERPRINT, _keys(8), DIM)
        assert f"run `tlsk cache compact {cache.path}` once" in str(raised.value)
        info = cache.info()  # reports it as it is
        assert (info.format_version, info.namespaces[0].entries) == (1, 8)
        assert cache.verify() == []
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(os.listdir(folder)) == listing
    _assert_serves(cache, _keys(8))  # writable again: migrated
    assert cache.info().format_version == 2


def test_compact_migrates_a_format_1_cache(cache):
    _v1_cache(cache.path, _keys(7), rows_written=9)
    cache.compact()
    info = cache.info()
    assert info.format_version == 2 and info.runs == 1
    assert (info.namespaces[0].entries, info.namespaces[0].rows_written) == (7, 9)
    assert cache.verify() == []
    _assert_serves(cache, _keys(7))


# -- the memo of file keys ----------------------------------------------------


def test_the_memo_round_trips_keys_by_identity(cache, tmp_path):
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.bin"
        path.write_bytes(bytes([i]) * 10)
        paths.append(path)
    identities = [images.FileInput(p).identity() for p in paths]
    memo = FileKeyMemo(cache)
    assert memo.get(identities) == [None, None, None]
    memo.put(identities[:2], [fake_key(0), fake_key(1)])
    assert memo.get([*identities, None]) == [fake_key(0), fake_key(1), None, None]
    assert cache.info().namespaces == []  # the memo is not a feature namespace
    assert cache.info().file_keys.entries == 2


def test_a_changed_file_is_not_served_the_key_of_its_old_bytes(cache, tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 64)
    memo = FileKeyMemo(cache)
    old = images.FileInput(path).identity()
    memo.put([old], [fake_key(0)])
    stat = os.stat(path)
    path.write_bytes(b"y" * 64)  # same size; the old mtime is put back
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    new = images.FileInput(path).identity()
    assert new != old  # the change time moved: the kernel sets it
    assert memo.get([new]) == [None]


_WARM_TRANSFORM = """
import sys
from tlsk import VGG16FeatureExtractor
from tlsk.images import decode as images
import tlsk._util.memo
tlsk._util.memo.SETTLED_NS = -1  # the test's files were written a moment ago
reads = []
import tlsk.images.keys as keys
opener = images.open_regular_file
images.open_regular_file = lambda path, label: reads.append(path) or opener(path, label)
keys.open_regular_file = images.open_regular_file
extractor = VGG16FeatureExtractor(weights=None, input_size=32, cache=sys.argv[1])
out = extractor.fit().transform(sys.argv[2:])
print(len(reads), out[:, :4].round(4).tolist())
"""


def _transform_in_a_new_process(cache, paths, env=None):
    """(files read, the vectors' first columns as text) of a transform."""
    result = subprocess.run(
        [sys.executable, "-c", _WARM_TRANSFORM, str(cache), *paths],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    reads, vectors = result.stdout.split(" ", 1)
    return int(reads), vectors


def test_a_new_process_reads_no_file_the_memo_knows(tmp_path):
    paths, _ = write_image_folder(tmp_path / "images", 2)
    cache = tmp_path / "features.h5"
    cold_reads, cold = _transform_in_a_new_process(cache, paths)
    warm_reads, warm = _transform_in_a_new_process(cache, paths)
    # Cold: each file is read to be hashed, then to be decoded (and hashed
    # again: the key names what was decoded). Warm: not read at all.
    assert (cold_reads, warm_reads) == (2 * len(paths), 0)
    assert warm == cold


@pytest.mark.slow
def test_a_new_process_hashes_a_changed_file_or_every_file_if_told(tmp_path):
    paths, _ = write_image_folder(tmp_path / "images", 2)
    cache = tmp_path / "features.h5"
    _, cold = _transform_in_a_new_process(cache, paths)
    off_reads, off = _transform_in_a_new_process(
        cache, paths, {"TLSK_FILE_KEY_MEMO": "0"}
    )
    assert off_reads == len(paths) and off == cold
    # A file changed since is hashed again; its bytes are now those of the
    # second file, whose cached vector it is then served.
    shutil.copyfile(paths[1], paths[0])
    changed_reads, changed = _transform_in_a_new_process(cache, paths)
    rows = changed[2:-2].split("], [")
    assert changed_reads == 1 and rows[0] == rows[1] and changed != cold


# -- Bloom filters --------------------------------------------------------------


def test_a_lookup_opens_no_large_run_whose_filter_rules_its_keys_out(
    cache, monkeypatch
):
    from tlsk.cache import _reader

    for start in (0, 5000):  # two runs too large to keep their keys in memory
        _append(cache, _keys(start + 5000, start))
    # As in a new process, with no vectors kept in memory:
    _reader._READERS.clear()
    monkeypatch.setattr(_reader, "MEMORY_COPY_BYTES", 0)
    _assert_serves(cache, _keys(10_000)[::97])  # indexes loaded: each run opened
    opened = []
    open_h5 = _reader.open_h5
    monkeypatch.setattr(
        _reader, "open_h5", lambda path: opened.append(path) or open_h5(path)
    )
    # Absent keys that both runs' filters rule out (about 1 in 100 passes one).
    filters = []
    for run in run_files(cache.path):
        with h5py.File(run, "r") as f:
            filters.append(f["namespaces"][NS]["bloom"][:])
    candidates = _keys(10_100, 10_000)
    absent = np.array(candidates, "S32")
    ruled_out = ~np.any([may_hold(bloom, absent) for bloom in filters], axis=0)
    assert ruled_out.sum() > 90
    keys = [key for key, out in zip(candidates, ruled_out, strict=True) if out]
    found, _ = cache.lookup(FINGERPRINT, keys, DIM)
    assert not found.any() and opened == []
    _assert_serves(cache, _keys(5000)[:3])
    assert len(opened) == 1  # the run that holds them


def test_verify_reports_a_filter_that_misses_keys(cache):
    _append(cache, _keys(5000))
    (run,) = run_files(cache.path)
    with h5py.File(run, "r+") as f:
        f["namespaces"][NS]["bloom"][:] = 0
    (problem,) = cache.verify()
    assert "Bloom filter misses keys" in problem
