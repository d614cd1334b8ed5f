"""The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven by Selenium)
against a running pipeline (tiny model, a synthetic live stream): the page loads with no console errors,
the stream's picture appears, an asked question's answer appears without a reload, an alert appears
when a standing question fires, with its clip playable in the page. The last step saves the screenshot
shown in the README (docs/dashboard.png)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import pytest_asyncio

from pipeline.ray import OmniStream
from tests.ray_pipeline.conftest import next_matching, pipeline_config, synthetic

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1400,1000", "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium / chromium-driver missing: run `bash tests/run.sh` (tests/system-packages.txt)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def live(local_ray, tiny_model_path, tmp_path_factory):
    data = tmp_path_factory.mktemp("dashboard")
    cfg = pipeline_config(tiny_model_path, [{"name": "door", "source": synthetic(width=320, height=240)}],
                          history={"path": str(data / "history.sqlite3")},
                          clips={"dir": str(data / "clips"), "chunks_before": 1},
                          limits={"min_watch_every": 0.0})  # the alert test's watch evaluates every chunk
    async with OmniStream.from_config(cfg) as stream:
        await next_matching(stream.stats("door"), lambda s: True, 90)
        yield stream


async def until(driver, script: str, timeout: float, step: float = 0.25):
    """The first truthy value of a page expression within `timeout` seconds (the event loop keeps running)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = await asyncio.to_thread(driver.execute_script, f"return ({script});")
        if value:
            return value
        await asyncio.sleep(step)
    raise AssertionError(f"page never satisfied {script!r} within {timeout}s")


def severe(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


async def test_the_page_loads_without_console_errors_and_shows_the_streams_picture(live, browser):
    await asyncio.to_thread(browser.get, live.endpoints["http"])
    index = await until(browser, "document.querySelector('.stream[data-stream=door] .frame img')?.dataset.index", 30)
    loaded = await until(browser, "(() => { const i = document.querySelector('.stream[data-stream=door] .frame img');"
                                  " return i.complete && i.naturalWidth > 0 && [i.naturalWidth, i.naturalHeight]; })()",
                         10)
    assert int(index) >= 0 and loaded[0] == 480  # the server's picture: 480 pixels of frame, kept cells drawn
    assert await until(browser, "document.querySelector('#conn').textContent === 'live'", 10)
    assert severe(browser) == []


async def test_the_picture_and_figures_follow_the_newest_chunks_without_a_reload(live, browser):
    read = ("(() => { const c = document.querySelector('.stream[data-stream=door]');"
            " return [Number(c.querySelector('.frame img').dataset.index),"
            " Number(c.querySelector('dd[data-figure=chunks]').textContent)]; })()")
    first = await asyncio.to_thread(browser.execute_script, f"return {read};")
    later = await until(browser, f"(() => {{ const [i, n] = {read}; return i >= {first[0] + 3} && n >= {first[1] + 3}"
                                 " && [i, n]; })()", 40)
    assert later[1] <= live.snapshot()["streams"]["door"]["chunks"]
    assert severe(browser) == []


async def test_an_asked_question_is_answered_in_the_page_without_a_reload(live, browser):
    marker = await asyncio.to_thread(browser.execute_script, "window.__same = Math.random(); return window.__same;")
    await asyncio.to_thread(browser.execute_script, """
        const card = document.querySelector('.stream[data-stream=door]');
        card.querySelector('.ask input').value = 'What colour is the screen?';
        card.querySelector('.ask button').click();""")
    text = await until(browser, "[...document.querySelectorAll('.stream[data-stream=door] .answers li:not(.pending)')]"
                                ".map(li => li.textContent).find(t => t.includes('What colour is the screen?'))", 60)
    assert "Q: What colour is the screen?" in text
    assert await asyncio.to_thread(browser.execute_script, "return window.__same;") == marker  # no reload
    assert severe(browser) == []


async def test_an_alert_appears_when_a_watch_fires_and_its_clip_plays(live, browser, request, tmp_path):
    wid = live.add_watch("Is the screen moving?", "door", every=0.0, threshold=0.0)  # fires on the next chunk
    clip = await until(browser, "document.querySelector('#alerts li[data-stream=door]')?.dataset.clip", 60)
    assert clip.startswith("door-") and clip.endswith(".mp4")
    await asyncio.to_thread(browser.execute_script,
                            "document.querySelector('#alerts li[data-stream=door] .play').click();")
    duration = await until(browser, "(() => { const v = document.querySelector('#alerts li[data-stream=door] video');"
                                    " return v && v.readyState >= 1 && v.duration; })()", 40)
    assert duration >= 1.9  # at least the alert's own 2-second chunk
    live.remove_watch(wid)  # no more alerts: the played clip stays in view for the README's screenshot
    await asyncio.to_thread(browser.execute_script,
                            "document.querySelector('#alerts video').closest('li').scrollIntoView({block: 'nearest'});")
    await asyncio.sleep(2.5)  # one more picture
    # the README's picture is refreshed on request only (`pytest --update-screenshot`): a test run leaves the
    # checkout as it was
    shot = ROOT / "docs" / "dashboard.png" if request.config.getoption("--update-screenshot") else tmp_path / "d.png"
    await asyncio.to_thread(browser.save_screenshot, str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert severe(browser) == []
