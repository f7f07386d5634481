"""Tests of tlsk.cache: real HDF5 files, real processes, real kill -9."""

import hashlib
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests._cache_files import (
    flip_a_vector_byte,
    leftover_files,
    run_files,
    write_v1_cache,
)
from tests._cache_worker import DIM, FINGERPRINT, fake_key, fake_vectors
from tlsk.cache import CacheError, CacheWarning, FeatureCache, namespace_id
from tlsk.cache._keys import canonical_json

WORKER = str(Path(__file__).with_name("_cache_worker.py"))
NS = namespace_id(FINGERPRINT)


def _keys(stop, start=0):
    return [fake_key(i) for i in range(start, stop)]


def _write(cache, keys, fingerprint=FINGERPRINT, batch=None):
    with cache.writer(fingerprint, DIM) as writer:
        for i in range(0, len(keys), batch or max(len(keys), 1)):
            chunk = keys[i : i + (batch or len(keys))]
            with writer.claim():
                writer.append(chunk, fake_vectors(chunk))


@pytest.fixture
def cache(tmp_path):
    return FeatureCache(tmp_path / "features.h5")


# -- basics -------------------------------------------------------------------


def test_namespace_id_is_sha256_of_canonical_json():
    fp = {"b": [1, 2], "a": "x"}
    expected = hashlib.sha256(b'{"a":"x","b":[1,2]}').hexdigest()
    assert namespace_id(fp) == expected


def test_init_does_no_io_and_pickles(tmp_path):
    cache = FeatureCache(tmp_path / "sub" / "features.h5")
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.path == cache.path == str(tmp_path / "sub" / "features.h5")
    assert not (tmp_path / "sub").exists()


def test_missing_cache_finds_nothing(cache):
    found, vectors = cache.lookup(FINGERPRINT, _keys(3), DIM)
    assert not found.any()
    assert vectors.shape == (3, DIM) and not vectors.any()


def test_round_trip_order_and_duplicates(cache):
    keys = _keys(10)
    _write(cache, keys, batch=3)
    query = [keys[7], fake_key(99), keys[0], keys[7], keys[3]]
    found, vectors = cache.lookup(FINGERPRINT, query, DIM)
    assert found.tolist() == [True, False, True, True, True]
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[found], fake_vectors(np.array(query)[found]))
    assert not vectors[1].any()


def test_key_with_trailing_nul_bytes_round_trips(cache):
    key = b"\x07" + b"\x00" * 31
    _write(cache, [key])
    assert cache.lookup(FINGERPRINT, [key, key[:1] + b"\x01" + key[2:]], DIM)[
        0
    ].tolist() == [True, False]


# -- fingerprints -------------------------------------------------------------


def test_other_fingerprint_finds_nothing(cache):
    keys = _keys(4)
    _write(cache, keys)
    found, _ = cache.lookup({**FINGERPRINT, "pooling": "max"}, keys, DIM)
    assert not found.any()


def test_tampered_fingerprint_attribute_is_refused(cache):
    _write(cache, _keys(4))
    with h5py.File(cache.path, "r+") as f:
        group = f["namespaces"][NS]
        group.attrs["fingerprint"] = group.attrs["fingerprint"].replace("avg", "max")
    with pytest.raises(CacheError, match="does not hash to its name"):
        cache.lookup(FINGERPRINT, _keys(4), DIM)


def test_dim_mismatch_raises(cache):
    _write(cache, _keys(4))
    with pytest.raises(CacheError, match=f"dim {DIM}; requested dim=3"):
        cache.lookup(FINGERPRINT, _keys(4), 3)


# -- layout and protocol ------------------------------------------------------


def test_layout_is_plain_h5py_readable(cache):
    keys = _keys(5)
    _write(cache, keys, batch=2)
    with h5py.File(cache.path, "r") as f:
        assert f.attrs["format"] == "tlsk-feature-cache"
        assert f.attrs["format_version"] == 2 and f.attrs["role"] == "manifest"
        group = f["namespaces"][NS]
        assert group.attrs["fingerprint"] == (
            '{"layer":"block5_pool","pooling":"avg","weights":"sha256:test"}'
        )
        assert group.attrs["dim"] == DIM
        assert group.attrs["rows_written"] == 5
        assert group.attrs["run_rows"].tolist() == [2, 2, 1]
        # The virtual datasets: every key and vector of the namespace at once.
        stored_keys, stored_vectors = group["keys"][:], group["vectors"][:]
    assert stored_keys.dtype == np.uint8 and stored_keys.shape == (5, 32)
    assert stored_vectors.dtype == np.float32 and stored_vectors.shape == (5, DIM)
    rows = {bytes(k): v for k, v in zip(stored_keys, stored_vectors, strict=True)}
    assert set(rows) == set(keys)
    np.testing.assert_array_equal(np.array([rows[k] for k in keys]), fake_vectors(keys))
    for run in run_files(cache.path):
        with h5py.File(run, "r") as f:
            assert f.attrs["role"] == "run"
            group = f["namespaces"][NS]
            run_keys = [bytes(k) for k in group["keys"][:]]
            assert run_keys == sorted(run_keys)
            assert [bytes(k) for k in group["fences"][:]] == run_keys[::64]
            for ds in group.values():
                assert ds.fletcher32 and ds.chunks


def test_each_append_is_published_at_once(cache):
    keys = _keys(4)
    with cache.writer(FINGERPRINT, DIM) as writer:
        with writer.claim():
            writer.append(keys, fake_vectors(keys))
        assert len(run_files(cache.path)) == 1
        found, vectors = cache.lookup(FINGERPRINT, keys, DIM)
        assert found.all()
        np.testing.assert_array_equal(vectors, fake_vectors(keys))


def test_an_append_writes_what_it_adds_and_touches_no_run(cache):
    _write(cache, _keys(3000))
    (big,) = run_files(cache.path)
    before = os.stat(big)
    _write(cache, _keys(3004, 2998))  # two stored already, four new
    old, new = run_files(cache.path)
    assert old == big and os.stat(big).st_mtime_ns == before.st_mtime_ns
    with h5py.File(new, "r") as f:
        assert f["namespaces"][NS]["keys"].shape == (4, 32)
    assert os.path.getsize(new) < os.path.getsize(big) / 20
    assert os.path.getsize(cache.path) < 20_000  # the manifest names runs only
    (info,) = cache.info().namespaces
    assert (info.entries, info.rows_written, info.runs) == (3004, 3006, 2)


def test_an_append_survives_the_writer_body_raising(cache, tmp_path):
    keys = _keys(4)
    with pytest.raises(KeyboardInterrupt):
        with cache.writer(FINGERPRINT, DIM) as writer:
            with writer.claim():
                writer.append(keys, fake_vectors(keys))
            raise KeyboardInterrupt
    assert leftover_files(tmp_path) == []
    assert cache.lookup(FINGERPRINT, keys, DIM)[0].all()


def test_stale_temp_files_and_orphan_runs_are_removed(cache, tmp_path):
    _write(cache, _keys(2))
    runs = tmp_path / "features.h5.runs"
    stale_main = tmp_path / ".tmp-features.h5-0123456789abcdef"
    stale_run = runs / ".tmp-0123456789abcdef-x.h5-0123456789abcdef"
    orphan = runs / (NS[:16] + "-" + "0" * 20 + "-0123abcd.h5")
    other = tmp_path / ".tmp-other.h5-0123456789abcdef"  # another cache's file
    for path in (stale_main, stale_run, orphan, other):
        path.write_bytes(b"half-written")
    cache.lookup(FINGERPRINT, _keys(2), DIM)  # nobody writes: a lookup tidies
    assert not stale_main.exists() and not stale_run.exists()
    assert not orphan.exists() and other.exists()
    assert cache.lookup(FINGERPRINT, _keys(2), DIM)[0].all()


def test_append_requires_claim_and_valid_batch(cache):
    keys = _keys(2)
    with cache.writer(FINGERPRINT, DIM) as writer:
        with pytest.raises(RuntimeError, match="inside .*claim"):
            writer.append(keys, fake_vectors(keys))
        with writer.claim():
            with pytest.raises(ValueError, match=r"shape \(2, 8\) for 2 keys"):
                writer.append(keys, np.zeros((2, DIM + 1)))
            with pytest.raises(ValueError, match="finite"):
                writer.append(keys, np.full((2, DIM), np.nan))
            with pytest.raises(ValueError, match="32-byte SHA-256 digests"):
                writer.append([b"short", keys[1]], fake_vectors(keys))
    assert cache.info().namespaces == []


# -- kill -9 ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_sigkill_at_a_random_moment_keeps_completed_batches(tmp_path, seed):
    cache = FeatureCache(tmp_path / "features.h5")
    proc = subprocess.Popen(
        [sys.executable, WORKER, "crash", cache.path],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        assert proc.stdout.readline() == "done 0\n"
        time.sleep(random.Random(seed).uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    done = [0] + [int(line.split()[1]) for line in rest.splitlines()]
    if os.path.exists(cache.path):
        with h5py.File(cache.path, "r") as f:
            assert f.attrs["format"] == "tlsk-feature-cache"
    assert cache.verify() == []
    keys = _keys((max(done) + 1) * 4)
    found, vectors = cache.lookup(FINGERPRINT, keys, DIM)
    assert found.all()
    np.testing.assert_array_equal(vectors, fake_vectors(keys))

    # The next writer comes later: a temporary younger than 5 s could be a
    # live writer's that has not taken its lock yet (tlsk._util.files.dead_temps).
    past = time.time() - 10
    for temporary in tmp_path.rglob(".tmp-*"):
        os.utime(temporary, (past, past))
    with cache.writer(FINGERPRINT, DIM):
        pass
    assert leftover_files(tmp_path) == []
    assert cache.lookup(FINGERPRINT, keys, DIM)[0].all()
    assert cache.verify() == []


OTHER = {**FINGERPRINT, "pooling": "max"}


@pytest.mark.parametrize("moment", ["writing", "publishing", "published"])
def test_sigkill_during_a_migration_leaves_a_cache_that_loads(tmp_path, moment):
    cache = FeatureCache(tmp_path / "features.h5")
    keys, others, other_ns = _keys(40), _keys(60, 40), namespace_id(OTHER)
    fp_json = canonical_json(FINGERPRINT)
    write_v1_cache(cache.path, fp_json, NS, keys, fake_vectors(keys))
    part = Path(f"{cache.path}.parts") / f"part-{0:020d}-1-0123abcd.h5"
    part.parent.mkdir()
    write_v1_cache(part, canonical_json(OTHER), other_ns, others, fake_vectors(others))
    old = Path(cache.path).read_bytes()
    proc = subprocess.Popen(
        [sys.executable, WORKER, "migrate", cache.path, moment],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n"
        assert proc.stdout.readline() == f"{moment}\n"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # Where it was killed: the runs (and the half-built one) it left.
    runs_dir = Path(f"{cache.path}.runs")
    left = sorted(p.name.startswith(".tmp-") for p in runs_dir.iterdir())
    assert left == {"writing": [False, True]}.get(moment, [False, False])
    with h5py.File(cache.path, "r") as f:
        version = f.attrs["format_version"]
    if moment == "published":
        assert version == 2  # the migrated cache
    else:
        assert version == 1 and Path(cache.path).read_bytes() == old  # the old one
    assert part.exists()  # deleted only after the manifest is in place

    for fingerprint, stored in ((FINGERPRINT, keys), (OTHER, others)):
        found, vectors = cache.lookup(fingerprint, stored, DIM)
        assert found.all()  # nothing to compute again
        np.testing.assert_array_equal(vectors, fake_vectors(stored))
    info = cache.info()
    assert info.format_version == 2
    assert {ns.id: ns.entries for ns in info.namespaces} == {NS: 40, other_ns: 20}
    assert cache.verify() == []

    # The next writer deletes what the killed migration left (its temporary
    # made older than 5 s: a younger one could be a live writer's). The parts
    # of a cache killed after its manifest was in place are not read again.
    past = time.time() - 10
    for temporary in tmp_path.rglob(".tmp-*"):
        os.utime(temporary, (past, past))
    with cache.writer(FINGERPRINT, DIM):
        pass
    parts = [f"features.h5.parts/{part.name}"] if moment == "published" else []
    assert leftover_files(tmp_path) == parts
    assert cache.verify() == []


# -- several processes --------------------------------------------------------


def test_lock_free_reads_while_another_process_writes_and_consolidates(cache):
    done = []

    def follow(stdout):
        for line in stdout:
            done.append(int(line.split()[1]))

    with subprocess.Popen(
        [sys.executable, WORKER, "crash", cache.path],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        reader = threading.Thread(target=follow, args=(proc.stdout,))
        try:
            assert proc.stdout.readline() == "ready\n"
            reader.start()
            lookups, deadline = 0, time.monotonic() + 1.5
            while time.monotonic() < deadline:
                if not done:
                    continue
                keys = _keys((done[-1] + 1) * 4)
                found, vectors = cache.lookup(FINGERPRINT, keys, DIM)
                assert found.all(), f"lookup {lookups} missed completed batches"
                np.testing.assert_array_equal(vectors, fake_vectors(keys))
                lookups += 1
        finally:
            proc.kill()
            if reader.ident is not None:
                reader.join()
    assert lookups > 10 and done[-1] > 6  # several consolidations happened


def test_two_processes_compute_each_key_once(cache, tmp_path):
    ranges = [(0, 60), (30, 90)]
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, "share", cache.path, str(a), str(b)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for a, b in ranges
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [proc.returncode for proc in procs] == [0, 0]
    computed = [int(out.split()[-1]) for out in outputs]
    assert sum(computed) == 90 and min(computed) > 0, computed
    (info,) = cache.info().namespaces
    assert info.entries == 90 and info.rows_written == 90
    keys = _keys(90)
    found, vectors = cache.lookup(FINGERPRINT, keys, DIM)
    assert found.all()
    np.testing.assert_array_equal(vectors, fake_vectors(keys))
    assert leftover_files(tmp_path) == []
    assert cache.verify() == []


# -- damage and hostile files -------------------------------------------------


def test_flipped_bytes_in_vectors_are_reported_and_set_aside(cache):
    _write(cache, _keys(4))
    (run,) = run_files(cache.path)
    flip_a_vector_byte(run)
    problems = cache.verify()
    assert len(problems) == 1 and "vectors" in problems[0], problems
    with pytest.warns(CacheWarning, match="damaged.*vectors.*moved it to"):
        found, _ = cache.lookup(FINGERPRINT, _keys(4), DIM)
    assert not found.any()  # never reused
    (aside,) = Path(run).parent.glob("*.damaged-*")
    assert aside.stat().st_size > 0 and cache.verify() == []
    assert run_files(cache.path) == [] and cache.info().namespaces == []


def test_a_damaged_file_that_cannot_be_moved_aside_raises_every_time(
    cache, monkeypatch
):
    # The reader keeps small namespaces in memory; a read that failed
    # half-way must not leave a half-filled copy to serve the next lookup.
    _write(cache, _keys(4))
    flip_a_vector_byte(run_files(cache.path)[0])

    def refuse(*args):
        raise PermissionError("read-only folder")

    monkeypatch.setattr(os, "rename", refuse)
    for _ in range(2):
        with pytest.raises(CacheError, match="is damaged"):
            cache.lookup(FINGERPRINT, _keys(4), DIM)


def test_a_truncated_manifest_is_set_aside_by_a_writer_and_never_reused(cache):
    _write(cache, _keys(40))
    size = os.path.getsize(cache.path)
    with open(cache.path, "r+b") as fh:
        fh.truncate(size // 2)
    message = f"feature cache {cache.path!r} is damaged"
    with pytest.raises(CacheError, match=re.escape(message)):
        cache.info()  # maintenance reports, and moves nothing
    assert os.path.getsize(cache.path) == size // 2  # not replaced
    new = _keys(44, 40)
    with pytest.warns(CacheWarning, match=re.escape(message) + ".*moved it to"):
        _write(cache, new)  # the writer starts a new manifest
    assert cache.lookup(FINGERPRINT, new, DIM)[0].all()
    assert not cache.lookup(FINGERPRINT, _keys(40), DIM)[0].any()
    (aside,) = Path(cache.path).parent.glob("features.h5.damaged-*")
    assert aside.stat().st_size == size // 2
    assert cache.verify() == []


def _craft(path, change):
    """A valid one-namespace file, then ``change(group)`` applied to it."""
    keys = _keys(3)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "tlsk-feature-cache"
        f.attrs["format_version"] = 1
        group = f.create_group("namespaces").create_group(NS)
        group.attrs["fingerprint"] = (
            '{"layer":"block5_pool","pooling":"avg","weights":"sha256:test"}'
        )
        group.attrs["dim"] = DIM
        group.attrs["rows_written"] = 3
        # Stored as tlsk stores data: chunked, with the fletcher32 checksum.
        for name, data in (
            ("keys", np.frombuffer(b"".join(keys), np.uint8).reshape(3, 32)),
            ("vectors", fake_vectors(keys)),
        ):
            group.create_dataset(name, data=data, chunks=data.shape, fletcher32=True)
        change(f, group)


def _external(f, group):
    del group["vectors"]
    group["vectors"] = h5py.ExternalLink("/etc/elsewhere.h5", "/data")


def _soft(f, group):
    group["moved"] = group["vectors"]
    del group["vectors"]
    group["vectors"] = h5py.SoftLink(group.name + "/moved")


def _retype(f, group):
    del group["vectors"]
    group["vectors"] = fake_vectors(_keys(3)).astype(np.float64)


def _shorten(f, group):
    del group["keys"]
    group["keys"] = np.zeros((2, 32), np.uint8)


def _inflate(f, group):
    for name, width in (("keys", 32), ("vectors", DIM)):
        del group[name]
        group.create_dataset(name, (10**9, width), "u1" if width == 32 else "f4")


def _reformat(f, group):
    f.attrs["format"] = "something-else"


@pytest.mark.parametrize(
    "change, reason",
    [
        (_external, "is a ExternalLink"),
        (_soft, "is a SoftLink"),
        (_retype, "float64"),
        (_shorten, "3 vectors"),
        (_inflate, "declares 1000000000 rows"),
        (_reformat, "format attribute is 'something-else'"),
    ],
)
def test_hostile_or_foreign_files_are_refused(cache, change, reason):
    _craft(cache.path, change)
    with pytest.raises(CacheError, match=re.escape(cache.path) + ".*" + reason):
        cache.lookup(FINGERPRINT, _keys(3), DIM)
    assert any(reason in problem for problem in cache.verify())


def test_crafted_file_without_changes_is_accepted(cache):
    _craft(cache.path, lambda f, group: None)
    assert cache.lookup(FINGERPRINT, _keys(3), DIM)[0].all()


# -- maintenance --------------------------------------------------------------


def test_info_counts_runs_entries_and_index(cache):
    other = {**FINGERPRINT, "pooling": "max"}
    _write(cache, _keys(5))
    _write(cache, _keys(3), fingerprint=other)
    _write(cache, _keys(7, 3))  # 2 new
    info = cache.info()
    files = [cache.path, *run_files(cache.path)]
    assert info.size_bytes == sum(os.path.getsize(p) for p in files)
    assert (info.format_version, info.runs, info.pending_parts) == (2, 3, 0)
    counts = {
        ns.id: (ns.entries, ns.rows_written, ns.dim, ns.runs) for ns in info.namespaces
    }
    assert counts == {NS: (7, 9, DIM, 2), namespace_id(other): (3, 3, DIM, 1)}
    assert {ns.id: ns.fingerprint for ns in info.namespaces}[NS] == FINGERPRINT
    assert info.index_bytes == 10 * 32  # small runs: their keys, 32 bytes each


def test_the_index_of_a_large_run_is_its_fences_and_filter(cache):
    _write(cache, _keys(20_000), batch=5000)
    cache.compact()
    (ns,) = cache.info().namespaces
    # Fences, 0.5 B a key, and a Bloom filter of 10 bits a key.
    assert ns.runs == 1 and ns.index_bytes == -(-20_000 // 64) * 32 + 20_000 * 10 // 8
    reader_memory = []
    found, vectors = cache.lookup(FINGERPRINT, _keys(20_000)[::997], DIM)
    assert found.all()
    np.testing.assert_array_equal(vectors, fake_vectors(_keys(20_000)[::997]))
    from tlsk.cache import _reader

    for reader in _reader._READERS.values():
        if reader.path == os.path.abspath(cache.path):
            reader_memory.append(reader.memory_bytes)
    # 20,000 x 8-d vectors fit the in-memory copy; the keys cost 32 bytes each.
    assert reader_memory and reader_memory[0] <= 20_000 * (32 + 4 * DIM)


def test_prune_removes_one_namespace_only(cache, tmp_path):
    other = {**FINGERPRINT, "pooling": "max"}
    _write(cache, _keys(5))
    _write(cache, _keys(3), fingerprint=other)
    assert cache.prune(namespace_id(other)[:8]) == 3
    assert not cache.lookup(other, _keys(3), DIM)[0].any()
    assert cache.lookup(FINGERPRINT, _keys(5), DIM)[0].all()
    assert [ns.id for ns in cache.info().namespaces] == [NS]
    assert cache.verify() == [] and leftover_files(tmp_path) == []
    with pytest.raises(ValueError, match="matches no namespace"):
        cache.prune(namespace_id(other))
    with pytest.raises(ValueError, match="at least 8"):
        cache.prune(NS[:7])


def test_prune_deletes_the_namespace_runs(cache):
    _write(cache, _keys(2))
    with cache.writer(FINGERPRINT, DIM) as writer:
        with writer.claim():
            writer.append(_keys(4, 2), fake_vectors(_keys(4, 2)))
        runs = run_files(cache.path)
        assert cache.prune(NS) == 4
        assert not cache.lookup(FINGERPRINT, _keys(4), DIM)[0].any()
    assert not any(os.path.exists(run) for run in runs)


def test_add_shards_joins_a_shard_file(cache, tmp_path):
    _write(cache, _keys(10))
    worker = FeatureCache(tmp_path / "worker-1.h5")
    _write(worker, _keys(15, 5))
    shard = str(tmp_path / "shard-1.h5")
    assert worker.write_shard(shard) == 10
    with h5py.File(shard, "r") as f:
        assert f.attrs["role"] == "run" and list(f["namespaces"]) == [NS]
    before = {run: os.stat(run).st_mtime_ns for run in run_files(cache.path)}
    assert cache.add_shards([shard]) == 5
    assert {run: os.stat(run).st_mtime_ns for run in before} == before  # no copy
    found, vectors = cache.lookup(FINGERPRINT, _keys(15), DIM)
    assert found.all()
    np.testing.assert_array_equal(vectors, fake_vectors(_keys(15)))
    (info,) = cache.info().namespaces
    assert (info.entries, info.rows_written, info.runs) == (15, 20, 2)
    assert os.path.exists(shard)
    assert cache.add_shards([shard], remove=True) == 0
    assert not os.path.exists(shard)
    assert cache.add_shards([worker.path], remove=True) == 0  # a whole cache
    assert not os.path.exists(worker.path) and cache.verify() == []


def test_add_shards_refuses_a_shard_with_pending_parts(cache, tmp_path):
    shard = FeatureCache(tmp_path / "worker-1.h5")
    _write(shard, _keys(2))
    os.makedirs(shard.path + ".parts", exist_ok=True)
    part = Path(shard.path + ".parts") / f"part-{0:020d}-1-0123abcd.h5"
    shutil.copyfile(shard.path, part)
    with pytest.raises(CacheError, match="pending parts"):
        cache.add_shards([shard.path])


def test_repeated_lookups_see_what_was_added_and_removed_since(cache):
    # Lookups share a reader per process (its key index is kept while the
    # main file is unchanged); a merge or a prune must still show at once.
    keys = _keys(6)
    _write(cache, keys[:3])
    assert cache.lookup(FINGERPRINT, keys, DIM)[0].tolist() == [1, 1, 1, 0, 0, 0]
    _write(cache, keys[3:])
    found, vectors = cache.lookup(FINGERPRINT, keys, DIM)
    assert found.all()
    np.testing.assert_array_equal(vectors, fake_vectors(keys))
    cache.prune(namespace_id(FINGERPRINT))
    assert not cache.lookup(FINGERPRINT, keys, DIM)[0].any()
    _write(cache, keys[:1])
    assert cache.lookup(FINGERPRINT, keys, DIM)[0].tolist() == [1, 0, 0, 0, 0, 0]


def test_an_unchanged_small_cache_is_read_once_per_process(cache, monkeypatch):
    from tlsk.cache import _reader

    keys = _keys(5)
    _write(cache, keys)
    cache.lookup(FINGERPRINT, keys, DIM)
    opened = []
    open_file = _reader.open_h5
    monkeypatch.setattr(
        _reader, "open_h5", lambda path: opened.append(path) or open_file(path)
    )
    found, vectors = cache.lookup(FINGERPRINT, keys[::-1], DIM)
    assert found.all() and opened == []
    np.testing.assert_array_equal(vectors, fake_vectors(keys[::-1]))
    _write(cache, _keys(7, start=5))  # a new run: read, the others are kept
    opened.clear()
    assert cache.lookup(FINGERPRINT, _keys(7), DIM)[0].all()
    assert opened == run_files(cache.path)[1:]
