"""The fixes a check report's page writes are the ones tlsk check --apply reads:
choices made in headless Chromium (Selenium) on suspects with hostile names,
the CSV downloaded by the page, read by tlsk.images.fixes.read_fixes, applied
and undone.
"""

import hashlib
import os
import time

import pytest

from tests._browser import LEAVING
from tlsk.evaluation.report import _page
from tlsk.evaluation.report._fixes import (
    FIXES_SCRIPT,
    _bytes_attribute,
    file_sha256,
    fix_controls,
    fixes_bar,
)
from tlsk.images.fixes import apply_fixes, read_fixes, undo_fixes

HOSTILE_CLASS = "=<b>x & co"
CLASSES = ["cat", "d,og", HOSTILE_CLASS]
# (file, what the test clicks, the fix it expects in the CSV)
NAMES = [
    'cat/a, "b".png',
    "cat/=cmd().png",
    "cat/'q.png",
    "cat/été ü.png",
    "cat/new\nline.png",
    os.fsdecode(b"cat/caf\xe9 \xff.png"),
    "cat/\U0001f600.png",
    "cat/ lead.png",
    "cat/<img src=x onerror=alert(1)>.png",
    "cat/untouched.png",
]
SCREENSHOT = "/tmp/notes/fixes_page.png"


def _page_with_controls(folder, root=None):
    """A report page: one figure per suspect with its controls, the smiley's
    twice; with the SHA-256 of each file of ``root``, if given."""
    figures = []
    for name in NAMES + ["cat/\U0001f600.png"]:
        suggested = "d,og" if name.startswith("cat/a") else None
        reason = "label error" if suggested else "near duplicate"
        sha256 = file_sha256(os.path.join(root, name)) if root else None
        controls = fix_controls(
            name, "cat", CLASSES, suggested=suggested, reason=reason, sha256=sha256
        )
        figures.append(_page.figure(None, name, controls, name=name))
    section = "\n".join(
        [
            '<h2 id="suspects">Suspects</h2>',
            '<div class="grid">',
            *figures,
            "</div>",
            fixes_bar(data="data"),
        ]
    )
    html = _page.page("Fixes", "now", [section], scripts=(FIXES_SCRIPT,))
    path = folder / "index.html"
    path.write_text(html, encoding="utf-8")
    return str(path)


def _control(browser, name, nth=0):
    selector = f'.tlsk-fix[data-file="{_bytes_attribute(name)}"]'
    return browser.find_elements("css selector", selector)[nth]


def _click(browser, name, action, nth=0):
    control = _control(browser, name, nth)
    control.find_element("css selector", f'button[data-action="{action}"]').click()
    return control


def _select(browser, name, label):
    from selenium.webdriver.support.ui import Select

    select = _control(browser, name).find_element("css selector", "select")
    Select(select).select_by_value(_bytes_attribute(label))


def _downloaded(folder, timeout=20):
    path = folder / "fixes.csv"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and not list(folder.glob("*.crdownload")):
            return path
        time.sleep(0.1)
    raise AssertionError(f"no fixes.csv in {folder}: {os.listdir(folder)}")


def test_the_csv_the_page_downloads_is_what_apply_reads(tmp_path, browser):
    root = tmp_path / "data"
    for i, name in enumerate(NAMES):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(bytes([i]) * 8)
    for label in CLASSES[1:]:
        (root / label).mkdir()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior",
        {"behavior": "allow", "downloadPath": str(downloads)},
    )
    browser.get("file://" + _page_with_controls(tmp_path, root))
    browser.get_log("browser")

    count = browser.find_element("css selector", "#tlsk-fixes .fixes-count")
    button = browser.find_element("css selector", "#tlsk-fixes .fixes-download")
    assert count.text == "no choice yet" and not button.is_enabled()
    _click(browser, NAMES[0], "relabel")  # to the suggested class, preselected
    _click(browser, NAMES[1], "remove")
    _click(browser, NAMES[2], "keep")
    _select(browser, NAMES[3], HOSTILE_CLASS)  # a class picked, not chosen yet
    _click(browser, NAMES[3], "relabel")
    _click(browser, NAMES[4], "remove")
    _click(browser, NAMES[5], "relabel")  # no class chosen yet: nothing happens
    _select(browser, NAMES[5], "d,og")
    _click(browser, NAMES[5], "relabel")
    _click(browser, NAMES[6], "keep")
    _click(browser, NAMES[6], "keep", nth=1)  # its second control: unchosen
    _click(browser, NAMES[6], "remove", nth=1)
    _click(browser, NAMES[7], "remove")
    _click(browser, NAMES[8], "keep")
    first = _control(browser, NAMES[6], 0)
    pressed = first.find_element("css selector", 'button[aria-pressed="true"]')
    assert pressed.get_attribute("data-action") == "remove"  # both show it
    assert count.text == "9 choices: 3 relabel, 4 remove, 2 keep"
    browser.save_screenshot(SCREENSHOT)
    button.click()
    csv_path = _downloaded(downloads)

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    text = csv_path.read_bytes()
    assert text.startswith(b'file,action,label,reason,sha256\n"cat/a, ""b"".png",')
    first_row = text.split(b"\n")[1]
    sha256 = hashlib.sha256(bytes([0]) * 8).hexdigest()
    assert first_row.endswith(f'"{sha256}"'.encode())
    assert b'"\'=<b>x & co"' in text  # a spreadsheet shows it, never runs it
    assert b"caf\xe9 \xff.png" in text  # the name's own bytes

    fixes = read_fixes(csv_path, root)
    assert [(f.file, f.action, f.label) for f in fixes] == [
        (NAMES[0], "relabel", "d,og"),
        (NAMES[1], "remove", None),
        (NAMES[2], "keep", None),
        (NAMES[3], "relabel", HOSTILE_CLASS),
        (NAMES[4], "remove", None),
        (NAMES[5], "relabel", "d,og"),
        (NAMES[6], "remove", None),
        (NAMES[7], "remove", None),
        (NAMES[8], "keep", None),
    ]
    assert fixes[0].reason == "label error" and fixes[1].reason == "near duplicate"
    assert [f.sha256 for f in fixes] == [
        hashlib.sha256((root / f.file).read_bytes()).hexdigest() for f in fixes
    ]
    done = apply_fixes(root, fixes)
    assert len(done.moved) == 7
    assert (root / HOSTILE_CLASS / "été ü.png").read_bytes() == bytes([3]) * 8
    assert undo_fixes(root).complete
    assert sorted(os.listdir(root / "cat")) == sorted(n[4:] for n in NAMES)


def test_the_page_escapes_the_names_it_shows(tmp_path, browser):
    browser.get("file://" + _page_with_controls(tmp_path))
    control = _control(browser, NAMES[8])
    options = [
        option.text for option in control.find_elements("css selector", "option")
    ]
    assert options == ["to class…", "d,og", HOSTILE_CLASS]
    assert browser.find_elements("css selector", "b") == []  # no markup from names
    assert browser.execute_script("return document.images.length") == 0


def _pressed(browser, name, nth=0):
    control = _control(browser, name, nth)
    return [
        b.get_attribute("data-action")
        for b in control.find_elements("css selector", 'button[aria-pressed="true"]')
    ]


def test_choices_survive_a_reload_for_the_files_still_shown(tmp_path, browser):
    root = tmp_path / "data"
    for i, name in enumerate(NAMES):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(bytes([i]) * 8)
    page = _page_with_controls(tmp_path, root)
    # A reload the driver issues at once after the clicks sometimes comes
    # before Chromium has stored the page's last write (about 1 in 20 here):
    # then the page is made again, three times at most.
    for _ in range(3):
        browser.get("file://" + page)
        browser.execute_script("sessionStorage.clear();")
        browser.refresh()
        _click(browser, NAMES[0], "relabel")
        _select(browser, NAMES[3], HOSTILE_CLASS)
        _click(browser, NAMES[3], "relabel")
        _click(browser, NAMES[6], "remove", nth=1)
        _click(browser, NAMES[8], "keep")
        _click(browser, NAMES[2], "keep")
        _click(browser, NAMES[2], "keep")  # chosen, then unchosen
        before = bytes(browser.execute_script("return Array.from(tlskFixesCsv());"))
        assert before.count(b"\n") == 5
        browser.refresh()
        if browser.execute_script("return sessionStorage.length;"):
            break
    count = browser.find_element("css selector", "#tlsk-fixes .fixes-count")
    assert count.text == "4 choices: 2 relabel, 1 remove, 1 keep"
    assert _pressed(browser, NAMES[6], 0) == _pressed(browser, NAMES[6], 1)
    assert _pressed(browser, NAMES[6]) == ["remove"]
    assert _pressed(browser, NAMES[2]) == []
    select = _control(browser, NAMES[3]).find_element("css selector", "select")
    assert select.get_attribute("value") == _bytes_attribute(HOSTILE_CLASS)
    after = bytes(browser.execute_script("return Array.from(tlskFixesCsv());"))
    assert after == before
    assert browser.execute_script(LEAVING)  # restored, still not downloaded

    # The same page rewritten: a file gone, a file changed, a class gone.
    (root / NAMES[8]).write_bytes(b"changed")
    classes = CLASSES[:]
    CLASSES.remove(HOSTILE_CLASS)
    try:
        _page_with_controls(tmp_path, root)
    finally:
        CLASSES[:] = classes
    browser.refresh()
    count = browser.find_element("css selector", "#tlsk-fixes .fixes-count")
    assert count.text == "2 choices: 1 relabel, 1 remove, 0 keep"
    assert _pressed(browser, NAMES[8]) == [] and _pressed(browser, NAMES[3]) == []


@pytest.mark.parametrize(
    "broken",
    [
        # disabled: every use of sessionStorage throws
        "Object.defineProperty(window, 'sessionStorage', {get: function () {"
        " throw new DOMException('disabled', 'SecurityError'); }});",
        # full: nothing more can be stored
        "Storage.prototype.setItem = function () {"
        " throw new DOMException('full', 'QuotaExceededError'); };",
        # damaged: what is stored under the page's URL is not what it wrote
        "sessionStorage.setItem('tlsk-fixes ' + location.href, '{\"choices\": [1, ');",
    ],
)
def test_storage_that_fails_never_breaks_the_page(tmp_path, browser, broken):
    page = _page_with_controls(tmp_path)
    added = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": broken}
    )
    try:
        browser.get("file://" + page)
        browser.get_log("browser")
        _click(browser, NAMES[1], "remove")
        count = browser.find_element("css selector", "#tlsk-fixes .fixes-count")
        assert count.text == "1 choice: 0 relabel, 1 remove, 0 keep"
        browser.refresh()
        count = browser.find_element("css selector", "#tlsk-fixes .fixes-count")
        assert count.text == "no choice yet"  # nothing was kept
        _click(browser, NAMES[1], "keep")
        assert count.text == "1 choice: 0 relabel, 0 remove, 1 keep"
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument",
            {"identifier": added["identifier"]},
        )


def test_the_check_pages_controls_carry_each_files_sha256_read_once(
    tmp_path, monkeypatch
):
    from tlsk.evaluation.report import _check

    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.png").write_bytes(b"a picture")
    os.symlink(tmp_path / "cat" / "a.png", tmp_path / "cat" / "link.png")
    read = []
    monkeypatch.setattr(
        _check, "file_sha256", lambda path: read.append(path) or file_sha256(path)
    )
    fix = _check._Fixes(["cat", "dog"], None, str(tmp_path))
    sha256 = hashlib.sha256(b"a picture").hexdigest()
    for reason in ("label error", "near duplicate"):
        assert f'data-sha256="{sha256}"' in fix("cat/a.png", "cat", reason)
    assert "cannot be read" in fix("cat/gone.png", "cat", "bad file")
    assert "symbolic link" in fix("cat/link.png", "cat", "bad file")
    assert [os.path.basename(path) for path in read] == ["a.png", "gone.png"]
    assert fix.used
    assert not _check._Fixes(["cat"], None, str(tmp_path)).used
