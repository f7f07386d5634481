"""The benchmark suite runs end to end and writes both reports (slow: ~1.5 min)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def _smoke_run(out, *sections):
    """``run.py --smoke`` (of ``sections`` only, if named); its report."""
    subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--out", str(out)]
        + (["--sections", *sections] if sections else []),
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=600,
    )
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_the_suite_writes_every_section_with_its_targets(tmp_path):
    report = _smoke_run(tmp_path)
    titles = [section["title"] for section in report["sections"]]
    assert len(titles) == 7
    targets = [t for section in report["sections"] for t in section["targets"]]
    assert len(targets) >= 12
    assert all(math.isfinite(t["value"]) for t in targets)
    markdown = (tmp_path / "results.md").read_text()
    assert all(title in markdown for title in titles)
    assert "## Targets" in markdown


@pytest.mark.slow  # about 20 s: a smoke run of a section asked for only
def test_the_cache_scaling_section_measures_each_size_beside_the_smallest(tmp_path):
    (section,) = _smoke_run(tmp_path, "cache-scaling")["sections"]
    rows = section["rows"]
    measures = {row["measure"] for row in rows}
    assert "add 32 vectors, s" in measures and "cold 1,000-key lookup, s" in measures
    timed = [row for row in rows if row["measure"].endswith(", s")]
    assert timed and all(row["format 2"] > 0 for row in timed)
    # Each size's add and lookup beside the same figure at the smallest size,
    # measured in the same run: their ratio (1 for the smallest itself).
    sizes = sorted({row["vectors"] for row in rows})
    for measure in ("add 32 vectors, s", "cold 1,000-key lookup, s"):
        by_size = {row["vectors"]: row for row in rows if row["measure"] == measure}
        assert sorted(by_size) == sizes
        base = by_size[sizes[0]]["format 2"]
        assert by_size[sizes[0]]["/ smallest cache"] == 1
        for row in by_size.values():
            expected = row["format 2"] / base
            assert row["/ smallest cache"] == pytest.approx(expected, rel=0.05)
    assert all(math.isfinite(t["value"]) for t in section["targets"])


@pytest.mark.slow  # about 15 s: three sections' smoke runs in one subprocess
def test_the_label_error_report_and_scratch_sections_measure_each_method(tmp_path):
    labels, report, scratch = _smoke_run(tmp_path, "labels", "report", "scratch")[
        "sections"
    ]
    methods = {row["method"] for row in labels["rows"]}
    assert {"tlsk suspects (confident learning)", "in-sample top losses"} <= methods
    assert {row["data"] for row in labels["rows"]} == {"photo crops", "digits"}
    assert all(0 <= row["precision@k = recall@k"] <= 1 for row in labels["rows"])
    pages = {row["page"]: row for row in report["rows"]}
    assert pages["uncapped"]["thumbnails"] == 60  # every image
    assert pages["tlsk (capped)"]["thumbnails"] <= 60
    assert all(row["write s"] > 0 for row in report["rows"])
    networks = [row["network"] for row in scratch["rows"]]
    assert networks == [
        "tlsk SmallCNNClassifier (defaults)",
        "classic Keras convnet (reference)",
    ]
    assert all(0 <= row["accuracy (mean)"] <= 1 for row in scratch["rows"])
    assert all(row["fit s (mean)"] > 0 for row in scratch["rows"])
    (target,) = scratch["targets"]
    assert (target["op"], target["limit"]) == (">=", 1.0)
    assert math.isfinite(target["value"])


@pytest.mark.slow  # about 20 s: a smoke run of a section asked for only
def test_the_tta_section_measures_each_mode_side_by_side(tmp_path):
    (section,) = _smoke_run(tmp_path, "tta")["sections"]
    rows = section["rows"]
    assert {row["data"] for row in rows} == {"photo crops", "digits"}
    for data in ("photo crops", "digits"):
        vgg = [r for r in rows if r["data"] == data and r["model"].startswith("VGG")]
        modes = {row["tta"]: row for row in vgg}
        assert set(modes) == {"none", "flip", "ten_crop"}
        assert modes["none"]["cold / no tta"] == 1
        assert all(0 <= r["accuracy, trained plain"] <= 1 for r in modes.values())
    assert any(row["model"].startswith("SmallCNNClassifier") for row in rows)
    assert all(math.isfinite(t["value"]) for t in section["targets"])


@pytest.mark.slow
def test_the_backbones_section_compares_each_network_with_keras(tmp_path):
    (section,) = _smoke_run(tmp_path, "backbones")["sections"]
    assert {row["backbone"] for row in section["rows"]} == {
        "vgg16",
        "mobilenet_v3_large",
    }
    assert all(row["tlsk images/s"] > 0 for row in section["rows"])
    assert all(math.isfinite(t["value"]) for t in section["targets"])


@pytest.mark.slow
def test_the_hub_section_compares_each_network_with_kerashub(tmp_path):
    pytest.importorskip("keras_hub")
    section, finetune = _smoke_run(tmp_path, "hub")["sections"]
    assert [row["how"] for row in finetune["rows"]] == ["unfreeze", "LoRA rank 4"]
    unfrozen, lora = (row["trainable parameters"] for row in finetune["rows"])
    assert 0 < lora < unfrozen
    rows = section["rows"]
    assert {row["backbone"] for row in rows} == {
        "dinov3_small",
        "vit_base_patch16_224_in21k",
    }
    assert {row["precision"].split()[0] for row in rows} >= {"float32", "int8"}
    assert all(row["tlsk images/s"] > 0 for row in rows)
    assert all(math.isfinite(t["value"]) for t in section["targets"])


@pytest.mark.slow
def test_the_registry_costs_are_what_the_profiler_measures():
    costs = RUN.parent / "backbone_costs.py"
    result = subprocess.run(
        [sys.executable, str(costs), "mobilenet_v3_large", "efficientnet_b0"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "registry differs" not in result.stdout


@pytest.mark.slow  # about 25 s: it trains and saves a fine-tuned VGG16
def test_the_model_files_section_measures_joblib_beside_skops(tmp_path):
    (section,) = _smoke_run(tmp_path, "model-files")["sections"]
    formats = {(row["model"], row["format"]) for row in section["rows"]}
    assert {kind for _, kind in formats} == {"joblib", "skops"} and len(formats) == 4
    assert all(row["file MB"] > 0 and row["load s"] > 0 for row in section["rows"])
    assert all(math.isfinite(t["value"]) for t in section["targets"])


@pytest.mark.slow
def test_the_engines_section_measures_each_engine_and_precision(tmp_path):
    (section,) = _smoke_run(tmp_path, "engines")["sections"]
    rows = section["rows"]
    measured = {(row["input"], row["engine"], row["precision"]) for row in rows}
    assert ("arrays", "openvino", "int8") in measured
    assert ("files", "openvino", "int8") in measured
    assert ("files", "auto", "auto") in measured
    assert all(row["images/s"] > 0 for row in section["rows"])
    lost = [t["target"] for t in section["targets"] if "points lost" in t["target"]]
    assert lost == [
        "digits accuracy points lost in int8",
        "photo crops accuracy points lost in int8",
    ]
    assert all(math.isfinite(t["value"]) for t in section["targets"])
