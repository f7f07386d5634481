"""`tlsk backbones` and --backbone on extract, train and predict."""

import json

import numpy as np
import pytest

from tests._datasets import write_image_folder
from tlsk import ImageFeatureExtractor, list_backbones
from tlsk.cache import FeatureCache
from tlsk.cli import main
from tlsk.networks.registry import HubSpec

TINY = ["--weights", "none", "--input-size", "32", "--precision", "float32"]


def test_backbones_lists_every_network_with_its_cut_points(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    for spec in list_backbones():
        assert f"\n{spec.name} " in out
        if isinstance(spec, HubSpec):
            dims = ", ".join(f"{p} ({spec.pooling_dim(p)})" for p in spec.poolings)
            assert dims in out and f"preset {spec.preset!r}" in out
        else:
            assert f"{spec.default_layer} ({spec.dims[-1]})" in out
    assert out.split("\n")[1].split() == [
        "backbone",
        "size",
        "min",
        "GFLOP",
        "top-1",
        "stages",
        "imagenet",
        "weights",
    ]
    assert "not cached" in out


def test_backbones_json_has_every_field_and_whether_imagenet_is_cached(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    spec = list_backbones()[2]
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / spec.imagenet.name).write_bytes(b"present")
    assert main(["backbones", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {s.name for s in list_backbones()}
    assert rows[spec.name]["imagenet_cached"] is True
    assert rows["vgg16"]["imagenet_cached"] is False
    assert rows["resnet50"]["dims"] == [256, 512, 1024, 2048]
    assert rows["efficientnet_v2_s"]["native_size"] == 384
    assert rows["vgg16"]["imagenet"]["url"].endswith("_notop.h5")


def test_extract_with_another_backbone_fills_its_namespace(tmp_path, capsys):
    paths, _ = write_image_folder(tmp_path / "photos", 2)
    cache = tmp_path / "f.h5"
    argv = ["extract", str(tmp_path / "photos"), "--cache", str(cache), "--json"]
    assert main([*argv, *TINY, "--backbone", "mobilenet_v3_large"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["computed"] == len(paths)
    (namespace,) = FeatureCache(cache).info().namespaces
    assert namespace.fingerprint["model"] == "mobilenet_v3_large"
    assert namespace.dim == 960
    extractor = ImageFeatureExtractor(
        backbone="mobilenet_v3_large",
        weights=None,
        input_size=32,
        precision="float32",
    )
    np.testing.assert_allclose(
        extractor.fit_transform(sorted(paths)),
        ImageFeatureExtractor(**{**extractor.get_params(), "cache": str(cache)})
        .fit()
        .transform(sorted(paths)),
        rtol=1e-6,
    )


def test_an_unknown_backbone_is_one_line_listing_the_known(tmp_path, capsys):
    write_image_folder(tmp_path / "photos", 1)
    argv = ["extract", str(tmp_path / "photos"), "--cache", str(tmp_path / "f.h5")]
    assert main([*argv, "--backbone", "alexnet"]) == 1
    err = capsys.readouterr().err
    assert "backbone must be one of" in err and "'resnet50'" in err


@pytest.mark.parametrize("method", ["bottleneck", "finetune"])
def test_train_records_the_backbone_in_the_metadata(tmp_path, method, capsys):
    write_image_folder(tmp_path / "photos", 4)
    out = tmp_path / "model.joblib"
    argv = ["train", str(tmp_path / "photos"), "--out", str(out), "--method", method]
    argv += [*TINY, "--backbone", "efficientnet_b0", "--epochs", "1", "-q"]
    argv += ["--monitor-fraction", "0"]
    assert main(argv) == 0
    metadata = json.loads((tmp_path / "model.json").read_text())
    assert metadata["backbone"] == "efficientnet_b0"
    params = metadata["extractor" if method == "bottleneck" else "params"]
    assert params["backbone"] == "efficientnet_b0"


def test_predict_needs_imagenet_for_a_backbone(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", "model.joblib", str(tmp_path), "--backbone", "resnet50"])
    assert info.value.code == 2
    assert "--backbone needs --imagenet or --zero-shot" in capsys.readouterr().err
