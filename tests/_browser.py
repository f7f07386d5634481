"""What the browser tests of the report pages share: the headless Chromium,
opening a page, its console errors, images that do not decode, and the
hostile name every page must show as text.

Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs
them); without them the browser tests are skipped, saying why. The
``browser`` fixture (tests/conftest.py) gives one browser a test module.
"""

import shutil

import numpy as np
import pytest
from PIL import Image

HOSTILE = "<img src=x onerror=alert(1)>"

# Whether the page would ask before being left: its beforeunload handler's say.
LEAVING = """
var event = new Event("beforeunload", { cancelable: true });
window.dispatchEvent(event);
return event.defaultPrevented;
"""


def driver_or_skip():
    """A headless Chromium driven by Selenium, or the test skipped, saying why."""
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


def open_page(browser, page):
    """Open ``page`` (a path) as a user does, its console log from now on."""
    browser.get("file://" + page)
    browser.get_log("browser")  # what the previous page logged
    browser.refresh()
    return browser


def console_errors(browser):
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def broken_images(browser, sources=None):
    """Of ``sources`` (default: the page's images), those that do not decode,
    each loaded eagerly."""
    return browser.execute_async_script(
        """
        var done = arguments[arguments.length - 1];
        var sources = arguments[0] ||
          Array.from(document.images, function (img) { return img.src; });
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
        """,
        sources,
    )


def colour_features(path):
    """An image's mean colour and its spread: 6 numbers a small model learns from."""
    with Image.open(path) as image:
        pixels = np.asarray(image, dtype=np.float64) / 255
    return np.r_[pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1))]
