"""Near duplicates and leakage: the hash, find_near_duplicates, `tlsk check
--near-duplicates` on folders and splits, `tlsk split --near-duplicates`, the
report section."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from tlsk import ImageFeatureExtractor, find_near_duplicates
from tlsk.cli import main
from tlsk.evaluation import near_duplicates as nd
from tlsk.evaluation.near_duplicates import CSV_FIELDS
from tlsk.evaluation.report._near_duplicates import near_duplicates_section
from tlsk.images.folders import split_image_folder
from tlsk.images.perceptual_hash import hash_distances, perceptual_hashes, plain

TINY = ["--weights", "none", "--input-size", "32"]
COPIES = ("half", "q20", "crop", "bright")


def _photos():
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {
        "pagoda": china[60:220, 120:280],
        "trees": china[267:427, 400:560],
        "petals": flower[120:280, 200:360],
        # A different crop of the pagoda's photograph, sharing half of it:
        # not a copy.
        "roof": china[100:260, 150:310],
    }


def write_copies(folder, name, tile, seed=0):
    """``name``.jpg and its four copies (half size, JPEG quality 20, 10 %
    cropped, 30 % brighter) in ``folder``; their paths, original first."""
    os.makedirs(folder, exist_ok=True)
    original = Image.fromarray(tile)
    side = original.width
    cut = side // 10
    dx, dy = np.random.default_rng(seed).integers(0, cut + 1, 2).tolist()
    versions = {
        "": (original, 90),
        "half": (original.resize((side // 2, side // 2)), 90),
        "q20": (original, 20),
        "crop": (original.crop((dx, dy, dx + side - cut, dy + side - cut)), 90),
        "bright": (ImageEnhance.Brightness(original).enhance(1.3), 90),
    }
    paths = []
    for suffix, (image, quality) in versions.items():
        path = os.path.join(folder, f"{name}{'-' + suffix if suffix else ''}.jpg")
        image.save(path, quality=quality)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Real photographs: pagoda and petals with four copies each, and an exact
    copy of the pagoda; trees and roof alone."""
    folder = tmp_path_factory.mktemp("photos")
    tiles = _photos()
    pagoda = write_copies(folder, "pagoda", tiles["pagoda"])
    petals = write_copies(folder, "petals", tiles["petals"], seed=1)
    exact = folder / "pagoda-exact.jpg"
    shutil.copyfile(pagoda[0], exact)
    alone = []
    for name in ("trees", "roof"):
        Image.fromarray(tiles[name]).save(folder / f"{name}.jpg", quality=90)
        alone.append(str(folder / f"{name}.jpg"))
    paths = [*pagoda, str(exact), *petals, *alone]
    return paths, [set(range(6)), set(range(6, 11))]


# --------------------------------------------------------------------------
# The hash
# --------------------------------------------------------------------------


def test_the_crops_hashes_bring_a_cropped_copy_close():
    tile = _photos()["pagoda"]
    cropped = tile[8:152, 4:148]  # 10 % off, not centred
    hashes = np.stack([perceptual_hashes(tile), perceptual_hashes(cropped)])
    whole_only = int(np.bitwise_count(hashes[0, 0] ^ hashes[1, 0]))
    with_crops = int(hash_distances(hashes[:1], hashes[1:])[0, 0])
    assert with_crops <= nd.MAX_BITS < whole_only
    assert (hash_distances(hashes, hashes) == hash_distances(hashes, hashes).T).all()


def _simple_images(side=64):
    """Plain colours, ramps and flat halves: distinct images with little
    structure, whose hashes carry few bits."""
    ramp = np.repeat(np.linspace(0, 255, side)[None, :, None], 3, axis=2)
    ramp = ramp.repeat(side, axis=0)
    colours = {
        "red": (255, 0, 0),
        "blue": (0, 0, 255),
        "black": (0, 0, 0),
        "white": (255, 255, 255),
        "grey": (128, 128, 128),
    }
    images = {
        name: np.asarray(Image.new("RGB", (side, side), colour))
        for name, colour in colours.items()
    }
    images["ramp"] = ramp.astype(np.uint8)
    images["inverse ramp"] = (255 - ramp).astype(np.uint8)
    images["vertical ramp"] = ramp.transpose(1, 0, 2).astype(np.uint8)
    images["halves"] = np.where(ramp < 128, 0, 255).astype(np.uint8)
    return images


def test_plain_images_hash_alike_whatever_their_size():
    # A plain image's DCT is rounding noise but for its mean: no random bits.
    white = [Image.new("RGB", size, "white") for size in ((20, 20), (64, 16))]
    near_white = np.full((9, 9, 3), 250.0, dtype=np.float32)
    hashes = np.stack([perceptual_hashes(np.asarray(im)) for im in white])
    assert (hashes == hashes[0, 0]).all() and np.bitwise_count(hashes[0, 0]) <= 1
    assert plain(hashes).all()
    found = find_near_duplicates([*white, near_white, _photos()["pagoda"]])
    assert [group.indices for group in found.groups] == [[0, 1, 2]]


def test_simple_images_that_are_no_copies_are_kept_apart():
    # Their hashes alone would link them: red and blue 0 bits apart, black
    # and white 1, the ramp and its inverse 5.
    simple = _simple_images()
    names = list(simple)
    hashes = np.stack([perceptual_hashes(image) for image in simple.values()])
    assert plain(hashes).all()
    distances = hash_distances(hashes, hashes)
    red, blue, ramp = names.index("red"), names.index("blue"), names.index("ramp")
    assert distances[red, blue] == 0 and distances[ramp, ramp + 1] <= nd.MAX_BITS
    # Each with a copy at another size (and so other bytes).
    copies = [
        np.asarray(Image.fromarray(im).resize((40, 40))) for im in simple.values()
    ]
    found = find_near_duplicates([*simple.values(), *copies])
    n = len(names)
    assert [group.indices for group in found.groups] == [[i, i + n] for i in range(n)]
    # A photograph's hashes are full: never plain.
    photo = perceptual_hashes(_photos()["pagoda"])
    assert not plain(photo) and np.bitwise_count(photo).min() == 32


def test_a_large_group_keeps_each_members_closest_link_only(monkeypatch):
    # 240 plain images of 12 shades within the colour tolerance: one group,
    # 28,680 linked pairs; kept: at most one pair per member.
    shades = [
        np.full((8 + i // 12, 8 + i // 12, 3), 100 + i % 12, dtype=np.uint8)
        for i in range(240)
    ]
    found = find_near_duplicates(shades)
    (group,) = found.groups
    assert group.indices == list(range(240))
    assert len(group.pairs) <= 240
    closest = group.closest()
    assert sorted(closest) == group.indices
    assert {closest[i] for i in group.indices} == set(group.pairs)
    (row,) = found.rows()
    assert len(row["pairs"]) == len(group.pairs)
    assert len(found.csv_rows()) == 240
    # The same in blocks of 5 rows.
    monkeypatch.setattr(nd, "_HASH_BLOCK", 5)
    assert find_near_duplicates(shades).groups[0].pairs == group.pairs


def test_the_pairs_are_each_members_closest_link():
    # 0-1 at cosine distance 0.02, 1-2 at 0.005, 0-2 at 0.04, all linked;
    # 3 a copy of 2 with the same vector; 4 apart.
    angles = np.array([0.0, 0.2, 0.3, 0.3, 2.0])
    X = np.column_stack([np.cos(angles), np.sin(angles)])
    found = find_near_duplicates(
        X, extractor="precomputed", method="features", max_distance=0.05
    )
    (group,) = found.groups
    assert group.indices == [0, 1, 2, 3]
    assert [(p.first, p.second) for p in group.pairs] == [(0, 1), (1, 2), (2, 3)]
    closest = group.closest()
    assert (closest[0].first, closest[0].second) == (0, 1)
    assert (closest[1].first, closest[1].second) == (1, 2)
    assert closest[2] == closest[3] and closest[3].distance == pytest.approx(0)
    assert group.pairs[0].distance == pytest.approx(1 - np.cos(0.2))


def test_the_hash_refuses_what_is_no_rgb_image():
    with pytest.raises(ValueError, match=r"shape \(H, W, 3\); received shape \(4, 4\)"):
        perceptual_hashes(np.zeros((4, 4)))


# --------------------------------------------------------------------------
# find_near_duplicates
# --------------------------------------------------------------------------


def test_copies_of_real_photographs_are_grouped_and_nothing_else(photos):
    paths, truth = photos
    found = find_near_duplicates(paths)
    assert [set(group.indices) for group in found.groups] == truth
    assert found.method == "phash" and found.max_bits == nd.MAX_BITS
    assert found.max_distance is None
    pagoda = found.groups[0]
    assert pagoda.files == [paths[i] for i in sorted(truth[0])]
    exact = [p for p in pagoda.pairs if p.same_bytes]
    assert [(p.first, p.second, p.bits) for p in exact] == [(0, 5, 0)]
    assert all(p.bits <= nd.MAX_BITS and p.distance is None for p in pagoda.pairs)


def test_exact_duplicates_are_linked_whatever_the_threshold(photos):
    paths, _ = photos
    found = find_near_duplicates(paths, max_bits=0)
    pagoda = next(group for group in found.groups if 5 in group.indices)
    assert 0 in pagoda.indices and pagoda.closest()[5].same_bytes
    assert all(p.bits == 0 for g in found.groups for p in g.pairs)


def test_blocks_of_queries_find_the_same_groups(photos, monkeypatch):
    paths, truth = photos
    monkeypatch.setattr(nd, "_HASH_BLOCK", 3)
    assert [set(g.indices) for g in find_near_duplicates(paths).groups] == truth
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9, 8))
    X[7] = X[2] + 0.001
    X[8] = X[7] + 0.001
    whole = find_near_duplicates(X, extractor="precomputed", method="features")
    monkeypatch.setattr(nd, "_FEATURE_BLOCK", 2)
    blocked = find_near_duplicates(X, extractor="precomputed", method="features")
    assert [g.indices for g in blocked.groups] == [g.indices for g in whole.groups]
    assert [g.indices for g in whole.groups] == [[2, 7, 8]]


def test_features_come_from_the_extractor_and_its_cache(
    photos, tmp_path, count_predictions
):
    paths, truth = photos
    extractor = ImageFeatureExtractor(
        weights=None, input_size=32, verbose=0, cache=str(tmp_path / "f.h5")
    )
    both = find_near_duplicates(paths, method="both", extractor=extractor)
    computed = count_predictions["images"]
    assert computed == len(paths) - 1  # the exact copy shares its vector
    # A random network's vectors say little; the exact copy is at distance 0,
    # and every pair carries both measures.
    pair = next(p for g in both.groups for p in g.pairs if p.same_bytes)
    assert pair.distance == pytest.approx(0, abs=1e-6) and pair.bits == 0
    assert all(
        p.bits is not None and p.distance is not None
        for g in both.groups
        for p in g.pairs
    )
    again = find_near_duplicates(
        paths, method="features", extractor=extractor, max_distance=0
    )
    assert count_predictions["images"] == computed  # all from the cache
    assert frozenset({0, 5}) in {frozenset(g.indices) for g in again.groups}


def test_leaks_rows_and_csv_rows(photos):
    paths, _ = photos
    parts = ["train"] * len(paths)
    parts[3] = "test"  # a copy of the pagoda in test
    labels = ["a"] * 6 + ["b"] * (len(paths) - 6)
    found = find_near_duplicates(paths, parts=parts, labels=labels)
    assert [set(g.indices) for g in found.leaks()] == [set(range(6))]
    root = os.path.dirname(paths[0])
    rows = found.rows(root)
    assert rows[0]["crosses_parts"] and not rows[1]["crosses_parts"]
    assert rows[0]["files"][0] == "pagoda.jpg" and rows[0]["parts"][3] == "test"
    assert set(rows[0]["pairs"][0]) == {"a", "b", "bits", "distance", "same_bytes"}
    json.dumps(rows)  # JSON-ready
    table = found.csv_rows(root)
    assert all(tuple(row) == CSV_FIELDS for row in table)
    assert len(table) == 11 and {row["leak"] for row in table[:6]} == {1}
    assert table[5]["file"] == "pagoda-exact.jpg" and table[5]["same_bytes"] == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_bits": 65}, r"max_bits must be an integer from 0 to 64; received 65"),
        ({"max_bits": -1}, r"max_bits .* received -1"),
        ({"max_bits": True}, r"max_bits .* received True"),
        ({"max_bits": 2.5}, r"max_bits .* received 2.5"),
        ({"max_distance": 1.5}, r"max_distance must be a number in \[0, 1\]; rec"),
        ({"max_distance": -0.1}, r"max_distance .* received -0.1"),
        ({"max_distance": "0.1"}, r"max_distance .* received '0.1'"),
        ({"method": "dhash"}, r"method must be one of .*received 'dhash'"),
        ({"labels": ["a"]}, r"X has 3 images but labels has 1 values"),
        ({"parts": ["train"] * 4}, r"X has 3 images but parts has 4 values"),
    ],
)
def test_bad_parameters_are_clear_errors(kwargs, match):
    X = np.eye(3)
    kwargs = {"method": "features", **kwargs}
    with pytest.raises(ValueError, match=match):
        find_near_duplicates(X, extractor="precomputed", **kwargs)


def test_a_hash_needs_pixels_and_features_must_be_finite():
    with pytest.raises(ValueError, match="with extractor='precomputed' use method="):
        find_near_duplicates(np.eye(3), extractor="precomputed")
    X = np.eye(3)
    X[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"features must be finite; rows \[1\]"):
        find_near_duplicates(X, extractor="precomputed", method="features")
    with pytest.raises(ValueError, match="2-D array; received shape"):
        find_near_duplicates(np.ones(3), extractor="precomputed", method="features")


def test_an_undecodable_file_is_named(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    from tlsk import ImageError

    with pytest.raises(ImageError, match="bad.jpg"):
        find_near_duplicates([str(bad)])


def test_no_images_and_no_copies_give_no_groups():
    assert (
        find_near_duplicates(
            np.zeros((0, 4)), extractor="precomputed", method="features"
        ).groups
        == []
    )
    found = find_near_duplicates(np.eye(4), extractor="precomputed", method="features")
    assert found.groups == [] and found.leaks() == [] and found.csv_rows() == []


# --------------------------------------------------------------------------
# tlsk check --near-duplicates
# --------------------------------------------------------------------------


def _class_folder(root):
    """Two classes of real photographs: the pagoda with its copies among
    others in "scenes", the petals with theirs in "flowers"."""
    tiles = _photos()
    write_copies(root / "scenes", "pagoda", tiles["pagoda"])
    write_copies(root / "flowers", "petals", tiles["petals"], seed=1)
    for name, folder in (("trees", "scenes"), ("roof", "scenes")):
        Image.fromarray(tiles[name]).save(root / folder / f"{name}.jpg", quality=90)
    from sklearn.datasets import load_sample_images

    flower = load_sample_images().images[1]
    for i, (y, x) in enumerate([(0, 400), (250, 430), (20, 20)]):
        Image.fromarray(flower[y : y + 160, x : x + 160]).save(
            root / "flowers" / f"other-{i}.jpg", quality=90
        )
    return root


def _split_by_hand(root):
    """A split whose test part holds a copy of a training image: a leak."""
    tiles = _photos()
    for part in ("train", "test"):
        for label in ("scenes", "flowers"):
            os.makedirs(root / part / label)
    pagoda = write_copies(root / "train" / "scenes", "pagoda", tiles["pagoda"])
    os.replace(pagoda[1], root / "test" / "scenes" / "pagoda-half.jpg")
    Image.fromarray(tiles["trees"]).save(root / "test" / "scenes" / "trees.jpg")
    Image.fromarray(tiles["petals"]).save(root / "train" / "flowers" / "petals.jpg")
    Image.fromarray(tiles["roof"]).save(root / "test" / "flowers" / "roof.jpg")
    return root


def test_check_prints_the_groups_and_puts_them_in_json(tmp_path, capsys):
    data = _class_folder(tmp_path / "data")
    assert main(["check", str(data), "--near-duplicates", "--strict", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "near duplicates: 2 groups:" in printed
    assert "scenes/pagoda-crop.jpg" in printed and "LEAK" not in printed
    assert main(["check", str(data), "--near-duplicates", "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    groups = report["near_duplicates"]
    assert [sorted(g["files"])[0] for g in groups] == [
        "flowers/petals-bright.jpg",
        "scenes/pagoda-bright.jpg",
    ]
    assert report["ok"] and "leaks" not in report and groups[0]["parts"] is None


def test_check_finds_the_leak_in_a_split_and_strict_fails(tmp_path, capsys):
    split = _split_by_hand(tmp_path / "split")
    out = tmp_path / "copies.csv"
    args = ["check", str(split), "--near-duplicates", "-q"]
    assert main([*args, "--strict", "--near-duplicates-csv", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "1 across parts (leakage)" in printed
    assert "LEAK across train, test" in printed
    with open(out, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == CSV_FIELDS
    leaking = {row["file"]: row["part"] for row in rows if row["leak"] == "1"}
    assert leaking["test/scenes/pagoda-half.jpg"] == "test"
    assert leaking["train/scenes/pagoda.jpg"] == "train" and len(leaking) == 5
    assert main([*args, "--json"]) == 0  # not --strict: the exit code is 0
    report = json.loads(capsys.readouterr().out)
    assert report["leaks"] == 1 and not report["ok"]
    assert report["split"] == ["train", "test"] and report["n_images"] == 8
    assert report["near_duplicates"][0]["crosses_parts"]
    assert report["parts"]["test"]["classes"] == {"flowers": 1, "scenes": 2}


def test_check_of_a_split_without_near_duplicates_is_refused_as_before(
    tmp_path, capsys
):
    split = _split_by_hand(tmp_path / "split")
    with pytest.raises(SystemExit) as exit_:
        main(["check", str(split)])
    assert exit_.value.code == 2
    assert "looks like a split" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["check", str(split), "--near-duplicates", "--label-errors"])
    assert "--label-errors reads one folder of class folders" in capsys.readouterr().err


def test_the_report_of_a_split_shows_the_leak_first_with_its_controls(tmp_path):
    split = _split_by_hand(tmp_path / "split")
    out = tmp_path / "report"
    code = main(["check", str(split), "--near-duplicates", "--report", str(out), "-q"])
    assert code == 0
    text = (out / "index.html").read_text(encoding="utf-8")
    summary = text.split('id="summary">')[1].split("</div>")[0]
    assert "in the parts of a split (train 5, test 3)" in summary
    assert "1 group across the parts of the split (leakage)" in summary
    section = text.split('<h2 id="near-duplicates">')[1].split("<h2")[0]
    first = section.split("<h3")[1]
    assert first.startswith(' id="near-duplicates-') and "leak across" in first
    # Each member can be fixed: its path in the split, as --apply reads it.
    assert 'data-file="test%2Fscenes%2Fpagoda-half.jpg"' in first
    assert "FIXES_SCRIPT" not in text and "tlsk-fixes" in text


@pytest.mark.parametrize(
    "option",
    [
        ["--max-hash-bits", "65"],
        ["--max-feature-distance", "1.5"],
        ["--near-duplicates-method", "dhash"],
    ],
)
def test_bad_near_duplicate_options_are_usage_errors(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as exit_:
        main(["check", str(tmp_path), "--near-duplicates", *option])
    assert exit_.value.code == 2
    assert option[0] in capsys.readouterr().err


def test_csv_without_near_duplicates_is_refused(tmp_path, capsys):
    code = main(["check", str(tmp_path), "--near-duplicates-csv", str(tmp_path / "a")])
    assert code == 1
    assert "give --near-duplicates too" in capsys.readouterr().err


def test_check_with_features_uses_the_extractor_options_and_cache(tmp_path, capsys):
    data = _class_folder(tmp_path / "data")
    cache = tmp_path / "f.h5"
    args = ["check", str(data), "--near-duplicates", "--json", "-q", *TINY]
    args += ["--near-duplicates-method", "both", "--cache", str(cache)]
    assert main([*args, "--max-feature-distance", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert cache.exists()
    pairs = [p for g in report["near_duplicates"] for p in g["pairs"]]
    assert pairs and all(
        p["distance"] is not None and p["bits"] is not None for p in pairs
    )


def test_check_near_duplicates_by_hash_does_not_import_tensorflow(tmp_path):
    data = _class_folder(tmp_path / "data")
    code = (
        "import json, sys\n"
        "from tlsk.cli import main\n"
        "code = main(['check', sys.argv[1], '--near-duplicates', '-q'])\n"
        "heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "print(json.dumps([code, heavy]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(result.stdout.splitlines()[-1]) == [0, []], result.stderr


# --------------------------------------------------------------------------
# tlsk split --near-duplicates
# --------------------------------------------------------------------------


def _parts_of(manifest):
    return {
        entry["source"]: part
        for part, entries in manifest["parts"].items()
        for entry in entries
    }


def test_split_keeps_each_group_in_one_part(tmp_path, capsys):
    data = _class_folder(tmp_path / "data")
    for seed in range(4):
        out = tmp_path / f"split-{seed}"
        code = main(
            [
                "split",
                str(data),
                str(out),
                "--near-duplicates",
                "--val",
                "0.2",
                "--test",
                "0.2",
                "--seed",
                str(seed),
                "-q",
            ]
        )
        assert code == 0
        manifest = json.loads((out / "split.json").read_text(encoding="utf-8"))
        part = _parts_of(manifest)
        pagoda = {
            part[f"scenes/pagoda{s}.jpg"] for s in ["", *(f"-{c}" for c in COPIES)]
        }
        petals = {
            part[f"flowers/petals{s}.jpg"] for s in ["", *(f"-{c}" for c in COPIES)]
        }
        assert len(pagoda) == 1 and len(petals) == 1
        assert len(manifest["near_duplicates"]) == 2
        assert manifest["near_duplicates"][1][0] == "scenes/pagoda-bright.jpg"
    capsys.readouterr()
    # Checked afterwards: no leak.
    assert main(["check", str(out), "--near-duplicates", "--strict", "-q"]) == 0


def test_without_the_groups_copies_do_spread_over_parts(tmp_path):
    # What the groups prevent: some seed puts copies of one photograph in
    # two parts (else the test above could not fail).
    data = _class_folder(tmp_path / "data")
    spread = False
    for seed in range(4):
        manifest = split_image_folder(
            data, tmp_path / f"s{seed}", val=0.2, test=0.2, seed=seed
        )
        part = _parts_of(manifest)
        spread |= (
            len(
                {
                    part[f"scenes/pagoda{s}.jpg"]
                    for s in ["", *(f"-{c}" for c in COPIES)]
                }
            )
            > 1
        )
        assert manifest["near_duplicates"] is None
    assert spread


def test_a_group_in_two_classes_is_kept_in_both_each_class_together(tmp_path):
    data = _class_folder(tmp_path / "data")
    os.replace(data / "scenes" / "pagoda-q20.jpg", data / "flowers" / "pagoda-q20.jpg")
    groups = [
        g.files
        for g in find_near_duplicates(
            [str(p) for p in sorted(data.rglob("*.jpg"))]
        ).groups
    ]
    manifest = split_image_folder(
        data, tmp_path / "out", val=0.2, test=0.2, near_duplicates=groups
    )
    part = _parts_of(manifest)
    assert "flowers/pagoda-q20.jpg" in part  # kept, in its own class
    scenes = {part[f"scenes/pagoda{s}.jpg"] for s in ["", "-half", "-crop", "-bright"]}
    assert len(scenes) == 1


def test_split_refuses_a_group_naming_a_file_outside_the_tree(tmp_path):
    data = _class_folder(tmp_path / "data")
    with pytest.raises(ValueError, match=r"near_duplicates names '/nowhere/x.jpg'"):
        split_image_folder(data, tmp_path / "out", near_duplicates=[["/nowhere/x.jpg"]])
    assert not (tmp_path / "out").exists()
    # Paths relative to the tree are understood.
    manifest = split_image_folder(
        data,
        tmp_path / "out",
        near_duplicates=[["scenes/trees.jpg", "scenes/roof.jpg"]],
    )
    part = _parts_of(manifest)
    assert part["scenes/trees.jpg"] == part["scenes/roof.jpg"]


# --------------------------------------------------------------------------
# The report section
# --------------------------------------------------------------------------


class _Thumbnails:
    def __init__(self):
        self.asked = []

    def of(self, path):
        self.asked.append(path)
        return f"{len(self.asked)}.jpg"


def test_the_section_shows_leaks_first_and_escapes_hostile_names(tmp_path):
    hostile = "<img src=x onerror=alert(1)>&\"'.jpg"
    tiles = _photos()
    folder = tmp_path / "data"
    written = write_copies(folder, "pagoda", tiles["pagoda"])
    target = folder / hostile
    os.replace(written[1], target)
    petals = write_copies(folder, "petals", tiles["petals"], seed=1)
    paths = [str(target), *written[2:], *petals]
    parts = ["train"] * 4 + ["train"] * 4 + ["test"]  # the petals leak
    labels = ["<b>cat</b>"] * len(paths)
    found = find_near_duplicates(paths, parts=parts, labels=labels)
    thumbs = _Thumbnails()
    html = near_duplicates_section(found, str(folder), thumbs)
    assert html.startswith('<h2 id="near-duplicates">Near duplicates (2)</h2>')
    assert "<img src=x" not in html and "<b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#x27;.jpg" in html
    assert "&lt;b&gt;cat&lt;/b&gt;" in html
    leak = html.index("leak across train, test")
    assert leak < html.index("Group 1:")  # the petals' group 2 comes first
    assert 'class="bad"' in html[:leak]
    assert len(thumbs.asked) == len(paths) and str(target) in thumbs.asked
    assert html.count("<figure>") == len(paths) and "nearest:" in html


def test_the_section_caps_the_groups_shown_and_says_none():
    X = np.repeat(np.eye(4), 2, axis=0)
    found = find_near_duplicates(X, extractor="precomputed", method="features")
    thumbs = _Thumbnails()
    html = near_duplicates_section(found, None, thumbs, shown=1)
    assert html.count("<h3") == 1 and "3 more groups not shown" in html
    assert thumbs.asked == []  # arrays have no thumbnail
    empty = find_near_duplicates(np.eye(3), extractor="precomputed", method="features")
    assert "<p>none</p>" in near_duplicates_section(empty, None, thumbs)


def test_the_section_with_real_thumbnails(photos, tmp_path):
    from tlsk.evaluation.report._check import Thumbnails

    paths, _ = photos
    thumbs = Thumbnails(str(tmp_path / "thumbs"))
    os.makedirs(tmp_path / "thumbs")
    html = near_duplicates_section(find_near_duplicates(paths), None, thumbs)
    shown = [name for name in os.listdir(tmp_path / "thumbs")]
    assert len(shown) == 11 and all(f'src="thumbs/{n}"' in html for n in shown)
