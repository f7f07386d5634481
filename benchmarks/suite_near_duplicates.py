"""Near duplicates: copies of real photographs found, distinct images kept apart.

The photographs: scikit-learn's two (a pagoda by a lake, a dahlia) and
scikit-image's (``skimage.data``: astronaut, cat, coffee, rocket launch,
motorcycle, cameraman; brick, grass, gravel, coins, moon, a stained tissue
section, the Hubble deep field), where scikit-image is installed. Two kinds:
scenes, and close-ups and textures (the dahlia and scikit-image's textures,
coins, moon, tissue and sky). Each photograph is cut into a grid of square
tiles that do not overlap, the originals; tiles with little detail (grey
standard deviation under 20: a patch of plain sky) are left out, since two
of them are near duplicates by any measure. Of each original the benchmark
writes four copies: half its size, recompressed at JPEG quality 20, cropped
by 10 % of its width and height at a random place, and 30 % brighter; an
original and its copies are one group. The hard negatives: beside each
original, the tile shifted by half its side (a different crop of the same
photograph, sharing half of it with each of two originals), its own group of
one: to be linked to nothing. And simple images, each its own group of one
too (64 px, lossless PNG): plain colours, ramps and their mirror images,
flat halves, whose perceptual hashes carry almost no bits.

Each method groups the images (:func:`tlsk.find_near_duplicates`), and the
pairs inside its groups are compared with the pairs inside the true groups
(precision and recall of the pairs; a group merged by mistake costs every
pair it joins): the crop-tolerant perceptual hash at its default (tlsk's),
the plain pHash of the whole image (imagededup's and ImageHash's algorithm,
computed here), the extractor's features at their default and at the best
threshold for these very images (an oracle: what the features could do at
most), and both.

Then the leak: the images in three class folders (scenes, textures,
simple), split by ``split_image_folder`` without near duplicates (copies
land in different parts), the leaks :func:`find_near_duplicates` finds
across the parts against the true ones; and the same split with the groups,
leaking nothing.
"""

from __future__ import annotations

import os
import time

import numpy as np
from _suite import Section

MIN_STD = 20
COPIES = ("half size", "JPEG quality 20", "cropped 10 %", "30 % brighter")
ORACLE_DISTANCES = tuple(np.geomspace(1e-4, 0.3, 30).tolist())
KIND_NAMES = {"textures": "close-ups, textures", "simple": "plain, simple"}
SIMPLE_SIDE = 64


def run(settings, workdir):
    from tlsk import ImageFeatureExtractor

    # Full: 3 x 3 tiles a photograph, features at 224 px; a smoke run's
    # 32 px settings give 2 x 2 tiles and 32 px features.
    size = settings.get("near_duplicates_size", settings["size"])
    grid = settings.get("near_duplicates_grid", 3 if size >= 112 else 2)
    images, sources = write_images(os.path.join(workdir, "images"), grid=grid)
    paths = [image["path"] for image in images]
    truth = np.array([image["group"] for image in images])
    kinds = np.array([image["kind"] for image in images])
    shifted = np.array([image["copy"] == "shifted" for image in images])
    simple = kinds == "simple"
    section = Section(
        f"Near duplicates: {truth.max() + 1 - shifted.sum() - simple.sum()} tiles "
        f"of {len(sources)} real photographs with {len(COPIES)} copies each "
        f"({', '.join(COPIES)}), {shifted.sum()} shifted tiles and "
        f"{simple.sum()} simple images (plain colours, ramps, flat halves) as "
        "negatives; precision and recall of the pairs in a group",
        (
            "method",
            "threshold",
            "kind",
            "images",
            "true pairs",
            "pairs found",
            "precision",
            "recall",
            "shifted tiles linked",
            "simple images linked",
            "seconds",
        ),
    )

    from tlsk.evaluation.near_duplicates import (
        MAX_BITS,
        MAX_DISTANCE,
        find_near_duplicates,
    )

    extractor = ImageFeatureExtractor(
        weights=settings["weights"],
        input_size=size,
        verbose=0,
        cache=os.path.join(workdir, "features.h5"),
    )
    started = time.perf_counter()
    features = extractor.fit_transform(paths)
    feature_seconds = time.perf_counter() - started

    started = time.perf_counter()
    hashed = find_near_duplicates(paths, max_bits=MAX_BITS)
    hash_seconds = time.perf_counter() - started
    runs = [("tlsk pHash, whole + 9 crops", f"{MAX_BITS} bits", hashed, hash_seconds)]

    started = time.perf_counter()
    plain = _plain_phash_groups(paths, MAX_BITS)
    runs.append(
        (
            "plain pHash (imagededup's algorithm)",
            f"{MAX_BITS} bits",
            plain,
            time.perf_counter() - started,
        )
    )

    by_features = find_near_duplicates(
        features, extractor="precomputed", method="features", max_distance=MAX_DISTANCE
    )
    runs.append(("features", f"cosine {MAX_DISTANCE}", by_features, feature_seconds))
    best, best_f1 = None, -1
    for distance in ORACLE_DISTANCES:
        found = find_near_duplicates(
            features, extractor="precomputed", method="features", max_distance=distance
        )
        precision, recall = _scores(_found_pairs(found), _true_pairs(truth))
        f1 = 2 * precision * recall / max(1e-12, precision + recall)
        if f1 > best_f1:
            best, best_f1 = (distance, found), f1
    runs.append(
        (
            "features, best threshold for these images (oracle)",
            f"cosine {best[0]:.2g}",
            best[1],
            feature_seconds,
        )
    )
    started = time.perf_counter()
    both = find_near_duplicates(
        paths,
        method="both",
        extractor=extractor,
        max_bits=MAX_BITS,
        max_distance=MAX_DISTANCE,
    )
    runs.append(
        (
            "both (hash or features)",
            f"{MAX_BITS} bits / cosine {MAX_DISTANCE}",
            both,
            time.perf_counter() - started,
        )
    )

    for method, threshold, found, seconds in runs:
        pairs = _found_pairs(found)
        for kind in ("scenes", "textures", "simple", "all"):
            keep = np.ones(len(images), bool) if kind == "all" else kinds == kind
            true = {p for p in _true_pairs(truth) if keep[p[0]] and keep[p[1]]}
            mine = {p for p in pairs if keep[p[0]] and keep[p[1]]}
            precision, recall = _scores(mine, true)
            section.add(
                method,
                threshold,
                KIND_NAMES.get(kind, kind),
                int(keep.sum()),
                len(true),
                len(mine),
                round(precision, 3) if mine else "",
                round(recall, 3) if true else "",
                len({i for p in mine for i in p if shifted[i]}),
                len({i for p in mine for i in p if simple[i]}),
                round(seconds, 1) if kind == "all" else "",
            )
        if method.startswith("tlsk pHash"):
            precision, recall = _scores(pairs, _true_pairs(truth))
            section.target(
                "near duplicates precision (tlsk default)", precision, ">=", 0.95
            )
            section.target("near duplicates recall (tlsk default)", recall, ">=", 0.95)

    weights = settings["weights"] or "seeded random"
    section.notes += [
        "photographs: " + ", ".join(sources),
        f"features: VGG16 at {size} px, block5_pool + avg, weights: {weights}"
        + (
            " (ImageNet weights cannot be downloaded here: a random network is "
            "the stand-in the other benchmarks use; its vectors of any two "
            "images are nearly parallel, so no cosine threshold tells copies "
            "from other images)"
            if not settings["weights"]
            else ""
        ),
        "features' seconds: their extraction (cold); 'both' extracts again "
        "(from its cache) and hashes",
        "a pair counts once; 'shifted tiles linked', 'simple images linked': "
        "negatives put in a group (each should stay alone); precision is blank "
        "where no pair was found, recall where there is none to find",
    ]
    return [section, _leak_section(images, workdir)]


def write_images(folder, grid=3, seed=0):
    """The originals, their copies and the shifted tiles as JPEG files.

    Returns ``(images, sources)``: one dict per file (``path``, ``group``,
    ``kind``, ``copy``), and the names of the photographs used.
    """
    from PIL import Image, ImageEnhance

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    images, sources = [], []
    group = 0
    for kind, named in photographs().items():
        for name, photo in named.items():
            sources.append(name)
            height, width = photo.shape[:2]
            side = min(height, width) // grid
            for row in range(height // side):
                for column in range(width // side):
                    y, x = row * side, column * side
                    tile = photo[y : y + side, x : x + side]
                    if _grey(tile).std() < MIN_STD:
                        continue
                    base = os.path.join(folder, f"{kind}-{name}-{row}-{column}")
                    original = Image.fromarray(tile)
                    cut = round(side * 0.1)
                    dx, dy = (int(v) for v in rng.integers(0, cut + 1, 2))
                    versions = {
                        "original": (original, 90),
                        "half size": (
                            original.resize(
                                (side // 2, side // 2), Image.Resampling.BILINEAR
                            ),
                            90,
                        ),
                        "JPEG quality 20": (original, 20),
                        "cropped 10 %": (
                            original.crop((dx, dy, dx + side - cut, dy + side - cut)),
                            90,
                        ),
                        "30 % brighter": (
                            ImageEnhance.Brightness(original).enhance(1.3),
                            90,
                        ),
                    }
                    for copy, (image, quality) in versions.items():
                        path = f"{base}-{copy.replace(' ', '_').replace('%', 'pc')}.jpg"
                        image.save(path, quality=quality)
                        images.append(
                            {"path": path, "group": group, "kind": kind, "copy": copy}
                        )
                    group += 1
                    # Half a tile to the right, or else down: a hard negative.
                    if x + side + side // 2 <= width:
                        sx, sy = x + side // 2, y
                    elif y + side + side // 2 <= height:
                        sx, sy = x, y + side // 2
                    else:
                        continue
                    other = photo[sy : sy + side, sx : sx + side]
                    if _grey(other).std() < MIN_STD:
                        continue
                    path = f"{base}-shifted.jpg"
                    Image.fromarray(other).save(path, quality=90)
                    images.append(
                        {"path": path, "group": group, "kind": kind, "copy": "shifted"}
                    )
                    group += 1
    for name, image in simple_images(SIMPLE_SIDE).items():
        path = os.path.join(folder, f"simple-{name.replace(' ', '_')}.png")
        Image.fromarray(image).save(path)
        images.append({"path": path, "group": group, "kind": "simple", "copy": name})
        group += 1
    return images, sources


def simple_images(side):
    """``{name: RGB array}``: plain colours, ramps, flat halves; no copies of
    one another, though their perceptual hashes carry almost no bits."""
    ramp = np.linspace(0, 255, side)[None, :].repeat(side, axis=0)
    across = (ramp + ramp.T) / 2
    grey = {
        "ramp": ramp,
        "inverse ramp": 255 - ramp,
        "vertical ramp": ramp.T,
        "inverse vertical ramp": 255 - ramp.T,
        "diagonal ramp": across,
        "inverse diagonal ramp": 255 - across,
        "halves": np.where(ramp < 128, 0.0, 255.0),
        "inverse halves": np.where(ramp < 128, 255.0, 0.0),
        "top and bottom": np.where(ramp.T < 128, 0.0, 255.0),
    }
    images = {name: np.stack([v] * 3, axis=-1) for name, v in grey.items()}
    images["red to blue"] = np.stack([255 - ramp, 0 * ramp, ramp], axis=-1)
    colours = {
        "black": (0, 0, 0),
        "white": (255, 255, 255),
        "grey": (128, 128, 128),
        "dark grey": (64, 64, 64),
        "red": (255, 0, 0),
        "green": (0, 255, 0),
        "blue": (0, 0, 255),
        "yellow": (255, 255, 0),
        "dark red": (128, 0, 0),
        "navy": (0, 0, 128),
    }
    for name, colour in colours.items():
        images[name] = np.broadcast_to(np.float64(colour), (side, side, 3))
    return {
        name: np.ascontiguousarray(np.round(image).astype(np.uint8))
        for name, image in images.items()
    }


def photographs():
    """``{"scenes": {name: RGB array}, "textures": {...}}`` of real photographs."""
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    scenes, textures = {"china": china}, {"flower": flower}
    try:
        import skimage.data as data
    except ImportError:
        return {"scenes": scenes, "textures": textures}
    scenes.update(
        astronaut=data.astronaut(),
        chelsea=data.chelsea(),
        coffee=data.coffee(),
        rocket=data.rocket(),
        motorcycle=data.stereo_motorcycle()[0],
        camera=data.camera(),
    )
    textures.update(
        brick=data.brick(),
        grass=data.grass(),
        gravel=data.gravel(),
        coins=data.coins(),
        moon=data.moon(),
        tissue=data.immunohistochemistry(),
        hubble=data.hubble_deep_field(),
    )

    def rgb(image):
        return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]

    return {
        "scenes": {name: rgb(photo) for name, photo in scenes.items()},
        "textures": {name: rgb(photo) for name, photo in textures.items()},
    }


def _grey(tile):
    return np.asarray(tile, dtype=np.float32) @ np.float32([0.299, 0.587, 0.114])


def _true_pairs(truth):
    pairs = set()
    for group in np.unique(truth):
        members = np.flatnonzero(truth == group).tolist()
        pairs.update((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
    return pairs


def _found_pairs(found):
    pairs = set()
    for group in found.groups:
        members = sorted(group.indices)
        pairs.update((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
    return pairs


def _scores(found, true):
    hits = len(found & true)
    return hits / max(1, len(found)), hits / max(1, len(true))


def _plain_phash_groups(paths, max_bits):
    """Groups by the whole image's pHash alone: the first of tlsk's 10 hashes."""
    from tlsk.images.decode import read_image
    from tlsk.images.perceptual_hash import perceptual_hashes

    whole = np.array([perceptual_hashes(read_image(path))[0] for path in paths])
    links = []
    for start in range(0, len(whole), 256):
        bits = np.bitwise_count(whole[start : start + 256, None] ^ whole[None, :])
        rows, columns = np.nonzero(bits <= max_bits)
        links += [
            (start + r, c)
            for r, c in zip(rows.tolist(), columns.tolist(), strict=True)
            if start + r < c
        ]
    return _Grouped(len(paths), links)


class _Grouped:
    """Connected components of links, shaped as NearDuplicates' ``groups``."""

    def __init__(self, n, links):
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        links = list(links)
        rows = [a for a, _ in links]
        columns = [b for _, b in links]
        graph = coo_matrix((np.ones(len(links)), (rows, columns)), shape=(n, n))
        _, component = connected_components(graph, directed=False)
        members = {}
        for index, label in enumerate(component.tolist()):
            members.setdefault(label, []).append(index)
        self.groups = [
            type("Group", (), {"indices": indices})
            for indices in members.values()
            if len(indices) > 1
        ]


def _leak_section(images, workdir):
    """A split made without near duplicates, its leaks found; and one made with."""
    import shutil

    from tlsk.evaluation.near_duplicates import find_near_duplicates
    from tlsk.images.folders import load_image_folder, split_image_folder

    data = os.path.join(workdir, "classes")
    truth = {}
    for image in images:
        folder = os.path.join(data, image["kind"])
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, os.path.basename(image["path"]))
        shutil.copyfile(image["path"], target)
        truth[os.path.relpath(target, data).replace(os.sep, "/")] = image["group"]
    section = Section(
        "Leakage: the same images in three class folders (scenes, textures, "
        "simple), split 70/15/15; pairs of copies in two parts, true and found "
        "(tlsk pHash)",
        (
            "split",
            "images",
            "true pairs across parts",
            "found across parts",
            "precision",
            "recall",
            "groups crossing parts found",
        ),
    )
    groups = None
    for name in ("without near duplicates", "with near duplicates (tlsk split)"):
        out = os.path.join(workdir, f"split-{len(section.rows)}")
        manifest = split_image_folder(
            data, out, val=0.15, test=0.15, seed=0, near_duplicates=groups
        )
        paths, parts, sources = [], [], []
        for part, entries in manifest["parts"].items():
            for entry in entries:
                paths.append(os.path.join(out, *entry["path"].split("/")))
                parts.append(part)
                sources.append(entry["source"])
        found = find_near_duplicates(paths, parts=parts)
        true_across = {
            (a, b)
            for a in range(len(paths))
            for b in range(a + 1, len(paths))
            if truth[sources[a]] == truth[sources[b]] and parts[a] != parts[b]
        }
        found_across = {
            (a, b)
            for group in found.leaks()
            for i, a in enumerate(group.indices)
            for b in group.indices[i + 1 :]
            if parts[a] != parts[b]
        }
        precision, recall = _scores(found_across, true_across)
        section.add(
            name,
            len(paths),
            len(true_across),
            len(found_across),
            round(precision, 3) if found_across else "",
            round(recall, 3) if true_across else "",
            len(found.leaks()),
        )
        if groups is None:
            section.target("leaking pairs found (recall)", recall, ">=", 0.95)
            # The groups of the unsplit tree, as tlsk split --near-duplicates
            # finds them.
            tree, _ = load_image_folder(data, check=False)
            groups = [g.files for g in find_near_duplicates(tree).groups]
            leaking = len(true_across)
        else:
            section.target(
                "leaking pairs left by a split with the groups / without",
                len(true_across) / max(1, leaking),
                "<=",
                0.05,
            )
    section.notes.append(
        "the second split keeps each group found in the unsplit tree in one "
        "part; what leaks then is the copies the hash missed"
    )
    return section


if __name__ == "__main__":
    # Through run.py, with this section added to it:
    #   python benchmarks/suite_near_duplicates.py \
    #       --out benchmarks/results/near_duplicates
    import sys

    import run as suite

    suite.SECTIONS["near-duplicates"] = sys.modules[__name__]
    if "--sections" not in sys.argv:
        sys.argv[1:1] = ["--sections", "near-duplicates"]
    suite.main()
