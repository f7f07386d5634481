"""The report pages in a real browser: headless Chromium through Selenium
(tests/_browser.py). One browser serves the module; each page is a file://
URL, as a user opens it.
"""

import io
import itertools
import os
import re
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from tests._browser import (
    HOSTILE,
    LEAVING,
    broken_images,
    colour_features,
    console_errors,
    open_page,
)
from tlsk.evaluation.report import check_report, write_report
from tlsk.images.sample_data import write_photo_folder


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """An evaluation report and a data report of real-photo crops."""
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("browser")
    classes = ["sky", "water", "petals"]
    paths, labels = write_photo_folder(
        root / "data", per_class=8, size=48, classes=classes
    )
    os.rename(root / "data" / "petals", root / "data" / HOSTILE)
    paths = [
        p.replace(os.sep + "petals" + os.sep, os.sep + HOSTILE + os.sep) for p in paths
    ]
    labels = np.where(labels == "petals", HOSTILE, labels)
    # Mean colour and its spread: sky and water get confused, as they should.
    X = np.array([colour_features(path) for path in paths])
    model = LogisticRegression(max_iter=1000).fit(X, labels)
    names = [os.path.relpath(p, root / "data") for p in paths]
    truth = labels.copy()
    truth[[0, 1, 9]] = ["water", "water", "sky"]  # as if mislabelled: mistakes
    evaluation = write_report(
        root / "evaluation",
        paths,
        truth,
        model.predict_proba(X) * 0.6 + 0.4 / 3,  # less sure
        model.classes_,
        names=names,
        metadata={"method": "test", "note": HOSTILE},
        title="Browser test",
        vectors=X,
    )
    data = check_report(root / "data", root / "check")
    return evaluation, data


def test_the_evaluation_report_renders_links_sorts_and_runs_no_injected_code(
    browser, pages, tmp_path
):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    open_page(browser, pages[0])
    assert browser.title == "Browser test"
    assert console_errors(browser) == []
    images = browser.find_elements(By.CSS_SELECTOR, "img")
    assert len(images) >= 24 and broken_images(browser) == []
    # The class name with HTML in it is text, never an element or a script.
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    assert browser.find_elements(By.CSS_SELECTOR, 'img[src="x"]') == []
    assert HOSTILE in browser.find_element(By.ID, "confusion").text

    # A confusion cell's link leads to the gallery of its images.
    link = browser.find_element(By.CSS_SELECTOR, "#confusion td.off a")
    count, anchor = int(link.text), link.get_attribute("href").split("#")[1]
    link.click()
    assert browser.current_url.endswith("#" + anchor)
    target = browser.find_element(By.ID, anchor)
    top = browser.execute_script(
        "return arguments[0].getBoundingClientRect().top;", target
    )
    bar = browser.execute_script(
        "return document.getElementById('contents').getBoundingClientRect().bottom;"
    )
    assert bar <= top < bar + 40  # scrolled to it, just below the sticky bar
    gallery = target.find_element(By.XPATH, "following-sibling::div[@class='grid']")
    assert len(gallery.find_elements(By.TAG_NAME, "figure")) == count

    # The per-image table sorts by p, down then up, and by file name.
    header = browser.find_element(By.XPATH, "//table[@id='images']//th[text()='p']")

    def column(index):
        cells = browser.find_elements(
            By.CSS_SELECTOR, f"#images tbody td:nth-child({index})"
        )
        return [cell.get_attribute("data-value") for cell in cells]

    header.click()
    values = [float(v) for v in column(4)]
    assert values == sorted(values, reverse=True) and len(values) == 24
    header.click()
    assert [float(v) for v in column(4)] == sorted(values)
    browser.find_element(By.XPATH, "//table[@id='images']//th[text()='file']").click()
    assert len(set(column(1))) == 24

    # What a person sees is not blank: the screenshot has contrast.
    browser.execute_script("window.scrollTo(0, 0);")
    shot = browser.get_screenshot_as_png()
    (tmp_path / "evaluation.png").write_bytes(shot)
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=np.float64)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01


def test_the_data_report_renders_every_thumbnail(browser, pages):
    from selenium.webdriver.common.by import By

    open_page(browser, pages[1])
    assert console_errors(browser) == []
    assert len(browser.find_elements(By.CSS_SELECTOR, "img")) == 24
    assert broken_images(browser) == []
    browser.find_element(By.LINK_TEXT, HOSTILE).click()
    assert browser.current_url.endswith("#class-0")


def _shot(browser, name, tmp_path):
    """A screenshot to look at: in $TLSK_SCREENSHOTS when set, else tmp_path."""
    folder = os.environ.get("TLSK_SCREENSHOTS") or str(tmp_path)
    os.makedirs(folder, exist_ok=True)
    browser.save_screenshot(os.path.join(folder, name))


def test_the_evaluation_reports_map_has_a_point_per_image_and_hovers_thumbnails(
    browser, pages, tmp_path
):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, pages[0])
    points = browser.find_elements(By.CSS_SELECTOR, "svg circle[data-i]")
    assert sorted(int(p.get_attribute("data-i")) for p in points) == list(range(24))
    tip = browser.find_element(By.CSS_SELECTOR, ".map-tip")
    for point in points[::5]:
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", point)
        ActionChains(browser).move_to_element(point).perform()
        assert tip.is_displayed()
        image = tip.find_element(By.TAG_NAME, "img")
        WebDriverWait(browser, 5).until(
            lambda _, image=image: browser.execute_script(
                "return arguments[0].complete;", image
            )
        )
        assert browser.execute_script("return arguments[0].naturalWidth;", image) > 0
        i = int(point.get_attribute("data-i"))
        assert os.path.basename(image.get_attribute("src")) == f"{i}.jpg"
    _shot(browser, "evaluation-map.png", tmp_path)
    assert console_errors(browser) == []


def test_the_confusion_matrixs_colours_follow_the_counts(browser, pages):
    from selenium.webdriver.common.by import By

    open_page(browser, pages[0])
    rows = browser.find_elements(By.CSS_SELECTOR, "#confusion tr")[1:]
    assert len(rows) == 3
    for t, row in enumerate(rows):
        cells = row.find_elements(By.TAG_NAME, "td")
        counts = [int(cell.text) for cell in cells]
        colours = [
            browser.execute_script(
                "return getComputedStyle(arguments[0]).backgroundColor;", cell
            )
            for cell in cells
        ]
        alphas = [_alpha(colour) for colour in colours]
        # Within a row, more images: a stronger shade; none: no shade.
        for a, b in zip(counts, alphas, strict=True):
            assert (a == 0) == (b == 0)
        pairs = itertools.combinations(zip(counts, alphas, strict=True), 2)
        for (n1, a1), (n2, a2) in pairs:
            if n1 > n2:
                assert a1 > a2
        # Green on the diagonal, red elsewhere.
        for p, colour in enumerate(colours):
            if counts[p]:
                red, green = (int(v) for v in re.findall(r"\d+", colour)[:2])
                assert (green > red) == (p == t)


def _alpha(colour):
    """The alpha of a computed CSS colour: rgba(r, g, b, a) or rgb(r, g, b)."""
    values = re.findall(r"[\d.]+", colour)
    return float(values[3]) if len(values) == 4 else 1.0


def test_every_thumbnail_of_both_reports_opens_its_image(browser, pages):
    from selenium.webdriver.common.by import By

    for page in pages:
        open_page(browser, page)
        links = browser.find_elements(By.CSS_SELECTOR, "figure a")
        hrefs = {link.get_attribute("href") for link in links}
        assert hrefs and all("/images/" in href for href in hrefs)
        assert len(links) == len(browser.find_elements(By.CSS_SELECTOR, "figure img"))
        broken = broken_images(browser, sorted(hrefs))
        assert broken == []
    # A click opens the larger view itself, in a new tab.
    first = browser.find_element(By.CSS_SELECTOR, "figure a")
    before = len(browser.window_handles)
    first.click()
    assert len(browser.window_handles) == before + 1
    browser.switch_to.window(browser.window_handles[-1])
    assert browser.execute_script(
        "return document.images.length === 1 && document.images[0].naturalWidth;"
    )
    browser.close()
    browser.switch_to.window(browser.window_handles[0])


def test_the_fixes_the_data_report_downloads_are_what_check_apply_does(
    browser, tmp_path
):
    """Choices made on tlsk check's own page, applied and undone by tlsk check."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tlsk.cli import main

    data = tmp_path / "data"
    paths, _ = write_photo_folder(data, per_class=4, size=40, classes=["sky", "water"])
    shutil.copy(paths[0], data / "water" / "copy of sky.jpg")  # in two classes
    (data / "water" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    before = _tree(data)
    out = tmp_path / "report"
    assert main(["check", str(data), "--report", str(out), "-q"]) == 0
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior",
        {"behavior": "allow", "downloadPath": str(downloads)},
    )
    open_page(browser, str(out / "index.html"))
    assert console_errors(browser) == []

    def control(name):
        return browser.find_element(
            By.XPATH, f"//div[@class='tlsk-fix' and contains(@aria-label, '{name}')]"
        )

    control("water/broken.jpg").find_element(
        By.CSS_SELECTOR, 'button[data-action="remove"]'
    ).click()
    copy = control("water/copy of sky.jpg")
    Select(copy.find_element(By.TAG_NAME, "select")).select_by_visible_text("sky")
    copy.find_element(By.CSS_SELECTOR, 'button[data-action="relabel"]').click()
    control(os.path.relpath(paths[0], data)).find_element(
        By.CSS_SELECTOR, 'button[data-action="keep"]'
    ).click()
    bar = browser.find_element(By.ID, "tlsk-fixes")
    assert "3 choices: 1 relabel, 1 remove, 1 keep" in bar.text
    # Choices not downloaded yet: leaving the page asks first (its
    # beforeunload handler cancels the event, which makes the browser ask).
    assert browser.execute_script(LEAVING)
    _shot(browser, "check-fixes.png", tmp_path)
    bar.find_element(By.CSS_SELECTOR, ".fixes-download").click()
    csv_file = downloads / "fixes.csv"
    deadline = time.monotonic() + 20
    while not csv_file.exists() or list(downloads.glob("*.crdownload")):
        assert time.monotonic() < deadline, os.listdir(downloads)
        time.sleep(0.1)
    assert not browser.execute_script(LEAVING)  # downloaded: nothing to lose

    assert main(["check", str(data), "--apply", str(csv_file)]) == 0
    after = _tree(data)
    assert "water/broken.jpg" not in after and "water/copy of sky.jpg" not in after
    assert after["sky/copy of sky.jpg"] == before["water/copy of sky.jpg"]
    quarantine = tmp_path / "data.quarantine" / "water" / "broken.jpg"
    assert quarantine.read_bytes() == before["water/broken.jpg"]
    assert main(["check", str(data), "--undo"]) == 0
    assert _tree(data) == before


def _tree(root):
    """Every file under ``root``: relative path -> bytes."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
