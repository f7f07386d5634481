"""The comparison page in headless Chromium (skipped without it, saying why)."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from tests._browser import (
    HOSTILE,
    broken_images,
    colour_features,
    console_errors,
    open_page,
)
from tlsk.evaluation.report._comparison import write_comparison_report
from tlsk.images.sample_data import write_photo_folder

# Where to keep the page as the test saw it, for a person to look at, if set.
SCREENSHOT = os.environ.get("TLSK_COMPARISON_SCREENSHOT")


@pytest.fixture(scope="module")
def comparison_page(tmp_path_factory):
    """Two models of real-photo crops: a logistic regression on the colours'
    spread, and the nearest mean colour of two of the three classes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import NearestCentroid

    root = tmp_path_factory.mktemp("comparison-browser")
    classes = ["sky", "water", "petals"]
    paths, labels = write_photo_folder(
        root / "data", per_class=8, size=48, classes=classes
    )
    os.rename(root / "data" / "petals", root / "data" / HOSTILE)
    paths = [
        p.replace(os.sep + "petals" + os.sep, os.sep + HOSTILE + os.sep) for p in paths
    ]
    labels = np.where(labels == "petals", HOSTILE, labels)
    X = np.array([colour_features(path) for path in paths])
    rich = LogisticRegression(max_iter=1000).fit(X[:, 3:], labels)
    two = labels != HOSTILE
    centroid = NearestCentroid().fit(X[two], labels[two])
    centroid_proba = np.eye(2)[np.searchsorted(centroid.classes_, centroid.predict(X))]
    probas = {
        "spread logreg": rich.predict_proba(X[:, 3:]) * 0.8 + 0.2 / 3,
        f"centroid {HOSTILE}": centroid_proba * 0.9 + 0.05,
    }
    classes = {
        "spread logreg": rich.classes_,
        f"centroid {HOSTILE}": centroid.classes_,
    }
    return write_comparison_report(
        root / "comparison",
        paths,
        labels,
        probas,
        classes,
        names=[os.path.relpath(p, root / "data") for p in paths],
        metadata={
            "spread logreg": {"method": "bottleneck", "classifier": "logreg"},
            f"centroid {HOSTILE}": {"method": "bottleneck", "note": HOSTILE},
        },
        data_folder=root / "data",
        title="Comparison browser test",
    )


def test_the_comparison_page_renders_sorts_and_runs_no_injected_code(
    browser, comparison_page
):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    open_page(browser, comparison_page)
    assert browser.title == "Comparison browser test"
    assert console_errors(browser) == []
    images = browser.find_elements(By.CSS_SELECTOR, "#disagreements ~ .grid img")
    assert len(images) >= 8  # the 8 HOSTILE images at least: one model lacks it
    assert broken_images(browser) == []
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    assert browser.find_elements(By.CSS_SELECTOR, 'img[src="x"]') == []
    table = browser.find_element(By.ID, "comparison-per-class")
    assert HOSTILE in table.text and "not a class" in table.text
    assert (
        "McNemar p ="
        in browser.find_element(By.ID, "scores")
        .find_element(By.XPATH, "following-sibling::p[@class='mcnemar']")
        .text
    )

    # The per-class table sorts by the logistic regression's F1, down then up.
    header = table.find_elements(By.XPATH, ".//thead/tr[2]/th[text()='F1']")[0]
    assert header.get_property("cellIndex") == 4  # spread logreg's F1

    def column():
        index = header.get_property("cellIndex") + 1
        cells = table.find_elements(By.CSS_SELECTOR, f"tbody td:nth-child({index})")
        return [float(cell.get_attribute("data-value")) for cell in cells]

    header.click()
    values = column()
    assert values == sorted(values, reverse=True) and len(values) == 3
    header.click()
    assert column() == sorted(values)

    # The thumbnail opens its larger view.
    link = browser.find_element(By.CSS_SELECTOR, "#disagreements ~ .grid figure a")
    assert "/images/" in link.get_attribute("href")

    browser.execute_script("window.scrollTo(0, 0);")
    shot = browser.get_screenshot_as_png()
    if SCREENSHOT:
        with open(SCREENSHOT, "wb") as file:
            file.write(shot)
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=np.float64)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01
