"""The Space in a real browser: headless Debian Chromium driven by selenium types text, clicks Generate and
waits for the video; uploads a clip, ticks consent, clicks Adapt and waits for the memory's contact sheet;
then the adapted speaker is the one chosen in Generate.

Screenshots go to the test's temporary folder, or, with ``MEMFACE_SCREENSHOTS=docs``, to
``docs/space_generate.png`` and ``docs/space_adapt.png``; then the bundled demo weights and speaker are
used when they exist (a 15 s clip of the demo person is adapted), so the pictures show the real thing::

    MEMFACE_SCREENSHOTS=docs .venv/bin/python -m pytest -q tests/test_space_browser.py
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from memface_hub.pipeline import DEMO_PIPELINE, DEMO_SPEAKER

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("MEMFACE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("MEMFACE_CHROMEDRIVER", "/usr/bin/chromedriver"))
SCREENSHOTS = os.environ.get("MEMFACE_SCREENSHOTS")

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
                       reason=f"headless Chromium not installed ({CHROMIUM}, {CHROMEDRIVER}): "
                              "apt-get install -y chromium chromium-driver (.ci/run does this)"),
]


def bundled_demo_exists() -> bool:
    return (DEMO_PIPELINE / "model_index.json").is_file() and (DEMO_SPEAKER / "speaker.json").is_file()


@pytest.fixture(scope="module")
def space(request, tmp_path_factory):
    """(url, clip to adapt, screenshot folder): the tiny pipeline, or the bundled demo for screenshots."""
    from test_space_app import build_tiny_space_assets, few_threads, tiny_config

    import space_app

    work = tmp_path_factory.mktemp("browser_space")
    with few_threads():
        if SCREENSHOTS and bundled_demo_exists():
            sys.path.insert(0, str(REPO_ROOT / "scripts"))
            from load_test import adaptation_clip

            clip, _ = adaptation_clip(15.0, work / "person.mp4", work)
            config = space_app.SpaceConfig(work_dir=str(work / "space"), finetune_seconds=10.0)
        else:
            root, index = request.getfixturevalue("tiny_corpus")
            assets = build_tiny_space_assets(root, [root / c["video"] for c in index["clips"]], work)
            clip, config = assets["clip"], tiny_config(assets, work / "space")
        demo, url = space_app.MemFaceSpace(config).launch("127.0.0.1", None, prevent_thread_lock=True, quiet=True)
        shots = Path(SCREENSHOTS) if SCREENSHOTS else work / "screenshots"
        shots = shots if shots.is_absolute() else REPO_ROOT / shots
        shots.mkdir(parents=True, exist_ok=True)
        yield url, clip, shots
        demo.close()


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def screenshot(driver, path: Path, height: int) -> Path:
    """Save the top ``height`` px of the page (the window is resized so that they fit)."""
    driver.execute_script("window.scrollTo(0, 0)")
    driver.set_window_size(1400, height)
    time.sleep(1.0)                                  # let the resize and the media elements settle
    driver.save_screenshot(str(path))
    return path


def open_tab(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    next(tab for tab in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if tab.text.strip() == name).click()


def first_with_src(selector: str):
    """A selenium wait condition: the first element matching ``selector`` that has a ``src``."""
    from selenium.webdriver.common.by import By

    def condition(driver):
        return next((element for element in driver.find_elements(By.CSS_SELECTOR, selector)
                     if element.get_attribute("src")), None)
    return condition


def test_generate_and_adapt_in_a_browser(space, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, clip, shots = space
    wait = WebDriverWait(browser, 240)
    browser.set_window_size(1400, 1000)
    browser.get(url)

    # Generate: type text, click, the video element appears with the generated clip
    text = wait.until(lambda driver: driver.find_element(By.CSS_SELECTOR, "#text textarea"))
    text.send_keys("Bob and Pam met by the map.")
    browser.find_element(By.CSS_SELECTOR, "#generate-button").click()
    video = wait.until(first_with_src("#output-video video"))
    assert video.get_attribute("src").endswith(".mp4")
    wait.until(lambda driver: driver.execute_script("return arguments[0].readyState >= 2", video))  # frames decoded
    assert "frames" in browser.find_element(By.CSS_SELECTOR, "#generation-summary").text
    generate_png = screenshot(browser, shots / "space_generate.png", 900)

    # Adapt: upload a clip, tick consent, click, the memory's contact sheet appears
    browser.set_window_size(1400, 1000)
    open_tab(browser, "Adapt")
    upload = wait.until(lambda driver: driver.find_element(By.CSS_SELECTOR, "#adapt-video input[type=file]"))
    upload.send_keys(str(clip))
    wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "#adapt-video video"))
    browser.find_element(By.CSS_SELECTOR, "#adapt-name textarea, #adapt-name input").send_keys("alice")
    browser.find_element(By.CSS_SELECTOR, "#adapt-consent input[type=checkbox]").click()
    browser.find_element(By.CSS_SELECTOR, "#adapt-button").click()
    wait.until(first_with_src("#memory-sheet img"))
    assert "adapted:alice" in browser.find_element(By.CSS_SELECTOR, "#adapt-summary").text
    adapt_png = screenshot(browser, shots / "space_adapt.png", 900)

    # the adapted speaker is now the one chosen for Generate
    open_tab(browser, "Generate")
    chosen = wait.until(lambda driver: driver.find_element(By.CSS_SELECTOR, "#speaker input"))
    assert "alice" in chosen.get_attribute("value")
    for png in (generate_png, adapt_png):
        assert png.stat().st_size > 10_000
    if not SCREENSHOTS:
        shutil.rmtree(shots, ignore_errors=True)
