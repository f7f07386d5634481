"""KerasHub backbones as tlsk feature extractors, on tiny presets written here.

Each family's network (DINOv2 with and without registers, DINOv3, ViT, CLIP,
SigLIP) is built small with random weights and saved as a preset folder by
KerasHub's own ``save_to_preset`` (tests/_hub_presets.py): what a user
copies from a machine with a network, in miniature. tlsk's vectors must be
KerasHub's: its backbone, that preset's image converter and the pooling.
"""

import dataclasses
import os
import sys
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from tests._hub_presets import FAMILIES, photos, write_preset
from tlsk import ImageFeatureExtractor
from tlsk.cli import main
from tlsk.networks.registry import BACKBONES, get_spec
from tlsk.networks.weights import WeightsUnavailableError

keras_hub = pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """``{family: folder}``: a tiny preset of each family."""
    root = tmp_path_factory.mktemp("presets")
    return {family: write_preset(family, root / family) for family in FAMILIES}


def _kerashub_tokens(folder, images, block=None):
    """KerasHub's own: the preset's converter, then its backbone's tokens."""
    backbone = keras_hub.models.Backbone.from_preset(folder)
    converter = keras_hub.layers.ImageConverter.from_preset(folder)
    x = np.asarray(converter(images))
    if isinstance(backbone, keras_hub.models.DINOV3Backbone):
        return backbone, x, np.asarray(backbone({"pixel_values": x}))
    if isinstance(backbone, keras_hub.models.ViTBackbone):
        return backbone, x, np.asarray(backbone(x))
    if isinstance(backbone, keras_hub.models.DINOV2Backbone):
        return backbone, x, np.asarray(backbone({"images": x}))
    return backbone, x, np.asarray(backbone.vision_encoder({"images": x}))


def _reference(family, folder, images, pooling):
    """What each pooling means, computed from KerasHub's outputs by hand."""
    backbone, x, out = _kerashub_tokens(folder, images)
    if pooling == "embedding":
        if family == "clip":
            return np.asarray(backbone.get_vision_embeddings(x))
        return out  # SigLIP's vision encoder returns its pooled embedding
    if family == "siglip":  # patch tokens after the post layer norm
        encoder = backbone.vision_encoder
        import keras

        out = np.asarray(
            keras.Model(encoder.inputs, encoder.post_layer_norm.output)({"images": x})
        )
    prefix = {"dinov2_registers": 5, "dinov3": 5, "siglip": 0}.get(family, 1)
    cls, mean = out[:, 0], out[:, prefix:].mean(axis=1)
    return {"cls": cls, "mean": mean, "cls+mean": np.concatenate([cls, mean], 1)}[
        pooling
    ]


POOLINGS = [
    (family, pooling)
    for family in FAMILIES
    for pooling in get_spec(
        {
            "dinov2": "dinov2_small",
            "dinov2_registers": "dinov2_with_registers_small",
            "dinov3": "dinov3_small",
            "vit": "vit_base_patch16_224_in21k",
            "clip": "clip_vit_base_patch16",
            "siglip": "siglip2_base_patch16_224",
        }[family]
    ).poolings
]


@pytest.mark.parametrize("family, pooling", POOLINGS)
def test_vectors_equal_kerashub_backbone_converter_and_pooling(
    presets, family, pooling
):
    images = photos()  # not square, not the native size: the converter resizes
    extractor = ImageFeatureExtractor(
        backbone=presets[family], pooling=pooling, precision="float32"
    )
    vectors = extractor.fit_transform(images)
    expected = _reference(family, presets[family], images, pooling)
    assert vectors.dtype == np.float32 and vectors.shape == expected.shape
    np.testing.assert_allclose(
        vectors, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()
    )
    assert extractor.fingerprint_["pooling"] == pooling
    assert extractor.fingerprint_["model"] == "kerashub-preset"


@pytest.mark.parametrize("family", ["dinov2_registers", "clip", "siglip"])
def test_bfloat16_vectors_agree_with_float32(presets, family):
    images = photos(n=6, seed=1)
    vectors = {
        precision: ImageFeatureExtractor(
            backbone=presets[family], precision=precision
        ).fit_transform(images)
        for precision in ("float32", "bfloat16")
    }
    a, b = vectors["float32"], vectors["bfloat16"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.999, cosine


def test_an_earlier_block_is_its_tokens_after_the_final_norm(presets):
    import keras

    folder = presets["dinov2"]
    images = photos()
    backbone, x, _ = _kerashub_tokens(folder, images)
    stage = keras.Model(backbone.inputs, backbone.pyramid_outputs["stage1"])
    expected = np.asarray(backbone.layernorm(stage({"images": x})))[:, 0]
    for layer in ("block1", 1):
        extractor = ImageFeatureExtractor(
            backbone=folder, layer=layer, precision="float32"
        )
        np.testing.assert_allclose(
            extractor.fit_transform(images), expected, rtol=1e-4, atol=1e-5
        )
        assert extractor.layer_ == "block1"
    with pytest.raises(ValueError, match="'block1' to 'block2'.*received 'block9'"):
        ImageFeatureExtractor(backbone=folder, layer="block9").fit()
    with pytest.raises(ValueError, match="after its last block"):
        ImageFeatureExtractor(
            backbone=presets["clip"], layer="block1", pooling="embedding"
        ).fit()


def test_fingerprints_differ_across_networks_poolings_weights_and_layers(
    presets, tmp_path
):
    other = write_preset("dinov2", tmp_path / "other", seed=1)
    fingerprints = [
        ImageFeatureExtractor(backbone=backbone, **{"precision": "float32", **params})
        .fit()
        .fingerprint_
        for backbone, params in [
            (presets["dinov2"], {}),
            (presets["dinov2"], {"pooling": "mean"}),
            (presets["dinov2"], {"layer": "block1"}),
            (presets["dinov2"], {"precision": "bfloat16"}),
            (other, {}),  # the same architecture, other weights
            (presets["dinov2_registers"], {}),
            (presets["vit"], {}),
            ("dinov3_small", {"weights": None, "input_size": 32}),
        ]
    ]
    assert len({repr(sorted(f.items())) for f in fingerprints}) == len(fingerprints)


def test_a_registry_name_builds_its_architecture_with_random_weights_offline():
    images = photos(n=2)
    extractor = ImageFeatureExtractor(
        backbone="dinov3_small", weights=None, input_size=32, precision="float32"
    )
    first = extractor.fit_transform(images)
    assert first.shape == (2, 384) and extractor.network_.startswith("DINOV3")
    # Random weights are drawn from tlsk's seed: the same in every build.
    again = ImageFeatureExtractor(
        backbone="dinov3_small", weights=None, input_size=32, precision="float32"
    )
    np.testing.assert_array_equal(again.fit_transform(images), first)
    with pytest.raises(ValueError, match="multiple of dinov3_small's patch size, 16"):
        ImageFeatureExtractor(
            backbone="dinov3_small", weights=None, input_size=40
        ).fit()
    with pytest.raises(ValueError, match="input_size must be 224 for clip_vit_base"):
        ImageFeatureExtractor(
            backbone="clip_vit_base_patch16", weights=None, input_size=112
        ).fit()


def test_pretrained_weights_offline_are_an_immediate_error_naming_the_preset(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    start = time.monotonic()
    for weights in ("pretrained", "imagenet"):
        with pytest.raises(WeightsUnavailableError) as raised:
            ImageFeatureExtractor(backbone="dinov2_small", weights=weights).fit()
        message = str(raised.value)
        assert "KerasHub preset 'dinov2_small'" in message
        assert "kaggle://keras/dinov2/keras/dinov2_small/1" in message
        assert str(tmp_path / "kagglehub" / "models" / "keras" / "dinov2") in message
    assert time.monotonic() - start < 5
    # On the command line, in its own words.
    argv = ["extract", str(tmp_path), "--backbone", "dinov2_small", "-q"]
    assert main([*argv, "--cache", str(tmp_path / "c.h5")]) == 1


def test_a_preset_in_kerashubs_download_cache_is_used_offline(
    presets, tmp_path, monkeypatch
):
    import shutil

    spec = get_spec("dinov2_small")
    tiny = dataclasses.replace(
        spec,
        config={
            **spec.config,
            "num_layers": 2,
            "hidden_dim": 32,
            "num_heads": 2,
            "intermediate_dim": 64,
        },
        n_blocks=2,
        hidden_dim=32,
    )
    monkeypatch.setitem(BACKBONES, "dinov2_small", tiny)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    cached = tmp_path / "kagglehub" / "models" / "keras" / "dinov2" / "keras"
    shutil.copytree(presets["dinov2"], cached / "dinov2_small" / "1")
    images = photos()
    pretrained = ImageFeatureExtractor(
        backbone="dinov2_small", weights="pretrained", input_size=28
    ).fit()
    given = ImageFeatureExtractor(
        backbone="dinov2_small", weights=presets["dinov2"], input_size=28
    ).fit()
    np.testing.assert_allclose(
        pretrained.transform(images), given.transform(images), rtol=1e-5
    )
    # The folder's files are its identity: the same preset, the same namespace.
    assert pretrained.fingerprint_ == given.fingerprint_


def test_a_wrong_folder_for_a_name_is_refused(presets, tmp_path):
    with pytest.raises(ValueError, match="is a preset of CLIPBackbone, not of"):
        ImageFeatureExtractor(backbone="dinov2_small", weights=presets["clip"]).fit()
    with pytest.raises(ValueError, match="its num_layers is 2, dinov2_small's 12"):
        ImageFeatureExtractor(backbone="dinov2_small", weights=presets["dinov2"]).fit()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"class_name": "GemmaBackbone"}')
    with pytest.raises(ValueError, match="not a preset folder of a network tlsk"):
        ImageFeatureExtractor(backbone=str(foreign)).fit()
    with pytest.raises(ValueError, match="weights=None builds a registry network"):
        ImageFeatureExtractor(backbone=presets["vit"], weights=None).fit()
    with pytest.raises(ValueError, match="preprocessing and interpolation must be"):
        ImageFeatureExtractor(backbone=presets["vit"], interpolation="bilinear").fit()
    with pytest.raises(ValueError, match="pooling must be one of .'embedding', 'mean'"):
        ImageFeatureExtractor(backbone=presets["siglip"], pooling="cls").fit()
    # A Keras weights file is not how a KerasHub network's weights come.
    weights_file = tmp_path / "dinov2.weights.h5"
    weights_file.write_bytes(b"")
    with pytest.raises(ValueError, match="come as a preset folder .* not a folder"):
        ImageFeatureExtractor(backbone="dinov2_small", weights=str(weights_file)).fit()


def test_a_preset_folder_changed_after_fit_is_noticed(presets, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(presets["vit"], folder)
    extractor = ImageFeatureExtractor(backbone=str(folder)).fit()
    extractor.transform(photos(n=1))
    write_preset("vit", folder, seed=3)  # other weights under the same name
    with pytest.raises(ValueError, match="changed since it was fitted"):
        extractor.transform(photos(n=1))


def test_cache_grid_search_and_tta_work_as_for_every_backbone(
    presets, tmp_path, count_predictions
):
    images = photos(n=12, seed=2)
    labels = np.array(["a", "b", "c"] * 4)
    cache = str(tmp_path / "features.h5")
    pipe = Pipeline(
        [
            ("features", ImageFeatureExtractor(cache=cache, precision="float32")),
            ("classify", LogisticRegression(max_iter=200)),
        ]
    )
    grid = GridSearchCV(
        pipe,
        [
            {
                "features__backbone": ["vgg16"],
                "features__weights": [None],
                "features__input_size": [32],
            },
            {"features__backbone": [presets["dinov2"], presets["clip"]]},
        ],
        cv=2,
    )
    grid.fit(images, labels)
    assert len(grid.cv_results_["params"]) == 3
    seen = count_predictions["images"]
    # Each image computed once per network, then served by the cache.
    assert seen <= 3 * len(images) * 2  # refits included, no more than twice
    before = count_predictions["images"]
    extractor = ImageFeatureExtractor(
        backbone=presets["clip"], cache=cache, precision="float32"
    ).fit()
    extractor.transform(images)
    assert count_predictions["images"] == before
    flipped = ImageFeatureExtractor(backbone=presets["clip"], tta="flip").fit()
    assert flipped.transform(images[:2]).shape == (2, 24)


def test_the_command_line_extracts_and_trains_on_a_preset_folder(
    presets, tmp_path, capsys
):
    from tests._datasets import write_image_folder

    write_image_folder(tmp_path / "data", 4, formats=("png",))
    folder = presets["vit"]
    common = ["--backbone", folder, "--weights", "pretrained", "-q"]
    cache = str(tmp_path / "c.h5")
    assert main(["extract", str(tmp_path / "data"), "--cache", cache, *common]) == 0
    model = str(tmp_path / "m.joblib")
    argv = ["train", str(tmp_path / "data"), "--out", model, "--cache", cache]
    assert main([*argv, *common, "--val", "0", "--pooling", "mean"]) == 0
    capsys.readouterr()
    assert main(["predict", model, str(tmp_path / "data" / "red"), "-q"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].startswith("path,label") and len(rows) == 5

    from tlsk.persistence.model_files import load_model_with_metadata

    fitted, metadata = load_model_with_metadata(model)
    assert metadata["backbone"] == folder
    assert fitted[0].fingerprint_["pooling"] == "mean"
    # The converter resizes: a filter of one's own is refused in the flag's words.
    argv = ["extract", str(tmp_path / "data"), "--cache", cache, *common]
    assert main([*argv, "--interpolation", "bicubic"]) == 1
    assert "--interpolation must not be given" in capsys.readouterr().err


def test_without_keras_hub_a_hub_name_says_which_extra_and_the_rest_works(
    monkeypatch,
):
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'tlsk\[hub\]'"):
        ImageFeatureExtractor(backbone="dinov2_small", weights=None).fit()
    vectors = ImageFeatureExtractor(
        backbone="vgg16", weights=None, input_size=32
    ).fit_transform(photos(n=1))
    assert vectors.shape == (1, 512)
    assert os.environ.get("TLSK_NO_DOWNLOAD")  # the suite never downloads


@pytest.mark.parametrize("family", ["dinov2_registers", "siglip"])
def test_openvino_converts_and_quantizes_the_transformers(presets, family):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    images = photos(n=32, seed=3)
    keras_vectors = ImageFeatureExtractor(
        backbone=presets[family], precision="float32"
    ).fit_transform(images)
    converted = ImageFeatureExtractor(
        backbone=presets[family], precision="float32", engine="openvino"
    ).fit_transform(images)
    np.testing.assert_allclose(
        converted, keras_vectors, atol=1e-5 * np.abs(keras_vectors).max()
    )
    int8 = ImageFeatureExtractor(backbone=presets[family], precision="int8").fit(images)
    # NNCF's transformer mode, part of what names the quantized model.
    assert int8._quantization["model_type"] == "transformer"
    vectors = int8.transform(images)
    cosine = (vectors * keras_vectors).sum(1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(keras_vectors, axis=1)
    )
    # Tiny random networks; real weights are measured in benchmarks/.
    assert cosine.min() >= 0.99, cosine
