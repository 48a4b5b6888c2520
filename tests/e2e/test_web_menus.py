"""The room menu (archive, unarchive, delete) and the per-member menu, in real Chromium."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.async_api import expect
from support.webui import bodies, create_room, register, send

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_the_owner_archives_unarchives_and_deletes_a_room_its_members_see_it(
    server_factory: Callable[..., Any], open_page: Any, screenshot_dir: Any
) -> None:
    srv = server_factory()
    alice = await open_page(srv.url)
    bob = await open_page(srv.url)
    await register(alice, "alice")
    await create_room(alice, "plans", topic="what we do next")
    await register(bob, "bob")
    await bob.get_by_test_id("join-plans").click()
    await send(alice, "hello bob")
    await expect(bodies(bob)).to_have_text(["hello bob"])
    # Only the owner has the room menu.
    await expect(bob.get_by_test_id("room-menu-open")).to_have_count(0)

    await alice.get_by_test_id("room-menu-open").click()
    await expect(alice.get_by_test_id("room-archive")).to_have_text("Archive room")
    await alice.get_by_test_id("room-archive").click()
    await expect(alice.get_by_test_id("archived-note")).to_have_text(
        "This room is archived: it is read-only."
    )
    await expect(alice.get_by_test_id("message-input")).to_be_disabled()
    await expect(alice.get_by_test_id("message-send")).to_be_disabled()
    await alice.screenshot(path=str(screenshot_dir / "webapp-archived.png"))

    # bob's open room learns it on his next send: refused in the server's words, kept.
    await send(bob, "are we still on?")
    failed = bob.locator("[data-testid=message][data-state=failed]")
    await expect(failed.get_by_test_id("message-reason")).to_contain_text("#plans is archived")
    # Reloaded (the address names the room), it opens read-only.
    await bob.reload()
    await expect(bob.get_by_test_id("current-user")).to_have_text("bob")
    await expect(bob.get_by_test_id("archived-note")).to_be_visible()
    await expect(bob.get_by_test_id("message-input")).to_be_disabled()
    await expect(bodies(bob)).to_contain_text(["hello bob"])

    await alice.get_by_test_id("room-menu-open").click()
    await expect(alice.get_by_test_id("room-archive")).to_have_text("Unarchive room")
    await alice.get_by_test_id("room-archive").click()
    await expect(alice.get_by_test_id("archived-note")).to_be_hidden()
    await expect(alice.get_by_test_id("message-input")).to_be_enabled()
    await bob.reload()
    await expect(bob.get_by_test_id("room-item-plans")).to_be_visible()
    await expect(bob.get_by_test_id("archived-note")).to_be_hidden()
    await expect(bob.get_by_test_id("message-input")).to_be_enabled()

    await alice.get_by_test_id("room-menu-open").click()
    await alice.get_by_test_id("room-delete").click()
    dialog = alice.get_by_test_id("delete-room-dialog")
    await expect(dialog).to_be_visible()
    await expect(alice.get_by_test_id("delete-room-warning")).to_contain_text("#plans")
    submit = alice.get_by_test_id("delete-room-submit")
    await expect(submit).to_be_disabled()
    await alice.get_by_test_id("delete-room-name").fill("plan")
    await expect(submit).to_be_disabled()
    await alice.get_by_test_id("delete-room-name").fill("plans")
    await expect(submit).to_be_enabled()
    await submit.click()
    await expect(dialog).to_be_hidden()
    await expect(alice.get_by_test_id("room-item-plans")).to_have_count(0)
    await expect(alice.get_by_test_id("error-banner")).to_contain_text("#plans was deleted.")
    # bob had it open: the server's `left` frame takes it away, with a word of why.
    await expect(bob.get_by_test_id("room-item-plans")).to_have_count(0)
    await expect(bob.get_by_test_id("error-banner")).to_contain_text(
        "#plans was deleted by its owner."
    )


async def test_the_member_menu_works_from_the_keyboard_and_kicks(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    srv = server_factory()
    alice = await open_page(srv.url)
    bob = await open_page(srv.url)
    await register(alice, "alice")
    await create_room(alice, "crew")
    await register(bob, "bob")
    await bob.get_by_test_id("join-crew").click()
    await expect(alice.get_by_test_id("member-bob")).to_be_visible()
    # One "⋯" button per row, no buttons on it, and the row stays one line.
    row = alice.get_by_test_id("member-bob")
    await expect(row.get_by_role("button")).to_have_count(1)
    opener = alice.get_by_test_id("member-menu-bob-open")
    await expect(opener).to_have_attribute("aria-label", "Actions for bob")
    await expect(opener).to_have_attribute("aria-haspopup", "menu")
    box = await row.bounding_box()
    name_box = await row.locator(".name").bounding_box()
    assert box is not None and name_box is not None
    assert box["height"] < 2 * name_box["height"]

    await opener.focus()
    await alice.keyboard.press("Enter")
    menu = alice.get_by_test_id("member-menu-bob")
    await expect(menu).to_be_visible()
    await expect(alice.get_by_test_id("kick-bob")).to_be_focused()
    await alice.keyboard.press("Escape")
    await expect(menu).to_be_hidden()
    await opener.focus()
    await alice.keyboard.press("Enter")
    await expect(alice.get_by_test_id("kick-bob")).to_be_focused()
    await alice.keyboard.press("ArrowDown")
    await expect(alice.get_by_test_id("ban-bob")).to_be_focused()
    await alice.keyboard.press("ArrowUp")
    await expect(alice.get_by_test_id("kick-bob")).to_be_focused()
    await alice.keyboard.press("Enter")
    await expect(alice.get_by_test_id("member-bob")).to_have_count(0)
    await expect(bob.get_by_test_id("room-item-crew")).to_have_count(0)
    await expect(bob.get_by_test_id("error-banner")).to_contain_text("removed from #crew")


async def test_a_long_room_title_stays_one_line_at_phone_width(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    srv = server_factory()
    phone = await open_page(srv.url, viewport={"width": 375, "height": 740})
    await register(phone, "alice")
    await phone.get_by_test_id("rooms-toggle").click()  # the room list is a drawer here
    name = "quarterly-planning-for-the-infrastructure-and-operations-teams"
    await create_room(phone, name, topic="where the roadmap is argued about")
    title = phone.get_by_test_id("room-title")
    await expect(title).to_contain_text(name)
    await expect(title).to_have_attribute("dir", "auto")
    one_line = await title.evaluate(
        "t => t.getBoundingClientRect().height <= 1.6 * parseFloat(getComputedStyle(t).fontSize)"
    )
    assert one_line
    assert await title.evaluate("t => t.scrollWidth > t.clientWidth")  # cut with an ellipsis
    overflow = await phone.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow == 0
