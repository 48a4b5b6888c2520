"""End-to-end fixtures: Debian's headless Chromium driven by Playwright, one browser per module.

No browser is ever downloaded: Playwright launches /usr/bin/chromium (`make chromium`). Without
it these tests skip, or fail when CI is set. A test module shares one browser (launching costs
about a second) and gives every page its own context: its own localStorage, so its own user.
Every page records console errors, page errors and Content-Security-Policy violations; a test
whose pages had any fails at teardown.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    Error,
    Page,
    async_playwright,
    expect,
)
from support.browser import DESKTOP, OpenPage, PageProblems, chromium_executable

# Conditions are met in well under a second; the margin is for a machine busy with other work.
expect.set_options(timeout=10_000)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_executable()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def page_problems() -> Iterator[PageProblems]:
    problems = PageProblems()
    yield problems
    assert not problems.problems, "\n".join(problems.problems)


@pytest_asyncio.fixture(loop_scope="module")
async def open_page(browser: Browser, page_problems: PageProblems) -> AsyncIterator[OpenPage]:
    """`await open_page(url, viewport=...)`: a page in a fresh context, at `url`."""
    contexts: list[Any] = []

    async def make(url: str, viewport: dict[str, int] | None = None) -> Page:
        context = await browser.new_context(viewport=viewport or DESKTOP)  # type: ignore[arg-type]
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = await context.new_page()
        page_problems.watch(page, f"page {len(contexts)}")
        await page.goto(url)
        return page

    yield make
    for context in contexts:
        with contextlib.suppress(Error):  # already closed with its browser
            await context.close()
