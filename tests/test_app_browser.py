"""The app in a real browser: `python -m taskdecomp.app` serves it on 127.0.0.1 (a free port, the
heuristic planner, a small dataset), and headless Chromium (Debian's `chromium` +
`chromium-driver`, driven by selenium; nothing downloads a browser or a driver) uses it.

Plan tab: a typed task gets its steps, its graph (an SVG that mermaid.js drew from the
```` ```mermaid ```` block) and its schedule; an empty task and an unreachable server get a message
in the page, never a trace. Explore tab: the dataset's first row with its plan drawn (a row whose
descriptions hold quotes, brackets and HTML, which must still draw), and the coverage chart.
Screenshots are saved under the test's temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from taskdecomp.heuristic import heuristic_plan
from taskdecomp.schema import make_row

from conftest import free_port, subprocess_env
from dataset_fixture import fixture_rows

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)",
)

TASK = "Record a podcast about urban beekeeping, transcribe it and design a cover image"
HOSTILE = [
    'Write "it" [a] {b} (c) & <b>d</b> #1 | e `f` #35; &amp;',  # under 60 characters: not shortened
    "Draw --> a poster: click here :::x %% not a comment",
]
WAIT = 60  # seconds: every wait below is bounded


def _dataset(out: Path) -> Path:
    """Shards whose first train row has hostile step descriptions, then ordinary rows."""
    subtasks = [
        {"step": 1, "description": HOSTILE[0], "modality": "text", "operation": "generation", "depends_on": []},
        {"step": 2, "description": HOSTILE[1], "modality": "image", "operation": "generation", "depends_on": [1]},
    ]  # fmt: skip
    hostile = make_row(
        {"instruction": 'Make *this* <i>draft</i> with "quotes" into a poster', "input": "",
         "subtasks": subtasks, "structure": "chain"},
        "offline",
    )  # fmt: skip
    rows = fixture_rows(24)
    (out / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([hostile, *rows[:20]]), out / "data" / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[20:]), out / "data" / "test-00000-of-00001.parquet")
    return out


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    """The app in its own process; its URL once it answers (bounded wait), stopped afterwards."""
    folder = tmp_path_factory.mktemp("app")
    dataset = _dataset(folder / "ds")
    port = free_port()
    env = subprocess_env(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", NO_PROXY="127.0.0.1,localhost")
    log = (folder / "app.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskdecomp.app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dataset",
            str(dataset),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited ({proc.returncode}): {(folder / 'app.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the app did not answer on {url} in 180 s: {(folder / 'app.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()
    text = (folder / "app.log").read_text()
    assert "Traceback" not in text, text[-3000:]  # no handler raised, even for the bad inputs


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[WebDriver]:
    assert CHROMEDRIVER.exists(), (
        "chromium is installed but chromium-driver is not: apt-get install chromium-driver"
    )
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--window-size=1280,1600",
    ):
        options.add_argument(flag)
    # an explicit driver path: selenium-manager (which downloads drivers) never runs
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """`condition` until it is truthy, at most WAIT seconds (the page re-renders: stale is retried)."""

    def check(d: WebDriver) -> Any:
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.2).until(check)
    except WebDriverException as exc:
        raise AssertionError(f"timed out after {WAIT} s waiting for {what}") from exc


def text_of(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def text_with(driver: WebDriver, element_id: str, needle: str) -> str | None:
    """The element's text once it holds `needle`, else None (for `wait_for`)."""
    text = text_of(driver, element_id)
    return text if needle in text else None


# Read in one script call: the page re-renders while it updates, so no element is held across calls
_GRAPH = r"""
// mermaid.js marks the diagram it drew (flowchart-v2, or 'error' for a syntax error)
const svg = document.querySelector('#' + arguments[0] + ' .mermaid svg[aria-roledescription]');
if (!svg) return null;
const labels = Array.from(svg.querySelectorAll('g.node')).map(n => {
  const html = n.querySelector('foreignObject div, foreignObject span');
  return (html ? html.innerText : n.textContent).replace(/\s+/g, ' ').trim();
});
return {role: svg.getAttribute('aria-roledescription') || '', labels: labels, text: svg.textContent};
"""


def graph(driver: WebDriver, element_id: str) -> dict[str, Any] | None:
    """What mermaid.js drew inside the element: {role, labels (one per node), text}, or None."""
    return driver.execute_script(_GRAPH, element_id)


def open_tab(driver: WebDriver, name: str) -> None:
    xpath = f"//button[@role='tab' and normalize-space()='{name}']"
    wait_for(driver, lambda d: d.find_element(By.XPATH, xpath), f"the {name} tab").click()


def task_box(driver: WebDriver) -> Any:
    return wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#task-input textarea"), "the task box")


def replace_text(box: Any, text: str) -> None:
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    if text:
        box.send_keys(text)


def test_plan_tab_draws_the_plan_and_reports_an_empty_task(app_url, browser, tmp_path) -> None:
    expected = heuristic_plan(TASK)
    browser.get(app_url)
    open_tab(browser, "Plan")
    replace_text(task_box(browser), TASK)
    browser.find_element(By.ID, "plan-button").click()

    drawn = wait_for(browser, lambda d: graph(d, "plan-graph"), "the plan's graph")
    assert drawn["role"].startswith("flowchart")  # drawn, not mermaid's syntax-error picture
    # one node per step, in order, labelled with number, modality, operation and description
    assert drawn["labels"] == [
        f"{s.step} · {s.modality} {s.operation} {s.description}" for s in expected.steps
    ]
    page = text_of(browser, "plan-graph")
    for step in expected.steps:  # the numbered steps under the graph
        assert step.description in page
    last = expected.steps[-1].description
    schedule = wait_for(browser, lambda d: text_with(d, "plan-schedule", last), "the schedule")
    for step in expected.steps:
        assert step.description in schedule
    browser.save_screenshot(str(tmp_path / "plan.png"))
    assert (tmp_path / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    replace_text(task_box(browser), "")
    browser.find_element(By.ID, "plan-button").click()
    message = wait_for(browser, lambda d: text_with(d, "plan-message", "empty"), "the empty-task message")
    assert message.startswith("⚠️") and "the task text is empty" in message
    assert graph(browser, "plan-graph") is None  # the old plan is gone
    browser.save_screenshot(str(tmp_path / "empty-task.png"))
    assert "Traceback" not in browser.page_source


def _url_box(driver: WebDriver) -> Any:
    boxes = driver.find_elements(By.CSS_SELECTOR, "textarea, input")
    return next(
        (
            b
            for b in boxes
            if b.get_attribute("placeholder") == "http://127.0.0.1:8000/v1" and b.is_displayed()
        ),
        None,
    )


def test_an_unreachable_server_is_a_message_in_the_page(app_url, browser, tmp_path) -> None:
    browser.get(app_url)
    open_tab(browser, "Plan")
    replace_text(task_box(browser), TASK)
    browser.find_element(
        By.XPATH, "//*[@id='planner-kind']//label[contains(., 'OpenAI-compatible server')]"
    ).click()
    url_box = wait_for(browser, _url_box, "the base URL box")
    replace_text(url_box, f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    browser.find_element(By.ID, "plan-button").click()
    message = wait_for(browser, lambda d: text_with(d, "plan-message", "cannot reach"), "the server message")
    assert "start the server or fix the URL" in message and "Traceback" not in browser.page_source
    browser.save_screenshot(str(tmp_path / "unreachable.png"))


_IMAGE = """
const img = document.querySelector('#coverage-chart img');
return img && img.complete && img.naturalWidth ? [img.naturalWidth, img.naturalHeight] : null;
"""


def test_explore_tab_draws_rows_and_the_coverage_chart(app_url, browser, tmp_path) -> None:
    browser.get(app_url)
    open_tab(browser, "Explore")
    drawn = wait_for(browser, lambda d: graph(d, "explore-row"), "the first row's graph")
    assert drawn["role"].startswith("flowchart") and "Syntax error" not in drawn["text"]
    # quotes, brackets, HTML, arrows and ':::' in descriptions are shown as written
    assert drawn["labels"] == [f"1 · text generation {HOSTILE[0]}", f"2 · image generation {HOSTILE[1]}"]
    row = text_of(browser, "explore-row")
    assert 'Make *this* <i>draft</i> with "quotes" into a poster' in row and "row 1 of 25" in row

    width, height = wait_for(browser, lambda d: d.execute_script(_IMAGE), "the coverage chart")
    assert width > 200 and height > 300
    assert "25 rows" in text_of(browser, "explore-summary")

    # another row draws too (the row number is a Number input)
    position = browser.find_element(By.CSS_SELECTOR, "#row-position input")
    replace_text(position, "2")
    position.send_keys(Keys.ENTER)
    wait_for(
        browser, lambda d: "row 2 of 25" in text_of(d, "explore-row") and graph(d, "explore-row"), "row 2"
    )
    browser.save_screenshot(str(tmp_path / "explore.png"))
    assert os.path.getsize(tmp_path / "explore.png") > 10_000
