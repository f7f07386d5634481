"""tlsk.evaluation.report: the figures of an evaluation and the static HTML page."""

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlsk.evaluation.report import evaluation_data, evaluation_report, write_report

HOSTILE = "<img src=x onerror=alert(1)>"


def test_the_figures_of_an_evaluation():
    proba = np.array(
        [[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]]
    )
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    data = evaluation_data(
        proba, ["cat", "dog", "owl"], ["cat", "dog", "dog", "owl"], names
    )
    assert data.accuracy == 0.5
    assert data.matrix.tolist() == [[1, 0, 0], [1, 1, 0], [1, 0, 0]]
    assert data.most_confused == [("dog", "cat", 1), ("owl", "cat", 1)]
    # d.jpg gave its true class 0.4 (loss 0.92), b.jpg 0.4 too: index breaks the tie.
    assert [r.name for r in data.top_losses(5)] == ["b.jpg", "d.jpg"]
    assert math.isclose(data.top_losses(1)[0].loss, -math.log(0.4))
    assert [r.name for r in data.cell(1, 0)] == ["b.jpg"]
    assert data.per_class["dog"]["recall"] == 0.5
    # Confidence 0.9 right, 0.6 wrong, 0.7 right, 0.5 wrong: one image a bin.
    assert math.isclose(data.ece, (0.1 + 0.6 + 0.3 + 0.5) / 4)
    assert sum(b.count for b in data.calibration) == 4


def test_a_label_the_model_does_not_know_is_a_row_and_an_error():
    data = evaluation_data([[0.8, 0.2]], ["cat", "dog"], ["fox"], ["x.png"])
    assert data.labels == ["cat", "dog", "fox"] and data.accuracy == 0.0
    assert data.rows[0].p_true == 0.0 and math.isfinite(data.rows[0].loss)


def test_probabilities_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"proba must have shape \(2, 2\).*\(2, 3\)"):
        evaluation_data(np.ones((2, 3)) / 3, ["a", "b"], ["a", "b"], ["1", "2"])


def _folder(root, classes, per_class):
    paths, labels = [], []
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            path = root / name / f"{i}.jpg"
            pixels = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
            pixels[..., c % 3] = 255
            Image.fromarray(pixels).save(path)
            paths.append(str(path))
            labels.append(name)
    return paths, labels


class _Colour:
    """A stand-in classifier on paths: which channel is brightest, softly."""

    def __init__(self, classes):
        self.classes_ = np.array(classes)

    def predict_proba(self, X):
        means = np.array([np.asarray(Image.open(p)).mean(axis=(0, 1)) for p in X])
        scores = np.exp(means[:, : len(self.classes_)] / 20)
        return scores / scores.sum(axis=1, keepdims=True)


def test_a_report_links_its_cells_to_their_images_and_escapes_names(tmp_path):
    classes = ["red", "green", HOSTILE]
    paths, labels = _folder(tmp_path / "data", classes, 4)
    labels[0] = "green"  # one mistake at least
    page = Path(
        evaluation_report(
            _Colour(classes),
            paths,
            labels,
            tmp_path / "report",
            metadata={"method": "bottleneck", "note": HOSTILE},
        )
    )
    text = page.read_text(encoding="utf-8")
    assert HOSTILE not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    # Its own scripts, inline: the tables' sorting and the map's tooltips.
    assert text.count("<script>") == text.count("<script") == 2
    assert 'id="map"' in text and text.count("<circle data-i=") == len(paths)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    ids = set(re.findall(r'id="([^"]+)"', text))
    links = re.findall(r'href="#([^"]+)"', text)
    assert links and set(links) <= ids
    thumbs = re.findall(r'src="thumbs/([^"]+)"', text)
    assert thumbs
    for name in thumbs:
        with Image.open(page.parent / "thumbs" / name) as image:
            assert image.format == "JPEG" and max(image.size) <= 160
        # Each thumbnail opens its larger view, a file of the report.
        assert f'href="images/{name}"' in text
        with Image.open(page.parent / "images" / name) as image:
            assert image.size == (400, 300)  # the original, under 1024 px
    assert "accuracy <b>" in text and 'id="reliability"' in text
    # The bar lists every section, in order.
    bar = text.split('<nav id="contents">')[1].split("</nav>")[0]
    anchors = re.findall(r'href="#([^"]+)"', bar)
    assert anchors[:3] == ["per-class", "confusion-matrix", "top-losses"]
    assert anchors[-2:] == ["cells", "every-image"] and "metadata" in anchors
    assert text.count("<tr><td data-value=") == len(paths)


def test_the_summary_names_the_worst_classes_and_the_most_confused_pair(tmp_path):
    # cat: 3 right; dog: 1 right, 2 taken for cat; owl: 2 right, 1 taken for dog.
    page = write_report(
        tmp_path / "report",
        [np.zeros((8, 8, 3), np.uint8)] * 9,
        ["cat"] * 3 + ["dog"] * 3 + ["owl"] * 3,
        np.eye(3)[[0, 0, 0, 1, 0, 0, 2, 2, 1]],
        ["cat", "dog", "owl"],
    )
    text = Path(page).read_text(encoding="utf-8")
    summary = text.split('id="summary">')[1].split("</div>")[0]
    assert "accuracy <b>0.667</b> on 9 images" in summary
    assert re.search(r'worst classes: <a href="#class-1">dog</a> \(F1 0\.40\)', summary)
    assert '<a href="#cell-1-0">dog taken for cat, 2 images</a>' in summary
    assert '<tr id="class-1"><td>dog</td>' in text


def test_the_confusion_matrix_of_50_classes_numbers_its_columns(tmp_path):
    classes = [f"class with a long name {i:02d}" for i in range(50)]
    truth = np.repeat(np.arange(50), 2)
    page = write_report(
        tmp_path / "report",
        [np.zeros((8, 8, 3), np.uint8)] * 100,
        [classes[t] for t in truth],
        np.eye(50)[(truth + np.arange(100) % 2) % 50],
        classes,
        per_cell=1,
        top_losses=2,
    )
    text = Path(page).read_text(encoding="utf-8")
    assert "<table id='confusion' class=\"numbered\">" in text
    table = text.split("id='confusion'")[1].split("</table>")[0]
    assert table.count("<tr>") == 51 and table.count("<td ") == 2500
    # Columns are numbered as the rows; each whole name is a title.
    assert f'<th class="column" title="{classes[7]}"><span>8</span></th>' in table
    assert f'<th class="row" title="{classes[7]}">8. {classes[7]}</th>' in table
    # 50 classes make 100 galleries of cells: headings of one section, not the bar.
    bar = text.split('<nav id="contents">')[1].split("</nav>")[0]
    assert "cell-" not in bar and len(re.findall(r"<a ", bar)) < 12


def test_the_reliability_diagram_has_ticks_and_the_count_of_each_bin(tmp_path):
    confidence = np.array([0.95, 0.95, 0.95, 0.55])
    proba = np.c_[confidence, 1 - confidence]
    page = write_report(
        tmp_path / "report",
        [np.zeros((8, 8, 3), np.uint8)] * 4,
        ["a", "a", "b", "a"],
        proba,
        ["a", "b"],
    )
    svg = Path(page).read_text(encoding="utf-8").split('id="reliability"')[1]
    svg = svg.split("</svg>")[0]
    ticks = re.findall(r">(\d\.\d)</text>", svg)
    assert ticks == ["0.0", "0.0", "0.2", "0.2", "0.4", "0.4", "0.6", "0.6"] + [
        "0.8",
        "0.8",
        "1.0",
        "1.0",
    ]
    counts = re.findall(r'class="bin-count"[^>]*>(\d+)<', svg)
    assert [int(c) for c in counts] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 3]


def test_a_keras_models_training_curves_and_configuration_are_on_its_page(tmp_path):
    history = {
        "head": {"loss": [1.0, 0.5], "val_loss": [1.1, 0.9], "accuracy": [0.5, 0.8]},
        HOSTILE: {"loss": [0.4, float("nan"), 0.3], "learning_rate": [1e-5] * 3},
    }
    metadata = {"method": "finetune", "params": {"epochs": 2, "note": HOSTILE}}
    page = write_report(
        tmp_path / "report",
        [np.zeros((8, 8, 3), np.uint8)] * 2,
        ["a", "b"],
        np.eye(2),
        ["a", "b"],
        history=history,
        metadata=metadata,
    )
    text = Path(page).read_text(encoding="utf-8")
    assert HOSTILE not in text
    section = text.split('<h2 id="training">')[1].split("<h2")[0]
    charts = re.findall(r'<svg class="curve".*?</svg>', section)
    # loss and accuracy (the learning rate is not a curve of the model's skill).
    assert [re.search(r'bold">(\w+)<', c).group(1) for c in charts] == [
        "loss",
        "accuracy",
    ]
    loss = charts[0]
    # Two phases: 5 epochs, training solid over 4 finite values, validation dashed.
    lines = re.findall(r'<polyline points="([^"]+)"[^>]*dasharray="([^"]*)"', loss)
    assert [(len(points.split()), dash) for points, dash in lines] == [
        (4, ""),
        (2, "5 3"),
    ]
    assert "epoch (1 to 5)" in loss and "&lt;img src=x" in loss
    # The configuration: one row per setting, the raw JSON folded away.
    assert "<td>params.epochs</td><td>2</td>" in text
    assert "<details><summary>the raw JSON</summary><pre>" in text


def test_a_report_folder_is_replaced_only_when_asked(tmp_path):
    classes = ["red", "green"]
    paths, labels = _folder(tmp_path / "data", classes, 2)
    model = _Colour(classes)
    out = tmp_path / "report"
    evaluation_report(model, paths, labels, out)
    with pytest.raises(FileExistsError, match="report folder .*report.* exists"):
        evaluation_report(model, paths, labels, out)
    evaluation_report(model, paths, labels, out, force=True)
    assert sorted(p.name for p in out.iterdir()) == [
        ".tlsk-output.json",
        "images",
        "index.html",
        "thumbs",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "report"]


def test_a_folder_tlsk_did_not_write_is_never_replaced(tmp_path):
    classes = ["red", "green"]
    paths, labels = _folder(tmp_path / "data", classes, 2)
    model = _Colour(classes)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="tlsk did not write it as a report"):
        evaluation_report(model, paths, labels, mine, force=True)
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]
    # A report of tlsk's to which someone added a file is not replaced either.
    out = tmp_path / "report"
    evaluation_report(model, paths, labels, out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="tlsk did not write 'notes.txt'"):
        evaluation_report(model, paths, labels, out, force=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_galleries_are_capped_and_say_what_is_left_out(tmp_path):
    classes = ["red", "green"]
    paths, labels = _folder(tmp_path / "data", classes, 6)
    proba = np.tile([0.3, 0.7], (len(paths), 1))  # all predicted green
    page = Path(
        write_report(
            tmp_path / "r", paths, labels, proba, classes, per_cell=2, top_losses=3
        )
    )
    text = page.read_text(encoding="utf-8")
    assert text.count("4 more not shown") == 2  # two cells of 6, 2 shown each
    # Thumbnails only for what is shown: 3 top losses, 2 a cell (overlapping).
    assert len(list((page.parent / "thumbs").iterdir())) <= 3 + 2 * 2


def test_the_data_report_shows_samples_bad_files_duplicates_and_escapes(tmp_path):
    import shutil

    from tlsk.evaluation.report import check_report

    paths, _ = _folder(tmp_path / "data", ["red", HOSTILE], 3)
    (tmp_path / "data" / "red" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    shutil.copy(paths[0], tmp_path / "data" / HOSTILE / "copy.jpg")
    page = Path(check_report(tmp_path / "data", tmp_path / "out", per_class=2))
    text = page.read_text(encoding="utf-8")
    assert HOSTILE not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "red/broken.jpg" in text and 'id="duplicates"' in text
    # Two samples of each class, the two duplicates: 5 thumbnails (one shared
    # with a sample at most), each a JPEG that decodes.
    thumbs = sorted((tmp_path / "out" / "thumbs").iterdir())
    assert 4 <= len(thumbs) <= 6
    for thumb in thumbs:
        with Image.open(thumb) as image:
            assert image.format == "JPEG" and max(image.size) <= 160
    for source in re.findall(r'src="(thumbs/[^"]+)"', text):
        assert (tmp_path / "out" / source).is_file()
    # What is wrong comes first: bad files and duplicates before the samples.
    order = [text.index(f'id="{anchor}"') for anchor in ("summary", "bad-files")]
    order += [text.index(f'id="{a}"') for a in ("duplicates", "classes", "class-0")]
    assert order == sorted(order)
    summary = text.split('id="summary">')[1].split("</div>")[0]
    assert '<a href="#bad-files">1 file</a> cannot be decoded' in summary
    assert '<a href="#duplicates">1 image</a> in two or more classes' in summary
    with pytest.raises(FileExistsError, match="pass force=True"):
        check_report(tmp_path / "data", tmp_path / "out")


def test_the_data_report_of_an_empty_folder_is_a_clear_error(tmp_path):
    from tlsk.evaluation.report import check_report

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        check_report(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_confusion_matrix_is_shaded_by_each_rows_share(tmp_path):
    # Predicted: cat, cat, cat, dog, owl, owl; true: cat, cat, dog, dog, owl, owl.
    page = write_report(
        tmp_path / "report",
        [np.zeros((8, 8, 3), np.uint8)] * 6,
        ["cat", "cat", "dog", "dog", "owl", "owl"],
        np.eye(3)[[0, 0, 0, 1, 2, 2]],
        ["cat", "dog", "owl"],
    )
    text = Path(page).read_text(encoding="utf-8")
    table = text.split("id='confusion'")[1].split("</table>")[0]
    shade = r'<td class="(\w*)" style="background: rgba\(([\d, ]+), ([\d.]+)\)"'
    cells = re.findall(shade, table)
    # Row cat: 2 right of 2. Row dog: 1 wrong (as cat), 1 right. Row owl: 2 of 2.
    alphas = [float(alpha) for _, _, alpha in cells]
    assert alphas == pytest.approx([0.85, 0, 0, 0.425, 0.425, 0, 0, 0, 0.85])
    assert cells[3][:2] == ("off", "215, 58, 73")
    assert cells[4][:2] == ("diag", "46, 160, 67")
    assert 'title="1 of 2 (50%)"' in table


def test_the_mistakes_show_where_a_keras_model_looked(tmp_path):
    from tlsk import SmallCNNClassifier

    classes = ["red", "green"]
    paths, labels = _folder(tmp_path / "data", classes, 4)
    model = SmallCNNClassifier(
        input_size=32, filters=(4, 4), epochs=1, validation_fraction=0, random_state=0
    ).fit(paths, labels)
    # Every image labelled what the model does not say: all are mistakes.
    wrong = [classes[1 - classes.index(p)] for p in model.predict(paths)]
    page = Path(evaluation_report(model, paths, wrong, tmp_path / "report"))
    text = page.read_text(encoding="utf-8")
    section = text.split('<h2 id="top-losses">')[1].split("<h2")[0]
    assert "Grad-CAM (Selvaraju et al., 2017)" in section and "layer pool2" in section
    maps = re.findall(r'class="cam" href="images/(cam-\d+\.jpg)"', section)
    plain = re.findall(r'class="plain" href="images/(\d+\.jpg)"', section)
    assert len(maps) == len(plain) == len(paths)
    for name in maps:
        with Image.open(page.parent / "thumbs" / name) as thumb:
            assert max(thumb.size) == 160
        with Image.open(page.parent / "images" / name) as view:
            assert view.size == (400, 300)
    # The training curves of the model come with it.
    assert '<h2 id="training">' in text


def test_a_model_explain_does_not_support_says_so_and_shows_plain_thumbnails(
    tmp_path,
):
    classes = ["red", "green"]
    paths, labels = _folder(tmp_path / "data", classes, 2)
    page = Path(
        write_report(
            tmp_path / "report",
            paths,
            ["green", "red", "red", "green"],
            _Colour(classes).predict_proba(paths),
            classes,
            model=_Colour(classes),
        )
    )
    section = page.read_text(encoding="utf-8").split('<h2 id="top-losses">')[1]
    section = section.split("<h2")[0]
    assert "no maps of where the model looks: explain supports" in section
    assert 'class="cam"' not in section and "thumbs/" in section


def test_a_map_on_a_grid_too_coarse_to_show_a_place_is_not_drawn(tmp_path):
    from tlsk import SmallCNNClassifier

    classes = ["red", "green"]
    paths, labels = _folder(tmp_path / "data", classes, 2)
    model = SmallCNNClassifier(
        input_size=32,
        filters=(4, 4, 4, 4),
        epochs=1,
        validation_fraction=0,
        random_state=0,
    ).fit(paths, labels)
    wrong = [classes[1 - classes.index(p)] for p in model.predict(paths)]
    page = Path(evaluation_report(model, paths, wrong, tmp_path / "report"))
    section = page.read_text(encoding="utf-8").split('<h2 id="top-losses">')[1]
    assert "its last feature map is 2 x 2 at this input size" in section
    assert 'class="cam"' not in section


def test_a_symbolic_link_gets_no_fix_control(tmp_path):
    from tlsk.evaluation.report import check_report

    paths, _ = _folder(tmp_path / "data", ["red", "green"], 2)
    os.symlink(paths[0], tmp_path / "data" / "green" / "link.jpg")  # in two classes
    page = Path(check_report(tmp_path / "data", tmp_path / "out"))
    text = page.read_text(encoding="utf-8")
    duplicates = text.split('<h2 id="duplicates">')[1].split("<h2")[0]
    assert "green/link.jpg" in duplicates
    assert 'data-file="green%2Flink.jpg"' not in text
    assert "a symbolic link: fix it by hand" in duplicates
    assert 'data-file="red%2F0.jpg"' in duplicates
