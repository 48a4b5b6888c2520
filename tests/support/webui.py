"""Steps of the web app as a user takes them, and reads of what the page shows."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page, expect

PASSWORD = "correct horse battery"


async def register(page: Page, name: str) -> None:
    await page.get_by_test_id("login-username").fill(name)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("register-submit").click()
    await expect(page.get_by_test_id("current-user")).to_have_text(name)
    await expect(page.get_by_test_id("conn-state")).to_have_text("live")


async def log_in(page: Page, name: str) -> None:
    await page.get_by_test_id("login-username").fill(name)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("current-user")).to_have_text(name)
    await expect(page.get_by_test_id("conn-state")).to_have_text("live")


async def create_room(page: Page, name: str, topic: str = "", private: bool = False) -> None:
    await page.get_by_test_id("create-room-open").click()
    await page.get_by_test_id("create-room-name").fill(name)
    if topic:
        await page.get_by_test_id("create-room-topic").fill(topic)
    if private:
        await page.get_by_test_id("create-room-private").check()
    await page.get_by_test_id("create-room-submit").click()
    await expect(page.get_by_test_id("create-room-dialog")).to_be_hidden()
    await expect(page.get_by_test_id(f"room-item-{name}")).to_have_attribute("aria-current", "page")


async def join_by_name(page: Page, name: str) -> None:
    await page.get_by_test_id("join-room-name").fill(name)
    await page.get_by_test_id("join-room-submit").click()


async def send(page: Page, text: str) -> None:
    box = page.get_by_test_id("message-input")
    await box.fill(text)
    await box.press("Enter")


def bodies(page: Page) -> Any:
    """The bodies of the open room's messages, sent and pending, in the order shown."""
    return page.get_by_test_id("messages").get_by_test_id("message-body")


def sent(page: Page) -> Any:
    """The open room's messages the server has stored (no longer pending)."""
    return page.locator("[data-testid=message][data-state=sent]")


async def shown_messages(page: Page) -> list[dict[str, Any]]:
    """Seq, state, sender and body of every message element of the open room."""
    result: list[dict[str, Any]] = await page.eval_on_selector_all(
        "[data-testid=message]",
        """nodes => nodes.map(n => ({
            seq: n.dataset.seq ? Number(n.dataset.seq) : null,
            state: n.dataset.state,
            from: n.dataset.from,
            body: n.querySelector('[data-testid=message-body]').textContent,
        }))""",
    )
    return result


async def member_action(page: Page, action: str, user: str) -> None:
    """Open the member's "⋯" menu in the people panel and pick `action` (kick, ban, ...)."""
    await page.get_by_test_id(f"member-menu-{user}-open").click()
    await page.get_by_test_id(f"{action}-{user}").click()
