"""Zero-shot classification from class names, on tiny CLIP and SigLIP presets.

The presets are built small with random weights and a vocabulary of a few
words, and saved with KerasHub's own ``save_to_preset``
(tests/_hub_presets.py). Their answers mean nothing, but they must be the
network's: each probability is computed here again by hand from KerasHub's
own tokenizer, encoders and head.
"""

import os
import pickle

import numpy as np
import pytest
from PIL import Image
from sklearn.pipeline import Pipeline

from tests._hub_presets import build, photos, write_preset
from tlsk import ZeroShotImageClassifier, save_model
from tlsk.cache import FeatureCache
from tlsk.cli import main
from tlsk.networks.weights import WeightsUnavailableError
from tlsk.persistence.model_files import load_model_with_metadata

keras_hub = pytest.importorskip("keras_hub")

CLASSES = ["cat", "dog", "bird"]
TEMPLATES = ("a photo of a {}.", "a {}.")


def _write_sharp_preset(family, folder):
    """A tiny preset whose head scores far from 1/n: a larger logit scale.

    A random network's cosines are small; SigLIP's initial scale (log 10)
    and bias (-10) leave every sigmoid near 0, so its probabilities would
    all be 1/n and a wrong formula could still pass.
    """
    backbone, converter, tokenizer = build(family, seed=3)
    head = backbone.siglip_head if family == "siglip" else backbone.clip_head
    head.logit_scale.assign(np.log(60.0))
    if family == "siglip":
        head.logit_bias.assign(-1.0)
    os.makedirs(folder)
    backbone.save_to_preset(folder)
    converter.save_to_preset(folder)
    tokenizer.save_to_preset(folder)
    return str(folder)


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    root = tmp_path_factory.mktemp("zero_shot_presets")
    return {
        family: _write_sharp_preset(family, root / family)
        for family in ("clip", "siglip")
    }


@pytest.fixture(scope="module")
def images():
    return photos(size=40, n=5, seed=1)


def _by_hand(folder, family, images, classes, templates):
    """``(probabilities, decision values)`` from KerasHub's parts, step by step."""
    backbone = keras_hub.models.Backbone.from_preset(folder)
    converter = keras_hub.layers.ImageConverter.from_preset(folder)
    packer = {
        "clip": keras_hub.models.CLIPPreprocessor,
        "siglip": keras_hub.models.SigLIPPreprocessor,
    }[family].from_preset(folder, image_converter=None)
    per_template = []
    for template in templates:
        prompts = [template.format(name) for name in classes]
        ids = packer({"prompts": prompts, "images": None})["token_ids"]
        text = np.asarray(backbone.get_text_embeddings(np.asarray(ids)), np.float64)
        per_template.append(text / np.linalg.norm(text, axis=1, keepdims=True))
    text = np.mean(per_template, axis=0)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    vision = np.asarray(backbone.get_vision_embeddings(np.asarray(converter(images))))
    vision = vision.astype(np.float64)
    vision /= np.linalg.norm(vision, axis=1, keepdims=True)
    if family == "clip":
        logits = np.exp(float(backbone.clip_head.logit_scale)) * vision @ text.T
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        return proba / proba.sum(axis=1, keepdims=True), logits
    head = backbone.siglip_head
    logits = np.exp(float(head.logit_scale)) * vision @ text.T + float(head.logit_bias)
    scores = 1 / (1 + np.exp(-logits))
    return scores / scores.sum(axis=1, keepdims=True), scores


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_probabilities_are_the_networks_own_scores(presets, images, family):
    model = ZeroShotImageClassifier(
        backbone=presets[family],
        classes=CLASSES,
        templates=TEMPLATES,
        precision="float32",
    ).fit()
    expected_proba, expected_scores = _by_hand(
        presets[family], family, images, CLASSES, TEMPLATES
    )
    proba = model.predict_proba(images)
    np.testing.assert_allclose(proba, expected_proba, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        model.decision_function(images), expected_scores, rtol=1e-4, atol=1e-6
    )
    # Scores far from uniform: the check above could tell formulas apart.
    assert np.ptp(proba, axis=1).max() > 0.1
    np.testing.assert_array_equal(
        model.predict(images), np.asarray(CLASSES)[expected_proba.argmax(axis=1)]
    )
    assert model.family_ == family
    assert model.text_embeddings_.shape[0] == len(CLASSES)
    np.testing.assert_allclose(np.linalg.norm(model.text_embeddings_, axis=1), 1)


def test_one_template_is_not_the_average_of_two(presets, images):
    one = ZeroShotImageClassifier(
        backbone=presets["clip"],
        classes=CLASSES,
        templates="a {}.",
        precision="float32",
    ).fit()
    two = ZeroShotImageClassifier(
        backbone=presets["clip"],
        classes=CLASSES,
        templates=TEMPLATES,
        precision="float32",
    ).fit()
    assert not np.allclose(one.text_embeddings_, two.text_embeddings_)
    expected, _ = _by_hand(presets["clip"], "clip", images, CLASSES, ("a {}.",))
    np.testing.assert_allclose(one.predict_proba(images), expected, rtol=1e-4)


def test_fit_takes_the_class_names_from_y_sorted(presets, images):
    labels = ["dog", "cat", "dog", "bird", "cat"]
    model = ZeroShotImageClassifier(
        backbone=presets["siglip"], templates=TEMPLATES, precision="float32"
    ).fit(images, labels)
    assert model.classes_.tolist() == ["bird", "cat", "dog"]
    expected, _ = _by_hand(
        presets["siglip"], "siglip", images, ["bird", "cat", "dog"], TEMPLATES
    )
    np.testing.assert_allclose(model.predict_proba(images), expected, rtol=1e-4)
    assert 0 <= model.score(images, labels) <= 1


def test_in_a_pipeline_with_classes_from_the_labels(presets, images):
    pipe = Pipeline([("zero_shot", ZeroShotImageClassifier(backbone=presets["clip"]))])
    pipe.fit(images, ["cat", "dog", "cat", "dog", "cat"])
    assert pipe.predict_proba(images).shape == (5, 2)
    assert set(pipe.predict(images)) <= {"cat", "dog"}


@pytest.mark.parametrize(
    ("params", "fit_args", "message"),
    [
        ({}, (), "needs its class names"),
        ({"classes": ["cat", "cat"]}, (), "each class once"),
        ({"classes": ["cat", " "]}, (), "none empty"),
        ({"classes": ["cat", "dog"], "templates": "a photo"}, (), "'{}'"),
        ({"classes": ["cat", "dog"], "templates": ()}, (), "'{}'"),
        ({"classes": ["cat", "dog"]}, ([1, 2], ["cat", "cow"]), "not among classes"),
        ({"classes": ["cat", "dog"], "weights": None}, (), "random weights"),
    ],
)
def test_bad_parameters_are_refused_clearly(presets, params, fit_args, message):
    model = ZeroShotImageClassifier(backbone=presets["clip"], **params)
    with pytest.raises(ValueError, match=message):
        model.fit(*fit_args)


def test_a_network_without_a_text_tower_is_refused(tmp_path):
    folder = write_preset("dinov2", tmp_path / "dino")
    for backbone in (folder, "dinov2_small", "vgg16"):
        with pytest.raises(ValueError, match="CLIP or SigLIP") as caught:
            ZeroShotImageClassifier(backbone=backbone, classes=CLASSES).fit()
        assert os.fspath(backbone) in str(caught.value)


def test_a_preset_folder_without_its_tokenizer_is_refused(tmp_path):
    backbone, converter, _ = build("clip")
    folder = tmp_path / "no_tokenizer"
    folder.mkdir()
    backbone.save_to_preset(folder)
    converter.save_to_preset(folder)
    with pytest.raises(ValueError, match="has no tokenizer"):
        ZeroShotImageClassifier(backbone=folder, classes=CLASSES).fit()


def test_offline_the_published_network_fails_at_once_naming_it(monkeypatch, tmp_path):
    import time

    monkeypatch.setenv("TLSK_NO_DOWNLOAD", "1")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "empty"))
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="siglip2_base_patch16_224"):
        ZeroShotImageClassifier(classes=CLASSES).fit()
    assert time.monotonic() - start < 5


def test_text_embeddings_are_cached_and_read_back_without_the_text_tower(
    presets, images, tmp_path, monkeypatch
):
    cache = tmp_path / "features.h5"
    first = ZeroShotImageClassifier(
        backbone=presets["clip"],
        classes=CLASSES,
        templates=TEMPLATES,
        precision="float32",
        cache=cache,
    ).fit()
    expected = first.predict_proba(images)
    namespaces = FeatureCache(cache).info().namespaces
    embeddings = [ns.fingerprint.get("embedding") for ns in namespaces]
    assert embeddings.count("text") == len(TEMPLATES)
    assert embeddings.count("logit_scale,logit_bias") == 1
    poolings = [ns.fingerprint.get("pooling") for ns in namespaces]
    assert poolings.count("embedding") == 1  # the images'

    import tlsk.networks.hub_text

    def no_text_tower(folder):
        raise AssertionError("the text tower was built although the cache holds it")

    monkeypatch.setattr(tlsk.networks.hub_text, "load_text_network", no_text_tower)
    second = ZeroShotImageClassifier(
        backbone=presets["clip"],
        classes=CLASSES,
        templates=TEMPLATES,
        precision="float32",
        cache=cache,
    ).fit()
    np.testing.assert_array_equal(second.text_embeddings_, first.text_embeddings_)
    np.testing.assert_allclose(second.predict_proba(images), expected, rtol=1e-6)
    # A new class is not in the cache: the text tower is needed again.
    with pytest.raises(AssertionError, match="text tower was built"):
        ZeroShotImageClassifier(
            backbone=presets["clip"], classes=[*CLASSES, "red"], cache=cache
        ).fit()


def test_pickle_and_model_files_give_the_same_answers(presets, images, tmp_path):
    model = ZeroShotImageClassifier(
        backbone=presets["siglip"], classes=CLASSES, precision="float32"
    ).fit()
    expected = model.predict_proba(images)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(again.predict_proba(images), expected, rtol=1e-6)
    save_model(model, tmp_path / "zs.joblib")
    loaded, metadata = load_model_with_metadata(tmp_path / "zs.joblib")
    np.testing.assert_allclose(loaded.predict_proba(images), expected, rtol=1e-6)
    # A file to share names no folder of this machine.
    with pytest.raises(ValueError, match="backbone"):
        save_model(model, tmp_path / "zs.skops")
    assert not (tmp_path / "zs.skops").exists()


def test_test_time_augmentation_averages_the_image_embeddings(presets, images):
    model = ZeroShotImageClassifier(
        backbone=presets["clip"], classes=CLASSES, precision="float32"
    ).fit()
    plain = model.predict_proba(images)
    flipped = model.predict_proba(images[:, :, ::-1])
    model.set_params(tta="flip")
    both = model.predict_proba(images)
    assert not np.allclose(plain, both)
    # The mean of the two views' embeddings, not of their probabilities.
    assert not np.allclose(both, (plain + flipped) / 2, atol=1e-6)
    np.testing.assert_allclose(both, model.predict_proba(images[:, :, ::-1]), rtol=1e-5)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("zero_shot_data")
    for i, name in enumerate(["cat", "dog"]):
        (root / name).mkdir()
        for j, picture in enumerate(photos(size=48, n=3, seed=10 + i)):
            Image.fromarray(picture).save(root / name / f"{j}.jpg", quality=90)
    return root


def test_cli_predict_and_evaluate_zero_shot(presets, photo_folder, tmp_path, capsys):
    argv = ["predict", "--zero-shot", "cat, dog,bird", "-q"]
    assert main([*argv, "--backbone", presets["clip"], str(photo_folder)]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "path,label,probability,error"
    assert len(rows) == 7
    assert {row.split(",")[1] for row in rows[1:]} <= set(CLASSES)

    report = tmp_path / "report"
    argv = ["evaluate", "--zero-shot", "--backbone", presets["siglip"], "--json"]
    argv += ["--report", str(report), "--template", "a {}.", "-q"]
    assert main([*argv, str(photo_folder)]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "zero-shot" and result["model"] is None
    assert sum(map(sum, result["confusion_matrix"]["matrix"])) == 6
    page = (report / "index.html").read_text(encoding="utf-8")
    assert "zero-shot" in page and "a {}." in page


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "--zero-shot", "cat"], "two or more class names"),
        (["predict", "--zero-shot", "cat,,dog"], "none empty"),
        (["predict", "--zero-shot", "cat,cat"], "['cat'] twice"),
        (["predict", "--zero-shot", "a,b", "--template", "x"], "--template needs"),
    ],
)
def test_cli_bad_class_names_and_templates_name_the_flag(
    argv, message, photo_folder, capsys
):
    assert main([*argv, str(photo_folder)]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "--zero-shot", "a,b", "--imagenet"], "not both"),
        (["predict", "--template", "a {}.", "m.joblib"], "need --zero-shot"),
        (["evaluate", "--zero-shot", "m.joblib"], "takes no MODEL"),
        (["evaluate", "--backbone", "clip_vit_base_patch16", "m.joblib"], "needs"),
    ],
)
def test_cli_zero_shot_usage_errors(argv, message, photo_folder, capsys):
    with pytest.raises(SystemExit) as caught:
        main([*argv, str(photo_folder)])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_a_network_without_text_tower_names_the_flag(photo_folder, capsys):
    argv = ["evaluate", "--zero-shot", "--backbone", "dinov2_small", "-q"]
    assert main([*argv, str(photo_folder)]) == 1
    assert "--backbone must be a CLIP or SigLIP network" in capsys.readouterr().err
