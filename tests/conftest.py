"""Fixtures for every test: a headless browser page (see ``tests/browser.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser import headless_page, screenshot

if TYPE_CHECKING:
    from playwright.async_api import Page


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Keep the call phase's report on the item, so a fixture's teardown knows if it failed.
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.fixture
async def browser_page(request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A Playwright page in a fresh headless Chromium, for async tests.

    When the test fails, the page is saved as ``<test name>-failed.png`` in the artifacts
    directory before the browser closes.
    """
    async with headless_page() as page:
        yield page
        report = request.node.stash.get(_CALL_REPORT, None)
        if report is not None and report.failed:
            await screenshot(page, f"{request.node.name}-failed")
