"""tlsk.evaluation.plots writes real PNG files, leaving matplotlib's global state."""

import subprocess
import sys

import pytest
from PIL import Image

from tlsk.evaluation.plots import plot_confusion_matrix, plot_history

HISTORY = {
    "head": {
        "loss": [1.1, 0.8, 0.7],
        "accuracy": [0.4, 0.6, 0.7],
        "val_loss": [1.0, 0.9, 0.85],
        "val_accuracy": [0.5, 0.55, 0.6],
    },
    "finetune": {
        "loss": [0.6, 0.5],
        "accuracy": [0.75, 0.8],
        "val_loss": [0.8, 0.78],
        "val_accuracy": [0.65, 0.7],
    },
}


def _png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_history_png_has_both_phases_one_after_the_other(tmp_path):
    figure = plot_history(HISTORY, tmp_path / "curves.png")
    assert _png_size(tmp_path / "curves.png")[0] > 500
    loss_axes = figure.axes[0]
    lines = {line.get_label(): line for line in loss_axes.get_lines()}
    assert list(lines["finetune loss"].get_xdata()) == [4, 5]
    assert list(lines["head val_loss"].get_ydata()) == [1.0, 0.9, 0.85]


def test_history_accepts_a_fitted_estimator():
    class Fitted:
        history_ = HISTORY

    assert plot_history(Fitted()).axes[1].get_title() == "accuracy"


def test_history_without_validation_draws_training_curves_only():
    figure = plot_history({"train": {"loss": [1.0, 0.5], "accuracy": [0.5, 0.9]}})
    assert [line.get_label() for line in figure.axes[0].get_lines()] == ["train loss"]


def test_empty_history_is_refused():
    with pytest.raises(ValueError, match="history must be a fitted Keras classifier"):
        plot_history({})


def test_confusion_matrix_png_counts(tmp_path):
    figure = plot_confusion_matrix(
        ["cat", "cat", "dog", "dog"],
        ["cat", "dog", "dog", "dog"],
        path=tmp_path / "c.png",
    )
    assert _png_size(tmp_path / "c.png")[0] > 100
    texts = sorted(t.get_text() for t in figure.axes[0].texts)
    assert texts == ["0", "1", "1", "2"]


def test_confusion_matrix_normalised_rates():
    figure = plot_confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1], normalize="true")
    texts = sorted(t.get_text() for t in figure.axes[0].texts)
    assert texts == ["0.00", "0.50", "0.50", "1.00"]


def test_saving_into_a_missing_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match="existing folder"):
        plot_confusion_matrix([0, 1], [0, 1], path=tmp_path / "no" / "c.png")


def test_plots_never_touch_pyplot():
    # In a fresh process: pyplot's import alone changes global matplotlib state.
    code = (
        "import sys; "
        "from tlsk.evaluation.plots import plot_confusion_matrix, plot_history; "
        "plot_confusion_matrix([0, 1], [1, 1]); "
        "plot_history({'t': {'loss': [1.0], 'accuracy': [0.5]}}); "
        "assert 'matplotlib' in sys.modules; "
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
