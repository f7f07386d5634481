"""The rough edges a new user meets in the first hour with the ``tlsk`` command."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests._datasets import write_image_folder

# TensorFlow's own lines: its C++ log format and its start-up notes.
TENSORFLOW_LINES = re.compile(
    r"absl::InitializeLog|oneDNN custom operations|cuInit|cpu_feature_guard"
    r"|Could not find cuda drivers|^[IWEF]\d{4} \d\d:\d\d:",
    re.MULTILINE,
)


def run_tlsk(*args, cwd=None, env=None):
    """``python -m tlsk ARGS`` in a fresh interpreter, as a new user runs it.

    The test run's own TF_CPP_MIN_LOG_LEVEL is not passed on: a user has none.
    """
    environment = {**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}
    if not env or "TF_CPP_MIN_LOG_LEVEL" not in env:
        environment.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run(
        [sys.executable, "-m", "tlsk", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=cwd,
        env=environment,
        timeout=300,
    )


@pytest.fixture
def data(tmp_path):
    write_image_folder(tmp_path / "data", 4)
    return tmp_path / "data"


def test_stderr_carries_only_tlsk_lines_unless_debug(data, tmp_path):
    extract = ["extract", "-q", data, "--weights", "none", "--input-size", "32"]
    debug = run_tlsk(*extract, "--cache", tmp_path / "a.h5", "--debug")
    assert debug.returncode == 0, debug.stderr
    if not TENSORFLOW_LINES.search(debug.stderr):
        pytest.skip("this TensorFlow prints nothing at start-up")

    plain = run_tlsk(*extract, "--cache", tmp_path / "b.h5")
    assert plain.returncode == 0, plain.stderr
    assert not TENSORFLOW_LINES.search(plain.stderr), plain.stderr
    # --debug before the command is the same flag.
    before = run_tlsk("--debug", *extract, "--cache", tmp_path / "c.h5")
    assert TENSORFLOW_LINES.search(before.stderr)


@pytest.fixture(scope="module")
def split_and_model(tmp_path_factory):
    """A split made by ``tlsk split`` and a model trained on its train/ part."""
    from tlsk.cli import main

    root = tmp_path_factory.mktemp("first-hour")
    write_image_folder(root / "data", 5)
    split = root / "photos-split"
    assert main(["split", "-q", str(root / "data"), str(split)]) == 0
    model = root / "model.joblib"
    tiny = ["--weights", "none", "--input-size", "32", "-q"]
    assert main(["train", str(split), "--out", str(model), *tiny]) == 0
    return split, model


def test_evaluate_on_a_split_names_the_folder_of_class_folders(split_and_model):
    split, model = split_and_model
    result = run_tlsk("evaluate", model, split, cwd=split.parent)
    assert result.returncode == 2, result.stdout
    assert "looks like a split made by tlsk split (train/, val/, test/)" in (
        result.stderr
    )
    assert f"tlsk evaluate {split / 'test'}" in result.stderr
    assert "accuracy" not in result.stdout


def test_a_split_without_its_manifest_is_known_by_its_parts(split_and_model, tmp_path):
    import shutil

    from tlsk.cli import main

    split, model = split_and_model
    copy = tmp_path / "by-hand"
    shutil.copytree(split, copy)
    (copy / "split.json").unlink()
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(model), str(copy)])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main(["check", str(copy)])
    assert exit_.value.code == 2
    # One part is a folder of class folders, as before.
    assert main(["evaluate", "-q", str(model), str(copy / "test")]) == 0


def test_extract_of_a_split_reads_its_images_not_its_manifest(
    split_and_model, tmp_path, capsys
):
    from tlsk.cli import main

    split, _ = split_and_model
    tiny = ["--weights", "none", "--input-size", "32", "-q"]
    assert (
        main(
            ["extract", str(split), "--cache", str(tmp_path / "f.h5"), "--json", *tiny]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed"] == 0, summary["failures"]
    assert summary["images"] == 15


def test_counts_of_one_are_singular(data, tmp_path, capsys):
    from tlsk.cli import main

    (data / "red" / "broken.jpg").write_bytes(b"not a jpeg")
    main(["check", str(data), "-q"])  # its exit code is not the point here
    out = capsys.readouterr().out
    assert "1 bad file in" in out and "1 bad files" not in out

    one = next((data / "blue").iterdir())
    tiny = ["--weights", "none", "--input-size", "32", "-q"]
    assert main(["extract", str(one), "--cache", str(tmp_path / "f.h5"), *tiny]) == 0
    assert capsys.readouterr().out.startswith("1 image: 1 computed, ")


@pytest.mark.parametrize(
    ("n", "noun", "plural", "expected"),
    [
        (0, "image", None, "0 images"),
        (1, "image", None, "1 image"),
        (2, "bad file", None, "2 bad files"),
        (1, "class", "classes", "1 class"),
        (3, "class", "classes", "3 classes"),
    ],
)
def test_counted(n, noun, plural, expected):
    from tlsk.cli._output import counted

    assert counted(n, noun, plural) == expected


def test_missing_weights_are_explained_in_flags_and_files(data, tmp_path):
    keras_home = tmp_path / "keras-home"
    keras_home.mkdir()
    env = {"KERAS_HOME": str(keras_home), "TLSK_NO_DOWNLOAD": "1"}
    name = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    expected = keras_home / "models" / name

    extract = run_tlsk("extract", data, "--cache", tmp_path / "f.h5", "-q", env=env)
    assert extract.returncode == 1
    assert f"copy it to '{expected}'" in extract.stderr, extract.stderr
    assert "--weights none" in extract.stderr and "weights=" not in extract.stderr

    imagenet = run_tlsk("predict", "--imagenet", data / "red", "-q", env=env)
    assert imagenet.returncode == 1
    assert "imagenet_class_index.json" in imagenet.stderr, imagenet.stderr
    assert "give its path as --class-index" in imagenet.stderr
    assert "class_index=" not in imagenet.stderr


def test_a_preset_folder_is_offered_only_as_the_commands_own_flags():
    from argparse import Namespace

    from tlsk.cli._output import in_cli_words

    library = "copy that preset folder to '/x', or give that folder's path as "
    library += "weights= or as the backbone itself"
    zero_shot = in_cli_words(library, Namespace(backbone=None))
    assert zero_shot.endswith("give that folder's path as --backbone"), zero_shot
    train = in_cli_words(library, Namespace(backbone=None, weights="imagenet"))
    assert train.endswith("as --backbone or as --weights"), train


def _grid(best, scores, values=(0.01, 0.1, 1.0, 10.0, 100.0)):
    results = [
        {"value": value, "mean_accuracy": score}
        for value, score in zip(values, scores, strict=True)
    ]
    return {"parameter": "C", "best": best, "results": results}


@pytest.mark.parametrize(
    ("grid", "edge"),
    [
        (_grid(100.0, [0.5, 0.6, 0.7, 0.8, 0.9]), "largest"),
        (_grid(0.01, [0.9, 0.8, 0.7, 0.6, 0.5]), "smallest"),
        (_grid(1.0, [0.5, 0.8, 0.9, 0.8, 0.5]), None),
        # A tie with the neighbour: no sign that the best lies beyond.
        (_grid(0.01, [1.0, 1.0, 1.0, 1.0, 1.0]), None),
    ],
)
def test_grid_edge(grid, edge):
    from tlsk.cli.train import grid_edge

    assert grid_edge(grid) == edge


def test_a_grid_whose_best_is_at_its_edge_says_so(data, tmp_path, capsys, monkeypatch):
    from tlsk.cli import main
    from tlsk.evaluation import classifiers

    real_tune = classifiers.tune

    def rising_to_the_end(*args, **kwargs):
        best, grid = real_tune(*args, **kwargs)
        values = [result["value"] for result in grid["results"]]
        for i, result in enumerate(grid["results"]):
            result["mean_accuracy"] = 0.5 + 0.1 * i
        return best, {**grid, "best": values[-1]}

    monkeypatch.setattr(classifiers, "tune", rising_to_the_end)
    argv = ["train", str(data), "--grid", "--out", str(tmp_path / "m.joblib")]
    assert main([*argv, "--weights", "none", "--input-size", "32", "--val", "0"]) == 0
    err = capsys.readouterr().err
    assert "best C=100.0 is the largest value tried (0.01 to 100.0)" in err, err


def test_extract_then_train_compute_each_image_once(data, tmp_path, count_predictions):
    from tlsk.cli import main

    tiny = ["--weights", "none", "--input-size", "32", "-q"]
    assert main(["extract", str(data), *tiny]) == 0
    extracted = count_predictions["images"]
    assert extracted == 12
    assert main(["train", str(data), "--out", str(tmp_path / "m.joblib"), *tiny]) == 0
    assert count_predictions["images"] == extracted, "train computed images again"
    assert (Path(os.environ["TLSK_CACHE"]) / "features.h5").is_file()


def test_the_shared_cache_is_named_by_tlsk_cache_or_the_user_cache_folder(
    tmp_path, monkeypatch
):
    from tlsk.cli._options import shared_cache

    monkeypatch.setenv("TLSK_CACHE", str(tmp_path / "mine.h5"))
    assert shared_cache() == str(tmp_path / "mine.h5")
    monkeypatch.setenv("TLSK_CACHE", str(tmp_path / "folder"))
    assert shared_cache() == str(tmp_path / "folder" / "features.h5")
    assert (tmp_path / "folder").is_dir()
    monkeypatch.delenv("TLSK_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert shared_cache() == str(tmp_path / "xdg" / "tlsk" / "features.h5")


def test_the_workers_of_a_local_cluster_are_quiet_too(data, tmp_path):
    pytest.importorskip("distributed")
    extract = ["extract", "-q", data, "--weights", "none", "--input-size", "32"]
    result = run_tlsk(*extract, "--workers", "1", "--cache", tmp_path / "f.h5")
    assert result.returncode == 0, result.stderr
    assert not TENSORFLOW_LINES.search(result.stderr), result.stderr


def test_cache_info_without_a_path_shows_the_shared_cache(data, capsys):
    from tlsk.cli import main

    tiny = ["--weights", "none", "--input-size", "32", "-q"]
    assert main(["extract", str(data), *tiny]) == 0
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    shared = os.path.join(os.environ["TLSK_CACHE"], "features.h5")
    assert capsys.readouterr().out.startswith(f"{shared}: 12 entries in 1 namespace")


def test_cache_prune_with_only_a_namespace_prunes_the_shared_cache(data, capsys):
    from tlsk.cli import main

    tiny = ["--weights", "none", "--input-size", "32", "-q"]
    assert main(["extract", str(data), "--json", *tiny]) == 0
    namespace = json.loads(capsys.readouterr().out)["namespace"]
    assert main(["cache", "prune", namespace[:12]]) == 0
    assert f"removed namespace {namespace}" in capsys.readouterr().out
