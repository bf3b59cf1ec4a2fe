"""Headless Chromium through Selenium (tests and the note's screenshots): open a page, return the
browser console's messages and the rendered DOM, optionally save a screenshot."""
from __future__ import annotations

import shutil

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1200,2400")


def available() -> bool:
    return bool(shutil.which("chromium") and shutil.which("chromedriver"))


def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for f in CHROMIUM_FLAGS:
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
