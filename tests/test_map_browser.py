"""The map of the images in a real browser: headless Chromium through Selenium.

A page of one map section (:mod:`tlsk.evaluation.report._map`) over real-photo
crops, their thumbnails under ``thumbs/`` and larger views under ``images/``
as a report writes them, opened from file://. Skipped, saying why, without
Chromium (tests.test_report_browser).
"""

import io
import os

import numpy as np
import pytest
from PIL import Image

from tests._browser import HOSTILE, colour_features, console_errors, open_page
from tlsk.evaluation.embedding_map import embedding_map
from tlsk.evaluation.report._map import MAP_SCRIPT, map_section
from tlsk.evaluation.report._page import page
from tlsk.evaluation.report._thumbnails import write_thumbnail
from tlsk.images.sample_data import write_photo_folder

SCREENSHOT = os.environ.get("TLSK_MAP_SCREENSHOT")  # where to keep one, if set


@pytest.fixture(scope="module")
def map_page(tmp_path_factory):
    """A page with the map of 30 photo crops: 2 mistakes, 1 suspect, 1 unseen."""
    root = tmp_path_factory.mktemp("map")
    paths, labels = write_photo_folder(
        root / "data", per_class=10, size=48, classes=["sky", "water", "petals"]
    )
    labels = labels.astype(object)
    labels[labels == "petals"] = HOSTILE
    names = [os.path.relpath(p, root / "data") for p in paths]
    names[25] = HOSTILE + ".jpg"
    predicted = labels.copy()
    predicted[[3, 14]] = ["water", "sky"]
    vectors = np.array([colour_features(path) for path in paths])
    coords, mapped, how = embedding_map(vectors, method="tsne", random_state=0)
    folder = root / "report"
    (folder / "thumbs").mkdir(parents=True)
    # Every image a thumbnail but the last: its tooltip says it has none.
    thumbnails = {
        i: write_thumbnail(path, str(folder / "thumbs"), f"{i}.jpg")
        for i, path in enumerate(paths[:-1])
    }
    section = map_section(
        coords,
        indices=mapped,
        names=names,
        labels=labels,
        predicted=predicted,
        marks={7: "suspect", 25: HOSTILE},
        thumbnails=thumbnails,
        note=f"mean colour and spread; {how}",
    )
    html = page("Map test", "now", [section], scripts=(MAP_SCRIPT,))
    (folder / "index.html").write_text(html, encoding="utf-8")
    return str(folder / "index.html"), names, labels


def _tooltip(browser):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, ".map-tip")


def _loaded(browser, tip):
    """The tooltip's image, once decoded: its natural width (0: broken)."""
    from selenium.webdriver.support.ui import WebDriverWait

    image = tip.find_element("css selector", "img")
    WebDriverWait(browser, 5).until(
        lambda _: browser.execute_script("return arguments[0].complete;", image)
    )
    return browser.execute_script("return arguments[0].naturalWidth;", image)


def test_the_map_has_a_point_per_image_and_hovering_shows_its_thumbnail(
    browser, map_page
):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    path, names, labels = map_page
    open_page(browser, path)
    assert console_errors(browser) == []
    points = browser.find_elements(By.CSS_SELECTOR, "#map ~ .tlsk-map circle[data-i]")
    assert sorted(int(p.get_attribute("data-i")) for p in points) == list(range(30))
    # The hostile class and file names are text: no element, no script ran.
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    assert browser.find_elements(By.CSS_SELECTOR, 'img[src="x"]') == []
    assert HOSTILE in browser.find_element(By.CSS_SELECTOR, ".map-legend").text
    # Mistakes and marks are drawn: two black rings, two coloured ones.
    assert len(browser.find_elements(By.CSS_SELECTOR, "circle[data-p]")) == 2
    assert len(browser.find_elements(By.CSS_SELECTOR, ".rings circle")) == 2

    tip = _tooltip(browser)
    assert not tip.is_displayed()
    point = browser.find_element(By.CSS_SELECTOR, 'circle[data-i="14"]')
    ActionChains(browser).move_to_element(point).perform()
    assert tip.is_displayed()
    assert _loaded(browser, tip) > 0
    text = tip.text
    assert names[14] in text and "label: water" in text and "predicted: sky" in text
    # Beside the point, inside the map's box.
    box = browser.find_element(By.CSS_SELECTOR, ".map-box").rect
    assert box["x"] <= tip.rect["x"] and tip.rect["x"] + tip.rect["width"] <= (
        box["x"] + box["width"] + 1
    )
    if SCREENSHOT:
        with open(SCREENSHOT, "wb") as file:
            file.write(browser.get_screenshot_as_png())
    # What a person sees of the tooltip is not blank: the thumbnail shows.
    shot = Image.open(io.BytesIO(tip.screenshot_as_png)).convert("L")
    assert np.asarray(shot, dtype=np.float64).std() > 20

    # The hostile names, hovered: shown as text in the tooltip.
    hostile = browser.find_element(By.CSS_SELECTOR, 'circle[data-i="25"]')
    ActionChains(browser).move_to_element(hostile).perform()
    assert _loaded(browser, tip) > 0
    assert tip.text.splitlines() == [
        HOSTILE + ".jpg",
        "label: " + HOSTILE,
        "predicted: the same",
        HOSTILE,
    ]
    # The image without a thumbnail says so.
    last = browser.find_element(By.CSS_SELECTOR, 'circle[data-i="29"]')
    ActionChains(browser).move_to_element(last).perform()
    assert tip.text.splitlines()[0] == "no thumbnail"
    assert tip.find_elements(By.TAG_NAME, "img") == []
    # Away from the points, the tooltip goes.
    ActionChains(browser).move_to_element(
        browser.find_element(By.TAG_NAME, "h1")
    ).perform()
    assert not tip.is_displayed()
    assert console_errors(browser) == []


def test_the_keyboard_reaches_the_map_and_steps_through_its_points(browser, map_page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    path, names, _ = map_page
    open_page(browser, path)
    tabbable = browser.find_elements(By.CSS_SELECTOR, 'circle[tabindex="0"]')
    assert len(tabbable) == 1  # Tab stops at the map once, not at each image
    for _ in range(10):  # past the page's bar of links
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.switch_to.active_element.tag_name == "circle":
            break
    assert browser.switch_to.active_element == tabbable[0]
    tip = _tooltip(browser)
    assert tip.is_displayed()
    first = int(tabbable[0].get_attribute("data-i"))
    assert names[first] in tip.text
    browser.switch_to.active_element.send_keys(Keys.ARROW_RIGHT)
    focused = browser.switch_to.active_element
    second = int(focused.get_attribute("data-i"))
    assert second != first and names[second] in tip.text
    assert focused.get_attribute("tabindex") == "0"
    focused.send_keys(Keys.ESCAPE)
    assert not tip.is_displayed()
    # Enter opens the image's larger view in a new tab.
    handles = len(browser.window_handles)
    focused.send_keys(Keys.ENTER)
    assert len(browser.window_handles) == handles + 1
    browser.switch_to.window(browser.window_handles[-1])
    assert browser.current_url.endswith(f"/images/{second}.jpg")
    size = browser.execute_script("return document.images[0].naturalWidth;")
    browser.close()
    browser.switch_to.window(browser.window_handles[0])
    assert size > 0
    assert console_errors(browser) == []


def test_a_class_in_the_legend_fades_the_others(browser, map_page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    path, _, labels = map_page
    open_page(browser, path)
    item = browser.find_element(
        By.CSS_SELECTOR, f'.map-legend li[data-name="{HOSTILE}"]'
    )
    ActionChains(browser).move_to_element(item).perform()

    def opacities():
        return browser.execute_script(
            "return Array.from(document.querySelectorAll('circle[data-i]'), function"
            " (c) { return [Number(c.dataset.i), getComputedStyle(c).opacity]; });"
        )

    shown = {i for i, opacity in opacities() if float(opacity) == 1}
    assert shown == {i for i, label in enumerate(labels) if label == HOSTILE}
    # The marked images' rings fade with their points: the suspect (7) is sky.
    rings = browser.execute_script(
        "return Array.from(document.querySelectorAll('.rings circle'), function"
        " (c) { return getComputedStyle(c).opacity; });"
    )
    assert sorted(float(opacity) for opacity in rings) == [0.1, 1]
    ActionChains(browser).move_to_element(
        browser.find_element(By.TAG_NAME, "h1")
    ).perform()
    assert all(float(opacity) == 1 for _, opacity in opacities())
    assert console_errors(browser) == []
