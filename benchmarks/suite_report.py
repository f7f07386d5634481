"""Evaluation reports of large test sets: the capped page against an uncapped one.

10,000 real-photo crops (tlsk.images.sample_data) are "evaluated" by a small colour
classifier (logistic regression on each image's mean colour and spread,
fitted on other crops: quick, and with honest mistakes between sky and
water), then written as a report twice: as tlsk writes it (galleries capped:
48 top losses, 60 images a confusion cell, thumbnails only for what is shown)
and uncapped (every image in its cell's gallery, every image a thumbnail).
For each: the time to write it, the page's size, the thumbnails, and the
time headless Chromium takes to load it (navigation start to the load event,
lazy images below the fold not included, as a person opening it sees it).
Only when asked for (``--sections report``): it needs Chromium and
chromedriver, and the uncapped page takes minutes.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
from _suite import Section


def run(settings, workdir):
    from PIL import Image
    from sklearn.linear_model import LogisticRegression

    from tlsk.evaluation.report import write_report
    from tlsk.images.sample_data import write_photo_folder

    n = settings["report_images"]
    per_class = -(-n // 6)
    test_paths, test_labels = write_photo_folder(
        os.path.join(workdir, "report_test"), per_class=per_class, size=96, seed=1
    )
    train_paths, train_labels = write_photo_folder(
        os.path.join(workdir, "report_train"), per_class=50, size=96, seed=2
    )

    def colour(path):
        with Image.open(path) as image:
            pixels = np.asarray(image, dtype=np.float64) / 255
        return np.r_[pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1))]

    model = LogisticRegression(max_iter=2000).fit(
        [colour(p) for p in train_paths], train_labels
    )
    proba = model.predict_proba([colour(p) for p in test_paths])
    accuracy = float((model.classes_[proba.argmax(1)] == test_labels).mean())
    section = Section(
        f"Evaluation report of {len(test_paths)} images (96 px JPEG crops; "
        f"accuracy {accuracy:.3f}): tlsk's capped galleries vs every image shown",
        (
            "page",
            "write s",
            "index.html MB",
            "thumbnails",
            "thumbnails MB",
            "Chromium load s",
        ),
    )
    browser = _browser()
    loads = {}
    for name, caps in (
        ("tlsk (capped)", {}),
        ("uncapped", {"top_losses": len(test_paths), "per_cell": len(test_paths)}),
    ):
        out = os.path.join(workdir, "report_" + name.split()[0])
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        page = write_report(out, test_paths, test_labels, proba, model.classes_, **caps)
        write_seconds = time.perf_counter() - started
        thumbs = os.path.join(out, "thumbs")
        thumb_bytes = sum(
            os.path.getsize(os.path.join(thumbs, f)) for f in os.listdir(thumbs)
        )
        load = _load_seconds(browser, page) if browser else None
        loads[name] = load
        section.add(
            name,
            round(write_seconds, 3),
            round(os.path.getsize(page) / 2**20, 2),
            len(os.listdir(thumbs)),
            round(thumb_bytes / 2**20, 1),
            "" if load is None else round(load, 2),
        )
    if browser:
        browser.quit()
        section.target(
            "Chromium load of the capped page, s", loads["tlsk (capped)"], "<=", 2.0
        )
    else:
        section.notes.append("no Chromium: load times not measured")
    return section


def _browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return None
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1280,900"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium")
    service = Service(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def _load_seconds(browser, page, rounds=3):
    """Best of ``rounds``: navigation start to the load event, in seconds."""
    best = float("inf")
    for _ in range(rounds):
        browser.get("about:blank")
        browser.get("file://" + page)
        milliseconds = browser.execute_script(
            "var t = performance.getEntriesByType('navigation')[0];"
            "return t.loadEventEnd - t.startTime;"
        )
        best = min(best, milliseconds / 1000)
    return best
