"""``--tta`` on tlsk evaluate and tlsk predict: a bottleneck pipeline and a Keras
classifier, each trained once here (tiny: random weights, 32 px)."""

import json

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests.test_cli_train_evaluate_predict import (
    TINY,
    data,  # noqa: F401 (a fixture)
    heldout,  # noqa: F401 (a fixture)
    quiet_main,
    read_csv,
    work,  # noqa: F401 (a fixture)
)
from tlsk.cli import CommandError, main
from tlsk.cli._folders import image_files
from tlsk.cli._options import with_tta


@pytest.fixture(scope="module")
def bottleneck(work, data):  # noqa: F811
    model = work / "tta-bottleneck.joblib"
    quiet_main(["train", data, "--out", model, *TINY])
    return model


@pytest.fixture(scope="module")
def scratch(work, data):  # noqa: F811
    model = work / "tta-scratch.joblib"
    quiet_main(
        ["train", data, "--method", "scratch", "--epochs", "1", "--out", model]
        + ["--no-augmentation", *TINY]
    )
    return model


def evaluate_json(model, folder, capsys, *options):
    assert main(["evaluate", str(model), str(folder), "--json", "-q", *options]) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_json_says_the_mode_and_runs_each_view(
    bottleneck,
    heldout,  # noqa: F811
    capsys,
    count_predictions,
):
    plain = evaluate_json(bottleneck, heldout, capsys)
    assert plain["tta"] is None
    assert count_predictions["images"] == 15
    flipped = evaluate_json(bottleneck, heldout, capsys, "--tta", "flip")
    assert flipped["tta"] == "flip" and flipped["n_images"] == 15
    assert count_predictions["images"] == 15 + 2 * 15, "two views of each image"
    assert 0 <= flipped["accuracy"] <= 1


def test_evaluate_text_names_the_views(bottleneck, heldout, capsys):  # noqa: F811
    argv = ["evaluate", str(bottleneck), str(heldout), "--tta", "ten_crop", "-q"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "test-time augmentation: ten_crop (10 views per image)" in out
    assert "confusion matrix" in out


def test_predict_averages_the_bottleneck_features_over_the_views(
    bottleneck,
    heldout,  # noqa: F811
    capsys,
):
    assert main(["predict", str(bottleneck), str(heldout), "--tta", "flip"]) == 0
    captured = capsys.readouterr()
    assert "test-time augmentation: flip (2 views per image)" in captured.err
    rows = read_csv(captured.out)
    model = joblib.load(bottleneck)
    paths = image_files([str(heldout)])
    expected = with_tta(model, "flip").predict_proba(paths).max(axis=1)
    plain = joblib.load(bottleneck).predict_proba(paths).max(axis=1)
    got = np.array([float(row["probability"]) for row in rows])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not np.allclose(got, plain, atol=1e-6), "the views changed something"


def test_a_keras_classifier_averages_its_probabilities(
    scratch,
    heldout,  # noqa: F811
    capsys,
):
    report = evaluate_json(scratch, heldout, capsys, "--tta", "flip")
    assert report["tta"] == "flip"
    assert main(["predict", str(scratch), str(heldout), "--tta", "flip", "-q"]) == 0
    got = [float(row["probability"]) for row in read_csv(capsys.readouterr().out)]
    model = joblib.load(scratch).set_params(tta="flip")
    expected = model.predict_proba(image_files([str(heldout)])).max(axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tta", "five_crop"], "invalid choice: 'five_crop'"),
        (["--imagenet", "--tta", "flip"], "--tta needs a MODEL"),
    ],
)
def test_tta_usage_errors_exit_2(bottleneck, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(bottleneck), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_model_without_tta_is_named():
    with pytest.raises(CommandError, match="--tta needs a tlsk model.*LogisticReg"):
        with_tta(LogisticRegression(), "flip")
