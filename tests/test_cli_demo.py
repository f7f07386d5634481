"""tlsk demo: the whole recipe in one command (its quick mode, as CI runs it)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tlsk.cli import main
from tlsk.persistence.model_files import load_model_with_metadata

REPO = Path(__file__).resolve().parents[1]
METHODS = [
    "scratch CNN",
    "bottleneck + logistic regression",
    "bottleneck + SVM",
    "fine-tuned VGG16",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    # KERAS_HOME empty: the demo must notice there are no ImageNet weights.
    env["KERAS_HOME"] = str(tmp_path_factory.mktemp("keras_home"))
    result = subprocess.run(
        [sys.executable, "-m", "tlsk", "demo", "--out", str(out), "--quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_demo_prints_a_table_of_the_four_methods(demo):
    _, result = demo
    for method in METHODS:
        assert method in result.stdout
    assert "accuracy" in result.stdout and "predictions of" in result.stdout


def test_demo_says_once_why_it_uses_random_weights(demo):
    _, result = demo
    assert result.stderr.count("ImageNet weights unavailable") == 1


def test_demo_report_folder_holds_metrics_plots_and_models(demo):
    out, _ = demo
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["method"] for row in metrics["methods"]] == METHODS
    assert all(0 <= row["accuracy"] <= 1 for row in metrics["methods"])
    assert metrics["weights"] == "random"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len([p for p in pngs if p.endswith(".confusion.png")]) == 4
    assert len([p for p in pngs if p.endswith(".curves.png")]) == 2
    assert (out / "split" / "split.json").is_file()


def test_demo_models_load_and_predict(demo):
    out, _ = demo
    model, metadata = load_model_with_metadata(
        out / "models" / "bottleneck-logistic-regression.joblib"
    )
    test_image = sorted((out / "split" / "test" / "3").iterdir())[0]
    assert model.predict([str(test_image)]).shape == (1,)
    assert metadata["classes"] == [str(d) for d in range(10)]


def test_demo_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["demo", "--out", str(tmp_path)]) == 1
    assert "use --force" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"
