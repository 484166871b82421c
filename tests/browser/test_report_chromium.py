"""The HTML report opened in real headless Chromium: what a person sees, not just what the file holds.

Needs the Debian packages chromium and chromium-driver (`apt-get install -y chromium chromium-driver`) and
selenium (the `test` extra). A missing browser fails these tests, it never skips them. Screenshots go to
artifacts/ at the top of the repository (gitignored); each test prints the path of its own.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fsqueue import report, report_html
from tests.conftest import REPO, run_fsq
from tests.integration.test_report import MIXED, run_jobs, synthetic

pytestmark = pytest.mark.browser

ARTIFACTS = REPO / "artifacts"
# No network on the test machines, and none wanted: nothing may phone home while the page is checked.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--window-size=1280,1000")


def _need(program: str, *alternatives: str) -> str:
    for name in (program, *alternatives):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"{program} is not installed: run `apt-get update && apt-get install -y chromium chromium-driver` "
                "(the browser tests never skip)", pytrace=False)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install '.[test]'", pytrace=False)
    options = webdriver.ChromeOptions()
    # Both paths given, so selenium never runs Selenium Manager (which would try to download a driver).
    options.binary_location = _need("chromium", "chromium-browser")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_need("chromedriver")))
    driver.set_page_load_timeout(60)
    try:
        # The console check below is only worth something if a console error would be seen: prove it.
        driver.get("data:text/html,<script>console.error('probe')</script>")
        assert any("probe" in entry["message"] for entry in driver.get_log("browser")), "console log not captured"
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def screenshot(driver: Any, name: str) -> Path:
    """The whole page, not only the first screen: the window is made as tall as the document."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 40, 12000))
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    print(f"\nscreenshot: {path}")
    driver.set_window_size(1280, 1000)
    return path


def test_small_run_shows_one_bar_per_job(browser, tmp_path):
    from selenium.webdriver.common.by import By

    spool = run_jobs(tmp_path / "spool", MIXED)
    page = tmp_path / "report.html"
    run_fsq("report", "-o", str(page), spool=spool.root, check=True)
    browser.get(page.as_uri())
    ran = {doc["id"] for doc in map(spool.read_status, spool.status_ids()) if doc and doc["start_time"] is not None}
    bars = browser.find_elements(By.CSS_SELECTOR, "#timeline svg g.bar")
    assert len(bars) == len(ran) == len(MIXED) - 1  # the job that never fitted never ran
    assert {bar.get_attribute("data-id") for bar in bars} == ran
    chart = browser.find_element(By.CSS_SELECTOR, "#timeline svg").rect
    for bar in bars:
        for rect in bar.find_elements(By.TAG_NAME, "rect"):
            box = rect.rect
            assert box["width"] >= 1 and box["height"] >= 1, box
            assert chart["x"] <= box["x"] and box["x"] + box["width"] <= chart["x"] + chart["width"] + 1, (box, chart)
    assert browser.find_element(By.TAG_NAME, "h1").text == "fsqueue report"
    failed_rows = browser.find_elements(By.CSS_SELECTOR, "#failed tbody tr")
    assert len(failed_rows) == 2 and any("exit code 3" in row.text for row in failed_rows)
    assert browser.find_element(By.CSS_SELECTOR, "#utilization svg polygon").rect["width"] > 500
    data = browser.execute_script("return JSON.parse(document.getElementById('fsq-report').textContent)")
    assert data["jobs"]["counts"] == {"FAILED": 2, "REJECTED": 1, "SUCCEEDED": 5}
    assert console_errors(browser) == []
    screenshot(browser, "report-small-run.png")


def test_a_hundred_thousand_jobs_render_as_a_heat_map(browser, tmp_path):
    from selenium.webdriver.common.by import By

    page = tmp_path / "big.html"
    page.write_text(report_html.render(report.assemble(synthetic(100_000))))
    started = time.monotonic()
    browser.get(page.as_uri())
    loaded = time.monotonic() - started
    print(f"\nthe 100,000-job report loaded in {loaded:.1f} s")  # a figure; a page that never loads fails the timeout
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline g.bar") == []
    cells = browser.find_elements(By.CSS_SELECTOR, "#timeline svg rect")
    assert cells and "too many for a bar each" in browser.find_element(By.ID, "timeline").text
    data = json.loads(browser.execute_script("return document.getElementById('fsq-report').textContent"))
    assert data["jobs"]["total"] == 100_000 and data["timeline"]["mode"] == "density"
    assert console_errors(browser) == []
    screenshot(browser, "report-100k-jobs.png")
