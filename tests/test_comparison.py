"""Models side by side: the numbers, the page and ``tlsk evaluate A B DIR``."""

import json
import math
import os
import re

import numpy as np
import pytest

from tests._datasets import write_image_folder
from tests.test_cli_train_evaluate_predict import error_line, quiet_main
from tlsk.cli import main
from tlsk.evaluation.comparison import compare_models, mcnemar_test, wilson_interval
from tlsk.evaluation.report._comparison import write_comparison_report

HOSTILE = "<img src=x onerror=alert(1)>"


def _paired(b, c, both=0, neither=0):
    """Right/wrong answers of two models with ``b`` and ``c`` discordant images."""
    first = [True] * b + [False] * c + [True] * both + [False] * neither
    second = [False] * b + [True] * c + [True] * both + [False] * neither
    return first, second


# -- McNemar's test and Wilson's interval, against hand-computed values --------


def test_mcnemar_small_counts_is_the_exact_binomial_test():
    # b=1, c=5: two-sided P = 2 * P(X <= 1), X ~ Binomial(6, 1/2) = 2 * 7 / 64.
    result = mcnemar_test(*_paired(1, 5, both=40, neither=3), names=("A", "B"))
    assert (result.b, result.c, result.method) == (1, 5, "exact")
    assert result.statistic is None
    assert result.p_value == pytest.approx(14 / 64, rel=1e-12)
    assert not result.significant()
    # b=0, c=9: 2 / 2**9.
    assert mcnemar_test(*_paired(0, 9)).p_value == pytest.approx(2 / 512, rel=1e-12)


def test_mcnemar_large_counts_is_chi_squared_with_continuity_correction():
    # b=12, c=31: (|12 - 31| - 1)**2 / 43 on one degree of freedom, whose
    # survival function is erfc(sqrt(x / 2)).
    result = mcnemar_test(*_paired(12, 31, both=100))
    statistic = 18**2 / 43
    assert result.method == "chi2"
    assert result.statistic == pytest.approx(statistic, rel=1e-12)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(statistic / 2)))
    assert result.p_value == pytest.approx(0.00605, abs=1e-5)
    assert result.significant()
    sentence = result.sentence()
    assert sentence.startswith(
        "B is right on 31 images where A is wrong, A on 12 where B is wrong; "
        "McNemar p = 0.0061 (chi-squared): the difference is unlikely to be chance"
    )


def test_mcnemar_sentence_names_the_model_right_alone_more_often_first():
    sentence = mcnemar_test(*_paired(8, 1), names=("A", "B")).sentence()
    assert sentence.startswith(
        "A is right on 8 images where B is wrong, B on 1 where A is wrong; "
        "McNemar p = 0.0391 (exact binomial): the difference is unlikely"
    )
    assert "A is right on 1 image where" in mcnemar_test(*_paired(1, 1)).sentence()


def test_mcnemar_switches_from_exact_at_25_discordant_images():
    exact = mcnemar_test(*_paired(8, 16))
    assert exact.method == "exact"
    tail = sum(math.comb(24, k) for k in range(9)) / 2**24
    assert exact.p_value == pytest.approx(2 * tail, rel=1e-12)
    assert mcnemar_test(*_paired(8, 17)).method == "chi2"


def test_mcnemar_with_no_discordant_image_has_nothing_to_test():
    result = mcnemar_test(*_paired(0, 0, both=5, neither=2))
    assert result.p_value == 1.0 and "no difference to test" in result.sentence()


def test_mcnemar_refuses_answers_of_different_lengths():
    with pytest.raises(ValueError, match=r"of one length; received shapes \(3,\)"):
        mcnemar_test([1, 0, 1], [1, 0])


def test_wilson_interval_matches_the_formula():
    z = 1.959963984540054
    n, k = 10, 8
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = wilson_interval(k, n)
    assert (low, high) == pytest.approx((centre - half, centre + half), rel=1e-9)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    # All right or all wrong: the interval stays in [0, 1] and is not empty.
    assert wilson_interval(0, 20)[0] == 0 and wilson_interval(0, 20)[1] > 0.1
    assert wilson_interval(20, 20)[1] == 1 and wilson_interval(20, 20)[0] < 0.9
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(8, 10, confidence=0.5)[0] > low  # narrower
    with pytest.raises(ValueError, match=r"confidence must lie in \(0, 1\)"):
        wilson_interval(1, 2, confidence=95)
    with pytest.raises(ValueError, match="successes must lie in"):
        wilson_interval(3, 2)


# -- compare_models -------------------------------------------------------------


def _probabilities(predicted, classes, confidence):
    """One row per answer: ``confidence`` on the answer, the rest spread."""
    proba = np.full((len(predicted), len(classes)), 0.0)
    for i, (label, p) in enumerate(zip(predicted, confidence, strict=True)):
        proba[i] = (1 - p) / (len(classes) - 1)
        proba[i, classes.index(label)] = p
    return proba


def test_compare_models_scores_disagreements_and_pairs():
    y = ["cat", "cat", "dog", "dog", "bird", "bird"]
    classes = ["bird", "cat", "dog"]
    a = _probabilities(
        ["cat", "dog", "dog", "cat", "bird", "cat"],
        classes,
        [0.9, 0.6, 0.8, 0.95, 0.7, 0.5],
    )
    b = ["cat", "cat", "dog", "dog", "cat", "dog"]
    result = compare_models(y, {"A": a, "B": b}, classes={"A": classes})
    assert result.models["A"].accuracy == pytest.approx(3 / 6)
    assert result.models["B"].accuracy == pytest.approx(4 / 6)
    assert result.models["B"].interval == pytest.approx(wilson_interval(4, 6))
    narrower = compare_models(
        y, {"A": a, "B": b}, classes={"A": classes}, confidence=0.8
    )
    assert narrower.models["B"].interval == pytest.approx(
        wilson_interval(4, 6, confidence=0.8)
    )
    assert narrower.as_dict()["interval_level"] == 0.8
    # A right, B wrong: image 4; B right, A wrong: images 1 and 3.
    (pair,) = result.pairs
    assert (pair.first, pair.second, pair.b, pair.c) == ("A", "B", 1, 2)
    assert pair.p_value == pytest.approx(1.0)
    # First a model right beside a confident wrong answer (A's 0.95, then A's
    # 0.6; B gives labels, no probability), then the image both get wrong.
    assert [d.index for d in result.disagreements] == [3, 1, 4, 5]
    first = result.disagreements[0]
    assert first.predicted == {"A": "cat", "B": "dog"} and first.right == ["B"]
    assert first.confidence == {"A": pytest.approx(0.95), "B": None}
    assert result.disagreements[-1].right == []
    # Per class: A finds one cat of two and is right on one of its three "cat".
    cat = result.models["A"].per_class["cat"]
    assert cat["recall"] == pytest.approx(1 / 2)
    assert cat["precision"] == pytest.approx(1 / 3)
    # B knows only the labels it predicted: no bird, so birds are its errors.
    assert result.models["B"].classes == ["cat", "dog"]
    assert result.labels == ["bird", "cat", "dog"]
    assert result.as_dict()["models"][1]["unknown_classes"] == ["bird"]


def test_compare_models_with_different_class_lists():
    y = ["a", "b", "c", "c"]
    first = _probabilities(["a", "b", "c", "c"], ["a", "b", "c"], [0.9] * 4)
    second = _probabilities(["a", "b", "b", "a"], ["a", "b"], [0.8, 0.8, 0.7, 0.6])
    result = compare_models(
        y,
        {"three": first, "two": second},
        classes={"three": ["a", "b", "c"], "two": ["a", "b"]},
    )
    assert result.labels == ["a", "b", "c"]
    two = result.models["two"]
    assert two.accuracy == 0.5 and "c" not in two.classes
    assert two.per_class["c"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 2,
    }
    # The macro F1 is over the classes of the images: a, b, c.
    assert two.macro_f1 == pytest.approx(np.mean([2 / 3, 2 / 3, 0.0]))
    assert [d.index for d in result.disagreements] == [2, 3]
    assert result.pairs[0].b == 2 and result.pairs[0].c == 0


def test_compare_models_three_models_make_three_pairs():
    y = ["x"] * 4
    result = compare_models(
        y, {"A": ["x", "x", "y", "y"], "B": ["x"] * 4, "C": ["y"] * 4}
    )
    assert [(p.first, p.second, p.b, p.c) for p in result.pairs] == [
        ("A", "B", 0, 2),
        ("A", "C", 2, 0),
        ("B", "C", 4, 0),
    ]


@pytest.mark.parametrize(
    ("predictions", "classes", "message"),
    [
        ({"A": ["a", "b"]}, None, "two or more models"),
        ({"A": np.ones((2, 2)), "B": ["a", "b"]}, None, r"classes\['A'\] must name"),
        (
            {"A": np.ones((2, 3)), "B": ["a", "b"]},
            {"A": ["a", "b"]},
            r"shape \(2, 2\) for 2 images .* received \(2, 3\)",
        ),
        ({"A": ["a"], "B": ["a", "b"]}, None, "must be 2 labels"),
        ({"A": ["a", "z"], "B": ["a", "b"]}, {"A": ["a", "b"]}, r"\['z'\]"),
        ({"A": ["a", "b"], "B": ["a", "b"]}, {"C": ["a"]}, r"lacks: \['C'\]"),
    ],
)
def test_compare_models_refuses_what_it_cannot_compare(predictions, classes, message):
    with pytest.raises(ValueError, match=message):
        compare_models(["a", "b"], predictions, classes=classes)


# -- the page -------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """18 small images in a folder per class, one class named like HTML."""
    root = tmp_path_factory.mktemp("comparison") / "data"
    paths, labels = write_image_folder(root, 6, size=24)
    hostile_folder = root / HOSTILE
    os.rename(root / "blue", hostile_folder)
    paths = [
        p.replace(os.sep + "blue" + os.sep, os.sep + HOSTILE + os.sep) for p in paths
    ]
    # A file named like HTML too.
    os.rename(paths[0], os.path.join(os.path.dirname(paths[0]), HOSTILE + ".png"))
    paths[0] = os.path.join(os.path.dirname(paths[0]), HOSTILE + ".png")
    labels = np.where(labels == "blue", HOSTILE, labels)
    return root, paths, labels


def _two_models(labels):
    """A right on all but the first 3 images; B wrong on 6, confidently; B has
    no HOSTILE class."""
    classes_a = ["green", "red", HOSTILE]
    classes_b = ["green", "red"]
    answers_a = list(labels)
    answers_a[:3] = ["green" if t != "green" else "red" for t in labels[:3]]
    answers_b = [t if t in classes_b else "red" for t in labels]
    proba_a = _probabilities(answers_a, classes_a, [0.7] * len(labels))
    proba_b = _probabilities(answers_b, classes_b, [0.9] * len(labels))
    return {"A": proba_a, HOSTILE: proba_b}, {"A": classes_a, HOSTILE: classes_b}


def test_the_page_escapes_hostile_names_and_shows_each_section(images, tmp_path):
    root, paths, labels = images
    probas, classes = _two_models(labels)
    names = [os.path.relpath(p, root) for p in paths]
    page = write_comparison_report(
        tmp_path / "report",
        paths,
        labels,
        probas,
        classes,
        names=names,
        metadata={"A": {"method": "bottleneck", "note": HOSTILE}, HOSTILE: None},
        data_folder=root,
        disagreements_shown=4,
    )
    with open(page, encoding="utf-8") as file:
        text = file.read()
    assert HOSTILE not in text and "onerror=alert(1)>" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    sections = re.findall(r'<h2 id="([^"]+)">', text)
    assert sections == ["scores", "per-class", "disagreements", "models"]
    # A: 3 mistakes; the other: the 6 images of the class it does not know.
    comparison = compare_models(labels, probas, classes=classes)
    assert comparison.models["A"].n_correct == 15
    assert comparison.models[HOSTILE].n_correct == 12
    disagreeing = len(comparison.disagreements)
    assert f"{disagreeing} of 18 images get different answers" in text
    # The cap: 4 thumbnails, the rest counted.
    thumbs = sorted(os.listdir(tmp_path / "report" / "thumbs"))
    assert len(thumbs) == 4 and text.count("<figure>") == 4
    assert f"{disagreeing - 4} more not shown" in text
    shown = [int(name.split(".")[0]) for name in thumbs]
    assert sorted(shown) == sorted(d.index for d in comparison.disagreements[:4])
    # The per-class table sorts, and the class A alone knows is marked.
    assert '<th colspan="3" style="text-align: center">A</th>' in text
    assert text.count('<th data-sort="number">F1</th>') == 2
    assert "not a class" in text
    assert "is right on" in text and "McNemar p =" in text
    assert "<th>95% interval</th>" in text


def test_the_report_folder_rules(images, tmp_path):
    root, paths, labels = images
    probas, classes = _two_models(labels)
    out = tmp_path / "report"
    write_comparison_report(out, paths, labels, probas, classes, data_folder=root)
    with pytest.raises(FileExistsError, match="force"):
        write_comparison_report(out, paths, labels, probas, classes, data_folder=root)
    write_comparison_report(
        out, paths, labels, probas, classes, data_folder=root, force=True
    )
    # A folder tlsk did not write is never replaced, even with force.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises((FileExistsError, ValueError)):
        write_comparison_report(
            tmp_path / "mine", paths, labels, probas, classes, force=True
        )
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    # Nor a folder inside the data.
    with pytest.raises(ValueError, match="data"):
        write_comparison_report(
            root / "report", paths, labels, probas, classes, data_folder=root
        )
    with pytest.raises(ValueError, match=r"probas and classes must name the same"):
        write_comparison_report(
            tmp_path / "r2", paths, labels, probas, {"A": classes["A"]}
        )


# -- tlsk evaluate A B DIR ------------------------------------------------------


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Two bottleneck pipelines on a tiny VGG16 (weights=None): a logistic
    regression on three classes (joblib) and a nearest-neighbour classifier
    on two (.skops); and the held-out folder they are compared on."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    import tlsk

    work = tmp_path_factory.mktemp("cli-comparison")
    train_paths, train_labels = write_image_folder(work / "train", 6)
    write_image_folder(work / "test", 4, seed=1)

    def extractor():
        return tlsk.ImageFeatureExtractor(weights=None, input_size=32)

    logreg = make_pipeline(extractor(), LogisticRegression(max_iter=500))
    logreg.fit(train_paths, train_labels)
    tlsk.save_model(
        logreg, work / "logreg.joblib", {"method": "bottleneck", "classifier": "logreg"}
    )
    two = train_labels != "blue"
    knn = make_pipeline(extractor(), KNeighborsClassifier(3))
    knn.fit(
        [p for p, keep in zip(train_paths, two, strict=True) if keep], train_labels[two]
    )
    tlsk.save_model(
        knn, work / "knn.skops", {"method": "bottleneck", "classifier": "knn"}
    )
    return work


def test_cli_compares_two_models_in_text_json_and_report(saved_models, capsys):
    work = saved_models
    a, b, test = work / "logreg.joblib", work / "knn.skops", work / "test"
    text = quiet_main(["evaluate", a, b, test])
    assert "data: " in text and "(12 images)" in text
    assert re.search(
        r"logreg\.joblib .* bottleneck +\d\.\d{3} +\d\.\d{3}-\d\.\d{3}", text
    )
    assert re.search(r"(knn\.skops|logreg\.joblib) is right on \d+ images? where", text)
    assert "McNemar p = " in text
    # blue is not a class of the nearest-neighbour model.
    (blue,) = [line for line in text.splitlines() if line.startswith("blue ")]
    assert blue.split()[-1] == "-"

    result = json.loads(quiet_main(["evaluate", a, b, test, "--json", "--tta", "flip"]))
    assert result["tta"] == "flip"
    first, second = result["models"]
    assert (first["name"], second["name"]) == ("logreg.joblib", "knn.skops")
    assert second["unknown_classes"] == {"blue": 4}
    assert second["per_class"]["blue"]["recall"] == 0
    assert (
        first["accuracy_interval"][0]
        <= first["accuracy"]
        <= first["accuracy_interval"][1]
    )
    (pair,) = result["comparison"]["pairs"]
    n_right = [round(m["accuracy"] * 12) for m in result["models"]]
    assert n_right[0] - n_right[1] == (
        pair["first_right_second_wrong"] - pair["second_right_first_wrong"]
    )
    assert pair["test"] == "exact" and 0 < pair["p_value"] <= 1

    report = work / "compare"
    quiet_main(["evaluate", a, b, test, "--report", report])
    page = (report / "index.html").read_text(encoding="utf-8")
    assert "logreg.joblib, knn.skops on" in page and 'id="disagreements"' in page
    assert "knn" in page and "logreg" in page  # their settings
    # The folder exists now: refused without --force, replaced with it.
    assert main(["evaluate", str(a), str(b), str(test), "--report", str(report)]) == 1
    assert "--force" in error_line(capsys.readouterr().err)
    quiet_main(["evaluate", a, b, test, "--report", report, "--force"])


def test_cli_the_same_model_twice_is_compared_with_a_warning(saved_models, capsys):
    work = saved_models
    a = str(work / "logreg.joblib")
    assert main(["evaluate", a, a, str(work / "test"), "--json"]) == 0
    captured = capsys.readouterr()
    assert "is given 2 times" in captured.err
    result = json.loads(captured.out)
    assert [m["name"] for m in result["models"]] == [
        "logreg.joblib",
        "logreg.joblib (2)",
    ]
    (pair,) = result["comparison"]["pairs"]
    assert pair["first_right_second_wrong"] == pair["second_right_first_wrong"] == 0
    assert pair["p_value"] == 1


def test_cli_trust_applies_to_the_skops_models(saved_models, capsys):
    work = saved_models
    joblib_model, skops_model = work / "logreg.joblib", work / "knn.skops"
    trust = ["--trust", "sklearn.tree._tree.Tree", "-q"]
    argv = ["evaluate", joblib_model, skops_model, work / "test", *trust]
    assert main([*map(str, argv)]) == 0
    argv = ["evaluate", joblib_model, joblib_model, work / "test", *trust]
    assert main([*map(str, argv)]) == 1
    assert "trusted= applies to .skops" in capsys.readouterr().err


def test_cli_plot_with_several_models_is_refused(saved_models, capsys):
    work = saved_models
    argv = ["evaluate", work / "logreg.joblib", work / "knn.skops", work / "test"]
    with pytest.raises(SystemExit) as caught:
        main([*map(str, argv), "--plot", str(work / "x.png")])
    assert caught.value.code == 2
    assert "--plot draws one model's confusion matrix" in capsys.readouterr().err
    assert not (work / "x.png").exists()


def test_cli_two_files_of_one_name_are_named_by_their_paths(saved_models, capsys):
    import shutil

    work = saved_models
    (work / "other").mkdir(exist_ok=True)
    for name in ("logreg.joblib", "logreg.json"):
        shutil.copyfile(work / name, work / "other" / name)
    a, b = str(work / "logreg.joblib"), str(work / "other" / "logreg.joblib")
    assert main(["evaluate", a, b, str(work / "test"), "--json", "-q"]) == 0
    captured = capsys.readouterr()
    assert "given 2 times" not in captured.err
    assert [m["name"] for m in json.loads(captured.out)["models"]] == [a, b]
