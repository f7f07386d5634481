"""Attacks on the feature cache and accidents to it: refused, set aside, never read.

Each row of issue 26 (items 2, 7, 8, 14a and the fuzz test) and the tests
that prove it:

- only a tlsk feature cache is ever treated as a damaged one: a file that is
  not one (a joblib model, a JPEG, a text file, an empty file, a Keras
  weights file) given as the cache is refused with a ``CacheError`` naming
  it and saying it is not a tlsk feature cache, left byte for byte and name
  for name as it was, by every way in (``fit``, a lookup, an append, a join,
  ``tlsk extract``, ``tlsk train``):
    test_a_file_that_is_no_cache_is_refused_untouched
    test_the_command_line_refuses_a_file_that_is_no_cache
  a link (dangling or not), a folder, a FIFO or a device given as the cache:
  refused, never opened in a way that waits, never moved or replaced:
    test_a_special_file_given_as_the_cache_is_refused_never_opened
- a cache file never makes tlsk read another file: a run whose vectors use
  external storage or are a virtual dataset, a run stored otherwise than
  tlsk stores data (no checksum, another filter, huge chunks), manifest
  views that map another file: refused before any data is read, the other
  file never opened, nothing moved, ``verify`` says so:
    test_a_run_that_reads_another_file_is_refused_before_any_read
    test_a_run_stored_otherwise_than_tlsk_stores_is_refused
    test_manifest_views_that_map_another_file_are_refused
  and no declared size makes it allocate more than its bound:
    test_an_attribute_larger_than_its_bound_is_refused_before_it_is_read
- every error h5py raises on a damaged tlsk file is damage, on every path: a
  manifest with a flipped byte (h5py's raw ``KeyError`` before) or truncated
  is set aside and its vectors computed again by ``transform``, ``tlsk
  extract``, ``tlsk train`` and ``tlsk predict``; ``tlsk cache verify``
  reports it and ``tlsk cache info`` says it, moving nothing (a truncated
  manifest under ``transform``: test_faults; under ``tlsk cache``:
  test_cli_extract_cache::test_a_missing_or_damaged_cache_is_one_line_and_exit_1):
    test_a_damaged_manifest_is_set_aside_and_recomputed_on_every_path
    test_cache_verify_and_info_report_a_damaged_manifest
- ``tlsk extract`` counts what it computed, not how the cache grew (a run
  set aside and rebuilt, another writer adding meanwhile):
    test_extract_counts_what_it_computed_not_how_the_cache_grew
    test_count_added_counts_each_threads_own_entries
- the fuzz test: random byte flips, truncations, zeroed ranges and appended
  junk in a real cache's manifest or run never raise anything but a
  ``CacheError`` (a ``DamagedError`` sets the file aside, with a
  ``CacheWarning``), never serve a wrong vector, never rewrite a damaged
  file, never open a file outside the cache's folder, and never allocate
  more than ``MEMORY_BOUND`` (2 MiB, for a cache of 30 KB: the reader checks
  every shape, chunk and attribute against its file and its bounds before
  reading it; about 80 KB are used):
    test_mutated_cache_files_are_damage_or_refused_never_worse (40 examples)
    test_mutated_cache_files_many_examples (slow: 400 more)
"""

import contextlib
import ctypes
import ctypes.util
import faulthandler
import json
import os
import shutil
import stat
import struct
import sys
import tempfile
import threading
import tracemalloc
import warnings
from pathlib import Path
from unittest import mock

import h5py
import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from tests._cache_files import flip_a_vector_byte, run_files
from tests._cache_worker import DIM, FINGERPRINT, fake_key, fake_vectors
from tests._datasets import coloured_images, write_image_folder
from tests.robustness._support import tiny
from tlsk.cache import CacheError, CacheWarning, FeatureCache
from tlsk.cli import main
from tlsk.persistence.model_files import save_model

TINY = ["--weights", "none", "--input-size", "32", "--batch-size", "4", "-q"]
# What a declared size can make the reader allocate before the file proves
# it: one attribute (MAX_ATTR_BYTES, 1 MiB) or one chunk (MAX_CHUNK_BYTES,
# 1 MiB, allocated by HDF5); every dataset read is bounded by the file's size.
MEMORY_BOUND = 2 << 20


def _listing(folder):
    """Every name under ``folder``, with each regular file's bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else p.is_symlink()
        for p in sorted(Path(folder).rglob("*"))
        if not p.is_fifo() and not p.is_char_device()
    }


def _flip_a_header_byte(path):
    """Flip a byte inside the last object header of an HDF5 file."""
    data = bytearray(Path(path).read_bytes())
    offset = data.rfind(b"OHDR") + 24
    data[offset] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def _truncate(path):
    os.truncate(path, os.path.getsize(path) // 2)


class _Opened:
    """Files opened under the watched paths (inotify), seen after the fact."""

    _IN_OPEN, _IN_ACCESS, _IN_NONBLOCK = 0x20, 0x01, 0x800

    def __init__(self, *paths):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        self._fd = libc.inotify_init1(self._IN_NONBLOCK)
        if self._fd < 0:
            pytest.skip("inotify is not available here")
        for path in paths:
            mask = self._IN_OPEN | self._IN_ACCESS
            if libc.inotify_add_watch(self._fd, os.fsencode(path), mask) < 0:
                pytest.skip(f"cannot watch {path}")

    def events(self):
        try:
            data = os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return []
        found, offset = [], 0
        while offset < len(data):
            _, mask, _, size = struct.unpack_from("iIII", data, offset)
            name = data[offset + 16 : offset + 16 + size].rstrip(b"\0")
            found.append((mask, name.decode()))
            offset += 16 + size
        return found

    def close(self):
        os.close(self._fd)


@contextlib.contextmanager
def _watching(*paths):
    opened = _Opened(*paths)
    try:
        yield opened
    finally:
        opened.close()


# -- shared caches ------------------------------------------------------------


@pytest.fixture(scope="module")
def images():
    return coloured_images(2, size=32)[0]


@pytest.fixture(scope="module")
def expected(images):
    return tiny().fit().transform(images)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, images):
    """A cache of the six images' vectors, written by the tiny extractor."""
    folder = tmp_path_factory.mktemp("pristine")
    tiny(cache=str(folder / "features.h5")).fit().transform(images)
    return folder


def _copy(pristine, tmp_path):
    folder = tmp_path / "cache"
    shutil.copytree(pristine, folder)
    for lock in folder.glob("*.lock"):
        lock.unlink()
    return folder / "features.h5"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Twelve image files in three class folders."""
    root = tmp_path_factory.mktemp("photos")
    write_image_folder(root, 4)
    return root


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, photos):
    """A cache that ``tlsk extract`` filled with the photos' vectors."""
    cache = tmp_path_factory.mktemp("extracted") / "features.h5"
    assert main(["extract", str(photos), "--cache", str(cache), *TINY]) == 0
    return cache.parent


# -- item 2: only a tlsk cache is treated as a damaged cache -------------------


def _joblib(path):
    joblib.dump(LogisticRegression(), path)


def _jpeg(path):
    Image.fromarray(coloured_images(1)[0][0]).save(path, "JPEG")


def _keras_weights(path):
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"block1_conv1"]
        f.create_group("block1_conv1")["kernel:0"] = np.ones((3, 3), np.float32)


FOREIGN = {
    "joblib model": _joblib,
    "jpeg": _jpeg,
    "text": lambda path: path.write_text("notes, not a cache\n"),
    "empty": lambda path: path.write_bytes(b""),
    "keras weights": _keras_weights,
}


def _fit_and_transform(path, images):
    tiny(cache=str(path)).fit().transform(images)


def _lookup(path, images):
    FeatureCache(path).lookup(FINGERPRINT, [fake_key(0)], DIM)


def _append(path, images):
    with FeatureCache(path).writer(FINGERPRINT, DIM) as writer, writer.claim():
        writer.append([fake_key(0)], fake_vectors([fake_key(0)]))


def _join(path, images):
    shard = path.parent / "shard.h5"
    with FeatureCache(shard).writer(FINGERPRINT, DIM) as writer, writer.claim():
        writer.append([fake_key(0)], fake_vectors([fake_key(0)]))
    FeatureCache(path).add_shards([shard])


@pytest.mark.parametrize("use", [_fit_and_transform, _lookup, _append, _join])
@pytest.mark.parametrize("kind", list(FOREIGN))
def test_a_file_that_is_no_cache_is_refused_untouched(tmp_path, images, kind, use):
    path = tmp_path / "my_model.joblib"
    FOREIGN[kind](path)
    before = _listing(tmp_path)
    with pytest.raises(CacheError, match=f"{path}.*is not a tlsk feature cache"):
        use(path, images)
    after = _listing(tmp_path)
    after = {n: b for n, b in after.items() if not n.startswith("shard.h5")}
    assert after == before  # no file moved, written, renamed or added


@pytest.mark.parametrize("command", ["extract", "train"])
def test_the_command_line_refuses_a_file_that_is_no_cache(
    tmp_path, photos, capsys, command
):
    model = tmp_path / "my_model.joblib"
    _joblib(model)
    before = _listing(tmp_path)
    argv = [command, str(photos), "--cache", str(model), *TINY]
    if command == "train":
        argv += ["--method", "bottleneck", "--out", str(tmp_path / "new.joblib")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{str(model)!r} is not a tlsk feature cache" in err
    assert _listing(tmp_path) == before


def _symlink(path, cache):
    path.symlink_to(cache)


def _dangling(path, cache):
    path.symlink_to(path.parent / "nowhere.h5")


def _fifo(path, cache):
    os.mkfifo(path)


def _device(path, cache):
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
    except PermissionError:
        pytest.skip("cannot make a device node here")


def _folder(path, cache):
    path.mkdir()


SPECIAL = {
    "symlink": (_symlink, "a symbolic link"),
    "dangling symlink": (_dangling, "a symbolic link"),
    "fifo": (_fifo, "a FIFO"),
    "device": (_device, "a character device"),
    "folder": (_folder, "a folder"),
}


@pytest.mark.parametrize("use", [_lookup, _append])
@pytest.mark.parametrize("kind", list(SPECIAL))
def test_a_special_file_given_as_the_cache_is_refused_never_opened(
    tmp_path, pristine, kind, use
):
    real = _copy(pristine, tmp_path)
    path = tmp_path / "special.h5"
    make, what = SPECIAL[kind]
    make(path, real)
    before = os.lstat(path)
    released = threading.Event()

    def release_a_blocked_reader():
        # Were the FIFO opened for reading, the test would wait here forever:
        # a writer that comes and goes lets it go on, and fail.
        if not released.wait(10) and kind == "fifo":
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    watchdog = threading.Thread(target=release_a_blocked_reader)
    watchdog.start()
    try:
        with _watching(real) as watched:
            with pytest.raises(
                CacheError, match=f"is not a tlsk feature cache.*{what}"
            ):
                use(path, None)
            assert watched.events() == []  # a link's target is never opened
    finally:
        released.set()
        watchdog.join()
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "special.h5"]


# -- item 7: a cache file never makes tlsk read another file -------------------


def _outside_vectors(tmp_path, n, dim):
    """A file outside the cache, of the bytes a followed reference would return."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full((n, dim), 7.0, np.float32).tobytes())
    with h5py.File(tmp_path / "secret.h5", "w") as f:
        f["vectors"] = np.full((n, dim), 7.0, np.float32)
    return secret, tmp_path / "secret.h5"


def _external_storage(group, secret, secret_h5):
    n, dim = group["vectors"].shape
    del group["vectors"]
    group.create_dataset(
        "vectors", (n, dim), "<f4", external=[(str(secret), 0, n * dim * 4)]
    )


def _virtual_vectors(group, secret, secret_h5):
    n, dim = group["vectors"].shape
    del group["vectors"]
    layout = h5py.VirtualLayout((n, dim), np.float32)
    layout[:] = h5py.VirtualSource(str(secret_h5), "vectors", (n, dim))
    group.create_virtual_dataset("vectors", layout)


@pytest.mark.parametrize(
    "change, reason",
    [
        (_external_storage, "keeps its data in other files"),
        (_virtual_vectors, "is a virtual"),
    ],
)
def test_a_run_that_reads_another_file_is_refused_before_any_read(
    tmp_path, pristine, images, change, reason
):
    cache = _copy(pristine, tmp_path)
    run = run_files(cache)[0]
    with h5py.File(run, "r+") as f:
        group = f["namespaces"][next(iter(f["namespaces"]))]
        secrets = _outside_vectors(tmp_path, *group["vectors"].shape)
        change(group, *secrets)
    # As large as the data it declares, as a careful attacker makes it.
    os.truncate(run, os.path.getsize(run) + secrets[0].stat().st_size)
    hostile = Path(run).read_bytes()
    extractor = tiny(cache=str(cache)).fit()
    with _watching(*secrets) as watched:
        with pytest.raises(CacheError, match=f"{run}.*{reason}"):
            extractor.transform(images)
        problems = FeatureCache(cache).verify()
        assert watched.events() == []  # never opened, never read
    assert any(reason in problem for problem in problems), problems
    assert Path(run).read_bytes() == hostile  # neither moved nor rewritten


def _stored(**options):
    def change(group):
        data = group["vectors"][:]
        del group["vectors"]
        group.create_dataset("vectors", data=data, **options)

    return change


@pytest.mark.parametrize(
    "change, reason",
    [
        (_stored(), "is a contiguous dataset"),
        (_stored(chunks=(2, 512)), r"has the filters \[\]"),
        (_stored(chunks=(2, 512), compression="gzip", fletcher32=True), "filters"),
        (
            _stored(chunks=(1024, 512), maxshape=(None, 512), fletcher32=True),
            "has chunks of shape",
        ),
    ],
    ids=["no-checksum", "chunked-no-checksum", "gzip", "huge-chunks"],
)
def test_a_run_stored_otherwise_than_tlsk_stores_is_refused(
    tmp_path, pristine, images, change, reason
):
    cache = _copy(pristine, tmp_path)
    run = run_files(cache)[0]
    with h5py.File(run, "r+") as f:
        change(f["namespaces"][next(iter(f["namespaces"]))])
    with pytest.raises(CacheError, match=f"{run}.*{reason}"):
        tiny(cache=str(cache)).fit().transform(images)
    assert any(reason.replace("\\", "") in p for p in FeatureCache(cache).verify())
    assert Path(run).exists()


def test_an_attribute_larger_than_its_bound_is_refused_before_it_is_read(
    tmp_path, pristine, images
):
    cache = _copy(pristine, tmp_path)
    run = run_files(cache)[0]
    with h5py.File(run, "r+") as f:
        group = f["namespaces"][next(iter(f["namespaces"]))]
        group.attrs["rows_written"] = np.zeros(1 << 18, np.int64)  # 2 MiB
    extractor = tiny(cache=str(cache)).fit()
    tracemalloc.start()
    try:
        with pytest.raises(CacheError, match="'rows_written' declares 2097152 bytes"):
            extractor.transform(images)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # the 2 MiB were never read


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_manifest_views_that_map_another_file_are_refused(
    tmp_path, pristine, images, where
):
    cache = _copy(pristine, tmp_path)
    with h5py.File(cache, "r") as f:
        n, dim = next(iter(f["namespaces"].values()))["vectors"].shape
    _, secret_h5 = _outside_vectors(tmp_path, n, dim)
    source = str(secret_h5) if where == "absolute" else "../secret.h5"
    with h5py.File(cache, "r+") as f:
        group = next(iter(f["namespaces"].values()))
        del group["vectors"]
        layout = h5py.VirtualLayout((n, dim), np.float32)
        layout[:] = h5py.VirtualSource(source, "vectors", (n, dim))
        group.create_virtual_dataset("vectors", layout)
    hostile = cache.read_bytes()
    extractor = tiny(cache=str(cache)).fit()
    with _watching(secret_h5) as watched:
        with pytest.raises(CacheError, match=f"{cache}.*reads 'vectors' of"):
            extractor.transform(images)
        problems = FeatureCache(cache).verify()
        assert watched.events() == []
    assert any("reads 'vectors' of" in problem for problem in problems), problems
    assert cache.read_bytes() == hostile


# -- item 8: every h5py error on a damaged tlsk file is damage -----------------


def _transform(cache, photos, tmp_path):
    files = sorted(str(p) for p in photos.rglob("*.*"))
    out = tiny(cache=str(cache)).fit().transform(files)
    assert np.isfinite(out).all() and out.shape == (12, 512)


def _extract(cache, photos, tmp_path):
    assert main(["extract", str(photos), "--cache", str(cache), *TINY]) == 0


def _train(cache, photos, tmp_path):
    out = tmp_path / "model.joblib"
    argv = ["train", str(photos), "--method", "bottleneck", "--cache", str(cache)]
    assert main([*argv, "--out", str(out), *TINY]) == 0


def _predict(cache, photos, tmp_path):
    files = sorted(str(p) for p in photos.rglob("*.*"))
    labels = [Path(p).parent.name for p in files]
    extractor = tiny(cache=str(cache))
    model = make_pipeline(extractor, LogisticRegression()).fit(files[:6], labels[:6])
    save_model(model, tmp_path / "model.joblib")
    _flip_a_header_byte(cache)  # the fit read the cache: damage it again
    argv = ["predict", str(tmp_path / "model.joblib"), str(photos), "-q"]
    assert main([*argv, "--out", str(tmp_path / "p.csv")]) == 0


@pytest.mark.parametrize(
    "use, damage",
    [
        (_transform, _flip_a_header_byte),
        (_extract, _flip_a_header_byte),
        (_extract, _truncate),
        (_train, _flip_a_header_byte),
        (_predict, _flip_a_header_byte),
    ],
    ids=["transform", "extract", "extract-truncated", "train", "predict"],
)
def test_a_damaged_manifest_is_set_aside_and_recomputed_on_every_path(
    tmp_path, extracted, photos, use, damage, capsys
):
    shutil.copytree(extracted, tmp_path / "cache")
    cache = tmp_path / "cache" / "features.h5"
    damage(cache)
    damaged = cache.read_bytes()
    with pytest.warns(CacheWarning, match="features.h5' is damaged.*moved it to"):
        use(cache, photos, tmp_path)
    asides = list(cache.parent.glob("features.h5.damaged-*"))
    assert damaged in [aside.read_bytes() for aside in asides]
    assert FeatureCache(cache).verify() == []
    assert main(["cache", "verify", str(cache)]) == 0


def test_cache_verify_and_info_report_a_damaged_manifest(tmp_path, extracted, capsys):
    shutil.copytree(extracted, tmp_path / "cache")
    cache = tmp_path / "cache" / "features.h5"
    _flip_a_header_byte(cache)
    before = _listing(tmp_path)
    assert main(["cache", "verify", str(cache)]) == 1
    captured = capsys.readouterr()
    assert "features.h5' is damaged" in captured.out
    assert captured.err.startswith("tlsk cache: error: 1 problem")
    assert main(["cache", "info", str(cache)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "features.h5' is damaged" in err
    assert _listing(tmp_path) == before  # reported, nothing moved


# -- item 14a: extract counts what it computed ---------------------------------


def test_extract_counts_what_it_computed_not_how_the_cache_grew(
    tmp_path, extracted, photos, capsys
):
    shutil.copytree(extracted, tmp_path / "cache")
    cache = tmp_path / "cache" / "features.h5"
    namespace = FeatureCache(cache).info().namespaces[0].id
    runs = run_files(cache, namespace)
    with h5py.File(runs[0], "r") as f:
        lost = f["namespaces"][namespace]["keys"].shape[0]
    flip_a_vector_byte(runs[0])
    argv = ["extract", str(photos), "--cache", str(cache), *TINY, "--json"]
    with pytest.warns(CacheWarning, match="is damaged"):
        assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    # The cache holds as many entries as before: the damaged run's vectors
    # were set aside and computed again, by this run.
    assert (summary["computed"], summary["cached"]) == (lost, 12 - lost)


def test_count_added_counts_each_threads_own_entries(tmp_path):
    cache = FeatureCache(tmp_path / "features.h5")
    keys = [fake_key(i) for i in range(60)]
    counted = {}
    start = threading.Barrier(2)

    def fill(name, batches):
        with cache.count_added(FINGERPRINT) as added:
            start.wait()
            with cache.writer(FINGERPRINT, DIM) as writer:
                for batch in batches:
                    with writer.claim():
                        hit, _ = writer.lookup(batch)
                        todo = [k for k, h in zip(batch, hit, strict=True) if not h]
                        writer.append(todo, fake_vectors(todo))
        counted[name] = added.entries

    # Overlapping halves: what one thread adds, the other finds.
    one = [keys[i : i + 5] for i in range(0, 40, 5)]
    two = [keys[i : i + 5] for i in range(20, 60, 5)]
    threads = [threading.Thread(target=fill, args=a) for a in (("a", one), ("b", two))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cache.wait_for_merges()
    (info,) = cache.info().namespaces
    assert info.entries == 60 and counted["a"] + counted["b"] == 60, counted
    assert counted["a"] >= 20 and counted["b"] >= 20


# -- the fuzz test -------------------------------------------------------------

_RECORDING = []  # paths opened while a fuzz example runs, else empty and idle
_AUDIT = {"on": False, "installed": False}


def _audit(event, args):
    if _AUDIT["on"] and event == "open" and isinstance(args[0], (str, bytes)):
        _RECORDING.append(os.fsdecode(args[0]))


class _RecordingFile(h5py.File):
    """h5py.File that notes each path HDF5 is asked to open."""

    def __init__(self, name, *args, **kwargs):
        if isinstance(name, (str, bytes, os.PathLike)):
            _RECORDING.append(os.fsdecode(name))
        super().__init__(name, *args, **kwargs)


@pytest.fixture(scope="module")
def fuzz_cache(tmp_path_factory):
    """The bytes of a small real cache: a manifest, three runs of 20 keys."""
    folder = tmp_path_factory.mktemp("fuzz")
    cache = FeatureCache(folder / "features.h5")
    for start in (0, 20, 40):
        keys = [fake_key(i) for i in range(start, start + 20)]
        with cache.writer(FINGERPRINT, DIM) as writer, writer.claim():
            writer.append(keys, fake_vectors(keys))
    cache.wait_for_merges()
    # Modules imported on first use are imported now, not seen as opened files.
    assert cache.verify() == [] and cache.info().namespaces[0].entries == 60
    return _Files(
        {
            str(p.relative_to(folder)): p.read_bytes()
            for p in folder.rglob("*.h5")
            if p.is_file()
        }
    )


class _Files(dict):
    """File names and bytes, shown briefly in Hypothesis's reports."""

    def __repr__(self):
        return f"<{len(self)} cache files>"


def _mutate(data, mutation):
    kind, *args = mutation
    data = bytearray(data)
    if not data and kind != "append":
        return bytes(data)
    if kind == "flip":
        offset, mask = args
        data[offset % len(data)] ^= mask
    elif kind == "truncate":
        del data[args[0] % len(data) :]
    elif kind == "zero":
        offset, size = args
        offset %= len(data)
        data[offset : offset + size] = bytes(len(data[offset : offset + size]))
    else:
        data += args[0]
    return bytes(data)


MUTATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
        st.tuples(st.just("truncate"), st.integers(0, 1 << 20)),
        st.tuples(st.just("zero"), st.integers(0, 1 << 20), st.integers(1, 256)),
        st.tuples(st.just("append"), st.binary(min_size=1, max_size=128)),
    ),
    min_size=1,
    max_size=3,
)


def _check_mutation(fuzz_cache, target, mutations):
    keys = [fake_key(i) for i in range(60)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cache"
        for name, data in fuzz_cache.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        names = sorted(fuzz_cache)
        victim = names[0] if target == "manifest" else names[1 + target % 3]
        mutated = fuzz_cache[victim]
        for mutation in mutations:
            mutated = _mutate(mutated, mutation)
        (folder / victim).write_bytes(mutated)
        cache = FeatureCache(folder / "features.h5")
        del _RECORDING[:]
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        _AUDIT["on"] = True
        try:
            with (
                mock.patch.object(h5py, "File", _RecordingFile),
                warnings.catch_warnings(record=True) as caught,
            ):
                warnings.simplefilter("always")
                for operation in ("lookup", "verify", "info"):
                    try:
                        if operation == "lookup":
                            found, vectors = cache.lookup(FINGERPRINT, keys, DIM)
                            hits = [k for k, f in zip(keys, found, strict=True) if f]
                            # Never a wrong vector: found ones are the right ones.
                            np.testing.assert_array_equal(
                                vectors[found], fake_vectors(hits)
                            )
                        elif operation == "verify":
                            assert isinstance(cache.verify(), list)
                        else:
                            cache.info()
                    except CacheError:
                        pass  # documented: refused, or damaged and reported
        finally:
            _AUDIT["on"] = False
        peak = tracemalloc.get_traced_memory()[1] - base
        assert peak <= MEMORY_BOUND, f"{peak} bytes allocated"
        assert all(issubclass(w.category, CacheWarning) for w in caught), [
            str(w.message) for w in caught
        ]
        outside = [
            p
            for p in map(os.path.abspath, _RECORDING)
            if p != str(folder) and not p.startswith(str(folder) + os.sep)
        ]
        assert outside == [], outside  # the folder itself is opened to fsync it
        # A damaged file is set aside as it was, never rewritten in place.
        if victim != "features.h5":
            kept = [folder / victim] + list(
                (folder / victim).parent.glob("*.damaged-*")
            )
            assert any(p.exists() and p.read_bytes() == mutated for p in kept)


def _fuzz(fuzz_cache, target, mutations):
    if not _AUDIT["installed"]:
        sys.addaudithook(_audit)  # once per process: hooks cannot be removed
        _AUDIT["installed"] = True
    started = tracemalloc.is_tracing()
    if not started:
        tracemalloc.start()
    # A hang in HDF5's C code cannot be interrupted: end the run, loudly.
    faulthandler.dump_traceback_later(120, exit=True)
    try:
        _check_mutation(fuzz_cache, target, mutations)
    finally:
        faulthandler.cancel_dump_traceback_later()
        if not started:
            tracemalloc.stop()


FUZZ = dict(
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
TARGETS = st.one_of(st.just("manifest"), st.integers(0, 2))


@settings(max_examples=40, derandomize=True, **FUZZ)
@given(target=TARGETS, mutations=MUTATIONS)
def test_mutated_cache_files_are_damage_or_refused_never_worse(
    fuzz_cache, target, mutations
):
    _fuzz(fuzz_cache, target, mutations)


@pytest.mark.slow
@settings(max_examples=400, **FUZZ)
@given(target=TARGETS, mutations=MUTATIONS)
def test_mutated_cache_files_many_examples(fuzz_cache, target, mutations):
    _fuzz(fuzz_cache, target, mutations)
