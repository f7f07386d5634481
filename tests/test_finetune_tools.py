"""The fine-tuning tools: learning-rate range test and ``"auto"`` rates,
schedules, discriminative rates, gradual unfreezing, ``warm_start`` and the
embeddings of ``transform``.

Tiny networks only (32 px, a random VGG16, a few coloured images).
"""

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import keras
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from tests._datasets import coloured_images
from tests._training import PLAIN
from tlsk import KerasFineTuneClassifier, SmallCNNClassifier, lr_find
from tlsk.images.decode import image_inputs
from tlsk.training.finetune import block_rate_scales
from tlsk.training.lr_finder import LRFinderResult
from tlsk.training.optimizers import learning_rate_schedule, make_optimizer

REPO = Path(__file__).resolve().parents[1]
FINETUNE = {
    **PLAIN,
    "weights": None,
    "dense_units": (16,),
    "dropout": 0,
    "head_epochs": 1,
    "head_learning_rate": 1e-2,
    "finetune_epochs": 1,
}


def fine_tune(**params):
    return KerasFineTuneClassifier(**{**FINETUNE, **params})


def small_cnn(**params):
    return SmallCNNClassifier(
        **{**PLAIN, "filters": (4, 8, 8), "dense_units": 8, "epochs": 1, **params}
    )


@pytest.fixture(scope="module")
def data():
    return coloured_images(4, 32, seed=3)


def base_layer_weights(model, name):
    return [w.copy() for w in model.get_layer("vgg16").get_layer(name).get_weights()]


def largest_change(before, after):
    return max(float(np.abs(a - b).max()) for a, b in zip(before, after, strict=True))


# -- schedules ----------------------------------------------------------------


def test_cosine_warms_up_to_the_rate_then_decays_to_zero():
    schedule = learning_rate_schedule("cosine", 0.1, steps=100)
    rates = [float(schedule(step)) for step in (0, 10, 55, 100)]
    assert rates[0] == pytest.approx(0, abs=1e-9)
    assert rates[1] == pytest.approx(0.1)  # the end of the 10% warm-up
    assert 0 < rates[2] < 0.1
    assert rates[3] == pytest.approx(0, abs=1e-9)


def test_one_cycle_starts_at_a_25th_and_ends_near_zero():
    schedule = learning_rate_schedule("one_cycle", 0.1, steps=100)
    assert float(schedule(0)) == pytest.approx(0.1 / 25)
    assert float(schedule(25)) == pytest.approx(0.1)
    assert float(schedule(100)) == pytest.approx(0.1 / 1e5, rel=1e-3)


def test_constant_is_the_rate_itself():
    assert learning_rate_schedule("constant", 3e-4, steps=10) == 3e-4


def test_a_schedule_changes_the_training_and_rates_are_recorded(data):
    images, labels = data
    constant = fine_tune().fit(images, labels)
    one_cycle = fine_tune(schedule="one_cycle").fit(images, labels)
    assert one_cycle.learning_rates_ == {"head": 1e-2, "finetune": 1e-4}
    assert not np.allclose(
        constant.predict_proba(images), one_cycle.predict_proba(images)
    )


# -- discriminative learning rates -------------------------------------------


def test_scaled_optimizer_gives_each_variable_its_fraction_of_the_rate(tmp_path):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    before = [v.numpy().copy() for v in model.trainable_variables]
    scales = {"hidden/kernel": 0.0, "hidden/bias": 0.5}
    model.compile(optimizer=make_optimizer("sgd", 0.1, rate_scales=scales), loss="mse")
    x = np.random.default_rng(0).uniform(size=(8, 4)).astype("float32")
    model.train_on_batch(x, np.ones((8, 2), dtype="float32"))
    moved = {
        v.path: float(np.abs(v.numpy() - b).max())
        for v, b in zip(model.trainable_variables, before, strict=True)
    }
    assert moved["hidden/kernel"] == 0
    assert moved["hidden/bias"] > 0 and moved["out/kernel"] > 0
    # The scales travel with the model file and load back in safe mode.
    model.save(tmp_path / "scaled.keras")
    loaded = keras.saving.load_model(tmp_path / "scaled.keras", safe_mode=True)
    assert loaded.optimizer.rate_scales == scales


def test_block_scales_are_geometric_from_the_head_down():
    model = fine_tune(trainable_blocks=2)._build_model(3, seed=0, precision="float32")
    scales = block_rate_scales(model, 2, 0.01)
    assert scales["block5_conv1/kernel"] == pytest.approx(0.1)
    assert scales["block4_conv3/kernel"] == pytest.approx(0.01)
    assert not any(
        path.startswith(("block3", "head", "predictions")) for path in scales
    )


def test_a_low_ratio_slows_the_earlier_block(data):
    changes = {}
    for ratio in (1.0, 1e-3):
        model = fine_tune(
            trainable_blocks=2,
            head_epochs=0,
            finetune_learning_rate=1e-2,
            block_lr_ratio=ratio,
        )
        start = model._build_model(3, seed=0, precision="float32")
        initial = base_layer_weights(start, "block4_conv1")
        model.fit(*data)
        changes[ratio] = largest_change(
            initial, base_layer_weights(model.model_, "block4_conv1")
        )
    assert 0 < changes[1e-3] < changes[1.0] / 20


# -- gradual unfreezing --------------------------------------------------------


def test_gradual_unfreezing_opens_one_more_stage_per_phase(data):
    model = fine_tune(trainable_blocks=3, finetune_epochs=4, gradual_unfreezing=True)
    model.fit(*data)
    assert list(model.history_) == ["head", "finetune_1", "finetune_2", "finetune_3"]
    epochs = [len(model.history_[f"finetune_{k}"]["loss"]) for k in (1, 2, 3)]
    assert epochs == [1, 1, 2]


# -- warm start ---------------------------------------------------------------


def test_warm_start_continues_the_same_network(data):
    model = small_cnn(warm_start=True).fit(*data)
    network = model.model_
    first = [w.copy() for w in network.get_weights()]
    model.fit(*data)
    assert model.model_ is network
    assert len(model.history_["train"]["loss"]) == 2
    assert largest_change(first, network.get_weights()) > 0
    cold = clone(model).set_params(warm_start=False).fit(*data)
    assert len(cold.history_["train"]["loss"]) == 1


def test_warm_start_refuses_other_classes(data):
    images, labels = data
    model = small_cnn(warm_start=True).fit(images, labels)
    renamed = np.where(labels == "red", "crimson", labels)
    with pytest.raises(ValueError, match=r"warm_start=True continues .*'crimson'"):
        model.fit(images, renamed)
    assert model.classes_.tolist() == ["blue", "green", "red"]
    assert model.predict(images).shape == (len(images),)


# -- embeddings ---------------------------------------------------------------


def test_transform_returns_the_pooled_features_of_the_trained_base(data):
    images, labels = data
    model = fine_tune().fit(images, labels)
    embeddings = model.transform(images)
    assert embeddings.shape == (len(images), 512)
    pooled = keras.Model(
        model.model_.inputs, model.model_.get_layer("head_pool").output
    )
    expected = pooled.predict(model._batches(image_inputs(images)), verbose=0)
    np.testing.assert_allclose(embeddings, expected, rtol=1e-5, atol=1e-6)
    assert model.get_feature_names_out()[:2].tolist() == ["finetune0", "finetune1"]


def test_a_fine_tuned_network_feeds_a_scikit_learn_classifier(data):
    images, labels = data
    pipeline = Pipeline(
        [("finetune", fine_tune()), ("knn", KNeighborsClassifier(n_neighbors=1))]
    ).fit(images, labels)
    assert pipeline.score(images, labels) == 1.0  # 1-NN on its own training set


# -- learning-rate range test --------------------------------------------------


def test_lr_find_gives_a_curve_and_leaves_the_estimator_alone(data, tmp_path):
    model = small_cnn()
    result = lr_find(model, *data, num_steps=30)
    assert result.phase == "train"
    assert 2 <= len(result.losses) <= 30
    assert np.all(np.diff(result.learning_rates) > 0)
    assert result.suggestion == pytest.approx(result.lr_min / 10)
    assert not hasattr(model, "model_")
    result.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"


def test_lr_find_stops_once_the_loss_diverges(data):
    result = lr_find(small_cnn(), *data, start=1e-4, stop=1e4, num_steps=80)
    assert len(result.losses) < 80
    assert result.learning_rates[-1] < 1e4


def test_lr_find_without_a_phase_with_epochs_says_so(data):
    with pytest.raises(ValueError, match="every phase of the estimator has 0 epochs"):
        lr_find(small_cnn(epochs=0), *data)


def test_lr_find_of_the_second_phase_trains_the_head_first(data):
    result = lr_find(fine_tune(), *data, phase="finetune", num_steps=10)
    assert result.phase == "finetune"
    with pytest.raises(
        ValueError, match=r"phase must be one of \['head', 'finetune'\]"
    ):
        lr_find(fine_tune(), *data, phase="train")


def test_lr_find_checks_the_parameters_as_fit_does(data):
    with pytest.raises(ValueError, match=r"'epochs' parameter .* Got -1 instead"):
        lr_find(small_cnn(epochs=-1), *data)


def test_auto_rate_is_the_range_tests_suggestion(data):
    model = small_cnn(learning_rate="auto").fit(*data)
    found = model.lr_find_["train"]
    assert isinstance(found, LRFinderResult)
    assert model.learning_rates_["train"] == pytest.approx(found.suggestion)
    reloaded = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(reloaded.lr_find_["train"].losses, found.losses)


@pytest.mark.slow  # a new process imports TensorFlow: about 15 s
def test_scaled_optimizers_reload_in_a_fresh_process(data, tmp_path):
    images, labels = data
    model = fine_tune(trainable_blocks=2, block_lr_ratio=0.1).fit(images, labels)
    joblib.dump(model, tmp_path / "model.joblib")
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(
        f"""
        import joblib, numpy as np
        model = joblib.load({str(tmp_path / "model.joblib")!r})
        images = np.load({str(tmp_path / "images.npy")!r})
        np.save({str(tmp_path / "proba.npy")!r}, model.predict_proba(images))
        print(type(model.model_.optimizer).__name__)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "ScaledSGD"
    np.testing.assert_array_equal(
        np.load(tmp_path / "proba.npy"), model.predict_proba(images)
    )
