"""Chromium for the browser tests, and what a failed test leaves to look at.

Playwright drives the system's Chromium (Debian's `chromium` package): Playwright's own browser
download is not needed. When a test fails, every page it opened is saved as a screenshot and as
HTML, with the JupyterLab server's log (a test's `lab` fixture, if it has one, names it in `.log`),
under .cache/browser-screenshots/<test>/; the failure report names the folder.
"""
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / ".cache" / "browser-screenshots"
VIEWPORT = {"width": 1400, "height": 1000}
ACTION_TIMEOUT = 60_000  # ms: generous, for a loaded 2-core machine (Playwright's default is 30 s)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium; --no-sandbox because Chromium refuses its own sandbox to root."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium is not installed ({CHROMIUM}): as root, apt-get install chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(ACTION_TIMEOUT)
    yield context.new_page()
    context.close()


def save_failure_artifacts(name: str, page, lab) -> Path:
    """Screenshots and HTML of every page (and frame) of the test, and the server's log."""
    folder = SCREENSHOTS / re.sub(r"[^\w.-]", "_", name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    problems = []
    for number, each in enumerate(page.context.pages if page else []):
        try:
            each.screenshot(path=folder / f"page{number}.png", full_page=True, timeout=30_000)
            for index, frame in enumerate(each.frames):
                (folder / f"page{number}-frame{index}.html").write_text(
                    f"<!-- {frame.url} -->\n{frame.content()}", encoding="utf-8")
        except Exception as error:  # a page that crashed still leaves the others and the log
            problems.append(f"page {number}: {error}")
    if lab is not None and Path(lab.log).is_file():
        shutil.copy(lab.log, folder / "jupyterlab.log")
    if problems:
        (folder / "problems.txt").write_text("\n".join(problems) + "\n", encoding="utf-8")
    return folder


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    funcargs = getattr(item, "funcargs", {})
    if report.failed and report.when == "call" and ("page" in funcargs or "lab" in funcargs):
        folder = save_failure_artifacts(item.name, funcargs.get("page"), funcargs.get("lab"))
        report.sections.append(("browser screenshots",
                                f"Screenshots, pages and the JupyterLab log of this failure: {folder}"))
