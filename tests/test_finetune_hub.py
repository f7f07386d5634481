"""Fine-tuning KerasHub vision transformers: blocks opened, LoRA, persistence.

On tiny presets of each family (tests/_hub_presets.py: two blocks, width 32):
phase 2 changes exactly what it opens (the last blocks and what follows
them, or only LoRA adapters and the head, every kernel, bias, norm and
embedding of the network bit-identical); the adapters have the parameters
their rank predicts; a fitted network pickles as ``.keras`` bytes (adapters
merged, none left, the same outputs) and travels in a ``.skops`` file past
the shared-network check; the command line trains one and predicts with it.
"""

import copy
import dataclasses
import pickle

import numpy as np
import pytest
from sklearn.base import clone

from tests._datasets import coloured_images, write_image_folder
from tests._hub_presets import FAMILIES, write_preset
from tests._training import PLAIN
from tlsk import KerasFineTuneClassifier, load_model, save_model
from tlsk.cli import main
from tlsk.images.decode import image_inputs
from tlsk.networks.registry import BACKBONES, get_spec
from tlsk.persistence.model_files import ModelFileError

keras_hub = pytest.importorskip("keras_hub")

from tlsk.persistence.model_files import load_model_with_metadata  # noqa: E402
from tlsk.persistence.shared_networks import check_network  # noqa: E402
from tlsk.training.hub_finetune import (  # noqa: E402 - needs keras_hub's Keras
    block_rate_scales,
    freeze_tower,
    tower_parts,
)
from tlsk.training.keras_classifier import _model_to_bytes  # noqa: E402

TINY = {
    **PLAIN,
    "input_size": None,  # the preset's: 28 for DINOv2, 32 for the others
    "batch_size": 4,
    "dense_units": (8,),
    "dropout": 0,
    "head_epochs": 1,
    "finetune_epochs": 1,
    "finetune_learning_rate": 1e-2,
    "precision": "float32",
}
SEED = 0  # what random_state=0 gives the layers (tlsk.training.keras_classifier._seed)

# The tiny DINOv2 of tests/_hub_presets.py: width 32, 2 heads, MLP of 64.
HIDDEN, HEADS, MLP = 32, 2, 64


class _Presets(dict):
    """``{family: folder}``, each tiny preset written when first asked for."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, family):
        self[family] = write_preset(family, self.root / family)
        return self[family]


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    return _Presets(tmp_path_factory.mktemp("presets"))


@pytest.fixture(scope="module")
def data():
    # 40 px pictures: the preset's image converter resizes them.
    return coloured_images(4, size=40, seed=5, classes=("red", "blue"))


def fine_tune(backbone, **params):
    return KerasFineTuneClassifier(backbone=backbone, **{**TINY, **params})


def initial_network(model):
    """The network ``model``'s fit started from (the same seed, the same weights)."""
    return clone(model)._build_model(len(model.classes_), SEED, "float32")


def parts_weights(model):
    """``{part: [arrays]}`` of the tower's parts and the head, adapters left out."""
    parts = tower_parts(model)

    def values(layers):
        return [
            np.array(variable.numpy())
            for layer in layers
            for variable in layer.weights
            if "lora_kernel" not in variable.path
        ]

    head = [layer for layer in model.layers if layer is not parts.tower]
    return {
        "before": values(parts.before),
        **{f"block{i}": values([b]) for i, b in enumerate(parts.blocks, start=1)},
        "after": values(parts.after),
        "head": values(head),
    }


def changed_parts(fitted, initial):
    """The parts of ``fitted`` whose weights differ from ``initial``'s."""
    new, old = parts_weights(fitted), parts_weights(initial)
    assert new.keys() == old.keys()
    changed = set()
    for part in new:
        assert len(new[part]) == len(old[part]) > 0, part
        pairs = zip(new[part], old[part], strict=True)
        if any(not np.array_equal(a, b) for a, b in pairs):
            changed.add(part)
    return changed


def lora_layers_of(model):
    return [
        layer for layer in model._flatten_layers() if getattr(layer, "lora_enabled", 0)
    ]


@pytest.fixture(scope="module")
def opened(presets, data):
    """DINOv2 fine-tuned with its last block open."""
    return fine_tune(presets["dinov2"], trainable_blocks=1).fit(*data)


@pytest.fixture(scope="module")
def adapted(presets, data):
    """DINOv2 fine-tuned with rank-2 adapters on its last block."""
    return fine_tune(presets["dinov2"], trainable_blocks=1, lora_rank=2).fit(*data)


# -- what trains ---------------------------------------------------------------


def test_opening_one_block_changes_it_the_final_norm_and_the_head_only(opened):
    changed = changed_parts(opened.model_, initial_network(opened))
    # Embeddings and the first block bit-identical.
    assert changed == {"block2", "after", "head"}


def test_lora_changes_only_the_adapters_and_the_head(adapted):
    changed = changed_parts(adapted.model_, initial_network(adapted))
    # Every kernel, bias, norm and embedding of the network bit-identical.
    assert changed == {"head"}
    parts = tower_parts(adapted.model_)
    adapters = lora_layers_of(parts.blocks[1])
    assert len(adapters) == 6 and not lora_layers_of(parts.blocks[0])
    for layer in adapters:  # B starts at zero: every adapter learned
        assert np.abs(layer.lora_kernel_b.numpy()).max() > 0, layer.name


@pytest.mark.parametrize("rank", [1, 2, 4])
def test_lora_trains_the_parameters_its_rank_predicts(presets, rank):
    model = fine_tune(presets["dinov2"], lora_rank=rank)
    network = model._build_model(2, SEED, "float32")
    head = (HIDDEN * 8 + 8) + (8 * 2 + 2)  # dense_units=(8,), then 2 classes

    def trained():
        return sum(int(np.prod(v.shape)) for v in network.trainable_weights)

    freeze_tower(network, 0, rank)
    assert trained() == head
    opened = freeze_tower(network, 2, rank)
    # Per block: query, key and value (kernels hidden x heads x head_dim:
    # A hidden x heads x r, B r x head_dim), output (heads x head_dim x
    # hidden), the MLP's two Dense (A in x r, B r x out).
    head_dim = HIDDEN // HEADS
    per_block = rank * (
        3 * (HIDDEN * HEADS + head_dim)
        + (HEADS * head_dim + HIDDEN)
        + (HIDDEN + MLP)
        + (MLP + HIDDEN)
    )
    assert trained() == head + 2 * per_block
    assert len(opened) == 12


def test_gradual_unfreezing_and_the_head_phase_open_and_close_blocks(presets):
    model = fine_tune(presets["dinov2"], trainable_blocks=2, gradual_unfreezing=True)
    network = model._build_model(2, SEED, "float32")
    phases = model._phases(network)
    assert [p.name for p in phases] == ["head", "finetune_1", "finetune_2"]
    parts = tower_parts(network)
    trainable = {}
    # Each phase's layers from the state the one before left (the head phase
    # last again: a frozen tower must close the blocks opened since).
    for phase in [*phases, phases[0]]:
        phase.prepare(network)
        trainable[phase.name] = [
            any(v.trainable for v in layer.weights)
            for layer in (*parts.before, *parts.blocks, *parts.after)
        ]
    # before, block1, block2, final norm
    assert trainable["finetune_1"] == [False, False, True, True]
    assert trainable["finetune_2"] == [False, True, True, True]
    assert trainable["head"] == [False, False, False, False]


def test_discriminative_rates_fall_block_by_block(presets):
    model = fine_tune(presets["dinov2"], trainable_blocks=2, block_lr_ratio=0.25)
    network = model._build_model(2, SEED, "float32")
    freeze_tower(network, 2)
    scales = block_rate_scales(network, 2, 0.25)
    parts = tower_parts(network)
    for layer, factor in [
        (parts.blocks[0], 0.25),
        (parts.blocks[1], 0.5),
        (parts.after[0], 0.5),
    ]:
        assert {round(scales[v.path], 9) for v in layer.weights} == {factor}
    assert not {v.path for layer in parts.before for v in layer.weights} & set(scales)


# -- persistence ---------------------------------------------------------------


def test_a_lora_network_pickles_merged_with_the_same_outputs(adapted, data):
    images, _ = data
    assert lora_layers_of(adapted.model_)
    again = pickle.loads(pickle.dumps(adapted))
    # Keras saves the adapters merged into the kernels (W + A @ B * alpha / r).
    assert not lora_layers_of(again.model_)
    np.testing.assert_allclose(
        again.predict_proba(images), adapted.predict_proba(images), atol=1e-6
    )
    np.testing.assert_allclose(
        again.transform(images), adapted.transform(images), rtol=1e-5, atol=1e-6
    )
    assert adapted.transform(images).shape == (len(images), HIDDEN)


def test_a_reloaded_lora_network_trains_on_with_new_adapters(adapted, data):
    again = pickle.loads(pickle.dumps(adapted)).set_params(warm_start=True)
    before = parts_weights(again.model_)
    again.fit(*data)
    assert len(again.history_["finetune"]["loss"]) == 2
    after = parts_weights(again.model_)
    for part in ("before", "block1", "block2", "after"):
        for old, new in zip(before[part], after[part], strict=True):
            np.testing.assert_array_equal(old, new)
    assert len(lora_layers_of(tower_parts(again.model_).blocks[1])) == 6


@pytest.fixture
def tiny_dinov2(monkeypatch):
    """The registry's dinov2_small at the tiny preset's size (random weights)."""
    spec = get_spec("dinov2_small")
    config = {
        **spec.config,
        "num_layers": 2,
        "hidden_dim": HIDDEN,
        "num_heads": HEADS,
        "intermediate_dim": MLP,
        "image_shape": [28, 28, 3],
        "position_embedding_shape": [42, 42],
    }
    tiny = dataclasses.replace(
        spec, config=config, n_blocks=2, hidden_dim=HIDDEN, native_size=28
    )
    monkeypatch.setitem(BACKBONES, "dinov2_small", tiny)
    return tiny


def test_a_lora_network_saves_and_loads_as_skops(tiny_dinov2, data, tmp_path):
    pytest.importorskip("skops")
    images, labels = data
    model = fine_tune("dinov2_small", weights=None, lora_rank=2).fit(images, labels)
    save_model(model, tmp_path / "dino.skops")
    # A shared file: its network passes the check of what a network may hold.
    loaded = load_model(tmp_path / "dino.skops")
    assert not lora_layers_of(loaded.model_) and lora_layers_of(model.model_)
    np.testing.assert_allclose(
        loaded.predict_proba(images), model.predict_proba(images), atol=1e-6
    )
    assert loaded.image_converter_ == model.image_converter_
    assert loaded.lora_rank == 2 and loaded.input_size_ == 28


def test_a_preset_folder_backbone_is_refused_in_a_skops_file(adapted, tmp_path):
    with pytest.raises(ModelFileError, match=r"must name no model file .*backbone="):
        save_model(adapted, tmp_path / "m.skops")


@pytest.mark.parametrize(
    "family, lora_rank",
    [
        ("clip", 2),  # "embedding": CLIP's projection of its class token
        ("siglip", None),  # "embedding": its attention-pooling head, opened
        pytest.param("dinov3", 2, marks=pytest.mark.slow),
        pytest.param("vit", None, marks=pytest.mark.slow),
    ],
)
def test_every_family_fine_tunes_and_round_trips(presets, data, family, lora_rank):
    images, labels = data
    model = fine_tune(presets[family], trainable_blocks=1, lora_rank=lora_rank)
    model.fit(images, labels)
    changed = changed_parts(model.model_, initial_network(model))
    assert changed == ({"block2", "after", "head"} if lora_rank is None else {"head"})
    check_network(_model_to_bytes(model.model_))  # shareable as .skops
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(
        again.predict_proba(images), model.predict_proba(images), atol=1e-6
    )


def test_bfloat16_lora_trains_and_passes_the_shared_network_check(presets, data):
    images, labels = data
    model = fine_tune(presets["dinov2"], lora_rank=2, precision="bfloat16")
    model.fit(images, labels)
    assert model.precision_ == "bfloat16"
    # Keras saves a mixed-precision layer's merged kernel in bfloat16.
    check_network(_model_to_bytes(model.model_))
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(
        again.predict_proba(images), model.predict_proba(images), atol=2e-2
    )


# -- the rest of the estimator ----------------------------------------------------


def test_images_are_prepared_by_the_presets_converter(opened, data):
    images, _ = data
    converter = keras_hub.layers.ImageConverter.from_preset(opened.backbone)
    expected = np.asarray(converter(images))  # KerasHub's own: resize, scale
    (x,) = opened._batches(image_inputs(images))[0]
    assert x.shape == (opened.batch_size, 28, 28, 3) == expected[:4].shape
    np.testing.assert_allclose(x, expected[:4], rtol=1e-5, atol=1e-5)


def test_tta_averages_the_flipped_views(adapted, data):
    images, _ = data
    plain = adapted.predict_proba(images)
    flipped = adapted.predict_proba(images[:, :, ::-1])
    both = copy.copy(adapted).set_params(tta="flip")  # the same network
    np.testing.assert_allclose(
        both.predict_proba(images), (plain + flipped) / 2, atol=1e-6
    )


def test_lr_find_runs_on_the_lora_phase(presets, data):
    from tlsk.training.lr_finder import lr_find

    model = fine_tune(presets["dinov2"], lora_rank=2)
    result = lr_find(model, *data, phase="finetune", num_steps=4)
    assert len(result.losses) == 4 and 0 < result.suggestion < 10
    assert not hasattr(model, "model_")


def test_a_registry_name_with_a_preset_folder_as_weights(tiny_dinov2, presets, data):
    images, _ = data
    given = fine_tune("dinov2_small", weights=presets["dinov2"])
    folder = fine_tune(presets["dinov2"])
    a = given._build_model(2, SEED, "float32")
    b = folder._build_model(2, SEED, "float32")
    x = folder._preprocess(np.full((1, 28, 28, 3), 100.0))
    np.testing.assert_array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))
    assert given.weights_sha256_ == folder.weights_sha256_


# -- errors ----------------------------------------------------------------------

MISSING = (["missing/a.jpg", "missing/b.jpg"], ["a", "b"])  # never read


@pytest.mark.parametrize(
    "backbone, params, message",
    [
        (
            "dinov2",
            {"trainable_blocks": 3},
            r"'trainable_blocks' parameter .* at most 2 for the preset in 'dinov2', "
            r"its number of transformer blocks\. Got 3",
        ),
        (
            "vgg16",
            {"lora_rank": 2, "weights": None},
            r"lora_rank=2 trains .* vgg16 is a keras\.applications network",
        ),
        ("dinov2", {"lora_rank": 0}, r"'lora_rank' parameter .* \[1, inf\)\. Got 0"),
        (
            "dinov2",
            {"lora_rank": 2, "trainable_blocks": 0},
            r"trainable_blocks=0 names none",
        ),
        ("dinov2", {"pooling": "avg"}, r"one of \['cls', 'mean', 'cls\+mean'\] for"),
        ("dinov2", {"interpolation": "bicubic"}, r"interpolation must be None for"),
        (
            "dinov2_small",
            {"input_size": 30, "weights": None},
            r"multiple of dinov2_small's patch size, 14; received 30",
        ),
        ("dinov2", {"weights": None}, r"weights=None builds a registry network"),
    ],
    ids=[
        "blocks",
        "lora-cnn",
        "lora-0",
        "lora-no-blocks",
        "pooling",
        "interp",
        "size",
        "weights",
    ],
)
def test_bad_parameters_are_refused_before_any_image_is_read(
    presets, backbone, params, message
):
    # A family name is a tiny preset (written on first use), else a registry name.
    model = fine_tune(presets[backbone] if backbone in FAMILIES else backbone, **params)
    with pytest.raises(ValueError, match=message):
        model.fit(*MISSING)


# -- the command line ----------------------------------------------------------------


def test_the_command_line_trains_lora_on_a_preset_folder_and_predicts(
    presets, tmp_path, capsys
):
    write_image_folder(tmp_path / "data", 3, formats=("png",))
    model = str(tmp_path / "dino.joblib")
    argv = ["train", str(tmp_path / "data"), "--method", "finetune", "--out", model]
    argv += ["--backbone", presets["dinov2"], "--lora-rank", "2", "--epochs", "1"]
    argv += ["--val", "0", "--monitor-fraction", "0", "--batch-size", "4"]
    assert main([*argv, "--precision", "float32", "--no-augmentation", "-q"]) == 0
    capsys.readouterr()
    assert main(["predict", model, str(tmp_path / "data" / "red"), "-q"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].startswith("path,label") and len(rows) == 4
    fitted, metadata = load_model_with_metadata(model)
    assert metadata["params"]["lora_rank"] == 2
    assert fitted.learning_rates_.keys() == {"head", "finetune"}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "scratch"], "it is for --method finetune; received --method"),
        (
            ["--method", "finetune", "--backbone", "vgg16"],
            "--backbone vgg16 is a keras.applications network: leave --lora-rank",
        ),
    ],
    ids=["scratch", "vgg16"],
)
def test_the_command_line_refuses_lora_rank_where_it_means_nothing(
    tmp_path, capsys, extra, message
):
    write_image_folder(tmp_path / "data", 1, formats=("png",))
    argv = ["train", str(tmp_path / "data"), "--out", str(tmp_path / "m.joblib")]
    assert main([*argv, *extra, "--lora-rank", "2", "-q"]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m.joblib").exists()
