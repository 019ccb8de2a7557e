"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by selenium."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1500,1300")


def chromium() -> Any:
    """A fresh headless Chromium with its own profile; skips (saying why) where it is not installed."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="magpie-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(10)
    driver.profile_dir = profile
    return driver


def close(driver: Any) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.profile_dir, ignore_errors=True)


def poll(driver: Any, what: str, check: Callable[[], Any], timeout_s: float = 30.0, shots: Path | None = None) -> Any:
    """Poll the page (bounded) until ``check()`` is truthy; on timeout save a screenshot and fail."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # an element not there yet, a stale element: poll again
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)  # polling a real browser
    if shots is not None:
        driver.save_screenshot(str(shots / f"timeout-{what.replace(' ', '-')}.png"))
    raise AssertionError(f"page: no {what} within {timeout_s} s (last: {last!r})")


def text(driver: Any, css: str) -> str:
    return str(driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
                                     css))
