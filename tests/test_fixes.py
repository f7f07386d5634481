"""Fixes to a data folder (tlsk.images.fixes, tlsk check --apply / --undo):
real files in a temporary folder, every byte and folder compared before and
after; processes killed with SIGKILL at every step of the journal and the
moves (tests/_fixes_worker.py)."""

import argparse
import csv
import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests._image_files import encode, random_rgb
from tlsk.cli import CommandError
from tlsk.cli._fixes import add_fixes_arguments, fixes_requested, run_fixes
from tlsk.images.fixes import (
    Fix,
    FixesError,
    apply_fixes,
    journal_path,
    plan,
    read_fixes,
    system_calls,
    undo_fixes,
)

WORKER = str(Path(__file__).with_name("_fixes_worker.py"))

FILES = (
    "cat/a.png",
    "cat/b.png",
    "cat/sub/c.png",
    "cat/sub/a.png",
    'cat/x, "y".png',
    "cat/été ü.png",
    "dog/a.png",
    "dog/d.png",
)

# The fixes most tests apply: a relabel whose name is taken, a relabel out of
# a sub-folder into a new class, a removal, a keep, names that need quoting.
ROWS = (
    ("cat/a.png", "relabel", "dog", "label error"),
    ("cat/sub/c.png", "relabel", "bird", "label error"),
    ("cat/b.png", "remove", "", "near duplicate"),
    ('cat/x, "y".png', "remove", "", "bad file"),
    ("cat/été ü.png", "relabel", "dog", ""),
    ("dog/d.png", "keep", "", "label error"),
)

# Fewer, for the tests that kill a process at each step: a taken name, a new
# class folder, a new quarantine, a keep.
CRASH_ROWS = (ROWS[0], ROWS[1], ROWS[2], ROWS[5])


def _data(folder):
    """A data folder of small PNG files, each of its own content."""
    root = folder / "data"
    for i, name in enumerate(FILES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(random_rgb(6, 6, seed=i), "PNG"))
    return root


def _tree(folder):
    """Everything under ``folder`` (but the CSVs, in ``in/``): each folder,
    file (its bytes) and link."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        if dirpath == str(folder) and "in" in dirnames:
            dirnames.remove("in")
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            key = os.path.relpath(path, folder)
            if os.path.islink(path):
                found[key] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[key] = ("folder",)
            else:
                found[key] = ("file", Path(path).read_bytes())
    return found


def _csv(path, rows, header=("file", "action", "label", "reason")):
    """Write ``rows`` as a CSV file named as ``path``, in the folder ``in/``."""
    path = path.parent / "in" / path.name
    path.parent.mkdir(exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _journal(root):
    return [
        json.loads(line)
        for line in Path(journal_path(root)).read_bytes().split(b"\n")[:-1]
    ]


@pytest.fixture
def data(tmp_path):
    return _data(tmp_path)


# -- apply and undo ------------------------------------------------------------


def test_apply_moves_as_the_rows_say_and_undo_restores_every_byte_and_folder(
    tmp_path, data
):
    before = _tree(tmp_path)
    content = {name: (data / name).read_bytes() for name in FILES}
    found = read_fixes(_csv(tmp_path / "fixes.csv", ROWS), data)
    assert [(f.file, f.action, f.label) for f in found] == [
        (file, action, label or None) for file, action, label, _ in ROWS
    ]
    done = apply_fixes(data, found)

    quarantine = tmp_path / "data.quarantine"
    moved = {(m.action, m.file, m.destination, m.renamed) for m in done.moved}
    assert moved == {
        ("relabel", "cat/a.png", str(data / "dog" / "a~cat.png"), True),
        ("relabel", "cat/sub/c.png", str(data / "bird" / "c.png"), False),
        ("remove", "cat/b.png", str(quarantine / "cat" / "b.png"), False),
        ("remove", 'cat/x, "y".png', str(quarantine / "cat" / 'x, "y".png'), False),
        ("relabel", "cat/été ü.png", str(data / "dog" / "été ü.png"), False),
    }
    assert done.kept == ["dog/d.png"] and done.already == []
    assert (data / "dog" / "a~cat.png").read_bytes() == content["cat/a.png"]
    assert (data / "dog" / "a.png").read_bytes() == content["dog/a.png"]
    assert (data / "bird" / "c.png").read_bytes() == content["cat/sub/c.png"]
    assert (quarantine / "cat" / "b.png").read_bytes() == content["cat/b.png"]
    assert sorted(os.listdir(data / "cat")) == ["sub"]
    assert sorted(os.listdir(data / "cat" / "sub")) == ["a.png"]
    records = _journal(data)
    assert records[0] == {"format": "tlsk-fixes", "root": str(data), "version": 1}
    assert [r["op"] for r in records[1:]].count("move") == 5
    assert [r for r in records if r.get("op") == "keep"][0]["file"] == "dog/d.png"

    undone = undo_fixes(data)
    assert undone.complete and undone.problems == []
    assert len(undone.restored) == 5
    assert set(undone.folders_removed) == {
        str(data / "bird"),
        str(quarantine / "cat"),
        str(quarantine),
    }
    assert _tree(tmp_path) == before


def test_a_removed_file_is_never_deleted_even_when_its_quarantine_name_is_taken(
    tmp_path, data
):
    first = (data / "cat" / "b.png").read_bytes()
    apply_fixes(data, [Fix("cat/b.png", "remove")])
    (data / "cat" / "b.png").write_bytes(b"another file, same name")
    done = apply_fixes(data, [Fix("cat/b.png", "remove")])
    quarantine = tmp_path / "data.quarantine" / "cat"
    assert done.moved[0].destination == str(quarantine / "b~2.png")
    assert done.moved[0].renamed
    assert (quarantine / "b.png").read_bytes() == first
    assert (quarantine / "b~2.png").read_bytes() == b"another file, same name"
    # Newest first: the second file goes back, the first finds its place taken.
    undone = undo_fixes(data)
    assert (data / "cat" / "b.png").read_bytes() == b"another file, same name"
    assert (
        not undone.complete and "'cat/b.png' holds another file" in (undone.problems[0])
    )
    assert (quarantine / "b.png").read_bytes() == first
    (data / "cat" / "b.png").rename(tmp_path / "kept aside.png")
    assert undo_fixes(data).complete
    assert (data / "cat" / "b.png").read_bytes() == first
    assert not (tmp_path / "data.quarantine").exists()


def test_taken_names_get_new_names_in_row_order(tmp_path, data):
    rows = [("cat/sub/a.png", "relabel", "dog", ""), ("cat/a.png", "relabel", "dog")]
    done = apply_fixes(data, read_fixes(_csv(tmp_path / "f.csv", rows), data))
    assert [os.path.basename(m.destination) for m in done.moved] == [
        "a~cat.png",
        "a~cat~2.png",
    ]
    assert (data / "dog" / "a.png").exists()


def test_a_second_apply_of_the_same_fixes_moves_nothing(tmp_path, data):
    path = _csv(tmp_path / "fixes.csv", ROWS)
    apply_fixes(data, read_fixes(path, data))
    after = _tree(data)
    again = apply_fixes(data, read_fixes(path, data))
    assert again.moved == [] and len(again.already) == 5
    assert again.kept == ["dog/d.png"]
    assert _tree(data) == after


def test_a_file_moved_by_earlier_fixes_cannot_take_another_action(tmp_path, data):
    apply_fixes(data, [Fix("cat/a.png", "relabel", "dog")])
    with pytest.raises(FixesError, match=r"earlier fixes moved it to .*a~cat\.png"):
        apply_fixes(data, [Fix("cat/a.png", "remove")])


def test_undo_overwrites_nothing_and_finishes_once_the_place_is_free(tmp_path, data):
    before = _tree(tmp_path)
    apply_fixes(data, [Fix("cat/b.png", "remove"), Fix("cat/a.png", "relabel", "dog")])
    (data / "cat" / "b.png").write_bytes(b"mine")
    undone = undo_fixes(data)
    assert not undone.complete
    assert [m.file for m in undone.restored] == ["cat/a.png"]
    assert "'cat/b.png' holds another file" in undone.problems[0]
    assert (data / "cat" / "b.png").read_bytes() == b"mine"
    assert (tmp_path / "data.quarantine" / "cat" / "b.png").exists()
    assert os.path.exists(journal_path(data))
    (data / "cat" / "b.png").unlink()
    assert undo_fixes(data).complete
    assert _tree(tmp_path) == before


def test_undo_leaves_a_moved_file_that_was_changed_since(tmp_path, data):
    apply_fixes(data, [Fix("cat/a.png", "relabel", "dog")])
    (data / "dog" / "a~cat.png").write_bytes(b"edited")
    undone = undo_fixes(data)
    assert not undone.complete
    assert "holds another file (changed since)" in undone.problems[0]
    assert (data / "dog" / "a~cat.png").read_bytes() == b"edited"
    assert not (data / "cat" / "a.png").exists()


def test_undo_keeps_a_folder_the_fixes_created_once_it_holds_a_file(tmp_path, data):
    apply_fixes(data, [Fix("cat/a.png", "relabel", "bird")])
    (data / "bird" / "new.png").write_bytes(b"added by hand")
    undone = undo_fixes(data)
    assert undone.complete and undone.folders_removed == []
    assert os.listdir(data / "bird") == ["new.png"]


def test_undo_without_fixes_does_nothing(tmp_path, data):
    before = _tree(tmp_path)
    undone = undo_fixes(data)
    assert undone.complete and undone.restored == []
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("mode", ["copy", "no hard links"])
def test_moves_across_file_systems_and_without_hard_links_round_trip(
    tmp_path, data, monkeypatch, mode
):
    if mode == "copy":
        monkeypatch.setattr(plan, "same_device", lambda a, b: False)
    else:

        def no_links(source, destination):
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(system_calls, "link", no_links)
    before = _tree(tmp_path)
    apply_fixes(data, read_fixes(_csv(tmp_path / "fixes.csv", ROWS), data))
    records = _journal(data)
    how = {r["how"] for r in records if r.get("op") == "move"}
    assert how == ({"copy"} if mode == "copy" else {"link"})
    assert (tmp_path / "data.quarantine" / "cat" / "b.png").exists()
    assert not (data / "cat" / "b.png").exists()
    assert undo_fixes(data).complete
    assert _tree(tmp_path) == before


def test_a_quarantine_elsewhere_is_used_and_undone(tmp_path, data):
    before = _tree(tmp_path)
    elsewhere = tmp_path / "held" / "back"
    done = apply_fixes(data, [Fix("cat/sub/c.png", "remove")], quarantine=elsewhere)
    assert done.moved[0].destination == str(elsewhere / "cat" / "sub" / "c.png")
    assert undo_fixes(data).complete
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("inside", ["data/cat/q", "data", "."])
def test_a_quarantine_inside_the_data_or_holding_it_is_refused(tmp_path, data, inside):
    with pytest.raises(FixesError, match="quarantine must be outside the data"):
        apply_fixes(data, [Fix("cat/b.png", "remove")], quarantine=tmp_path / inside)


def test_names_that_are_not_utf8_are_read_and_moved_exactly(tmp_path, data):
    name = os.fsdecode(b"cat/caf\xe9 \xff.png")
    (data / name).write_bytes(b"latin-1 name")
    csv_path = tmp_path / "fixes.csv"
    csv_path.write_bytes(b'file,action,label\n"cat/caf\xe9 \xff.png",relabel,dog\n')
    done = apply_fixes(data, read_fixes(csv_path, data))
    assert os.fsencode(done.moved[0].destination).endswith(b"dog/caf\xe9 \xff.png")
    assert undo_fixes(data).complete
    assert (data / name).read_bytes() == b"latin-1 name"


def test_a_leading_quote_is_a_spreadsheets_text_marker(tmp_path, data):
    for name in ("=1+1.png", "'q.png", "-x.png"):
        (data / "cat" / name).write_bytes(name.encode())
    rows = [("'cat/=1+1.png", "remove"), ("'cat/'q.png", "remove")]
    rows.append(("cat/-x.png", "remove"))
    found = read_fixes(_csv(tmp_path / "f.csv", rows, ("file", "action")), data)
    assert [f.file for f in found] == ["cat/=1+1.png", "cat/'q.png", "cat/-x.png"]


def test_header_in_any_order_blank_rows_bom_and_case(tmp_path, data):
    path = tmp_path / "f.csv"
    path.write_bytes(
        "\ufeffAction, File ,label\n\n REMOVE ,cat/b.png,\n".encode()
        + b"keep,dog/d.png,ignored\n"
    )
    found = read_fixes(path, data)
    assert [(f.file, f.action, f.label) for f in found] == [
        ("cat/b.png", "remove", None),
        ("dog/d.png", "keep", "ignored"),
    ]
    assert found[0].line == 3 and found[1].line == 4


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _with_sha256(root, rows):
    """``rows`` (file, action, label, reason) with each file's SHA-256 in ``root``."""
    return [(*row, _sha256(root / row[0])) for row in rows]


HEADER = ("file", "action", "label", "reason", "sha256")


def test_a_csv_with_each_files_sha256_applies_and_undoes(tmp_path, data):
    before = _tree(tmp_path)
    rows = _with_sha256(data, ROWS)
    rows[0] = (*rows[0][:4], rows[0][4].upper())  # hexadecimal in any case
    rows[1] = (*rows[1][:4], "")  # an empty cell checks nothing
    path = _csv(tmp_path / "fixes.csv", rows, HEADER)
    fixes = read_fixes(path, data)
    assert fixes[0].sha256 == rows[0][4].lower() and fixes[1].sha256 is None
    done = apply_fixes(data, fixes)
    assert len(done.moved) == 5 and done.kept == ["dog/d.png"]
    again = apply_fixes(data, read_fixes(path, data))  # checked against the journal
    assert again.moved == [] and len(again.already) == 5
    assert undo_fixes(data).complete
    assert _tree(tmp_path) == before


def test_a_csv_made_for_another_folder_is_refused_whole(tmp_path, data, capsys):
    """The same relative paths in another folder are other pictures: every
    row whose file differs is named, and nothing moves."""
    other = _data(tmp_path / "other")
    for i, name in enumerate(FILES):  # the same names, other pictures
        (other / name).write_bytes(encode(random_rgb(6, 6, seed=100 + i), "PNG"))
    (other / "dog" / "d.png").write_bytes((data / "dog" / "d.png").read_bytes())
    path = _csv(tmp_path / "fixes.csv", _with_sha256(data, ROWS), HEADER)
    before = _tree(tmp_path)
    with pytest.raises(FixesError) as error:
        read_fixes(path, other)
    message = str(error.value)
    assert message.startswith("5 fixes cannot be applied; nothing was moved:")
    assert (
        "fixes.csv: line 2: 'cat/a.png' is not the file the report showed (its "
        "SHA-256 differs): was the CSV made for another folder, or has the file "
        "changed?"
    ) in message
    assert "line 7: 'dog/d.png'" not in message  # the same bytes: that row is fine
    assert "line 6: 'cat/été ü.png' is not the file" in message
    with pytest.raises(CommandError, match="line 2: 'cat/a.png' is not the file"):
        _run(capsys, other, "--apply", path)
    assert _tree(tmp_path) == before
    assert read_fixes(path, data)  # the folder it was made for: fine


def test_a_file_changed_since_the_report_is_refused(tmp_path, data):
    rows = _with_sha256(data, [ROWS[5], ROWS[2]])
    (data / "dog" / "d.png").write_bytes(b"changed since")
    before = _tree(tmp_path)
    with pytest.raises(FixesError, match=r"line 2: 'dog/d.png' is not the file"):
        apply_fixes(data, read_fixes(_csv(tmp_path / "f.csv", rows, HEADER), data))
    fixes = [Fix("cat/b.png", "remove", sha256=rows[1][4])]
    fixes.append(Fix("dog/d.png", "keep", sha256=rows[0][4]))
    with pytest.raises(FixesError, match=r"the fix of 'dog/d.png': .*SHA-256 differs"):
        apply_fixes(data, fixes)
    assert _tree(tmp_path) == before


def test_a_sha256_cell_that_is_not_one_is_named(tmp_path, data):
    rows = [("cat/b.png", "remove", "", "", "abc")]
    with pytest.raises(FixesError, match=r"line 2: 'cat/b.png': its sha256 'abc'"):
        read_fixes(_csv(tmp_path / "f.csv", rows, HEADER), data)


# -- what is refused, before anything moves -------------------------------------

BAD_ROWS = [
    (("cat/a.png", "delete", ""), r"unknown action 'delete'"),
    (("cat/a.png", "relabel", ""), r"relabel 'cat/a.png' to what\?"),
    (("cat/a.png", "relabel", "cat"), r"the class it is in; 'keep' it"),
    (("cat/a.png", "relabel", "../up"), r"nor a safe name for a new one"),
    (("cat/a.png", "relabel", "a/b"), r"nor a safe name"),
    (("cat/a.png", "relabel", ".git"), r"nor a safe name"),
    (("cat/a.png", "relabel", "new\nline"), r"nor a safe name"),
    (("cat/a.png", "relabel", " dog"), r"nor a safe name"),
    (("cat/a.png", "relabel", "notes.txt"), r"'notes.txt' in the data folder is a"),
    (("cat/a.png", "relabel", "linked"), r"is a symbolic link, not a class folder"),
    (("../outside.png", "remove", ""), r"'\.\.' in a path"),
    (("cat/../dog/d.png", "remove", ""), r"'\.\.' in a path"),
    (("cat//a.png", "remove", ""), r"'' in a path"),
    (("./cat/a.png", "remove", ""), r"'\.' in a path"),
    (("/etc/passwd", "remove", ""), r"an absolute path"),
    (("cat/.hidden.png", "remove", ""), r"is hidden"),
    (("notes.txt", "remove", ""), r"not inside a class folder"),
    (("cat/sub", "remove", ""), r"'cat/sub' is a folder; only regular files"),
    (("cat/escape.png", "remove", ""), r"'cat/escape.png' is a symbolic link"),
    (("linked/o.png", "remove", ""), r"'linked' is a symbolic link"),
    (("cat/missing.png", "keep", ""), r"no such file in the data folder"),
    (("", "remove", ""), r"no file named"),
]


@pytest.mark.parametrize("row, message", BAD_ROWS)
def test_a_bad_row_is_named_by_its_line_and_nothing_moves(tmp_path, data, row, message):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.png").write_bytes(b"not the data's")
    (data / "notes.txt").write_bytes(b"a loose file")
    os.symlink(outside, data / "linked")
    os.symlink(outside / "o.png", data / "cat" / "escape.png")
    before = _tree(tmp_path)
    path = _csv(tmp_path / "fixes.csv", [("cat/b.png", "remove", "", ""), row])
    with pytest.raises(FixesError, match=rf"fixes\.csv: line 3: .*{message}"):
        read_fixes(path, data)
    good = Fix("cat/b.png", "remove")
    with pytest.raises(FixesError, match=message):
        apply_fixes(data, [good, Fix(row[0], row[1], row[2] or None)])
    assert _tree(tmp_path) == before


def test_every_bad_row_is_listed_in_one_error(tmp_path, data):
    rows = [
        ("cat/a.png", "relabel", ""),
        ("cat/b.png", "remove", ""),
        ("../x", "remove", ""),
        ("cat/b.png", "keep", ""),
    ]
    with pytest.raises(FixesError) as error:
        read_fixes(
            _csv(tmp_path / "fixes.csv", rows, ("file", "action", "label")), data
        )
    message = str(error.value)
    assert message.startswith("3 fixes cannot be applied; nothing was moved:")
    assert "fixes.csv: line 2: relabel 'cat/a.png' to what?" in message
    assert "fixes.csv: line 4: '../x'" in message
    assert "line 5: 'cat/b.png' is also on line 3 with remove" in message


@pytest.mark.parametrize(
    "text, message",
    [
        (b"file,action,lable\n", r"line 1: unknown column 'lable'"),
        (b"file,label\ncat/a.png,dog\n", r"line 1: no action column"),
        (b"file,file,action\n", r"column 'file' is given twice"),
        (b"", r"no header row"),
        (b"file,action\ncat/a.png,keep,x,y\n", r"line 2: 4 cells for 2 columns"),
        (b'file,action\n"cat/a.png\0",keep\n', r"line 2: .*cannot hold a NUL"),
        (b"file,action\n" + b"x" * 200_000 + b",keep\n", r"line 2: not CSV: field"),
    ],
)
def test_a_bad_csv_is_named(tmp_path, data, text, message):
    path = tmp_path / "fixes.csv"
    path.write_bytes(text)
    with pytest.raises(FixesError, match=message):
        read_fixes(path, data)


def test_a_csv_that_is_a_folder_or_missing_is_named(tmp_path, data):
    with pytest.raises(FixesError, match="is a folder, not a CSV file"):
        read_fixes(tmp_path, data)
    with pytest.raises(FixesError, match="cannot read the fixes .*missing.csv"):
        read_fixes(tmp_path / "missing.csv", data)


def test_a_journal_of_another_folder_or_damaged_is_refused(tmp_path, data):
    apply_fixes(data, [Fix("cat/a.png", "relabel", "dog")])
    journal = Path(journal_path(data))
    lines = journal.read_bytes().split(b"\n")
    journal.write_bytes(b"\n".join([lines[0], b"{not json", *lines[1:]]))
    with pytest.raises(FixesError, match="damaged at line 2"):
        undo_fixes(data)
    header = json.loads(lines[0])
    header["root"] = "/somewhere/else"
    journal.write_bytes(b"\n".join([json.dumps(header).encode(), *lines[1:]]))
    with pytest.raises(FixesError, match="is of '/somewhere/else'"):
        undo_fixes(data)
    journal.write_bytes(b"my own notes\n")
    with pytest.raises(FixesError, match="not a journal of tlsk's fixes"):
        apply_fixes(data, [Fix("cat/b.png", "remove")])
    assert (data / "cat" / "b.png").exists()


# -- killed at every step -------------------------------------------------------


@pytest.fixture(scope="module")
def worker():
    process = subprocess.Popen(
        [sys.executable, WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "ready\n"

    def run(**command):
        process.stdin.write(json.dumps(command) + "\n")
        process.stdin.flush()
        answer = process.stdout.readline().strip()
        assert answer in ("killed", "finished"), answer
        return answer

    yield run
    process.stdin.close()
    process.wait(timeout=30)
    process.stdout.close()


@pytest.fixture
def quick_path(tmp_path):
    """A folder in memory (/dev/shm) where there is one: a kill leaves the same
    files there as on a disk, and its fsyncs cost nothing."""
    if not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    folder = tempfile.mkdtemp(prefix="tlsk-fixes-", dir="/dev/shm")
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder)


def _without_journal(tree):
    return {key: value for key, value in tree.items() if "tlsk-fixes" not in key}


@pytest.mark.parametrize(
    "mode", [{}, {"copy": True}, {"tear": True}], ids=["link", "copy", "torn"]
)
def test_a_kill_at_any_step_of_apply_is_undone_or_finished(quick_path, worker, mode):
    tmp_path = quick_path
    data = _data(tmp_path)
    path = str(_csv(tmp_path / "fixes.csv", CRASH_ROWS))
    before = _tree(tmp_path)
    apply_fixes(data, read_fixes(path, data))
    applied = _without_journal(_tree(tmp_path))
    undo_fixes(data)
    assert _tree(tmp_path) == before
    command = {"op": "apply", "root": str(data), "csv": path, **mode}
    step = 0
    while worker(**command, kill_at=step) == "killed":
        undone = undo_fixes(data)
        assert undone.complete, (step, undone.problems)
        assert _tree(tmp_path) == before, step
        # Killed again at the same step, then applied again: the work finishes.
        assert worker(**command, kill_at=step) == "killed"
        apply_fixes(data, read_fixes(path, data))
        assert _without_journal(_tree(tmp_path)) == applied, step
        assert undo_fixes(data).complete
        assert _tree(tmp_path) == before, step
        step += 1
    moves = 3 * (5 if mode.get("copy") else 3)  # each: line, link, unlink (+copy)
    assert step > moves, step
    assert _without_journal(_tree(tmp_path)) == applied
    assert undo_fixes(data).complete and _tree(tmp_path) == before


@pytest.mark.parametrize("mode", [{}, {"copy": True}], ids=["link", "copy"])
def test_a_kill_at_any_step_of_undo_is_finished_by_the_next_undo(
    quick_path, worker, mode
):
    tmp_path = quick_path
    data = _data(tmp_path)
    path = str(_csv(tmp_path / "fixes.csv", CRASH_ROWS))
    before = _tree(tmp_path)
    if mode.get("copy"):
        original, plan.same_device = plan.same_device, lambda a, b: False
    try:
        step = 0
        while True:
            apply_fixes(data, read_fixes(path, data))
            if worker(op="undo", root=str(data), kill_at=step) == "finished":
                break
            undone = undo_fixes(data)
            assert undone.complete, (step, undone.problems)
            assert _tree(tmp_path) == before, step
            step += 1
    finally:
        if mode.get("copy"):
            plan.same_device = original
    assert step > 3 * (5 if mode.get("copy") else 3)
    assert _tree(tmp_path) == before


# -- the command line ----------------------------------------------------------


def _parser():
    parser = argparse.ArgumentParser(prog="tlsk check")
    parser.add_argument("dir")
    parser.add_argument("--report")
    parser.add_argument("--label-errors", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true")
    add_fixes_arguments(parser)
    parser.set_defaults(command="check", usage_error=parser.error)
    return parser


def _run(capsys, *argv):
    args = _parser().parse_args([str(a) for a in argv])
    assert fixes_requested(args)
    code = run_fixes(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_applies_prints_each_move_and_undoes(
    tmp_path, data, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    csv_path = _csv(tmp_path / "fixes.csv", ROWS)
    code, out, err = _run(capsys, data, "--apply", csv_path)
    lines = out.splitlines()
    assert code == 0
    assert "relabelled  cat/a.png -> dog/a~cat.png  (its name was taken there)" in lines
    assert "relabelled  cat/sub/c.png -> bird/c.png" in lines
    assert "removed     cat/b.png -> data.quarantine/cat/b.png" in lines
    assert "kept        dog/d.png" in lines
    assert lines[-1] == (f"6 fixes from {csv_path}: 3 relabelled, 2 removed, 1 kept")
    assert f"tlsk check {data} --undo" in err

    code, out, _ = _run(capsys, data, "--apply", csv_path)
    assert out.splitlines()[-1].endswith(
        "0 relabelled, 0 removed, 1 kept, 5 already done"
    )

    code, out, _ = _run(capsys, data, "--undo", "-q")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 6
    assert "restored  dog/a~cat.png -> cat/a.png" in lines
    assert lines[-1] == (
        "5 files put back, 3 empty folders that the fixes created removed; the "
        "folder is as it was before them"
    )
    assert _tree(tmp_path) == before
    code, out, _ = _run(capsys, data, "--undo")
    assert out == f"nothing to put back in {data}: no fix moved a file\n"


def test_the_command_says_what_it_could_not_undo(tmp_path, data, capsys):
    _run(capsys, data, "--apply", _csv(tmp_path / "f.csv", [("cat/b.png", "remove")]))
    (data / "cat" / "b.png").write_bytes(b"mine")
    with pytest.raises(
        CommandError,
        match=r"(?s)1 file could not be put back.*"
        r"'cat/b.png' holds another file",
    ):
        _run(capsys, data, "--undo")


def test_the_command_names_a_bad_row(tmp_path, data, capsys):
    path = _csv(tmp_path / "f.csv", [("cat/a.png", "relabel", "")])
    with pytest.raises(CommandError, match=r"f\.csv: line 2: relabel 'cat/a.png'"):
        _run(capsys, data, "--apply", path)
    with pytest.raises(CommandError, match="no fixes CSV at"):
        _run(capsys, data, "--apply", tmp_path / "none.csv")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--report", "out"], "--apply changes the data folder; --report reads it"),
        (["--label-errors", "--json"], "--label-errors and --json read it"),
        (["--undo"], "not allowed with argument --apply"),
    ],
)
def test_the_command_refuses_options_that_read_the_data(
    tmp_path, data, capsys, extra, message
):
    csv_path = _csv(tmp_path / "f.csv", [("cat/b.png", "remove")])
    with pytest.raises(SystemExit) as exit_:
        _run(capsys, data, "--apply", csv_path, *extra)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert (data / "cat" / "b.png").exists()


def test_the_command_refuses_a_quarantine_without_apply(tmp_path, data, capsys):
    for argv in (["--quarantine", "q"], ["--undo", "--quarantine", "q"]):
        with pytest.raises(SystemExit):
            _run(capsys, data, *argv)
        assert "--quarantine is for --apply" in capsys.readouterr().err


def test_csv_text_reads_as_written(tmp_path, data):
    # csv.writer quoting, as a spreadsheet would write it
    text = io.StringIO()
    csv.writer(text).writerows([("file", "action"), ('cat/x, "y".png', "keep")])
    path = tmp_path / "f.csv"
    path.write_text(text.getvalue(), encoding="utf-8")
    assert read_fixes(path, data)[0].file == 'cat/x, "y".png'


def test_in_a_split_a_relabel_stays_in_its_part(tmp_path):
    before_names = ("train/cat/a.png", "train/dog/b.png", "test/cat/a.png")
    root = tmp_path / "split"
    for i, name in enumerate(before_names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(bytes([i]))
    before = _tree(tmp_path)
    fixes_ = [Fix("train/cat/a.png", "relabel", "dog"), Fix("test/cat/a.png", "remove")]
    done = apply_fixes(root, fixes_, split=["train", "val", "test"])
    assert [m.destination for m in done.moved] == [
        str(root / "train" / "dog" / "a.png"),
        str(tmp_path / "split.quarantine" / "test" / "cat" / "a.png"),
    ]
    assert undo_fixes(root).complete and _tree(tmp_path) == before
    with pytest.raises(FixesError, match="not inside a class folder of a part"):
        apply_fixes(root, [Fix("cat/a.png", "keep")], split=["train", "test"])


def test_the_command_applies_fixes_to_a_split_by_part(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for part in ("train", "test"):
        for label in ("cat", "dog"):
            (tmp_path / "s" / part / label).mkdir(parents=True)
            (tmp_path / "s" / part / label / "x.png").write_bytes(part.encode())
    csv_path = _csv(tmp_path / "f.csv", [("test/cat/x.png", "relabel", "dog")])
    code, out, _ = _run(capsys, "s", "--apply", csv_path)
    assert "relabelled  test/cat/x.png -> test/dog/x~cat.png" in out
    assert (tmp_path / "s" / "train" / "cat" / "x.png").exists()


def test_undo_never_writes_through_a_link_put_where_a_folder_was(tmp_path, data):
    apply_fixes(data, [Fix("cat/sub/c.png", "remove")])
    outside = tmp_path / "outside"
    outside.mkdir()
    (data / "cat" / "sub" / "a.png").rename(tmp_path / "a.png")
    (data / "cat" / "sub").rmdir()
    os.symlink(outside, data / "cat" / "sub")
    undone = undo_fixes(data)
    assert not undone.complete
    assert "is a symbolic link" in undone.problems[0]
    assert os.listdir(outside) == []
    assert (tmp_path / "data.quarantine" / "cat" / "sub" / "c.png").exists()


def test_a_quarantine_that_is_a_link_or_a_journal_that_is_a_folder_is_refused(
    tmp_path, data
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / "data.quarantine")
    with pytest.raises(FixesError, match=r"data\.quarantine' is a symbolic link"):
        apply_fixes(data, [Fix("cat/b.png", "remove")])
    os.unlink(tmp_path / "data.quarantine")
    os.mkdir(journal_path(data))
    with pytest.raises(FixesError, match=r"the journal .* is a folder; move it away"):
        apply_fixes(data, [Fix("cat/b.png", "remove")])
    assert (data / "cat" / "b.png").exists() and os.listdir(elsewhere) == []


def test_the_file_system_is_changed_only_through_the_hooks_the_crash_tests_patch():
    # A name imported from system_calls would escape the worker's patch, and
    # its kill point would be lost without any test failing.
    import ast
    import pathlib

    import tlsk.images.fixes as package

    for path in pathlib.Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith(
                "system_calls"
            ):
                raise AssertionError(f"{path.name}:{node.lineno} imports names of it")
