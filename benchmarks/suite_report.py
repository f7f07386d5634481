"""Evaluation reports of large test sets: the capped page against an uncapped one.

10,000 real-photo crops (tlsk.images.sample_data) are "evaluated" by a small colour
classifier (logistic regression on each image's mean colour and spread,
fitted on other crops: quick, and with honest mistakes between sky and
water), then written as a report four times: as tlsk writes it (galleries capped:
48 top losses, 60 images a confusion cell, a map of 2,000 images, thumbnails
only for what is shown), the same without the map, with a map of all
10,000, and uncapped (every image in its cell's gallery, every image a
thumbnail). The map lays the images out by the classifier's own vectors
(each image's mean colour and spread, 6 numbers).
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
    vectors = np.array([colour(p) for p in test_paths])
    proba = model.predict_proba(vectors)
    accuracy = float((model.classes_[proba.argmax(1)] == test_labels).mean())
    section = Section(
        f"Evaluation report of {len(test_paths)} images (96 px JPEG crops; "
        f"accuracy {accuracy:.3f}): tlsk's capped galleries vs every image shown",
        (
            "page",
            "map",
            "write s",
            "index.html MB",
            "thumbnails",
            "thumbnails MB",
            "larger views MB",
            "Chromium load s",
        ),
    )
    browser = _browser()
    loads = {}
    everything = {"top_losses": len(test_paths), "per_cell": len(test_paths)}
    for number, (name, caps) in enumerate(
        (
            ("tlsk (capped)", {}),
            ("tlsk, no map", {"map_points": 0}),
            ("tlsk, map of every image", {"map_points": len(test_paths)}),
            ("uncapped", everything),
        )
    ):
        out = os.path.join(workdir, f"report_{number}")
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        page = write_report(
            out,
            test_paths,
            test_labels,
            proba,
            model.classes_,
            vectors=vectors,
            **caps,
        )
        write_seconds = time.perf_counter() - started
        with open(page, encoding="utf-8") as file:
            points = file.read().count("<circle data-i=")
        load = _load_seconds(browser, page) if browser else None
        loads[name] = load
        section.add(
            name,
            points,
            round(write_seconds, 3),
            round(os.path.getsize(page) / 2**20, 2),
            len(os.listdir(os.path.join(out, "thumbs"))),
            round(_megabytes(os.path.join(out, "thumbs")), 1),
            round(_megabytes(os.path.join(out, "images")), 1),
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


def _megabytes(folder):
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / (
        2**20
    )


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
