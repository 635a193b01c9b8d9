"""Headless Chromium for page tests: Debian's ``chromium`` driven by Playwright, no download.

Tests take the ``browser_page`` fixture (``tests/conftest.py``), a fresh Playwright
``Page`` in its own browser, and save what they want kept with :func:`screenshot`. Test
artifacts go to ``$ARTIFACTS_DIR`` when it is set, else ``tests/artifacts/`` (ignored by
git); a test that fails while holding a page leaves ``<test name>-failed.png`` there.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.tools import require, unavailable

if TYPE_CHECKING:
    from playwright.async_api import Page

REPO = Path(__file__).resolve().parent.parent

# Headless is Playwright's default. Root needs --no-sandbox. The rest keep Chromium off
# the network on its own (the machine's network is closed: those attempts fail slowly).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def artifacts_dir() -> Path:
    """Where tests leave screenshots (created): ``$ARTIFACTS_DIR`` or ``tests/artifacts``."""
    path = Path(os.environ.get("ARTIFACTS_DIR") or REPO / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


async def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as ``<artifacts>/<name>.png`` (replacing it) and return the path.

    ``name`` may hold letters, digits, ``.``, ``_`` and ``-``; other characters become ``_``.
    """
    path = artifacts_dir() / f"{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.png"
    await page.screenshot(path=path, full_page=True)
    return path


@asynccontextmanager
async def headless_page() -> AsyncIterator[Page]:
    """A new page in a new headless Chromium, closed on exit.

    Skips (in CI fails) when Debian's chromium or Playwright is not installed.
    """
    executable = require("chromium", "chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install -e '.[test]'")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield await browser.new_page()
        finally:
            await browser.close()
