"""The Python examples of the README and the user guide run as written (tiny nets)."""

import re
from pathlib import Path

from tests._datasets import write_image_folder
from tlsk import FeatureCache

README = Path(__file__).resolve().parents[1] / "README.md"
GUIDE = sorted((README.parent / "docs" / "guide").glob("*.md"))


def _python_blocks():
    """Every Python block of the README and the user guide's pages."""
    return [
        block
        for page in (README, *GUIDE)
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    ]


def _example(marker):
    """The one example with a grid search and ``marker`` (the README's quick
    start is the user guide's first example, word for word)."""
    (code,) = {
        block
        for block in _python_blocks()
        if "GridSearchCV" in block and marker in block
    }
    return code


def test_readme_pipeline_with_grid_search_runs(tmp_path):
    code = _example("VGG16FeatureExtractor")
    original = 'VGG16FeatureExtractor(cache="features.h5", verbose=1)'
    assert original in code
    # The only change: random 32 px weights, since tests never download.
    code = code.replace(
        original,
        'VGG16FeatureExtractor(weights=None, input_size=32, cache="features.h5")',
    )
    # Absolute paths: joblib may reuse worker processes started in another
    # folder by an earlier test, and relative paths would resolve there.
    code = code.replace('"data"', repr(str(tmp_path / "data")))
    code = code.replace('"features.h5"', repr(str(tmp_path / "features.h5")))
    write_image_folder(tmp_path / "data", 10)
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    (namespace,) = FeatureCache(tmp_path / "features.h5").info().namespaces
    assert namespace.entries == namespace.rows_written == 30


def test_readme_grid_search_over_backbones_runs(tmp_path, monkeypatch):
    code = _example("features__backbone")
    original = 'ImageFeatureExtractor(cache="features.h5")'
    assert original in code
    # Random 32 px networks, two small ones, since tests never download.
    code = code.replace(
        original,
        'ImageFeatureExtractor(weights=None, input_size=32, cache="features.h5")',
    )
    grid = re.search(r'"features__backbone": \[[^]]*\]', code).group(0)
    code = code.replace(grid, '"features__backbone": ["vgg16", "mobilenet_v3_large"]')
    code = code.replace('"data"', repr(str(tmp_path / "data")))
    code = code.replace('"features.h5"', repr(str(tmp_path / "features.h5")))
    write_image_folder(tmp_path / "data", 5)  # cv=5 needs 5 images per class
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    namespaces = FeatureCache(tmp_path / "features.h5").info().namespaces
    assert sorted(ns.fingerprint["model"] for ns in namespaces) == [
        "mobilenet_v3_large",
        "vgg16",
    ]
    assert all(ns.entries == ns.rows_written == 15 for ns in namespaces)


def test_readme_zero_shot_example_runs(tmp_path):
    """On a tiny SigLIP preset with random weights: only its shapes mean something."""
    import pytest

    pytest.importorskip("keras_hub")
    from PIL import Image

    from tests._hub_presets import photos, write_preset

    (code,) = [b for b in _python_blocks() if "ZeroShotImageClassifier(" in b]
    preset = repr(write_preset("siglip", tmp_path / "preset"))
    assert 'backbone="siglip2_base_patch16_224"' in code
    code = code.replace('backbone="siglip2_base_patch16_224"', f"backbone={preset}")
    code = code.replace(
        "ZeroShotImageClassifier()", f"ZeroShotImageClassifier(backbone={preset})"
    )
    pictures = iter(photos(size=40, n=8))
    for name in ("tom.jpg", "tweety.png"):
        (tmp_path / "photos").mkdir(exist_ok=True)
        Image.fromarray(next(pictures)).save(tmp_path / "photos" / name)
    for label in ("cat", "dog"):
        (tmp_path / "data" / "test" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(next(pictures)).save(
                tmp_path / "data/test" / label / f"{i}.png"
            )
    code = code.replace('"photos/', '"' + str(tmp_path / "photos") + "/")
    code = code.replace('"data/test"', repr(str(tmp_path / "data" / "test")))
    scope = {"__name__": "readme"}
    exec(compile(code, str(README), "exec"), scope)
    assert set(scope["labels"]) <= {"cat", "dog", "bird"} and len(scope["labels"]) == 2
