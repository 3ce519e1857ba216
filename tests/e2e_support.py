"""Browser tests' support: launching Debian's Chromium through Playwright's async API, and saving
screenshots under ``test-artifacts/screenshots/``.

Playwright never downloads a browser here (``playwright install`` is not used): it drives the
system's ``/usr/bin/chromium`` (installed by ``tests/bootstrap.sh``), headless, with everything that
would reach the network on its own turned off. The async API is used (not pytest-playwright's sync
fixtures) so the browser runs on the test session's event loop, next to the live portal it talks to.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

__all__ = [
    "CHROMIUM_ARGS",
    "CHROMIUM_PATH",
    "DEFAULT_TIMEOUT_MS",
    "SCREENSHOT_DIR",
    "chromium_path",
    "launch_chromium",
    "screenshot",
]

CHROMIUM_PATH = os.environ.get("PORTAL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
DEFAULT_TIMEOUT_MS = 15_000
"""Per action and navigation: well above a loaded machine's page load, well under the test timeout."""
SCREENSHOT_DIR = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"


def chromium_path() -> str:
    """The system Chromium's executable; a clear error when it is not installed."""
    if not Path(CHROMIUM_PATH).exists():
        raise RuntimeError(f"{CHROMIUM_PATH} is missing: run tests/bootstrap.sh (installs chromium)")
    return CHROMIUM_PATH


@asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, for the duration of the block."""
    executable = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


async def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG of ``page`` as ``test-artifacts/screenshots/<name>.png``; return its path."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
