"""The report pages in a real browser: headless Chromium through Selenium.

Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs
them); without them the tests are skipped, saying why. One browser serves
the module; each page is a file:// URL, as a user opens it.
"""

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from tlsk.evaluation.report import check_report, write_report
from tlsk.images.sample_data import write_photo_folder

HOSTILE = "<img src=x onerror=alert(1)>"


def _driver_or_skip():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install 'tlsk[test]')")
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip(
            "no headless Chromium: apt-get install chromium chromium-driver "
            "(.ci/run does)"
        )
    options = webdriver.ChromeOptions()
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    options.binary_location = browser
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver: Selenium Manager would try to download one.
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = _driver_or_skip()
    yield driver
    driver.quit()


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
    X = np.array([_colour(path) for path in paths])
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
    )
    data = check_report(root / "data", root / "check")
    return evaluation, data


def _colour(path):
    pixels = np.asarray(Image.open(path), dtype=np.float64) / 255
    return np.r_[pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1))]


def _open(browser, page):
    browser.get("file://" + page)
    browser.get_log("browser")  # what the previous page logged
    browser.refresh()
    return browser


def _errors(browser):
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def _broken_images(browser):
    """Sources of the page's images that do not decode, loading each eagerly."""
    return browser.execute_async_script(
        """
        var done = arguments[arguments.length - 1];
        var sources = Array.from(document.images, function (img) { return img.src; });
        var broken = [], left = sources.length;
        if (!left) { done(broken); }
        sources.forEach(function (src) {
          var probe = new Image();
          probe.onload = function () {
            if (!probe.naturalWidth) { broken.push(src); }
            if (!--left) { done(broken); }
          };
          probe.onerror = function () {
            broken.push(src);
            if (!--left) { done(broken); }
          };
          probe.src = src;
        });
        """
    )


def test_the_evaluation_report_renders_links_sorts_and_runs_no_injected_code(
    browser, pages, tmp_path
):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    _open(browser, pages[0])
    assert browser.title == "Browser test"
    assert _errors(browser) == []
    images = browser.find_elements(By.CSS_SELECTOR, "img")
    assert len(images) >= 24 and _broken_images(browser) == []
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

    _open(browser, pages[1])
    assert _errors(browser) == []
    assert len(browser.find_elements(By.CSS_SELECTOR, "img")) == 24
    assert _broken_images(browser) == []
    browser.find_element(By.LINK_TEXT, HOSTILE).click()
    assert browser.current_url.endswith("#class-0")
