"""End-to-end fixtures: Debian's headless Chromium driven by Playwright, one browser per module.

No browser is ever downloaded: Playwright launches /usr/bin/chromium (`make chromium`). Without
it these tests skip, or fail when CI is set. A test module shares one browser (launching costs
about a second) and gives every page its own context: its own localStorage, so its own user.
Every page records console errors, page errors and Content-Security-Policy violations; a test
whose pages had any fails at teardown.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from needs import executable
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Error,
    Page,
    async_playwright,
    expect,
)

OpenPage = Callable[..., Awaitable[Page]]
DESKTOP = {"width": 1280, "height": 800}
# Conditions are met in well under a second; the margin is for a machine busy with other work.
expect.set_options(timeout=10_000)


def chromium_executable() -> str:
    """Debian's chromium; without it the test skips, or fails when CI is set."""
    return executable("chromium", "make chromium")


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


class PageProblems:
    """What went wrong in the pages of one test: console errors, uncaught exceptions, CSP."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.tolerated: list[str] = []

    def tolerate(self, text: str) -> None:
        """Console errors containing `text` are expected from now on (a test provokes them)."""
        self.tolerated.append(text)

    def watch(self, page: Page, label: str) -> None:
        page.on("console", lambda message: self._console(label, message))
        page.on("pageerror", lambda error: self.problems.append(f"{label}: {error}"))

    def _console(self, label: str, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if _expected(message) or any(text in message.text for text in self.tolerated):
            return
        self.problems.append(f"{label}: console error: {message.text}")


def _expected(message: ConsoleMessage) -> bool:
    """Chromium logs failed requests as errors: the API's error answers (which the app shows
    in its banner) and refused connections while a test has the server down."""
    text = message.text
    if "ERR_CONNECTION_REFUSED" in text or text.startswith("WebSocket connection to"):
        return True
    return text.startswith("Failed to load resource") and "/api/v1/" in message.location.get(
        "url", ""
    )


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
