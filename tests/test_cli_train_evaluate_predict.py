"""tlsk train, evaluate and predict: through main(argv) and real subprocesses."""

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import pytest
from PIL import Image

from tests._datasets import write_image_folder
from tlsk import __version__
from tlsk.cli import main
from tlsk.networks.backbone import Backbone

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["blue", "green", "red"]
TINY = ["--weights", "none", "--input-size", "32", "--batch-size", "8", "-q"]
# Hostile but legal file names: the CSV must give them back exactly.
HOSTILE_NAMES = [
    "with space.png",
    "café ñ 日本.png",
    'comma, "quote".png',
    "new\nline.png",
]


def run_tlsk(*argv):
    """``python -m tlsk ARGV`` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "tlsk", *map(str, argv)],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )


def quiet_main(argv):
    """main(argv) with its output captured: for module-scoped fixtures."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    assert code == 0, err.getvalue()
    return out.getvalue()


def error_line(stderr):
    """The one line of an expected failure; no traceback."""
    assert "Traceback" not in stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("tlsk ")]
    return line


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def data(work):
    """30 training images: 10 per colour class."""
    write_image_folder(work / "data", 10)
    return work / "data"


@pytest.fixture(scope="module")
def heldout(work):
    """Images the models never saw: another seed."""
    write_image_folder(work / "heldout", 5, seed=1)
    return work / "heldout"


@pytest.fixture(scope="module")
def bottleneck(work, data):
    """bottleneck + logreg, trained by a real ``tlsk train`` process."""
    model = work / "bottleneck.joblib"
    result = run_tlsk("train", data, "--out", model, *TINY, "--json")
    assert result.returncode == 0, result.stderr
    return model, json.loads(result.stdout)


@pytest.fixture(scope="module")
def finetuned(work, data):
    model = work / "finetuned.joblib"
    quiet_main(
        ["train", data, "--method", "finetune", "--epochs", "1", "--out", model]
        + ["--no-augmentation", *TINY]
    )
    return model


@pytest.fixture
def predict_input(tmp_path, data):
    """Good images with hostile names, nested; a bad file; a hidden file."""
    folder = tmp_path / "in put"
    (folder / "sub").mkdir(parents=True)
    source = sorted((data / "red").glob("*.png"))[0]
    good = []
    for i, name in enumerate(HOSTILE_NAMES):
        path = (folder / "sub" if i % 2 else folder) / name
        shutil.copyfile(source, path)
        good.append(str(path))
    (folder / "broken.jpg").write_text("not an image")
    shutil.copyfile(source, folder / ".hidden.png")
    return folder, sorted(good), str(folder / "broken.jpg")


def is_png(path):
    with Image.open(path) as image:
        return image.format == "PNG"


def read_csv(text):
    return list(csv.DictReader(io.StringIO(text, newline="")))


def copy_model(model, folder):
    """A copy of a model file and its metadata in ``folder``."""
    shutil.copyfile(model, folder / model.name)
    shutil.copyfile(
        model.with_suffix(".json"), folder / model.with_suffix(".json").name
    )
    return folder / model.name


# -- train --------------------------------------------------------------------


def test_train_json_report_has_validation_metrics(bottleneck):
    _, report = bottleneck
    assert report["n_train"] == 24 and report["n_validation"] == 6
    assert sorted(report["metrics"]["per_class"]) == CLASSES
    assert 0 <= report["metrics"]["accuracy"] <= 1


def test_train_writes_model_metadata_and_confusion_png(bottleneck, data):
    model, report = bottleneck
    metadata = json.loads(model.with_suffix(".json").read_text())
    assert metadata["classes"] == CLASSES
    assert metadata["method"] == "bottleneck" and metadata["classifier"] == "logreg"
    assert metadata["tlsk_version"] == __version__
    assert metadata["data"] == str(data)
    assert metadata["training_seconds"] > 0
    assert metadata["extractor"]["weights"] is None
    assert "accuracy" in metadata["metrics"]
    assert is_png(model.with_suffix(".confusion.png"))
    # The feature cache every command shares by default, not one per model.
    assert Path(report["feature_cache"]).is_file()
    assert not model.with_suffix(".features.h5").exists()


def test_train_prints_a_text_report(tmp_path, data, bottleneck, capsys):
    cache = bottleneck[1]["feature_cache"]
    argv = ["train", str(data), "--out", str(tmp_path / "m.joblib"), *TINY]
    assert main(argv + ["--cache", str(cache), "--classifier", "linear-svm"]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "recall" in out and "f1-score" in out
    assert "confusion matrix" in out
    assert all(label in out for label in CLASSES)


def test_train_refuses_to_overwrite_without_force_and_reuses_the_cache(
    tmp_path, data, bottleneck, capsys, monkeypatch
):
    model, _ = bottleneck
    model = copy_model(model, tmp_path)
    before = model.read_bytes()
    argv = ["train", str(data), "--out", str(model), *TINY]
    argv += ["--cache", bottleneck[1]["feature_cache"]]
    assert main(argv) == 1
    assert "--force" in error_line(capsys.readouterr().err)
    assert model.read_bytes() == before

    computed = []
    original = Backbone.predict
    monkeypatch.setattr(
        Backbone,
        "predict",
        lambda self, b: computed.append(len(b)) or original(self, b),
    )
    assert main(argv + ["--force", "--classifier", "random-forest"]) == 0
    assert model.read_bytes() != before
    assert json.loads(model.with_suffix(".json").read_text())["classifier"] == (
        "random-forest"
    )
    assert computed == [], "features came from the cache"


def test_grid_search_tries_each_value_and_keeps_the_best(
    tmp_path, data, bottleneck, capsys
):
    model = tmp_path / "grid.joblib"
    cache = bottleneck[1]["feature_cache"]
    argv = ["train", str(data), "--out", str(model), "--classifier", "svm"]
    assert main(argv + ["--grid", "--cache", str(cache), "--json", *TINY]) == 0
    grid = json.loads(capsys.readouterr().out)["grid"]
    assert grid["parameter"] == "C" and len(grid["results"]) >= 4
    best = max(grid["results"], key=lambda r: r["mean_accuracy"])
    assert grid["best_score"] == best["mean_accuracy"]
    # The saved model is the refit with the chosen C, not the default one.
    saved_c = {
        value
        for name, value in joblib.load(model).get_params().items()
        if name.endswith("__C")
    }
    assert saved_c == {grid["best"]}


def test_train_on_a_split_folder_validates_on_val(tmp_path, capsys):
    write_image_folder(tmp_path / "split" / "train", 8)
    write_image_folder(tmp_path / "split" / "val", 2, seed=3)
    model = tmp_path / "cnn.joblib"
    argv = ["train", str(tmp_path / "split"), "--method", "scratch", "--epochs", "2"]
    assert main(argv + ["--out", str(model), "--json", *TINY]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_train"] == 24 and report["n_validation"] == 6
    assert report["validation"] == str(tmp_path / "split" / "val")
    assert len(report["history"]["train"]["loss"]) == 2
    assert is_png(model.with_suffix(".curves.png"))
    assert is_png(model.with_suffix(".confusion.png"))


def test_finetune_writes_curves_of_both_phases(finetuned):
    metadata = json.loads(finetuned.with_suffix(".json").read_text())
    assert set(metadata["history"]) == {"head", "finetune"}
    assert metadata["params"]["head_epochs"] == 1
    assert is_png(finetuned.with_suffix(".curves.png"))
    assert is_png(finetuned.with_suffix(".confusion.png"))


def test_train_skips_bad_files_with_a_note(tmp_path, capsys):
    write_image_folder(tmp_path / "data", 4)
    (tmp_path / "data" / "red" / "empty.jpg").write_bytes(b"")
    argv = ["train", str(tmp_path / "data"), "--out", str(tmp_path / "m.joblib")]
    assert main(argv + ["--val", "0", "--weights", "none", "--input-size", "32"]) == 0
    assert "empty.jpg" in capsys.readouterr().err
    metadata = json.loads((tmp_path / "m.json").read_text())
    assert len(metadata["skipped_files"]) == 1 and metadata["n_train"] == 12


def test_train_too_few_images_to_hold_out_is_one_line(tmp_path, capsys):
    write_image_folder(tmp_path / "data", 1)
    argv = ["train", str(tmp_path / "data"), "--out", str(tmp_path / "m.joblib")]
    assert main(argv + TINY) == 1
    assert "stratified --val" in error_line(capsys.readouterr().err)


# -- evaluate -----------------------------------------------------------------


def test_bottleneck_logreg_beats_chance_on_heldout_images(bottleneck, heldout, capsys):
    model, _ = bottleneck
    assert main(["evaluate", str(model), str(heldout), "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_images"] == 15
    assert report["accuracy"] >= 0.8  # chance: 1/3


def test_evaluate_names_classes_the_model_does_not_know(
    tmp_path, bottleneck, heldout, capsys
):
    shutil.copytree(heldout, tmp_path / "data")
    shutil.copytree(heldout / "red", tmp_path / "data" / "purple")
    plot = tmp_path / "cm.png"
    argv = ["evaluate", str(bottleneck[0]), str(tmp_path / "data"), "-q"]
    assert main(argv + ["--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "classes the model does not know" in out and "'purple' (5 images)" in out
    assert is_png(plot)
    assert main(argv + ["--plot", str(plot), "--json"]) == 1  # no --force
    assert main(argv + ["--plot", str(plot), "--json", "--force"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unknown_classes"] == {"purple": 5}
    assert report["per_class"]["purple"]["recall"] == 0


def test_evaluate_writes_an_html_report_beside_its_table(
    tmp_path, bottleneck, heldout, capsys
):
    out = tmp_path / "report"
    argv = ["evaluate", str(bottleneck[0]), str(heldout), "--report", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "confusion matrix" in captured.out
    page = (out / "index.html").read_text(encoding="utf-8")
    assert f"wrote {out / 'index.html'}" in captured.err
    # Files named relative to DIR, the model's metadata shown.
    assert '<td data-value="red/' in page and '"method": "bottleneck"' in page
    assert page.count("<tr><td data-value=") == 15
    assert main(argv) == 1  # exists: refused without --force, untouched
    assert "pass --force" in capsys.readouterr().err
    assert (out / "index.html").read_text(encoding="utf-8") == page
    assert main([*argv, "--force", "-q"]) == 0


def test_evaluate_refuses_a_file_that_is_no_tlsk_model_and_an_empty_folder(
    tmp_path, bottleneck, heldout, capsys
):
    import joblib

    joblib.dump({"not": "a model"}, tmp_path / "other.joblib")
    argv = ["evaluate", str(tmp_path / "other.joblib"), str(heldout), "-q"]
    assert main([*argv, "--report", str(tmp_path / "report")]) == 1
    assert "is not a tlsk model: its metadata" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(bottleneck[0]), str(tmp_path / "empty"), "-q"]) == 1
    assert "no class folders in" in capsys.readouterr().err


def test_evaluate_in_a_subprocess_prints_the_confusion_table(bottleneck, heldout):
    result = run_tlsk("evaluate", bottleneck[0], heldout, "-q")
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("confusion matrix")[1].splitlines()[1:]
    assert table[0].split() == CLASSES
    assert sum(int(n) for row in table[1:4] for n in row.split()[1:]) == 15


def test_corrupt_model_file_is_one_line_in_a_subprocess(tmp_path, bottleneck, heldout):
    model = copy_model(bottleneck[0], tmp_path)
    model.write_bytes(b"\x80\x04 this is no pickle")
    result = run_tlsk("evaluate", model, heldout)
    assert result.returncode == 1
    # Refused before unpickling: the file is not the one its metadata names.
    assert "not the file its metadata" in error_line(result.stderr)


def test_model_without_metadata_is_one_line(tmp_path, bottleneck, heldout, capsys):
    shutil.copyfile(bottleneck[0], tmp_path / "m.joblib")
    assert main(["evaluate", str(tmp_path / "m.joblib"), str(heldout)]) == 1
    assert "metadata" in error_line(capsys.readouterr().err)


# -- predict ------------------------------------------------------------------


def test_predict_rows_for_hostile_names_and_an_error_row(
    tmp_path, bottleneck, predict_input, capsys
):
    folder, good, bad = predict_input
    out = tmp_path / "labels.csv"
    argv = ["predict", str(bottleneck[0]), str(folder), "--top-k", "2", "-q"]
    assert main(argv + ["--out", str(out)]) == 0
    rows = read_csv(out.read_text(encoding="utf-8"))
    by_path = {row["path"]: row for row in rows}
    assert sorted(by_path) == sorted([*good, bad])  # the hidden file is skipped
    assert by_path[bad]["label"] == "" and "not an image" in by_path[bad]["error"]
    for path in good:
        row = by_path[path]
        assert row["label"] == "red" and row["error"] == ""
        assert 1 >= float(row["probability"]) >= float(row["probability_2"]) >= 0
        assert row["label_2"] in CLASSES and row["label_2"] != "red"
    assert "1 of 5 images could not be labelled" in capsys.readouterr().err


def test_predict_out_is_never_overwritten_without_force(
    tmp_path, bottleneck, predict_input, capsys
):
    out = tmp_path / "labels.csv"
    out.write_text("keep me")
    argv = ["predict", str(bottleneck[0]), predict_input[1][0], "--out", str(out)]
    assert main(argv) == 1
    assert "--force" in error_line(capsys.readouterr().err)
    assert out.read_text() == "keep me"
    assert main(argv + ["--force"]) == 0
    assert read_csv(out.read_text(encoding="utf-8"))[0]["label"] == "red"


def test_predict_exit_code_is_1_when_every_image_fails(tmp_path, bottleneck, capsys):
    (tmp_path / "a.png").write_bytes(b"")
    argv = ["predict", str(bottleneck[0]), str(tmp_path / "a.png")]
    assert main(argv + [str(tmp_path / "missing.png")]) == 1
    rows = read_csv(capsys.readouterr().out)
    assert [row["error"] != "" for row in rows] == [True, True]


def test_predict_with_a_finetuned_keras_model(finetuned, heldout, capsys):
    assert main(["predict", str(finetuned), str(heldout), "--top-k", "3", "-q"]) == 0
    rows = read_csv(capsys.readouterr().out)
    assert len(rows) == 15
    for row in rows:
        total = sum(float(row[k]) for k in ("probability", "probability_2"))
        assert total + float(row["probability_3"]) == pytest.approx(1, abs=1e-4)


def test_predict_csv_to_stdout_in_a_subprocess(bottleneck, predict_input):
    folder, good, bad = predict_input
    result = run_tlsk("predict", bottleneck[0], *good, bad, "-q")
    assert result.returncode == 0, result.stderr
    rows = read_csv(result.stdout)
    assert [row["path"] for row in rows] == [*good, bad]
    assert [row["label"] for row in rows] == ["red"] * len(good) + [""]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--top-k", "0"], "--top-k: expected an integer >= 1; got '0'"),
        (["--class-index", "x.json"], "need --imagenet"),
        ([], "at least one PATH"),
    ],
)
def test_predict_usage_errors_exit_2(bottleneck, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(bottleneck[0]), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_predict_imagenet_calls_predict_imagenet_with_all_paths(
    tmp_path, predict_input, monkeypatch, capsys
):
    imagenet = pytest.importorskip("tlsk.networks.imagenet")
    from tlsk.images.decode import ImageError

    folder, good, bad = predict_input
    calls = []

    def fake(paths, top_k, weights, class_index, backbone):
        calls.append((list(paths), top_k, weights, class_index, backbone))
        return [
            ImageError(p, "broken") if p == bad else [("n1", "tabby", 0.75)]
            for p in paths
        ]

    monkeypatch.setattr(imagenet, "predict_imagenet", fake)
    argv = ["predict", "--imagenet", str(folder), "--top-k", "2"]
    argv += ["--backbone", "resnet50"]
    assert main(argv + ["--class-index", "index.json", "--weights-file", "w.h5"]) == 0
    ((paths, top_k, weights, class_index, backbone),) = calls
    assert sorted(paths) == sorted([*good, bad])
    assert (top_k, weights, class_index) == (2, "w.h5", "index.json")
    assert backbone == "resnet50"
    rows = {row["path"]: row for row in read_csv(capsys.readouterr().out)}
    assert rows[good[0]]["wnid"] == "n1" and rows[good[0]]["label"] == "tabby"
    assert rows[good[0]]["label_2"] == "" and rows[bad]["error"] == "broken"


# -- help ---------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_help_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"tlsk {command} " in out.split("example")[1]
    if command != "train":
        assert "trusted source" in out
