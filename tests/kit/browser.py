"""Debian's Chromium driven by playwright, for the dashboard's browser test.

The browser is the system's (``apt-get install chromium``), never one that playwright
downloads: the machines here fetch nothing but packages. Its background services are
switched off so the browser talks to nothing but the hub under test.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def chromium_path() -> Path:
    """Debian's Chromium; a missing one is an error that says how to install it."""
    if not CHROMIUM.is_file():
        found = shutil.which("chromium")
        raise AssertionError(
            f"{CHROMIUM} is missing{f' (there is one at {found})' if found else ''}: "
            "the dashboard's browser test needs Debian's Chromium: "
            "apt-get update && apt-get install -y chromium")
    return CHROMIUM


@asynccontextmanager
async def browser_page(*, width: int = 1280, height: int = 900) -> AsyncIterator[Any]:
    """A page of a fresh headless Chromium (closed on exit)."""
    from playwright.async_api import async_playwright

    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(executable),
                                                   args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            await browser.close()
