"""`tlsk check` and `tlsk split`, through main(argv) and in real subprocesses."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests._datasets import write_image_folder
from tlsk.cli import main

PARTS = ("train", "val", "test")


def run_tlsk(*args, code=None):
    """``python -m tlsk ARGS`` (or ``python -c CODE``) in a fresh interpreter."""
    command = ["-c", code, *args] if code else ["-m", "tlsk", *args]
    return subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=120,
    )


@pytest.fixture
def data(tmp_path):
    """A clean tree: red, green and blue, 10 images each."""
    write_image_folder(tmp_path / "data", 10)
    return tmp_path / "data"


@pytest.fixture
def bad_data(data):
    """``data`` plus an empty, a truncated and a text file, and a duplicate."""
    (data / "red" / "empty.jpg").write_bytes(b"")
    jpeg = (data / "red" / "red_003.jpg").read_bytes()
    (data / "green" / "half.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (data / "blue" / "notes.png").write_text("not an image")
    shutil.copy(data / "red" / "red_003.jpg", data / "blue" / "copy.jpg")
    return data


def check_json(capsys, *args):
    assert main(["check", *map(str, args), "--json", "-q"]) == 0
    return json.loads(capsys.readouterr().out)


def split(capsys, *args):
    code = main(["split", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def manifest(out):
    return json.loads((out / "split.json").read_text(encoding="utf-8"))


def files_below(folder):
    """Relative path -> bytes (or link target) of everything below ``folder``."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            relative = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[relative] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                found[relative] = Path(path).read_bytes()
    return found


def write_png(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path, "PNG")


# --------------------------------------------------------------------------
# Both commands
# --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "split"])
def test_help_shows_an_example(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"example:\n  tlsk {command} data/pets" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["check", "split"])
def test_missing_dir_is_one_line_without_traceback(tmp_path, capsys, command):
    argv = [command, str(tmp_path / "nowhere"), "-q"]
    if command == "split":
        argv.append(str(tmp_path / "out"))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err and "Traceback" not in err


def test_check_and_split_do_not_import_tensorflow(data, tmp_path):
    code = (
        "import json, sys\n"
        "from tlsk.cli import main\n"
        "codes = [main(['check', sys.argv[1], '-q']),\n"
        "         main(['split', sys.argv[1], sys.argv[2], '-q'])]\n"
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "print(json.dumps([codes, heavy]))\n"
    )
    result = run_tlsk(str(data), str(tmp_path / "out"), code=code)
    assert json.loads(result.stdout.splitlines()[-1]) == [[0, 0], []], result.stderr


# --------------------------------------------------------------------------
# tlsk check
# --------------------------------------------------------------------------


def test_check_prints_images_per_class(data, capsys):
    assert main(["check", str(data)]) == 0
    out = capsys.readouterr().out
    assert "30 images in 3 classes" in out
    assert [line.split() for line in out.splitlines()[1:4]] == [
        ["blue", "10"],
        ["green", "10"],
        ["red", "10"],
    ]


def test_check_json_follows_the_documented_schema(bad_data, capsys):
    report = check_json(capsys, bad_data)
    assert set(report) == {
        "format",
        "version",
        "root",
        "ok",
        "classes",
        "n_images",
        "n_bad",
        "bad_files",
        "duplicates",
        "empty_classes",
        "ignored",
    }
    assert (report["format"], report["version"]) == ("tlsk-check", 1)
    assert report["classes"] == {"blue": 11, "green": 10, "red": 10}


def test_check_names_each_bad_file_with_its_reason(bad_data, capsys):
    bad = {
        item["path"]: item["reason"]
        for item in check_json(capsys, bad_data)["bad_files"]
    }
    assert set(bad) == {"red/empty.jpg", "green/half.jpg", "blue/notes.png"}
    assert "empty" in bad["red/empty.jpg"]
    assert "truncated" in bad["green/half.jpg"]
    assert "not an image" in bad["blue/notes.png"]


def test_check_reports_the_same_image_in_two_classes(bad_data, capsys):
    duplicates = check_json(capsys, bad_data)["duplicates"]
    assert [(d["classes"], d["paths"]) for d in duplicates] == [
        (["blue", "red"], ["blue/copy.jpg", "red/red_003.jpg"])
    ]


def test_check_text_lists_bad_files_and_duplicates(bad_data, capsys):
    main(["check", str(bad_data)])
    out = capsys.readouterr().out
    assert "  green/half.jpg: image file is truncated" in out
    assert "  blue/copy.jpg = red/red_003.jpg" in out
    assert out.endswith("problems found\n")


@pytest.mark.parametrize(
    "tree, strict, expected",
    [
        ("data", False, 0),
        ("data", True, 0),
        ("bad_data", False, 0),
        ("bad_data", True, 1),
    ],
)
def test_check_fails_only_with_strict_and_problems(request, tree, strict, expected):
    root = request.getfixturevalue(tree)
    argv = ["check", str(root), "-q"] + (["--strict"] if strict else [])
    assert main(argv) == expected


def test_check_results_on_stdout_notes_on_stderr_silenced_by_quiet(data, capsys):
    main(["check", str(data)])
    loud = capsys.readouterr()
    main(["check", str(data), "--quiet"])
    quiet = capsys.readouterr()
    assert "checking" in loud.err and quiet.err == ""
    assert loud.out == quiet.out != ""


def test_check_in_a_subprocess(bad_data):
    result = run_tlsk("check", str(bad_data), "--json", "--strict")
    assert result.returncode == 1
    assert json.loads(result.stdout)["n_bad"] == 3


# --------------------------------------------------------------------------
# tlsk split
# --------------------------------------------------------------------------


def test_split_is_stratified_into_part_and_class_folders(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert split(capsys, data, out, "--val", "0.2", "--test", "0.3")[0] == 0
    counts = {
        (part, label): len(os.listdir(out / part / label))
        for part in PARTS
        for label in ("red", "green", "blue")
    }
    expected = {"train": 5, "val": 2, "test": 3}
    assert counts == {(p, c): expected[p] for p, c in counts}


def test_split_prints_the_counts_table(data, tmp_path, capsys):
    _, out, _ = split(capsys, data, tmp_path / "out")
    assert [line.split() for line in out.splitlines()[:5]] == [
        ["class", "train", "val", "test"],
        ["blue", "8", "1", "1"],
        ["green", "8", "1", "1"],
        ["red", "8", "1", "1"],
        ["total", "24", "3", "3"],
    ]


def test_a_class_just_big_enough_gets_one_image_in_each_part(tmp_path, capsys):
    for i in range(3):
        write_png(tmp_path / "data" / "small" / f"{i}.png", (i, 1, 2))
        write_png(tmp_path / "data" / "other" / f"{i}.png", (i, 3, 4))
    split(capsys, tmp_path / "data", tmp_path / "out")
    counts = manifest(tmp_path / "out")["counts"]
    assert counts == {part: {"other": 1, "small": 1} for part in PARTS}


def test_a_class_too_small_to_split_is_an_error_naming_it(data, tmp_path, capsys):
    for i in range(2):
        write_png(data / "tiny" / f"{i}.png", (i, 5, 6))
    code, _, err = split(capsys, data, tmp_path / "out")
    assert code == 1
    assert "'tiny' (2)" in err and "at least 3 distinct images" in err
    assert not (tmp_path / "out").exists()


def test_a_small_class_splits_when_a_part_is_dropped(data, tmp_path, capsys):
    for i in range(2):
        write_png(data / "tiny" / f"{i}.png", (i, 5, 6))
    code, _, _ = split(capsys, data, tmp_path / "out", "--test", "0")
    assert code == 0
    assert manifest(tmp_path / "out")["counts"]["val"]["tiny"] == 1


def test_the_same_seed_gives_the_same_split(data, tmp_path, capsys):
    split(capsys, data, tmp_path / "a", "--seed", "7")
    split(capsys, data, tmp_path / "b", "--seed", "7")
    assert manifest(tmp_path / "a")["parts"] == manifest(tmp_path / "b")["parts"]


def test_another_seed_gives_another_split(data, tmp_path, capsys):
    split(capsys, data, tmp_path / "a", "--seed", "7")
    split(capsys, data, tmp_path / "b", "--seed", "8")
    assert manifest(tmp_path / "a")["parts"] != manifest(tmp_path / "b")["parts"]


def test_manifest_lists_exactly_the_files_written(bad_data, tmp_path, capsys):
    out = tmp_path / "out"
    split(capsys, bad_data, out)
    listed = {
        entry["path"] for part in manifest(out)["parts"].values() for entry in part
    }
    on_disk = {
        path.replace(os.sep, "/") for path in files_below(out) if path != "split.json"
    }
    on_disk = {path for path in on_disk if (out / path).is_file()}
    assert listed == on_disk and len(listed) == 31


def test_copies_have_the_source_bytes(data, tmp_path, capsys):
    out = tmp_path / "out"
    split(capsys, data, out)
    entry = manifest(out)["parts"]["test"][0]
    copy = out / entry["path"]
    assert not copy.is_symlink()
    assert copy.read_bytes() == (data / entry["source"]).read_bytes()
    assert copy.stat().st_ino != (data / entry["source"]).stat().st_ino


def test_bad_files_are_skipped_with_a_report_on_stderr(bad_data, tmp_path, capsys):
    out = tmp_path / "out"
    _, _, err = split(capsys, bad_data, out, "--quiet")
    assert "skipped green/half.jpg: image file is truncated" in err
    assert [bad["path"] for bad in manifest(out)["skipped"]] == [
        "blue/notes.png",
        "green/half.jpg",
        "red/empty.jpg",
    ]
    assert not any(name.endswith("half.jpg") for name in files_below(out))


def test_duplicates_across_classes_are_reported_on_stderr(bad_data, tmp_path, capsys):
    _, _, err = split(capsys, bad_data, tmp_path / "out")
    assert (
        "same image in two classes (kept in both): blue/copy.jpg = red/red_003.jpg"
        in err
    )


def test_a_non_empty_out_is_refused_and_left_alone(data, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = split(capsys, data, out)
    assert code == 1
    assert f"{str(out)!r} is not empty; use --force" in err
    assert files_below(out) == {"keep.txt": b"mine"}


def test_force_replaces_an_old_split_and_keeps_other_files(data, tmp_path, capsys):
    out = tmp_path / "out"
    split(capsys, data, out, "--seed", "1")
    (out / "notes.txt").write_text("mine")
    assert split(capsys, data, out, "--seed", "2", "--force")[0] == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert manifest(out)["seed"] == 2
    # A file added to a part is not the split's to remove.
    added = out / "train" / "red" / "added.png"
    shutil.copy(data / "red" / "red_003.jpg", added)
    code, _, err = split(capsys, data, out, "--seed", "3", "--force")
    assert code == 1 and "tlsk did not write 'train/red/added.png'" in err
    assert added.exists() and manifest(out)["seed"] == 2


def test_force_removes_a_linked_part_without_following_it(data, tmp_path, capsys):
    outside = tmp_path / "outside"
    write_png(outside / "precious.png", (1, 2, 3))
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside, out / "train")
    assert split(capsys, data, out, "--force")[0] == 0
    assert files_below(outside) == {
        "precious.png": (outside / "precious.png").read_bytes()
    }
    assert not (out / "train").is_symlink()


def test_out_inside_dir_is_refused(data, capsys):
    code, _, err = split(capsys, data, data / "split")
    assert code == 1 and "out must be outside root" in err


@pytest.mark.parametrize(
    "option, value",
    [("--val", "1"), ("--test", "-0.1"), ("--val", "x"), ("--seed", "-1")],
)
def test_bad_option_values_are_usage_errors(data, tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["split", str(data), str(tmp_path / "out"), option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_val_and_test_leaving_nothing_to_train_is_an_error(data, tmp_path, capsys):
    code, _, err = split(
        capsys, data, tmp_path / "out", "--val", "0.5", "--test", "0.5"
    )
    assert code == 1 and "val + test must be less than 1" in err


def test_link_makes_hard_links(data, tmp_path, capsys):
    out = tmp_path / "out"
    split(capsys, data, out, "--link")
    entry = manifest(out)["parts"]["train"][0]
    assert os.path.samefile(out / entry["path"], data / entry["source"])
    assert manifest(out)["written_as"] == {"copy": 0, "hardlink": 30, "symlink": 0}


def test_link_falls_back_to_symbolic_links(data, tmp_path, capsys, monkeypatch):
    def no_hard_links(source, target):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_hard_links)
    out = tmp_path / "out"
    split(capsys, data, out, "--link")
    entry = manifest(out)["parts"]["val"][0]
    assert os.readlink(out / entry["path"]) == os.path.realpath(data / entry["source"])


def test_hostile_names_are_kept_inside_out(tmp_path, capsys):
    data = tmp_path / "data"
    names = ["evil..png", "photo é 1.png", "a b.png", "..evil.png"]
    for i, name in enumerate(names):
        write_png(data / "my class é" / name, (i, 7, 7))
        write_png(data / "plain" / name, (i, 8, 8))
    out = tmp_path / "out"
    assert split(capsys, data, out)[0] == 0
    written = {
        os.path.realpath(os.path.join(out, path))
        for path in files_below(out)
        if (out / path).is_file()
    }
    assert written and all(path.startswith(str(out) + os.sep) for path in written)
    assert set(os.listdir(tmp_path)) == {"data", "out"}


def test_hostile_names_are_kept_as_they_are(tmp_path, capsys):
    data = tmp_path / "data"
    names = ["evil..png", "photo é 1.png", "a b.png"]
    for i, name in enumerate(names):
        write_png(data / "my class é" / name, (i, 7, 7))
        write_png(data / "plain" / name, (i, 8, 8))
    out = tmp_path / "out"
    split(capsys, data, out)
    written = {
        entry["path"].split("/", 1)[1]
        for part in manifest(out)["parts"].values()
        for entry in part
    }
    assert {f"my class é/{name}" for name in names} <= written
    assert all((out / part / "my class é").is_dir() for part in PARTS)


def test_links_in_dir_pointing_outside_never_lead_writes_outside(tmp_path, capsys):
    data = tmp_path / "data"
    write_image_folder(data, 3)
    outside = tmp_path / "outside"
    write_png(outside / "elsewhere.png", (9, 9, 9))
    os.symlink(outside / "elsewhere.png", data / "red" / "link.png")
    os.symlink(outside, data / "linked-class")
    before = files_below(outside)
    out = tmp_path / "out"
    for link in ([], ["--link"]):
        assert split(capsys, data, out, "--force", *link)[0] == 0
        assert files_below(outside) == before
        assert "linked-class" not in manifest(out)["classes"]


def test_split_in_a_subprocess(data, tmp_path):
    out = tmp_path / "out"
    result = run_tlsk("split", str(data), str(out), "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert manifest(out)["counts"]["test"] == {"blue": 1, "green": 1, "red": 1}


def test_split_in_a_subprocess_refuses_a_non_empty_out(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_tlsk("split", str(data), str(out), "-q")
    assert result.returncode == 1
    assert (
        result.stderr.startswith("tlsk split: error: ")
        and result.stderr.count("\n") == 1
    )
