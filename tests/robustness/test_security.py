"""Security: what tlsk loads, what it refuses, and where it writes.

Each row of issue 7 and the tests that prove it:

- the trust model, written in the guarantees page (docs/guarantees.md):
    test_the_readme_states_the_trust_model
- tlsk's own model files record what made them:
    test_a_model_file_records_what_made_it
    test_model_files::test_a_model_file_replaced_behind_its_metadata_is_refused
- ``tlsk predict`` and ``evaluate`` load only the files the user names:
    test_predict_and_evaluate_unpickle_only_the_named_model
- Keras models loaded with ``safe_mode=True``; a Lambda layer refused:
    test_keras_estimators::test_loading_refuses_unsafe_layers
    test_keras_models_are_loaded_in_safe_mode_only
- HDF5 caches with external links, soft links or absurd shapes refused:
    test_a_hostile_cache_is_refused_not_followed (main file and part file)
    test_cache::test_hostile_or_foreign_files_are_refused
- the command line never writes outside the output the user names
  (``../``, absolute paths, symlinked outputs):
    test_hostile_class_names_in_a_model_never_become_paths
    test_a_symlinked_output_is_replaced_never_written_through
    test_cli_check_split::test_hostile_names_are_kept_inside_out
    test_cli_check_split::test_links_in_dir_pointing_outside_never_lead_writes_outside
- and never overwrites without ``--force``:
    test_no_command_overwrites_without_force
    test_cli_check_split::test_a_non_empty_out_is_refused_and_left_alone
"""

import inspect
import os
import re
import shutil
from pathlib import Path

import h5py
import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from tests._cache_files import run_files, write_v1_cache
from tests._datasets import coloured_images, write_image_folder
from tests.robustness._support import REPO, tiny
from tlsk.cache import CacheError, FeatureCache, namespace_id
from tlsk.cli import main
from tlsk.persistence.model_files import load_metadata, save_model
from tlsk.training import keras_classifier as _keras_estimator

HOSTILE = ["../../escaped", "/etc/passwd", "..", "a/b"]


def _files(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory):
    """A bottleneck model whose class names look like paths, and images."""
    root = tmp_path_factory.mktemp("hostile")
    images, _ = coloured_images(2, size=32)
    labels = [HOSTILE[i % len(HOSTILE)] for i in range(len(images))]
    model = make_pipeline(tiny(), LogisticRegression(max_iter=200)).fit(images, labels)
    path = root / "model.joblib"
    save_model(model, str(path), {"method": "bottleneck", "classes": HOSTILE})
    write_image_folder(root / "test", 1, formats=("png",))
    return path, root / "test"


def test_the_guarantees_page_states_the_trust_model():
    readme = (REPO / "docs" / "guarantees.md").read_text(encoding="utf-8")
    section = readme.split("# What tlsk guarantees", 1)[1].split("\n# ", 1)[0]
    section = " ".join(section.split())
    for promise in (
        "run code when loaded",
        "model_sha256",
        "only the files you name",
        "safe_mode=True",
        "Lambda",
        "external links",
        "--force",
    ):
        assert promise in section, promise


def test_a_model_file_records_what_made_it(hostile_model):
    metadata = load_metadata(hostile_model[0])
    assert {"tlsk_version", "method", "classes", "model_sha256"} <= set(metadata)
    assert metadata["format"] == "tlsk-model"


def test_predict_and_evaluate_unpickle_only_the_named_model(
    tmp_path, hostile_model, monkeypatch, capsys
):
    model, test = hostile_model
    loaded = []
    real_load = joblib.load

    def recording_load(file, *args, **kwargs):
        loaded.append(getattr(file, "name", file))  # a path or an open file
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(joblib, "load", recording_load)
    (test / "red" / "decoy.joblib").write_bytes(model.read_bytes())
    try:
        assert main(["predict", str(model), str(test), "-q"]) == 0
        assert main(["evaluate", str(model), str(test), "-q"]) == 0
    finally:
        (test / "red" / "decoy.joblib").unlink()
    assert loaded == [str(model), str(model)]


def test_keras_models_are_loaded_in_safe_mode_only():
    source = inspect.getsource(_keras_estimator)
    loads = re.findall(r"load_model\(([^)]*)\)", source)
    assert loads and all("safe_mode=True" in call for call in loads), loads
    assert "enable_unsafe_deserialization" not in source


def _external_link(f, group):
    del group["vectors"]
    group["vectors"] = h5py.ExternalLink("elsewhere.h5", "/vectors")


def _soft_link(f, group):
    group["kept"] = group["vectors"]
    del group["vectors"]
    group["vectors"] = h5py.SoftLink(group.name + "/kept")


def _absurd_shape(f, group):
    for name, width in (("keys", 32), ("vectors", 512)):
        del group[name]
        group.create_dataset(name, (10**12, width), "u1" if width == 32 else "<f4")


@pytest.mark.parametrize(
    "change, reason",
    [
        (_external_link, "is a ExternalLink"),
        (_soft_link, "is a SoftLink"),
        (_absurd_shape, "declares 1000000000000 rows"),
    ],
)
@pytest.mark.parametrize("where", ["manifest", "run", "format-1 file"])
def test_a_hostile_cache_is_refused_not_followed(tmp_path, change, reason, where):
    images = coloured_images(1, size=32)[0]
    cache = tmp_path / "features.h5"
    extractor = tiny(cache=str(cache)).fit()
    extractor.transform(images)
    ns = namespace_id(extractor.fingerprint_)
    # What a followed link would find: other vectors for the same keys.
    with h5py.File(tmp_path / "elsewhere.h5", "w") as f:
        f["vectors"] = np.full((3, 512), 7.0, np.float32)
    target = cache
    if where == "run":
        target = Path(run_files(cache, ns)[0])
    elif where == "format-1 file":
        with h5py.File(run_files(cache, ns)[0], "r") as f:
            group = f["namespaces"][ns]
            keys = [row.tobytes() for row in group["keys"][:]]
            args = group.attrs["fingerprint"], ns, keys, group["vectors"][:]
        shutil.rmtree(f"{cache}.runs")
        write_v1_cache(cache, *args)
    with h5py.File(target, "r+") as f:
        change(f, f["namespaces"][ns])
    hostile = target.read_bytes()
    with pytest.raises(CacheError, match=re.escape(str(target)) + ".*" + reason):
        extractor.transform(images)
    assert target.read_bytes() == hostile  # neither moved nor rewritten
    assert any(reason in problem for problem in FeatureCache(cache).verify())


def test_hostile_class_names_in_a_model_never_become_paths(
    tmp_path, hostile_model, capsys
):
    model, test = hostile_model
    work = tmp_path / "work"
    work.mkdir()
    os.chdir(work)  # relative escapes would land beside it
    try:
        argv = ["predict", str(model), str(test), "--out", "p.csv", "-q"]
        assert main(argv) == 0
        argv = ["evaluate", str(model), str(test), "--plot", "c.png", "-q"]
        assert main(argv) == 0
    finally:
        os.chdir(REPO)
    assert _files(tmp_path) == ["work", "work/c.png", "work/p.csv"]
    assert "../../escaped" in (work / "p.csv").read_text(encoding="utf-8")


def test_a_symlinked_output_is_replaced_never_written_through(
    tmp_path, hostile_model, capsys
):
    model, test = hostile_model
    victim = tmp_path / "outside" / "victim.csv"
    victim.parent.mkdir()
    victim.write_text("precious")
    link = tmp_path / "p.csv"
    link.symlink_to(victim)
    argv = ["predict", str(model), str(test), "--out", str(link), "-q"]
    assert main(argv) == 1
    assert "--force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and "path" in link.read_text(encoding="utf-8")


def test_no_command_overwrites_without_force(tmp_path, hostile_model, capsys):
    model, test = hostile_model
    kept = {}
    for name in ("p.csv", "c.png", "m.joblib", "split"):
        path = tmp_path / name
        if name == "split":
            path.mkdir()
            path = path / "keep.txt"
        path.write_text("keep me")
        kept[path] = "keep me"
    runs = [
        ["predict", str(model), str(test), "--out", str(tmp_path / "p.csv")],
        ["evaluate", str(model), str(test), "--plot", str(tmp_path / "c.png")],
        ["train", str(test), "--weights", "none", "--out", str(tmp_path / "m.joblib")],
        ["split", str(test), str(tmp_path / "split")],
    ]
    for argv in runs:
        assert main([*argv, "-q"]) == 1, argv
        assert "--force" in capsys.readouterr().err or argv[0] == "split"
    assert {path: path.read_text() for path in kept} == kept
