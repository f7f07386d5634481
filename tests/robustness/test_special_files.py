"""Special files among the images: read only regular files, never hang, say why.

A data folder may hold what is no image file at all: a FIFO (reading it
waits for a writer forever), a link to a device (``/dev/zero`` never ends),
a socket, a link to nothing, a sparse file of gigabytes named ``.jpg``. tlsk
opens image files in one place (``tlsk.images.files.open_regular_file``): a regular
file of at most ``tlsk.images.files.MAX_FILE_BYTES`` or an ``ImageError`` saying
what the file is; a file is hashed in chunks and identified from its header
before the rest is read. Each promise and the tests that prove it (the tests
that could hang carry a timeout, so a regression fails instead):

- a FIFO, a link to ``/dev/zero``, a socket and a file over the size bound
  are refused unread, naming the file and what it is:
    test_each_special_file_is_refused_unread_naming_what_it_is
- a FIFO or a device put in a file's place after its stat cannot hang the
  reader (the open does not block; the opened file is checked again):
    test_a_special_file_swapped_in_after_the_stat_is_refused_unread
- the size bound is a module constant read at each call, named in the error:
    test_the_size_bound_is_named_and_read_at_each_call
- a key is hashed in chunks, and a file that is no image is refused from its
  header, both in bounded memory:
    test_keys_are_hashed_and_non_images_refused_in_bounded_memory
- folders holding special files are listed, checked, loaded and split, each
  special file skipped with its reason (Python API and ``tlsk check``,
  ``tlsk split``, ``tlsk check --report``):
    test_a_folder_of_special_files_is_checked_loaded_and_split
    test_check_and_split_commands_skip_special_files_with_their_reason
- a report's thumbnail of a special file is none, at once:
    test_a_thumbnail_of_a_special_file_is_none
- ``transform``, ``tlsk predict`` and ``tlsk extract`` (also with a broken
  link, issue 26 item 14b, and ``--on-error skip``) skip them with reasons:
    test_transform_gives_special_files_nan_rows_naming_each
    test_predict_gives_each_special_file_an_error_row
    test_extract_skips_special_files_and_broken_links
"""

import csv
import hashlib
import io
import json
import os
import re
import socket
import threading
import tracemalloc
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from tests._image_files import smooth_rgb, write
from tests.robustness._support import tiny
from tlsk import check_image_folder, load_image_folder, split_image_folder
from tlsk.cli import main
from tlsk.evaluation.report._thumbnails import write_thumbnail
from tlsk.images.decode import (
    FileInput,
    ImageError,
    UndecodableImageWarning,
    read_image,
)
from tlsk.persistence.model_files import save_model

# Special file name -> the reason it is refused (a regular expression).
REASONS = {
    "fifo.png": "not a regular file: a FIFO",
    "zero.png": "not a regular file: a character device",
    "socket.png": "not a regular file: a socket",
    "huge.jpg": "larger than the 1073741824 bytes",
    "dangling.png": "no such file",
}
# Refused before any byte is read: the first four could hang, the last costs
# gigabytes (the dangling link is refused by the old code too).
UNREAD = ["fifo.png", "zero.png", "socket.png", "huge.jpg"]
GOOD = 3  # good images a class
_HANG_SECONDS = 10  # a reader blocked this long is released (see below)


def _make_specials(folder):
    os.mkfifo(folder / "fifo.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(folder / "socket.png"))  # the name stays once closed
    # Sparse, as the truncate command makes it: 2 GiB of no disk.
    with open(folder / "huge.jpg", "wb") as file:
        file.truncate((2 << 30) + 1)
    (folder / "dangling.png").symlink_to(folder / "missing.png")


def _release_fifos(folder):
    """Give any reader blocked on a FIFO its end of file (a regression's thread)."""
    for path in folder.rglob("fifo*"):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: nobody is reading it
            continue
        os.close(fd)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """data/a and data/b: three good images each; data/a also every special file.

    data/b holds a folder named x.png too, which is a folder, not a file.
    """
    root = tmp_path_factory.mktemp("special") / "data"
    for c, label in enumerate("ab"):
        (root / label).mkdir(parents=True)
        for i in range(GOOD):
            write(root / label / f"{i}.png", smooth_rgb(16, 16 + i + GOOD * c), "PNG")
    (root / "b" / "x.png").mkdir()
    _make_specials(root / "a")
    yield root
    _release_fifos(root)


@pytest.fixture(autouse=True)
def _no_reader_left_blocked(tree):
    """A read blocked on a FIFO (a regression) gets its end of file after a while.

    The test then fails on what it read, and no thread is left waiting: a
    thread pool waits for its threads, and would hang the suite after a
    timeout.
    """
    done = threading.Event()

    def release():
        if not done.wait(_HANG_SECONDS):
            while not done.wait(0.2):
                _release_fifos(tree)

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    yield
    done.set()
    thread.join()
    _release_fifos(tree)


def _reasons(bad_files):
    """``{file name: reason}`` of a check report's ``bad_files``."""
    return {os.path.basename(item["path"]): item["reason"] for item in bad_files}


def _assert_reasons(found):
    assert sorted(found) == sorted(REASONS)
    for name, reason in REASONS.items():
        assert re.search(reason, found[name]), (name, found[name])


# -- the one opener ------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", UNREAD)
def test_each_special_file_is_refused_unread_naming_what_it_is(tree, name):
    path = str(tree / "a" / name)
    expected = f"{re.escape(path)}.*{REASONS[name]}"
    with pytest.raises(ImageError, match=expected):
        read_image(path)
    with pytest.raises(ImageError, match=expected):
        FileInput(path).content_key()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", ["fifo.png", "zero.png"])
def test_a_special_file_swapped_in_after_the_stat_is_refused_unread(
    tree, name, monkeypatch
):
    # os.stat sees a regular image; the open finds the special file.
    path, regular = str(tree / "a" / name), str(tree / "a" / "0.png")
    stat = os.stat
    monkeypatch.setattr(
        os, "stat", lambda p, *a, **kw: stat(regular if p == path else p, *a, **kw)
    )
    with pytest.raises(ImageError, match=REASONS[name]):
        read_image(path)


def test_the_size_bound_is_named_and_read_at_each_call(tree, monkeypatch):
    path = tree / "b" / "0.png"
    size = path.stat().st_size
    monkeypatch.setattr("tlsk.images.files.MAX_FILE_BYTES", size - 1)
    expected = rf"larger than the {size - 1} bytes .*MAX_FILE_BYTES\): {size} bytes"
    with pytest.raises(ImageError, match=expected):
        read_image(path)
    with pytest.raises(ImageError, match=expected):
        FileInput(path).content_key()
    monkeypatch.setattr("tlsk.images.files.MAX_FILE_BYTES", size)
    assert read_image(path).shape == (16, 16 + GOOD, 3)


def test_keys_are_hashed_and_non_images_refused_in_bounded_memory(tmp_path):
    path = tmp_path / "disk.jpg"
    with open(path, "wb") as file:
        file.truncate(64 << 20)  # sparse zeros: no image, 64 MB of no disk
    expected = hashlib.sha256(bytes(64 << 20)).digest()
    tracemalloc.start()
    try:
        key = FileInput(path).content_key()
        _, hashing_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with pytest.raises(ImageError, match="not an image file"):
            read_image(path)
        _, decoding_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert key == expected
    assert hashing_peak < 8 << 20, f"hashing took {hashing_peak >> 20} MB"
    assert decoding_peak < 8 << 20, f"refusing took {decoding_peak >> 20} MB"


# -- folders: the Python API and the commands ---------------------------------


@pytest.mark.timeout(20)
def test_a_folder_of_special_files_is_checked_loaded_and_split(tree, tmp_path):
    report = check_image_folder(tree)
    _assert_reasons(_reasons(report["bad_files"]))
    assert report["classes"] == {"a": GOOD, "b": GOOD}
    with pytest.warns(UserWarning, match="skipped 5 of 11 files") as caught:
        paths, labels = load_image_folder(tree)
    for name, reason in REASONS.items():
        assert re.search(f"{name}'?: {reason}", str(caught[0].message)), name
    assert [os.path.basename(p) for p in paths] == ["0.png", "1.png", "2.png"] * 2
    assert labels.tolist() == ["a"] * GOOD + ["b"] * GOOD
    manifest = split_image_folder(tree, tmp_path / "split", val=0, test=0.3)
    _assert_reasons(_reasons(manifest["skipped"]))
    written = [p.name for p in (tmp_path / "split").rglob("*") if p.is_file()]
    assert sorted(written) == sorted(["0.png", "1.png", "2.png"] * 2 + ["split.json"])


@pytest.mark.timeout(20)
def test_check_and_split_commands_skip_special_files_with_their_reason(
    tree, tmp_path, capsys
):
    assert main(["check", str(tree), "--json", "-q"]) == 0
    _assert_reasons(_reasons(json.loads(capsys.readouterr().out)["bad_files"]))
    assert main(["split", str(tree), str(tmp_path / "split"), "--test", "0.3"]) == 0
    err = capsys.readouterr().err
    for name, reason in REASONS.items():
        assert re.search(f"skipped a/{name}: {reason}", err), name
    report = tmp_path / "report"
    assert main(["check", str(tree), "--report", str(report), "-q"]) == 0
    page = (report / "index.html").read_text(encoding="utf-8")
    for name, reason in REASONS.items():
        assert re.search(f"a/{name}</td><td>{reason}", page), name
    assert len(list((report / "thumbs").iterdir())) == 2 * GOOD


@pytest.mark.timeout(20)
def test_a_thumbnail_of_a_special_file_is_none(tree, tmp_path):
    for i, name in enumerate(UNREAD):
        path = str(tree / "a" / name)
        assert write_thumbnail(path, str(tmp_path), f"{i}.jpg") is None, name
    assert not list(tmp_path.iterdir())


# -- transform, predict and extract -------------------------------------------


@pytest.fixture(scope="module")
def extractor():
    return tiny().fit()


@pytest.fixture(scope="module")
def model_file(tree, extractor, tmp_path_factory):
    """A tiny bottleneck model of classes a and b, as ``tlsk train`` saves it."""
    paths = [str(tree / label / f"{i}.png") for label in "ab" for i in range(GOOD)]
    model = make_pipeline(tiny(), LogisticRegression()).fit(paths, list("aaabbb"))
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    save_model(model, str(path), {"classes": ["a", "b"]})
    return path


@pytest.mark.timeout(60, func_only=True)
def test_transform_gives_special_files_nan_rows_naming_each(tree, extractor):
    paths = [str(tree / "a" / "0.png")] + [str(tree / "a" / n) for n in REASONS]
    nan = extractor.set_params(on_error="nan")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = nan.transform(paths)
    finally:
        extractor.set_params(on_error="raise")
    (warning,) = [w for w in caught if w.category is UndecodableImageWarning]
    for name, reason in REASONS.items():
        assert re.search(f"{name}'?: {reason}", str(warning.message)), name
    assert np.isfinite(out[0]).all() and np.isnan(out[1:]).all()


@pytest.mark.timeout(60, func_only=True)
def test_predict_gives_each_special_file_an_error_row(tree, model_file, capsys):
    assert main(["predict", str(model_file), str(tree / "a"), "-q"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    found = {os.path.basename(row["path"]): row for row in rows}
    assert sorted(found) == sorted(["0.png", "1.png", "2.png", *REASONS])
    for name, reason in REASONS.items():
        assert re.search(reason, found[name]["error"]) and not found[name]["label"]
    assert all(found[f"{i}.png"]["label"] == "a" for i in range(GOOD))


@pytest.mark.timeout(60, func_only=True)
def test_extract_skips_special_files_and_broken_links(tree, tmp_path, capsys):
    extract = ["extract", "--cache", str(tmp_path / "features.h5")]
    tiny_options = ["--weights", "none", "--input-size", "32", "--json", "-q"]
    argv = [*extract, str(tree / "a"), "--on-error", "skip", *tiny_options]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["images"], summary["failed"]) == (GOOD + len(REASONS), 5)
    failures = "\n".join(summary["failures"])
    for name, reason in REASONS.items():
        assert re.search(f"{name}'?: {reason}", failures), name
    # A broken link named on the command line is a file that fails, too...
    named = [str(tree / "a" / "dangling.png"), str(tree / "b" / "0.png")]
    assert main([*extract, *named, *tiny_options]) == 0
    assert json.loads(capsys.readouterr().out)["failed"] == 1
    # ... which --on-error raise stops at, naming it.
    assert main([*extract, *named, "--on-error", "raise", *tiny_options]) == 1
    assert re.search(r"dangling\.png.*no such file", capsys.readouterr().err)
