"""tlsk.images.folders on generated folder trees."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests._datasets import write_image_folder
from tlsk import ImageError, find_bad_images, load_image_folder
from tlsk.images.folders import check_image_folder, split_image_folder


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


# --------------------------------------------------------------------------
# check_image_folder
# --------------------------------------------------------------------------


def test_check_a_clean_tree_is_ok(tmp_path):
    write_image_folder(tmp_path, 2)
    report = check_image_folder(tmp_path)
    assert report["ok"] and report["classes"] == {"blue": 2, "green": 2, "red": 2}


def test_check_lists_a_class_without_images_as_empty(tmp_path):
    write_image_folder(tmp_path, 1)
    (tmp_path / "grey").mkdir()
    (tmp_path / "grey" / "empty.png").write_bytes(b"")
    report = check_image_folder(tmp_path)
    assert (report["ok"], report["empty_classes"]) == (False, ["grey"])


def test_check_lists_loose_files_and_linked_folders_as_ignored(tmp_path):
    write_image_folder(tmp_path / "data", 1)
    (tmp_path / "data" / "readme.txt").write_text("hi")
    os.symlink(tmp_path / "data" / "red", tmp_path / "data" / "crimson")
    report = check_image_folder(tmp_path / "data")
    assert report["ignored"] == ["crimson", "readme.txt"]
    assert "crimson" not in report["classes"]


def test_check_does_not_call_copies_within_one_class_duplicates(tmp_path):
    written, _ = write_image_folder(tmp_path, 1)
    red = next(p for p in written if "red" in p)
    shutil.copy(red, tmp_path / "red" / "again.png")
    assert check_image_folder(tmp_path)["duplicates"] == []


# --------------------------------------------------------------------------
# split_image_folder
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"val": 1.0}, r"val must be a fraction in \[0, 1\); received 1.0"),
        ({"test": -0.1}, r"test must be a fraction in \[0, 1\); received -0.1"),
        ({"val": "0.1"}, r"val must be a fraction in \[0, 1\); received '0.1'"),
        ({"val": 0.6, "test": 0.4}, "val \\+ test must be less than 1"),
        ({"seed": -1}, "seed must be a non-negative int; received -1"),
    ],
)
def test_split_bad_arguments_are_named(tmp_path, kwargs, match):
    write_image_folder(tmp_path / "data", 3)
    with pytest.raises(ValueError, match=match):
        split_image_folder(tmp_path / "data", tmp_path / "out", **kwargs)


def test_split_refuses_root_inside_out(tmp_path):
    write_image_folder(tmp_path / "out" / "data", 3)
    with pytest.raises(ValueError, match="out must be outside root"):
        split_image_folder(tmp_path / "out" / "data", tmp_path / "out")


def test_split_refuses_a_non_empty_out_without_force(tmp_path):
    write_image_folder(tmp_path / "data", 3)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    with pytest.raises(FileExistsError, match="pass force=True"):
        split_image_folder(tmp_path / "data", tmp_path / "out")


def test_split_a_zero_fraction_leaves_its_part_empty(tmp_path):
    write_image_folder(tmp_path / "data", 5)
    manifest = split_image_folder(tmp_path / "data", tmp_path / "out", val=0)
    assert manifest["parts"]["val"] == [] and not (tmp_path / "out" / "val").exists()


def test_split_returns_what_split_json_holds(tmp_path):
    write_image_folder(tmp_path / "data", 3)
    manifest = split_image_folder(tmp_path / "data", tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "split.json").read_text())
    assert manifest == on_disk


def test_split_of_a_class_does_not_depend_on_the_other_classes(tmp_path):
    write_image_folder(tmp_path / "data", 10)
    before = split_image_folder(tmp_path / "data", tmp_path / "a", seed=3)
    shutil.rmtree(tmp_path / "data" / "green")
    after = split_image_folder(tmp_path / "data", tmp_path / "b", seed=3)

    def red(manifest):
        return {
            part: [entry["source"] for entry in entries if entry["class"] == "red"]
            for part, entries in manifest["parts"].items()
        }

    assert red(before) == red(after)


def test_split_copies_a_linked_file_as_a_regular_file(tmp_path):
    write_image_folder(tmp_path / "data", 3)
    outside = tmp_path / "photo.png"
    shutil.copy(tmp_path / "data" / "red" / "red_000.png", outside)
    os.remove(tmp_path / "data" / "red" / "red_000.png")
    os.symlink(outside, tmp_path / "data" / "red" / "link.png")
    manifest = split_image_folder(tmp_path / "data", tmp_path / "out")
    (entry,) = [
        entry
        for entries in manifest["parts"].values()
        for entry in entries
        if entry["source"] == "red/link.png"
    ]
    copy = tmp_path / "out" / entry["path"]
    assert not copy.is_symlink() and copy.read_bytes() == outside.read_bytes()


def test_identical_files_of_a_class_stay_in_one_part(tmp_path):
    from PIL import Image

    from tlsk import split_image_folder

    write_image_folder(tmp_path / "data", 6)
    copies = tmp_path / "data" / "red"
    Image.new("RGB", (16, 16), (250, 0, 0)).save(copies / "same_0.png")
    for i in range(1, 8):
        (copies / f"same_{i}.png").write_bytes((copies / "same_0.png").read_bytes())
    manifest = split_image_folder(tmp_path / "data", tmp_path / "out", seed=3)
    parts_of_copies = {
        part
        for part, items in manifest["parts"].items()
        for item in items
        if item["source"].startswith("red/same_")
    }
    assert len(parts_of_copies) == 1
