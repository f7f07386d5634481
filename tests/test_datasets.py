"""load_image_folder and find_bad_images on generated folder trees."""

import os
from pathlib import Path

import numpy as np
import pytest

from tests._datasets import write_image_folder
from tlsk import ImageError, find_bad_images, load_image_folder


def test_folder_per_class_gives_sorted_paths_and_labels(tmp_path):
    written, _ = write_image_folder(tmp_path, 3)
    paths, labels = load_image_folder(tmp_path)
    assert paths == sorted(
        written, key=lambda p: (os.path.basename(os.path.dirname(p)), p)
    )
    assert list(np.unique(labels)) == ["blue", "green", "red"]
    assert all(
        os.path.basename(os.path.dirname(p)) == y
        for p, y in zip(paths, labels, strict=True)
    )


def test_files_in_nested_folders_belong_to_the_top_class(tmp_path):
    written, _ = write_image_folder(tmp_path, 1)
    nested = tmp_path / "red" / "more"
    nested.mkdir()
    red_image = next(p for p in written if "red" in p)
    (nested / "x.png").write_bytes(Path(red_image).read_bytes())
    paths, labels = load_image_folder(tmp_path)
    assert labels[paths.index(str(nested / "x.png"))] == "red"


def test_hidden_files_and_folders_are_ignored(tmp_path):
    write_image_folder(tmp_path, 1)
    (tmp_path / "red" / ".DS_Store").write_bytes(b"\0\1junk")
    (tmp_path / ".git").mkdir()
    paths, labels = load_image_folder(tmp_path)
    assert len(paths) == 3 and ".git" not in labels


def test_symlink_loop_does_not_trap_the_walk(tmp_path):
    write_image_folder(tmp_path, 1)
    os.symlink(tmp_path / "red", tmp_path / "red" / "loop")
    paths, _ = load_image_folder(tmp_path)
    assert len(paths) == 3


def test_bad_files_are_skipped_with_a_warning_naming_each(tmp_path):
    write_image_folder(tmp_path, 2)
    (tmp_path / "red" / "empty.jpg").write_bytes(b"")
    (tmp_path / "blue" / "notes.jpg").write_text("hello")
    with pytest.warns(UserWarning, match=r"skipped 2 of 8.*empty\.jpg.*|notes\.jpg"):
        paths, labels = load_image_folder(tmp_path)
    assert len(paths) == len(labels) == 6
    assert not any(p.endswith(("empty.jpg", "notes.jpg")) for p in paths)


def test_bad_files_raise_when_asked(tmp_path):
    write_image_folder(tmp_path, 1)
    (tmp_path / "red" / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty.jpg"):
        load_image_folder(tmp_path, on_error="raise")


def test_check_false_lists_without_decoding(tmp_path):
    write_image_folder(tmp_path, 1)
    (tmp_path / "red" / "empty.jpg").write_bytes(b"")
    paths, _ = load_image_folder(tmp_path, check=False)
    assert len(paths) == 4


def test_find_bad_images_reports_path_and_reason(tmp_path):
    good, _ = write_image_folder(tmp_path, 1)
    truncated = tmp_path / "half.jpg"
    data = Path(next(p for p in good if p.endswith(".jpg"))).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    errors = find_bad_images([*good, str(truncated)])
    assert [e.path for e in errors] == [str(truncated)]
    assert "truncated" in errors[0].reason


@pytest.mark.parametrize(
    "kwargs, match",
    [({"on_error": "skip"}, "on_error must be one of"), ({}, "no class folders")],
)
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_image_folder(tmp_path, **kwargs)


def test_missing_root_is_named(tmp_path):
    with pytest.raises(ValueError, match="nowhere"):
        load_image_folder(tmp_path / "nowhere")
