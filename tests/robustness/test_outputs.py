"""What the commands write: only what tlsk wrote is ever replaced (issue 26).

Each promise and the tests that prove it:

- a report folder replaces only a report that tlsk wrote and that holds
  nothing else; never the data read, a folder holding it or one inside it,
  with or without ``--force``; the same rule for ``split`` and ``demo``:
    test_a_report_is_never_written_over_the_data
    test_a_folder_tlsk_did_not_write_is_never_replaced_by_a_report
    test_a_report_tlsk_wrote_is_replaced_only_while_it_holds_only_its_files
    test_split_force_replaces_only_a_split_that_tlsk_wrote
    test_demo_force_reuses_only_a_demo_folder
    test_report::test_a_folder_tlsk_did_not_write_is_never_replaced (Python API)
- ``--force`` replaces regular files (and links) only, never a device, a
  FIFO or a folder:
    test_force_never_replaces_what_is_not_a_regular_file
    test_the_library_never_replaces_what_is_not_a_regular_file
- outputs that collide with each other or with an input are refused before
  any work, and so is a model to share that would name a file of this machine:
    test_colliding_outputs_are_refused_before_any_work
    test_a_model_to_share_that_names_a_local_file_is_refused_before_training
- a failed write changes nothing, and every output is checked before the
  work: figures and model are published together, the error names the file:
    test_a_full_disk_while_training_changes_none_of_the_outputs
    test_an_unwritable_output_folder_is_found_before_training
- temporary files of a killed writer are removed by the next writer, never
  those of a live one:
    test_a_killed_model_writer_leaves_nothing_after_the_next_write
    test_a_live_writers_temporary_file_is_left_alone
    test_a_killed_report_writer_leaves_nothing_after_the_next_report
- names from the data reach the terminal escaped and a spreadsheet as text:
    test_class_names_never_drive_the_terminal_or_a_spreadsheet
    test_csv_cells_that_a_spreadsheet_would_run_become_text
- what a second look found (paths through a link and ``..``, demo folders
  with foreign files, library plots through links, two writers of one
  model, a folder that appears meanwhile, a cache inside the report, forged
  markers and split manifests, links in split parts, escapes in metadata,
  long and byte names, links to devices):
    test_a_link_then_dotdot_names_what_is_written
    test_demo_force_refuses_files_a_demo_did_not_write
    test_library_plots_replace_a_link_never_write_through_it
    test_two_writers_of_one_model_leave_a_pair_that_loads
    test_a_folder_that_appears_while_a_report_is_made_is_kept
    test_a_cache_inside_the_report_is_refused_before_any_work
    test_a_forged_marker_is_no_marker
    test_a_forged_split_manifest_is_not_tlsks
    test_split_force_keeps_a_link_someone_put_in_a_part
    test_metadata_never_drives_the_terminal
    test_long_and_byte_names_are_written
    test_force_never_replaces_a_link_to_what_is_not_a_regular_file
- the command line speaks its own flags in errors and hints:
    test_errors_on_the_command_line_name_its_flags
    test_the_command_line_words_leave_quoted_names_alone
    test_a_class_folder_named_train_is_explained
"""

import errno
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import joblib
import pytest

from tests._datasets import write_image_folder
from tests.robustness._support import leftovers, python
from tlsk._util.files import write_atomically
from tlsk.cli import main
from tlsk.cli._output import csv_bytes, csv_cell, in_cli_words
from tlsk.persistence.model_files import load_model, save_model

TINY = ["--weights", "none", "--input-size", "32", "--batch-size", "8", "-q"]


def _snapshot(folder):
    """Every file under ``folder`` and a digest of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A data folder and a bottleneck model trained on it, written by tlsk train."""
    root = tmp_path_factory.mktemp("project")
    write_image_folder(root / "data", 3, formats=("png",))
    model = root / "model.joblib"
    argv = ["train", str(root / "data"), "--out", str(model), *TINY, "--val", "0"]
    assert main([*argv, "--cache", str(root / "features.h5")]) == 0
    return root


# -- report folders, split and demo folders -----------------------------------


@pytest.mark.parametrize("target", ["data", "data/red", ".", "link-to-data"], ids=str)
def test_a_report_is_never_written_over_the_data(project, capsys, target):
    data = project / "data"
    if target == "link-to-data" and not (project / target).exists():
        os.symlink(data, project / target)
    before = _snapshot(data)
    report = str(project / target)
    for argv in (
        ["check", str(data), "--report", report, "--force", "-q"],
        ["evaluate", str(project / "model.joblib"), str(data), "--report", report],
    ):
        assert main([*argv, "--force", "-q"]) == 1
        err = capsys.readouterr().err
        assert "refusing to write the report folder" in err, err
        assert "which is read" in err
    assert _snapshot(data) == before


def test_a_folder_tlsk_did_not_write_is_never_replaced_by_a_report(
    project, tmp_path, capsys
):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "notes.txt").write_text("mine")
    for argv in (
        ["check", str(project / "data"), "--report", str(mine)],
        ["evaluate", str(project / "model.joblib"), str(project / "data")]
        + ["--report", str(mine)],
    ):
        assert main([*argv, "-q"]) == 1
        assert "exists; pass --force to replace it" in capsys.readouterr().err
        assert main([*argv, "--force", "-q"]) == 1
        err = capsys.readouterr().err
        assert "tlsk did not write it as a report" in err, err
    assert (mine / "sub" / "notes.txt").read_text() == "mine"
    # A file where the report would go is not a folder to replace either.
    (tmp_path / "a-file").write_text("mine")
    argv = ["check", str(project / "data"), "--report", str(tmp_path / "a-file")]
    assert main([*argv, "--force", "-q"]) == 1
    assert "it is a regular file, not a report folder" in capsys.readouterr().err
    assert (tmp_path / "a-file").read_text() == "mine"


def test_a_report_tlsk_wrote_is_replaced_only_while_it_holds_only_its_files(
    project, tmp_path, capsys
):
    report = tmp_path / "report"
    argv = ["check", str(project / "data"), "--report", str(report), "-q"]
    assert main(argv) == 0
    assert main([*argv, "--force"]) == 0  # tlsk's own report: replaced
    assert (report / "index.html").exists()
    (report / "thumbs" / "mine.jpg").write_bytes(b"mine")
    assert main([*argv, "--force"]) == 1
    assert "tlsk did not write 'thumbs/mine.jpg'" in capsys.readouterr().err
    assert (report / "thumbs" / "mine.jpg").read_bytes() == b"mine"
    assert sorted(os.listdir(tmp_path)) == ["report"]  # no temporary left


def test_split_force_replaces_only_a_split_that_tlsk_wrote(project, tmp_path, capsys):
    out = tmp_path / "split"
    (out / "train" / "cat").mkdir(parents=True)
    (out / "train" / "cat" / "mine.jpg").write_bytes(b"not tlsk's")
    argv = ["split", str(project / "data"), str(out), "-q"]
    assert main([*argv, "--force"]) == 1
    assert "tlsk did not write" in capsys.readouterr().err
    assert (out / "train" / "cat" / "mine.jpg").read_bytes() == b"not tlsk's"
    (out / "train" / "cat" / "mine.jpg").unlink()
    (out / "train" / "cat").rmdir()
    assert main([*argv, "--force"]) == 0  # an empty train/ holds nothing to lose
    assert main([*argv, "--force", "--seed", "3"]) == 0  # tlsk's split: replaced
    (out / "val" / "red" / "added.png").write_bytes(b"mine")
    assert main([*argv, "--force"]) == 1
    assert "added.png" in capsys.readouterr().err
    assert (out / "val" / "red" / "added.png").read_bytes() == b"mine"


def test_demo_force_reuses_only_a_demo_folder(tmp_path, capsys):
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "data").mkdir()
    (mine / "data" / "photo.jpg").write_bytes(b"mine")
    assert main(["demo", "--out", str(mine), "--force", "-q"]) == 1
    assert "no earlier 'tlsk demo' made it" in capsys.readouterr().err
    assert _snapshot(mine) == {"data/photo.jpg": hashlib.sha256(b"mine").hexdigest()}


# -- what --force may replace ---------------------------------------------------


def _special_files(folder):
    """A FIFO, a folder and (where mknod is allowed) a character device."""
    made = {"fifo": folder / "fifo.joblib", "folder": folder / "folder.joblib"}
    os.mkfifo(made["fifo"])
    made["folder"].mkdir()
    try:
        os.mknod(folder / "device.joblib", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        made["device"] = folder / "device.joblib"
    except PermissionError:
        pass  # not root: the FIFO and the folder still stand for them
    return made


@pytest.mark.timeout(120)
def test_force_never_replaces_what_is_not_a_regular_file(project, tmp_path, capsys):
    data, model = str(project / "data"), str(project / "model.joblib")
    for kind, path in _special_files(tmp_path).items():
        mode = os.lstat(path).st_mode
        for argv in (
            ["train", data, "--out", str(path), *TINY],
            ["predict", model, data, "--out", str(path)],
            ["evaluate", model, data, "--plot", str(path)],
        ):
            assert main([*argv, "--force", "-q"]) == 1, (kind, argv)
            err = capsys.readouterr().err
            assert "refusing to replace" in err and "only a regular file" in err, err
            assert os.lstat(path).st_mode == mode, (kind, argv)
    assert not (tmp_path / "fifo.json").exists()


def test_the_library_never_replaces_what_is_not_a_regular_file(tmp_path):
    for kind, path in _special_files(tmp_path).items():
        mode = os.lstat(path).st_mode
        with pytest.raises(FileExistsError, match="it is a"):
            save_model({"a": 1}, str(path), force=True)
        with pytest.raises(FileExistsError, match="only a regular file"):
            write_atomically(path, lambda file: file.write(b"x"))
        assert os.lstat(path).st_mode == mode, kind
    assert leftovers(tmp_path) == []


# -- collisions -------------------------------------------------------------------


def test_colliding_outputs_are_refused_before_any_work(
    project, tmp_path, capsys, count_predictions
):
    data, model = project / "data", project / "model.joblib"
    before = _snapshot(project)
    cases = [
        (["train", data, "--out", tmp_path / "m.json"], "the model's metadata"),
        (["train", data, "--out", tmp_path / "m.h5", "--cache", tmp_path / "m.h5"],),
        (["train", data, "--out", model, "--cache", model, "--force"], "--cache"),
        (["evaluate", model, data, "--plot", project / "model.json", "--force"],),
        (["evaluate", model, data, "--plot", model, "--force"], "MODEL"),
        (["predict", model, data, "--out", data / "red" / "red_000.png", "--force"],),
        (
            ["evaluate", model, data, "--report", tmp_path / "r"]
            + ["--plot", tmp_path / "r" / "cm.png"],
            "inside the --report folder",
        ),
    ]
    for argv, *words in cases:
        argv = [str(a) for a in argv] + (TINY if argv[0] == "train" else ["-q"])
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "are the same file" in err or "inside" in err, err
        for word in words:
            assert word in err, (word, err)
    assert count_predictions["images"] == 0  # refused before any work
    assert sorted(os.listdir(tmp_path)) == []
    assert _snapshot(project) == before


def test_a_model_to_share_that_names_a_local_file_is_refused_before_training(
    project, tmp_path, capsys, count_predictions
):
    weights = tmp_path / "mine.weights.h5"
    weights.write_bytes(b"weights of this machine")
    for method in ("bottleneck", "finetune"):
        argv = ["train", str(project / "data"), "--method", method, "--weights"]
        argv += [str(weights), "--out", str(tmp_path / "m.skops"), "-q"]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "must name no weights file" in err and "--weights" in err, err
    assert count_predictions["images"] == 0
    assert sorted(os.listdir(tmp_path)) == ["mine.weights.h5"]


# -- failed writes --------------------------------------------------------------


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("first", ["scratch", "bottleneck"])
def test_a_full_disk_while_training_changes_none_of_the_outputs(
    project, tmp_path, monkeypatch, capsys, first
):
    out = tmp_path / "m.joblib"
    argv = ["train", str(project / "data"), "--out", str(out), *TINY]
    argv += ["--val", "0.34", "--cache", str(project / "features.h5")]
    scratch = ["--method", "scratch", "--epochs", "1", "--monitor-fraction", "0"]
    assert main([*argv, *(scratch if first == "scratch" else [])]) == 0
    before = _snapshot(tmp_path)
    monkeypatch.setattr(joblib, "dump", _no_space)
    assert main([*argv, *scratch, "--force"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {str(out)!r}: No space left on device" in err, err
    assert _snapshot(tmp_path) == before  # no figure replaced, none added
    assert leftovers(tmp_path) == []


@pytest.fixture
def unwritable_folder(tmp_path):
    """A folder this process cannot create a file in (root: one of the kernel's)."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o555)
        yield folder
        folder.chmod(0o755)
        return
    for folder in ("/sys", "/proc/self"):  # root may write anywhere else
        try:
            os.close(os.open(os.path.join(folder, ".tlsk-probe"), os.O_CREAT))
        except OSError:
            yield Path(folder)
            return
    pytest.skip("no folder that root cannot write on this machine")


def test_an_unwritable_output_folder_is_found_before_training(
    project, tmp_path, unwritable_folder, capsys, count_predictions
):
    out = unwritable_folder / "m.joblib"
    argv = ["train", str(project / "data"), "--out", str(out), *TINY]
    assert main([*argv, "--cache", str(tmp_path / "features.h5")]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {str(out)!r}" in err, err
    assert count_predictions["images"] == 0  # found before any work
    assert not (tmp_path / "features.h5").exists()
    assert not out.exists()


# -- temporary files of the dead -------------------------------------------------

_DIE_WHILE_WRITING = """
import os, signal, sys
from tlsk.persistence.model_files import save_model
class Dies:
    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGKILL)
save_model({"big": b"x" * 2**20, "dies": Dies()}, sys.argv[1], force=True)
"""


def _age(path, seconds=60):
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_a_killed_model_writer_leaves_nothing_after_the_next_write(tmp_path):
    path = tmp_path / "m.joblib"
    save_model({"model": "old"}, str(path))
    child = python(_DIE_WHILE_WRITING, path, stderr=subprocess.PIPE)
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    left = leftovers(tmp_path)
    assert left and all(name.startswith(".tmp-m.joblib-") for name in left), left
    assert load_model(path) == {"model": "old"}
    _age(tmp_path / left[0])  # the next run comes later
    save_model({"model": "new"}, str(path), force=True)
    assert leftovers(tmp_path) == []
    assert load_model(path) == {"model": "new"}


_HOLD_A_WRITE = """
import sys, time
from tlsk._util.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    print(tmp, flush=True)
    time.sleep(60)
"""


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    path = tmp_path / "m.joblib"
    child = python(_HOLD_A_WRITE, path, stdout=subprocess.PIPE)
    try:
        tmp = child.stdout.readline().strip()
        _age(tmp)  # old, but its writer holds its lock
        save_model({"model": "mine"}, str(path))
        assert os.path.exists(tmp)
    finally:
        child.kill()
        child.communicate()
    # Somebody else's file with a temporary's name is not tlsk's to remove.
    other = tmp_path / ".tmp-m.joblib-notmine"
    other.write_bytes(b"mine")
    _age(other)
    save_model({"model": "again"}, str(path), force=True)
    assert other.read_bytes() == b"mine"


_DIE_WHILE_REPORTING = """
import os, signal, sys
import numpy as np
import tlsk.evaluation.report as report
def build_and_die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
report.render = build_and_die
report.write_report(sys.argv[1], [sys.argv[2]], ["a"], np.ones((1, 1)), ["a"])
"""


def test_a_killed_report_writer_leaves_nothing_after_the_next_report(project, tmp_path):
    out = tmp_path / "report"
    image = next((project / "data").rglob("*.png"))
    child = python(_DIE_WHILE_REPORTING, out, image, stderr=subprocess.PIPE)
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    (left,) = leftovers(tmp_path)
    _age(tmp_path / left)  # the next run comes later
    argv = ["check", str(project / "data"), "--report", str(out), "-q"]
    assert main(argv) == 0
    assert leftovers(tmp_path) == []
    assert (out / "index.html").exists()


# -- names from the data -----------------------------------------------------------

HOSTILE_CLASSES = ["\x1b[2Jclear", '=HYPERLINK("x")', "@SUM(1)"]


def test_class_names_never_drive_the_terminal_or_a_spreadsheet(tmp_path, capsys):
    data = tmp_path / "data"
    write_image_folder(data, 3, formats=("png",))
    for plain, hostile in zip(["red", "green", "blue"], HOSTILE_CLASSES, strict=True):
        os.rename(data / plain, data / hostile)
    model = tmp_path / "m.joblib"
    assert main(["train", str(data), "--out", str(model), *TINY, "--val", "0.34"]) == 0
    out = capsys.readouterr()
    assert "\x1b" not in out.out + out.err and "\\x1b[2Jclear" in out.out
    assert main(["evaluate", str(model), str(data), "-q"]) == 0
    assert "\x1b" not in capsys.readouterr().out
    assert (
        main(["predict", str(model), str(data), "--out", str(tmp_path / "p.csv")]) == 0
    )
    cells = [
        line.split(",")[1] for line in (tmp_path / "p.csv").read_text().splitlines()
    ]
    assert all(not cell.startswith(("=", "@")) for cell in cells), cells
    assert any(cell.startswith("'=") or cell.startswith("\"'=") for cell in cells)


def test_csv_cells_that_a_spreadsheet_would_run_become_text():
    assert csv_cell('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert [csv_cell(v) for v in ("+cmd", "-1+2", "@SUM(1)", "\tx", "\rx")] == [
        "'+cmd",
        "'-1+2",
        "'@SUM(1)",
        "'\tx",
        "'\rx",
    ]
    # After white space, in full width, after a line break: still formulas.
    for cell in (" =1+1", "\u3000=1+1", "\uff1d1+1", "\uff0b1", "\uff20SUM(A1)"):
        assert csv_cell(cell) == "'" + cell
    assert [csv_cell(v) for v in ("\n=1", "\t-1", "\r1")] == ["'\n=1", "'\t-1", "'\r1"]
    assert [csv_cell(v) for v in ("-0.5", "+1", "cat", 0.5)] == [
        "-0.5",
        "+1",
        "cat",
        0.5,
    ]
    assert csv_bytes(["a"], [["\x1b[2J"]], terminal=True) == b"a\n'\\x1b[2J'\n"
    name = os.fsdecode(b"caf\xe9.png")  # not UTF-8: its bytes come back
    assert csv_bytes(["path"], [[name]]) == b"path\ncaf\xe9.png\n"


# -- the command line's own words -----------------------------------------------------


def test_errors_on_the_command_line_name_its_flags(project, tmp_path, capsys):
    data = str(project / "data")
    argv = ["train", data, "--out", str(tmp_path / "m.joblib"), "--method", "scratch"]
    argv += ["--epochs", "1", "--monitor-fraction", "0.9", *TINY, "--val", "0"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--monitor-fraction 0" in err and "validation_fraction" not in err, err
    # Offline, without ImageNet weights: the flag that goes on without them.
    argv = ["train", data, "--out", str(tmp_path / "m.joblib"), "--input-size", "32"]
    assert main([*argv, "--val", "0", "-q"]) == 1
    err = capsys.readouterr().err
    assert "--weights none" in err and "weights=None" not in err, err
    from tlsk.images.decode import ImageError, open_image_file

    with pytest.raises(ImageError) as raised:
        with open_image_file(next(Path(data).rglob("*.png")), max_pixels=4):
            pass
    words = in_cli_words(raised.value)
    assert "max_pixels=" not in words and "than the limit of 4" in words, words


def test_a_class_folder_named_train_is_explained(project, tmp_path, capsys):
    data = tmp_path / "data"
    write_image_folder(data, 3, formats=("png",))
    os.rename(data / "red", data / "train")
    argv = ["train", str(data), "--out", str(tmp_path / "m.joblib"), *TINY]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "a class may not be named 'train'" in err, err


# -- what a second look found -------------------------------------------------------


def test_a_link_then_dotdot_names_what_is_written(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    os.symlink("elsewhere/deep", "sym")
    shutil.copytree(project / "data", "photos")
    Path("keep.joblib").write_text("mine")
    before = _snapshot(tmp_path / "photos")
    model = str(project / "model.joblib")
    assert main(["check", "photos", "--report", "sym/../photos", "-q"]) == 0
    # photos/red/ beside what sym points to does not exist: nothing to write.
    out = "sym/../photos/red/red_000.png"
    assert main(["predict", model, "photos/blue", "--out", out, "-q"]) == 1
    train = ["train", "photos", "--out", "sym/../keep.joblib", *TINY, "--val", "0"]
    assert main([*train, "--cache", "sym/../f.h5"]) == 0
    # What the kernel names sym/../x is elsewhere/x: written there, not here.
    assert _snapshot(tmp_path / "photos") == before
    assert Path("keep.joblib").read_text() == "mine"
    assert (tmp_path / "elsewhere" / "photos" / "index.html").exists()
    assert (tmp_path / "elsewhere" / "keep.joblib").exists()


def test_demo_force_refuses_files_a_demo_did_not_write(tmp_path, capsys):
    from tlsk._util.output_folders import write_folder_marker

    out = tmp_path / "demo"
    (out / "models").mkdir(parents=True)
    write_folder_marker(out, "demo", files=["models"])
    (out / "models" / "scratch-cnn.joblib").write_text("mine")
    assert main(["demo", "--out", str(out), "--force", "-q"]) == 1
    err = capsys.readouterr().err
    assert "tlsk did not write 'models/scratch-cnn.joblib'" in err, err
    assert (out / "models" / "scratch-cnn.joblib").read_text() == "mine"


def test_library_plots_replace_a_link_never_write_through_it(tmp_path):
    from tlsk.evaluation.plots import plot_confusion_matrix

    (tmp_path / "target.txt").write_text("mine")
    os.symlink("target.txt", tmp_path / "link.png")
    plot_confusion_matrix(["a", "b"], ["a", "a"], path=tmp_path / "link.png")
    assert (tmp_path / "target.txt").read_text() == "mine"
    assert not (tmp_path / "link.png").is_symlink()
    assert (tmp_path / "link.png").read_bytes().startswith(b"\x89PNG")


_SAVE_MANY = """
import sys
from tlsk.persistence.model_files import save_model
for i in range(int(sys.argv[3])):
    save_model({"writer": sys.argv[2], "i": i}, sys.argv[1], force=True)
"""


def test_two_writers_of_one_model_leave_a_pair_that_loads(tmp_path):
    path = tmp_path / "m.joblib"
    save_model({"writer": "first", "i": -1}, str(path))
    writers = [python(_SAVE_MANY, path, name, 40) for name in ("a", "b")]
    failures = loads = 0
    while any(writer.poll() is None for writer in writers):
        try:
            load_model(path)
        except Exception:  # noqa: BLE001 - any failure to load counts
            failures += 1
        loads += 1
    assert [writer.wait() for writer in writers] == [0, 0]
    model = load_model(path)
    assert model["i"] == 39 and failures == 0, (failures, loads)
    assert leftovers(tmp_path) == []


def test_a_folder_that_appears_while_a_report_is_made_is_kept(tmp_path):
    from tlsk.evaluation.report._page import write_report_folder

    out = tmp_path / "report"

    def build(folder):
        out.mkdir()
        (out / "my-notes.txt").write_text("mine")
        return "<html></html>"

    with pytest.raises(FileExistsError, match="exists"):
        write_report_folder(out, False, build)
    assert (out / "my-notes.txt").read_text() == "mine"
    assert leftovers(tmp_path) == []


def test_a_cache_inside_the_report_is_refused_before_any_work(
    project, tmp_path, capsys, count_predictions
):
    report = tmp_path / "rep"
    argv = ["check", str(project / "data"), "--report", str(report), "-q"]
    assert main(argv) == 0
    argv += ["--label-errors", "--cache", str(report / "f.h5"), "--force", *TINY]
    assert main(argv) == 1
    assert "lies inside the --report folder" in capsys.readouterr().err
    assert count_predictions["images"] == 0


DEEP = "[" * 100000 + "]" * 100000


@pytest.mark.parametrize(
    "marker",
    [
        '{"format": "tlsk-output", "kind": "report", "files": [["a"]]}',
        '{"format": "tlsk-output", "kind": "report", "files": ' + DEEP + "}",
        "not json",
    ],
    ids=["unhashable", "deep", "garbage"],
)
def test_a_forged_marker_is_no_marker(project, tmp_path, capsys, marker):
    report = tmp_path / "rep"
    report.mkdir()
    (report / "index.html").write_text("mine")
    (report / ".tlsk-output.json").write_text(marker)
    argv = ["check", str(project / "data"), "--report", str(report), "--force"]
    assert main([*argv, "-q"]) == 1
    assert "tlsk did not write it as a report" in capsys.readouterr().err
    assert (report / "index.html").read_text() == "mine"


@pytest.mark.parametrize(
    "manifest",
    [
        '{"format": "tlsk-split", "parts": [1]}',
        '{"format": "tlsk-split", "parts": {"train": 5}}',
        '{"format": "tlsk-split", "parts": {"train": [{"path": ["x"]}]}}',
        '{"format": "tlsk-split", "parts": ' + DEEP + "}",
    ],
    ids=["list", "number", "path", "deep"],
)
def test_a_forged_split_manifest_is_not_tlsks(project, tmp_path, capsys, manifest):
    out = tmp_path / "split"
    (out / "train").mkdir(parents=True)
    (out / "train" / "mine.png").write_bytes(b"mine")
    (out / "split.json").write_text(manifest)
    assert main(["split", str(project / "data"), str(out), "--force", "-q"]) == 1
    assert "not a split.json that tlsk wrote" in capsys.readouterr().err
    assert (out / "train" / "mine.png").read_bytes() == b"mine"


def test_split_force_keeps_a_link_someone_put_in_a_part(project, tmp_path, capsys):
    out = tmp_path / "split"
    argv = ["split", str(project / "data"), str(out), "-q"]
    assert main(argv) == 0
    os.symlink("../../mine", out / "train" / "mylink")
    assert main([*argv, "--force"]) == 1
    assert "tlsk did not write 'train/mylink'" in capsys.readouterr().err
    assert os.path.islink(out / "train" / "mylink")


def test_metadata_never_drives_the_terminal(project, tmp_path, capsys):
    model = tmp_path / "h.joblib"
    fitted = load_model(project / "model.joblib")
    save_model(fitted, str(model), {"method": "bottleneck\x1b[2J\x1b]0;pwned\x07"})
    assert main(["evaluate", str(model), str(project / "data"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2J" in out, out


def test_the_command_line_words_leave_quoted_names_alone():
    message = "no folder at \"weights='x' force=True\"; pass force=True"
    assert in_cli_words(message) == (
        "no folder at \"weights='x' force=True\"; pass --force"
    )
    assert in_cli_words("the model's file; or pass weights='/w.h5'") == (
        "the model's file; or pass --weights /w.h5"
    )


def test_long_and_byte_names_are_written(project, tmp_path):
    long_name = tmp_path / ("a" * 240 + ".csv")  # a legal name, 244 bytes
    model, data = str(project / "model.joblib"), str(project / "data" / "red")
    assert main(["predict", model, data, "--out", str(long_name), "-q"]) == 0
    assert long_name.read_text().startswith("path,label")
    name = os.path.join(os.fsencode(tmp_path), b"caf\xe9.txt")
    write_atomically(name, lambda file: file.write(b"x"))
    with open(name, "rb") as file:
        assert file.read() == b"x"
    assert leftovers(tmp_path) == []


def test_force_never_replaces_a_link_to_what_is_not_a_regular_file(
    project, tmp_path, capsys
):
    (tmp_path / "folder").mkdir()
    os.symlink("/dev/null", tmp_path / "stdout")
    os.symlink("folder", tmp_path / "to-folder")
    model, data = str(project / "model.joblib"), str(project / "data")
    for name in ("stdout", "to-folder"):
        argv = ["predict", model, data, "--out", str(tmp_path / name), "--force"]
        assert main([*argv, "-q"]) == 1
        assert "it is a symbolic link to a" in capsys.readouterr().err
        assert os.path.islink(tmp_path / name)
