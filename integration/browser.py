"""A headless browser for the console's tests: Debian's Chromium driven through Debian's
chromedriver by Selenium, both named by path, so Selenium never downloads a driver or a
browser (its selenium-manager runs only when no driver path is given)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("BULKHEAD_ARTIFACTS",
                                Path(__file__).resolve().parent.parent / "artifacts"))
"""Where screenshots go (gitignored)."""
WAIT = 60.0
T = TypeVar("T")


def require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        message = f"the console's browser tests need {', '.join(missing)} (make setup)"
        if os.environ.get("BULKHEAD_REQUIRE_DATAPATH") == "1":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def chromium(width: int = 1500, height: int = 950) -> Iterator[Any]:
    """A headless Chromium session, always quit."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, check: Callable[[Any], T], timeout: float = WAIT) -> T:
    """`check(driver)` once it is truthy (Selenium's WebDriverWait)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(check)


def screenshot(driver: Any, folder: str, name: str) -> Path:
    path = ARTIFACTS / folder / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path
