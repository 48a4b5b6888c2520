"""The browser side of the end-to-end tests: Debian's chromium, the desktop viewport, and
`PageProblems`, what went wrong in a test's pages (tests/e2e/conftest.py hands them out)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from playwright.async_api import ConsoleMessage, Page

from support.needs import executable

OpenPage = Callable[..., Awaitable[Page]]
DESKTOP = {"width": 1280, "height": 800}


def chromium_executable() -> str:
    """Debian's chromium; without it the test skips, or fails when CI is set."""
    return executable("chromium", "make chromium")


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
