"""tlsk.evaluation.report: the figures of an evaluation and the static HTML page."""

import math
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
    assert "<script>" in text and text.count("<script") == 1  # its own, inline
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    ids = set(re.findall(r'id="([^"]+)"', text))
    links = re.findall(r'href="#([^"]+)"', text)
    assert links and set(links) <= ids
    thumbs = re.findall(r'src="thumbs/([^"]+)"', text)
    assert thumbs
    for name in thumbs:
        with Image.open(page.parent / "thumbs" / name) as image:
            assert image.format == "JPEG" and max(image.size) <= 160
    assert "accuracy <b>" in text and 'id="reliability"' in text
    assert text.count("<tr><td data-value=") == len(paths)


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
