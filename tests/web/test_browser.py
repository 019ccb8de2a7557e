"""Live operations from the web page alone, in real headless Chromium, against a real-time run.

``magpie sim --realtime``'s processes (world, flight, relay, ground, web ground) run on
127.0.0.1; the test reads and clicks only what an operator sees on the page: channel values
changing, a NAV_GOTO sent through the form and its stages to COMPLETED, the rover moving on the
map, a thumbnail after IMG_CAPTURE; then bad input (a malformed form, an unknown channel in the
URL), the ground restarting and the web ground dropping the websocket, each with a message on
the page and the page recovering by itself. Every wait is a bounded poll of the page.

Screenshots go to the test's tmp dir, and to ``docs/`` when ``MAGPIE_DOCS_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from magpie.sitlrun import LiveMission, default_config, free_port
from tests.web.browser import chromium, close, poll, text

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

DOCS = Path(__file__).resolve().parents[2] / "docs"


def fill_command(driver, name: str, **args: str) -> None:
    Select(driver.find_element(By.ID, "cmd-select")).select_by_value(name)
    for key, value in args.items():
        el = driver.find_element(By.CSS_SELECTOR, f'#cmd-args [name="{key}"]')
        if el.tag_name == "select":
            Select(el).select_by_value(value)
        else:
            el.clear()
            el.send_keys(value)
    driver.find_element(By.ID, "cmd-send").click()


def rover_x(driver) -> float:
    m = re.search(r"x (-?[\d.]+) m", text(driver, "#map-pos"))
    return float(m.group(1)) if m else 0.0


def test_fly_the_rover_from_the_page(tmp_path: Path) -> None:
    shots = tmp_path / "shots"
    shots.mkdir()
    m = LiveMission(default_config(), tmp_path / "run", preset="ideal", seed=1, speed=1.0, web_port=free_port())
    driver = None
    try:
        m.start()
        driver = chromium()
        # an unknown channel in the URL: the ground's reason on the page
        driver.get(m.web_url + "?plot=no.such_channel")
        poll(driver, "unknown-channel message", lambda: "no channel 'no.such_channel'" in text(driver, "#notice"),
             shots=shots)
        poll(driver, "live connection", lambda: text(driver, "#conn-state") == "live", shots=shots)
        # channel values change
        cell = 'tr[data-name="sys.uptime_s"] .ch-value'
        first = poll(driver, "a first uptime value", lambda: text(driver, cell), shots=shots)
        poll(driver, "the uptime changing", lambda: text(driver, cell) not in ("", first), shots=shots)
        # a malformed form is refused on the page and nothing is sent
        fill_command(driver, "NAV_GOTO", x="abc", y="0", tolerance="0.3")
        poll(driver, "form error", lambda: '"abc" is not a number' in text(driver, "#cmd-error"), shots=shots)
        fill_command(driver, "NAV_GOTO", x="99999", y="0", tolerance="0.3")
        poll(driver, "range error", lambda: "above the maximum" in text(driver, "#cmd-error"), shots=shots)
        assert not driver.find_elements(By.CSS_SELECTOR, "#cmd-history tbody tr")
        # the drive runs on the real clock: on a loaded machine its 50 Hz group slips, and slips
        # five samples in a row safe the vehicle (as they should: tests/fault covers that), which
        # would stop this drive; the operator turns that monitor off from the page first
        fill_command(driver, "FP_DISABLE", monitor="cycle_slips")
        poll(driver, "FP_DISABLE COMPLETED", lambda: driver.find_element(
            By.CSS_SELECTOR, '#cmd-history tr[data-id="1"]').get_attribute("data-stage") == "COMPLETED",
             timeout_s=40, shots=shots)
        # drive one metre east through the form, and take a picture on the way
        fill_command(driver, "NAV_GOTO", x="1.0", y="0.2", tolerance="0.3")
        poll(driver, "NAV_GOTO sent", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#cmd-history tbody tr")) >= 2,
             shots=shots)
        fill_command(driver, "IMG_CAPTURE", format="JPEG", quality="80", priority="5")
        # the drive runs on the real clock: on a loaded machine its cycles slip and it takes longer,
        # so the waits for it are generous (each returns as soon as the page shows it)
        poll(driver, "the rover moving on the map", lambda: rover_x(driver) > 0.3, timeout_s=90, shots=shots)
        row = '#cmd-history tr[data-id="2"]'
        poll(driver, "NAV_GOTO COMPLETED", lambda: driver.find_element(By.CSS_SELECTOR, row)
             .get_attribute("data-stage") == "COMPLETED", timeout_s=90, shots=shots)
        assert "ACCEPTED" in driver.find_element(By.CSS_SELECTOR, row + " .after").text
        poll(driver, "a thumbnail", lambda: driver.execute_script(
            "const i = document.querySelector('#thumbs img'); return i && i.complete && i.naturalWidth > 0;"),
            timeout_s=40, shots=shots)
        assert int(driver.find_element(By.ID, "map").get_attribute("data-points")) >= 2
        driver.find_element(By.CSS_SELECTOR, 'tr[data-name="nav.x_m"] .ch-name').click()
        poll(driver, "a plot of nav.x_m", lambda: "samples in view" in text(driver, "#plot-info"), shots=shots)
        driver.save_screenshot(str(shots / "web-ground.png"))
        if os.environ.get("MAGPIE_DOCS_SCREENSHOTS") == "1":
            DOCS.mkdir(exist_ok=True)
            shutil.copy(shots / "web-ground.png", DOCS / "web-ground.png")
        # the ground stops: the page says so, a command gets a clear refusal; it comes back
        m.stop_one("ground")
        poll(driver, "ground-silent notice", lambda: "no telemetry from the ground" in text(driver, "#notice"),
             timeout_s=30, shots=shots)
        fill_command(driver, "CMD_NOOP")
        poll(driver, "ground-not-answering message", lambda: "did not answer" in text(driver, "#cmd-error"),
             timeout_s=20, shots=shots)
        driver.save_screenshot(str(shots / "ground-down.png"))
        m.start_ground()
        poll(driver, "ground live again", lambda: text(driver, "#ground-state") == "ground live", timeout_s=40,
             shots=shots)
        # the web ground drops the websocket: the page says so and reconnects by itself
        m.stop_one("web")
        poll(driver, "connection-lost notice", lambda: "connection to the web ground lost" in text(driver, "#notice"),
             timeout_s=20, shots=shots)
        m.start_web()
        poll(driver, "reconnected", lambda: text(driver, "#conn-state") == "live"
             and driver.execute_script("return window.magpieStats.reconnects") >= 1, timeout_s=40, shots=shots)
        assert "connection to the web ground lost" not in text(driver, "#notice")
    finally:
        if driver is not None:
            close(driver)
        codes = m.stop()
    assert all(code in (0, 130) for code in codes.values()), codes
