"""The map of the images: the vectors a model sees, their 2-D layout, its HTML.

tlsk.evaluation.embedding_map on vectors the tests make and on tiny models
(``weights=None``, 32 px); tlsk.evaluation.report._map's section as text. The
page in a browser: tests/test_map_browser.py.
"""

import sys
import types
from html.parser import HTMLParser

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests._training import PLAIN
from tlsk import ImageFeatureExtractor, SmallCNNClassifier
from tlsk.evaluation.embedding_map import embedding_map, image_vectors
from tlsk.evaluation.report._map import class_colours, map_section

HOSTILE = "<img src=x onerror=alert(1)>"


def _clusters(n=90, dimensions=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    centres = rng.normal(0, 4, (3, dimensions))
    return centres[labels] + rng.normal(0, 1, (n, dimensions)), labels


def _images(n=8, size=32, seed=0):
    """Half dark, half bright noise images, and their labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, (n, size, size, 3)).astype(np.uint8)
    images[n // 2 :] += 120
    return images, np.array(["dark"] * (n // 2) + ["bright"] * (n - n // 2))


# -- embedding_map -------------------------------------------------------------


def test_the_map_is_one_point_per_vector_in_the_unit_square_clusters_apart():
    vectors, labels = _clusters()
    coords, mapped, how = embedding_map(vectors, method="tsne")
    assert coords.shape == (90, 2) and mapped.tolist() == list(range(90))
    assert coords.min() == 0 and coords.max() == 1
    # One factor for both axes: the longer side spans [0, 1], the other is
    # centred in it.
    low, high = coords.min(axis=0), coords.max(axis=0)
    assert max(high - low) == 1 and np.allclose(low + high, 1)
    # Each point's nearest neighbour on the map is of its own cluster.
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(axis=1)] == labels).all()
    assert how == (
        "t-SNE (perplexity 29.7) of 90 vectors of 64 dimensions, after PCA to 50"
    )


def test_the_same_random_state_gives_the_same_map_another_another():
    vectors, labels = _clusters(n=60)
    first = embedding_map(vectors, method="tsne", max_points=40, random_state=3)
    again = embedding_map(vectors, method="tsne", max_points=40, random_state=3)
    other = embedding_map(vectors, method="tsne", max_points=40, random_state=4)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_beyond_max_points_a_seeded_sample_is_mapped():
    vectors, _ = _clusters(n=120, dimensions=8)
    coords, mapped, how = embedding_map(vectors, method="tsne", max_points=30)
    assert coords.shape == (30, 2) and len(set(mapped.tolist())) == 30
    assert (np.diff(mapped) > 0).all() and mapped.max() < 120
    assert how.endswith("of 30 of 120 vectors of 8 dimensions (random sample)")
    # max_points=None maps every vector.
    assert len(embedding_map(vectors[:40], max_points=None)[1]) == 40


def test_a_stratified_sample_keeps_each_class_share_and_every_rare_class():
    vectors = np.random.default_rng(0).normal(size=(1000, 4))
    labels = np.repeat(["common", "middle", "rare", "single"], [700, 260, 39, 1])
    _, mapped, how = embedding_map(
        vectors, method="tsne", max_points=100, labels=labels
    )
    counts = dict(zip(*np.unique(labels[mapped], return_counts=True), strict=True))
    assert counts == {"common": 70, "middle": 26, "rare": 3, "single": 1}
    assert how.endswith("(stratified sample)")
    # More classes than points: one point from each of as many classes.
    many = np.arange(1000) % 40
    _, mapped, _ = embedding_map(vectors, method="tsne", max_points=20, labels=many)
    assert len(mapped) == 20 and len(set(many[mapped].tolist())) == 20


@pytest.mark.parametrize("n", [2, 3, 5])
def test_a_few_points_get_a_perplexity_below_their_count(n):
    vectors = np.random.default_rng(0).normal(size=(n, 3))
    coords, _, how = embedding_map(vectors, method="tsne")
    assert coords.shape == (n, 2) and np.isfinite(coords).all()
    assert f"t-SNE (perplexity {(n - 1) / 3:.3g})" in how


def test_vectors_all_alike_are_one_point_in_the_middle():
    coords, _, how = embedding_map(np.ones((4, 6)), method="tsne")
    assert (coords == 0.5).all() and how.startswith("one point (all alike)")


def test_one_dimensional_vectors_are_mapped():
    coords, _, how = embedding_map(np.arange(12.0)[:, None], method="tsne")
    assert coords.shape == (12, 2) and "of 1 dimension" in how


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "pca"}, r"method must be one of \('auto', 'tsne', 'umap'\); "),
        ({"max_points": 1}, "max_points must be an integer of at least 2, or None; "),
        ({"max_points": True}, "max_points must be an integer .* received True"),
        ({"max_points": 2.5}, r"max_points must be an integer .* received 2\.5"),
        ({"labels": ["a", "b"]}, r"labels must have one label per vector \(10\)"),
    ],
)
def test_bad_parameters_are_refused_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        embedding_map(np.zeros((10, 3)), **kwargs)


@pytest.mark.parametrize(
    ("vectors", "match"),
    [
        (np.zeros((1, 5)), "a map needs at least 2 vectors; received 1"),
        (np.zeros(5), r"2-D array .* received shape \(5,\)"),
        (np.zeros((4, 0)), "at least 1 dimension"),
        (np.array([[0.0, 1], [np.nan, 1], [2, 2]]), "1 hold NaN .* at index 1"),
        ([["a", "b"], ["c", "d"]], "vectors must be numbers"),
    ],
)
def test_bad_vectors_are_refused_saying_what_is_wrong(vectors, match):
    with pytest.raises(ValueError, match=match):
        embedding_map(vectors)


def test_umap_is_used_where_installed_and_asked_for_by_name_otherwise(monkeypatch):
    calls = []

    class UMAP:  # stands in for umap-learn: what embedding_map asks of it
        def __init__(self, **params):
            calls.append(params)

        def fit_transform(self, points):
            return points[:, :2] * 3

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=UMAP))
    vectors, _ = _clusters(n=20, dimensions=5)
    coords, _, how = embedding_map(vectors, random_state=1)
    embedding_map(vectors, method="umap", random_state=1)
    assert calls[0] == calls[1]  # seeded from random_state
    assert calls[0]["n_components"] == 2 and calls[0]["n_neighbors"] == 15
    assert isinstance(calls[0]["random_state"], int)
    assert how.startswith("UMAP (15 neighbours) of 20 vectors")
    # UMAP's layout, scaled into the unit square by one factor.
    layout = vectors[:, :2] - vectors[:, :2].min(axis=0)
    longer = np.argmax(layout.max(axis=0))
    np.testing.assert_allclose(coords[:, longer], layout[:, longer] / layout.max())
    assert embedding_map(vectors, method="tsne")[2].startswith("t-SNE")

    monkeypatch.setitem(sys.modules, "umap", None)  # not installed
    assert embedding_map(vectors)[2].startswith("t-SNE")  # auto: t-SNE
    with pytest.raises(ImportError, match="pip install umap-learn"):
        embedding_map(vectors, method="umap")


# -- image_vectors -------------------------------------------------------------


def test_a_pipeline_gives_what_its_steps_before_the_classifier_make():
    images, labels = _images()
    extractor = ImageFeatureExtractor(backbone="vgg16", weights=None, input_size=32)
    model = make_pipeline(extractor, StandardScaler(), LogisticRegression())
    model.fit(images, labels)
    vectors, kind = image_vectors(model, images)
    assert vectors.dtype == np.float32 and vectors.shape == (8, 512)
    np.testing.assert_allclose(vectors, model[:-1].transform(images), rtol=1e-6)
    assert kind == "features of ImageFeatureExtractor (vgg16), then StandardScaler"
    # A pipeline of the classifier alone: its probabilities.
    alone = make_pipeline(DummyClassifier()).fit(np.zeros((4, 1)), [0, 1, 0, 1])
    vectors, kind = image_vectors(alone, np.zeros((4, 1)))
    assert vectors.shape == (4, 2) and kind == "predicted probabilities"
    # The extractor on its own: its features.
    vectors, kind = image_vectors(model[0], images)
    assert (
        vectors.shape == (8, 512)
        and kind == "features of ImageFeatureExtractor (vgg16)"
    )


def test_a_keras_classifier_gives_its_pooled_features_as_predict_computes_them():
    import keras

    images, labels = _images()
    model = SmallCNNClassifier(**PLAIN, filters=(4, 6), dense_units=8, epochs=1).fit(
        images, labels
    )
    vectors, kind = image_vectors(model, images)
    assert kind == "the network's pooled features" and vectors.shape == (8, 6)
    # By hand: the network cut at its global pooling, on the scaled pixels.
    pooled = model.model_.get_layer("avg_pool").output
    cut = keras.Model(model.model_.inputs, pooled)
    expected = cut.predict(images.astype(np.float32) / 255, verbose=0)
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-6)
    assert np.ptp(vectors, axis=0).any()  # trained features, not a constant


def test_a_fine_tuned_network_gives_the_input_of_its_head():
    from tlsk import KerasFineTuneClassifier

    images, labels = _images()
    model = KerasFineTuneClassifier(
        **PLAIN, weights=None, dense_units=(4,), head_epochs=1, finetune_epochs=0
    ).fit(images, labels)
    vectors, kind = image_vectors(model, images)
    assert kind == "the network's pooled features" and vectors.shape == (8, 512)
    np.testing.assert_allclose(vectors, model.transform(images), rtol=1e-5)


def test_a_classifier_without_vectors_of_its_own_gives_its_probabilities():
    X = np.arange(12.0).reshape(6, 2)
    model = LogisticRegression().fit(X, [0, 0, 0, 1, 1, 1])
    vectors, kind = image_vectors(model, X)
    np.testing.assert_allclose(vectors, model.predict_proba(X), rtol=1e-6)
    assert kind == "predicted probabilities"
    with pytest.raises(TypeError, match="received object"):
        image_vectors(object(), X)


def test_a_zero_shot_classifier_gives_its_image_embeddings_at_unit_length(tmp_path):
    pytest.importorskip("keras_hub")
    from tests._hub_presets import photos, write_preset
    from tlsk import ZeroShotImageClassifier

    preset = write_preset("clip", tmp_path / "clip")
    model = ZeroShotImageClassifier(
        backbone=preset, classes=["cat", "dog"], precision="float32"
    ).fit()
    images = photos(size=32, n=4, seed=1)
    vectors, kind = image_vectors(model, images)
    logits = model.decision_function(images)
    assert kind == f"the image embeddings of {preset}"
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)
    # They are what the classifier scores: its logits from them by hand.
    by_hand = np.exp(model.logit_scale_) * vectors @ model.text_embeddings_.T
    np.testing.assert_allclose(by_hand, logits, rtol=1e-4, atol=1e-4)


# -- map_section -----------------------------------------------------------------


class _Points(HTMLParser):
    """Every map point's attributes (a circle with data-i), unescaped; every tag."""

    def __init__(self):
        super().__init__()
        self.points, self.tags, self.attributes = [], [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attributes = dict(attrs)
        self.attributes.update(attributes)
        if tag == "circle" and "data-i" in attributes:
            self.points.append(attributes)

    handle_startendtag = handle_starttag


def _parsed(html):
    parser = _Points()
    parser.feed(html)
    return parser


def test_the_section_draws_one_point_per_mapped_image_with_its_data():
    names = ["a/1.jpg", "a/2.jpg", "b/3.jpg", "b/4.jpg"]
    html = map_section(
        [[0, 0], [1, 1], [0.5, 0.25]],
        indices=[0, 2, 3],
        names=names,
        labels=["a", "a", "b", "b"],
        predicted=["a", "b", "a", "b"],
        marks={3: "suspect", 1: "unmapped"},
        thumbnails={0: "0.jpg", 2: None, 3: "3.jpg"},
        classes=["b", "a"],
    )
    assert html.startswith('<h2 id="map">Map of the images</h2>')
    points = {int(p["data-i"]): p for p in _parsed(html).points}
    assert sorted(points) == [0, 2, 3]
    assert [points[i]["data-n"] for i in (0, 2, 3)] == ["a/1.jpg", "b/3.jpg", "b/4.jpg"]
    # Colours follow classes= order: "b" is class 0.
    assert [points[i]["data-t"] for i in (0, 2, 3)] == ["1", "0", "0"]
    assert points[2]["data-p"] == "1" and "data-p" not in points[0]  # the mistake
    assert points[0]["data-s"] == "0.jpg" and "data-s" not in points[2]
    assert points[3]["data-m"] == "suspect" and "unmapped" not in html
    # Top-left is (0, 1) on the map; (0, 0) is drawn at the bottom.
    assert (points[0]["cx"], points[0]["cy"]) == ("10.0", "710.0")
    # The mistake and the marked image are drawn after the others.
    order = [int(p["data-i"]) for p in _parsed(html).points]
    assert order == [0, 2, 3]
    assert html.count('<li data-k="') == 2 and "mistake" in html and "suspect" in html
    assert "a/2.jpg" not in html  # the image not on the map


def test_hostile_names_are_text_everywhere_in_the_section():
    html = map_section(
        [[0, 0], [1, 1]],
        names=[HOSTILE, 'x" onmouseover="alert(1)'],
        labels=[HOSTILE, "b"],
        predicted=["b", HOSTILE],
        marks={0: HOSTILE},
        thumbnails={0: HOSTILE, 1: '1.jpg" onerror="alert(1)'},
        title=HOSTILE,
        note=HOSTILE,
    )
    parsed = _parsed(html)
    assert "img" not in parsed.tags and "script" not in parsed.tags
    assert not [name for name in parsed.attributes if name.startswith("on")]
    points = {p["data-i"]: p for p in parsed.points}
    assert points["0"]["data-n"] == HOSTILE and points["0"]["data-m"] == HOSTILE
    assert points["1"]["data-s"] == '1.jpg" onerror="alert(1)'
    assert f'data-name="{HOSTILE}"' not in html  # escaped in the legend too


def test_the_section_refuses_what_it_cannot_draw():
    names, labels = ["a", "b"], ["x", "y"]
    with pytest.raises(ValueError, match=r"coords must have shape \(n_mapped, 2\)"):
        map_section([0.5, 0.5], names=names, labels=labels)
    with pytest.raises(ValueError, match=r"coords must lie in \[0, 1\]"):
        map_section([[0, 0], [2, 1]], names=names, labels=labels)
    with pytest.raises(ValueError, match="pass indices="):
        map_section([[0, 0]], names=names, labels=labels)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 2\)"):
        map_section([[0, 0]], indices=[5], names=names, labels=labels)
    with pytest.raises(ValueError, match="must not repeat"):
        map_section([[0, 0], [1, 1]], indices=[1, 1], names=names, labels=labels)
    with pytest.raises(ValueError, match=r"predicted must have one label per name"):
        map_section([[0, 0], [1, 1]], names=names, labels=labels, predicted=["x"])


def _lab(colours):
    """CIELAB coordinates of ``#rrggbb`` colours (sRGB, D65)."""
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colours]) / 255
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = (
        linear
        @ np.array(
            [
                [0.4124, 0.3576, 0.1805],
                [0.2126, 0.7152, 0.0722],
                [0.0193, 0.1192, 0.9505],
            ]
        ).T
    )
    xyz /= [0.95047, 1.0, 1.08883]
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.c_[
        116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])
    ]


def _closest(colours):
    lab = _lab(colours)
    distances = np.linalg.norm(lab[:, None] - lab[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    return distances.min()


def test_colours_stay_apart_for_twenty_classes_and_exist_for_hundreds():
    # CIELAB distance: about 2.3 is the smallest a person sees; 10, plainly.
    assert _closest(class_colours(20)) > 12
    assert _closest(class_colours(50)) > 6
    many = class_colours(300)
    assert len(set(many)) == 300
    assert all(len(c) == 7 and c.startswith("#") for c in many)


def test_ten_thousand_points_make_a_light_section():
    rng = np.random.default_rng(0)
    n = 10_000
    classes = [f"class_{k:02d}" for k in range(20)]
    labels = [classes[k] for k in rng.integers(0, 20, n)]
    predicted = [classes[0] if k % 10 == 0 else label for k, label in enumerate(labels)]
    html = map_section(
        rng.random((n, 2)),
        names=[f"{label}/image_{i:06d}.jpg" for i, label in enumerate(labels)],
        labels=labels,
        predicted=predicted,
        thumbnails={i: f"{i}.jpg" for i in range(n)},
        marks={i: "suspect" for i in range(0, n, 100)},
    )
    assert html.count("<circle data-i=") == n
    # About 140 bytes a point, of which the file name is 25.
    assert len(html.encode()) / n < 160
