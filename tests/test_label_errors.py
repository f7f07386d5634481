"""Label errors: confident learning on out-of-fold probabilities, and `tlsk check`."""

import csv
import json
import shutil
import sys

import numpy as np
import pytest

from tlsk import ImageFeatureExtractor
from tlsk.cli import main
from tlsk.evaluation.label_errors import find_label_errors
from tlsk.images.sample_data import write_photo_folder

pytest.importorskip("cleanlab")

# Tiny and fast: random filters at 32 px still tell these photo crops apart.
EXTRACTOR_OPTIONS = ["--weights", "none", "--input-size", "32", "-q"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Four classes of real-photo crops; four files moved into a wrong folder."""
    root = tmp_path_factory.mktemp("photos") / "data"
    write_photo_folder(
        root, per_class=15, size=32, classes=["pagoda", "petals", "sky", "leaves"]
    )
    moved = {
        "pagoda/pagoda-0001.jpg": "sky",
        "petals/petals-0002.jpg": "leaves",
        "sky/sky-0003.jpg": "petals",
        "leaves/leaves-0004.jpg": "pagoda",
    }
    for source, target in moved.items():
        shutil.move(root / source, root / target / source.split("/")[1])
    return root, {
        f"{target}/{source.split('/')[1]}" for source, target in moved.items()
    }


def test_flipped_labels_are_found_among_real_photographs(photos):
    from tlsk.images.folders import load_image_folder

    root, flipped = photos
    paths, labels = load_image_folder(root, check=False)
    extractor = ImageFeatureExtractor(weights=None, input_size=32, verbose=0)
    errors = find_label_errors(paths, labels, extractor=extractor)
    suspects = errors.suspects()
    found = {s.image.split("/data/")[1] for s in suspects}
    assert len(flipped & found) >= 3, suspects  # recall
    assert len(found - flipped) <= 2, suspects  # precision
    first = suspects[0]
    assert first.given != first.likely and first.p_given < first.p_likely
    assert errors.pred_probs.shape == (60, 4) and errors.folds == 5
    assert np.allclose(errors.pred_probs.sum(axis=1), 1)


def test_probabilities_are_out_of_fold():
    # A point labelled "b" in the middle of "a": a classifier that had seen it
    # could fit its label; out-of-fold, it is a suspect.
    rng = np.random.default_rng(1)
    X = np.r_[rng.normal(0, 0.3, (20, 2)), rng.normal(3, 0.3, (20, 2))]
    y = np.array(["a"] * 20 + ["b"] * 20)
    y[0] = "b"
    errors = find_label_errors(
        X, y, extractor="precomputed", classifier="random-forest"
    )
    assert errors.indices.tolist() == [0]
    assert errors.suspects()[0].likely == "a" and errors.suspects()[0].image is None


def test_bad_labels_are_clear_errors():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="at least 2 classes"):
        find_label_errors(X, ["a"] * 4, extractor="precomputed")
    with pytest.raises(ValueError, match=r"at least 2 images.*\['b'\]"):
        find_label_errors(X, ["a", "a", "a", "b"], extractor="precomputed")
    with pytest.raises(ValueError, match="X has 4 images but y has 3"):
        find_label_errors(X, ["a", "b", "a"], extractor="precomputed")


def test_without_cleanlab_the_error_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    monkeypatch.setitem(sys.modules, "cleanlab.filter", None)
    with pytest.raises(ImportError, match=r'pip install "tlsk\[labels\]"'):
        find_label_errors(np.zeros((4, 2)), list("aabb"), extractor="precomputed")
    assert main(["check", str(tmp_path), "--label-errors", "-q"]) == 1
    assert 'pip install "tlsk[labels]"' in capsys.readouterr().err


def test_tlsk_check_label_errors_prints_writes_csv_json_and_report(
    photos, tmp_path, capsys
):
    root, flipped = photos
    cache = tmp_path / "features.h5"
    args = ["check", str(root), "--label-errors", "--cache", str(cache)]
    out, report = tmp_path / "suspects.csv", tmp_path / "report"
    code = main([*args, *EXTRACTOR_OPTIONS, "--out", str(out), "--report", str(report)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "labels that are probably wrong" in printed
    with open(out, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["file", "label", "likely", "p_label", "p_likely"]
    assert len(flipped & {row["file"] for row in rows}) >= 3
    assert all(row["file"] in printed for row in rows)
    page = (report / "index.html").read_text(encoding="utf-8")
    assert 'id="label-errors"' in page and rows[0]["file"] in page
    # The map of the images by the same features: every image, suspects marked.
    n_images = sum(1 for _ in root.glob("*/*.jpg"))
    assert page.count("<circle data-i=") == n_images
    assert page.count('data-m="label error"') == len(rows)
    # Each suspect can be fixed from the page.
    assert page.count('data-reason="label error"') == len(rows)
    # Nothing moved: the tree is as the fixture left it.
    assert sorted(p.name for p in (root / "sky").iterdir())[:2] == [
        "pagoda-0001.jpg",
        "sky-0000.jpg",
    ]

    # Again from the cache, as JSON; an existing --out or --report is refused.
    assert main([*args, *EXTRACTOR_OPTIONS, "--out", str(out)]) == 1
    assert "pass --force to replace it" in capsys.readouterr().err
    assert main([*args, *EXTRACTOR_OPTIONS, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in result["label_errors"]] == [r["file"] for r in rows]
    assert main([*args, *EXTRACTOR_OPTIONS, "--report", str(report)]) == 1
    assert "pass --force" in capsys.readouterr().err


def test_tlsk_check_refuses_out_without_label_errors_and_one_class(tmp_path, capsys):
    assert main(["check", str(tmp_path), "--out", str(tmp_path / "s.csv")]) == 1
    assert "give --label-errors too" in capsys.readouterr().err
    write_photo_folder(tmp_path / "one", per_class=3, size=32, classes=["sky"])
    code = main(["check", str(tmp_path / "one"), "--label-errors", *EXTRACTOR_OPTIONS])
    assert code == 1
    assert "at least 2 classes" in capsys.readouterr().err
