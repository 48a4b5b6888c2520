"""The web app in headless Chromium against a real `hubbub serve`: two users chatting, a kill -9
and restart of the node, private rooms, hostile message bodies, unread counts, history paging
and a phone-sized screen."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect
from webui import bodies, create_room, join_by_name, log_in, register, send, shown_messages

pytestmark = pytest.mark.asyncio(loop_scope="module")

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "webapp.png"


async def test_two_users_chat_live_with_presence_typing_and_history(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    srv = server_factory()
    alice = await open_page(srv.url)
    bob = await open_page(srv.url)
    await register(alice, "alice")
    await register(bob, "bob")
    await create_room(alice, "general", topic="Everything about hubbub")
    await bob.get_by_test_id("rooms-refresh").click()
    await bob.get_by_test_id("join-general").click()
    await expect(bob.get_by_test_id("room-item-general")).to_have_attribute("aria-current", "page")

    await expect(alice.get_by_test_id("presence-bob")).to_be_visible()
    await expect(bob.get_by_test_id("presence-alice")).to_be_visible()
    await expect(alice.get_by_test_id("member-bob")).to_be_visible()

    await bob.get_by_test_id("message-input").press_sequentially("Hi")
    await expect(alice.get_by_test_id("typing")).to_have_text("bob is typing…")
    await bob.get_by_test_id("message-input").press_sequentially(" alice! Is the web app live?")
    await bob.get_by_test_id("message-input").press("Enter")
    await alice.get_by_test_id("message-input").press_sequentially("Yes")
    await expect(bob.get_by_test_id("typing")).to_have_text("alice is typing…")
    await alice.get_by_test_id("message-input").fill(
        "Yes: every node serves it at /, no build step. Try a link: https://example.com/docs"
    )
    await alice.get_by_test_id("message-input").press("Enter")
    await send(bob, "And if the node restarts, nothing typed is lost 🎉")
    expected = [
        "Hi alice! Is the web app live?",
        "Yes: every node serves it at /, no build step. Try a link: https://example.com/docs",
        "And if the node restarts, nothing typed is lost 🎉",
    ]
    for page in (alice, bob):
        await expect(bodies(page)).to_have_text(expected)
    # The sender's message clears their typing indicator at once, not after 4 s.
    await expect(alice.get_by_test_id("typing")).to_have_text("")

    await bob.reload()
    await expect(bob.get_by_test_id("conn-state")).to_have_text("live")
    await expect(bodies(bob)).to_have_text(expected)
    assert [m["seq"] for m in await shown_messages(bob)] == [1, 2, 3]
    await expect(bob.get_by_test_id("messages").locator("time")).to_have_count(3)
    await expect(bob.get_by_test_id("day-separator")).to_have_text(["Today"])

    await expect(alice.get_by_test_id("presence-bob")).to_be_visible()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await alice.screenshot(path=str(SCREENSHOT))


async def test_kill_and_restart_reconnects_resumes_and_sends_the_offline_queue_once(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    srv = server_factory()
    alice = await open_page(srv.url)
    bob = await open_page(srv.url)
    await register(alice, "alice")
    await register(bob, "bob")
    await create_room(alice, "ops")
    await join_by_name(bob, "ops")
    await send(alice, "before the crash, from alice")
    await send(bob, "before the crash, from bob")
    for page in (alice, bob):
        await expect(bodies(page)).to_have_count(2)
    async with aiohttp.ClientSession() as http:
        robot = await sdk_user(http, srv.url, "robot", "ops")

        srv.kill()
        for page in (alice, bob):
            await expect(page.get_by_test_id("conn-state")).to_have_text("reconnecting")
        await send(alice, "typed offline by alice")
        await send(bob, "typed offline by bob, 1")
        await send(bob, "typed offline by bob, 2")
        await expect(alice.locator("[data-testid=message][data-state=pending]")).to_have_count(1)
        await expect(bob.locator("[data-testid=message][data-state=pending]")).to_have_count(2)

        await asyncio.to_thread(srv.start)
        await robot_send(http, srv.ws_url, robot, "ops", "sent by the SDK after the restart")
        for page in (alice, bob):
            await expect(page.get_by_test_id("conn-state")).to_have_text("live", timeout=20_000)

    expected = {
        "before the crash, from alice",
        "before the crash, from bob",
        "typed offline by alice",
        "typed offline by bob, 1",
        "typed offline by bob, 2",
        "sent by the SDK after the restart",
    }
    seen = []
    for page in (alice, bob):
        await expect(page.locator("[data-testid=message][data-state=sent]")).to_have_count(
            len(expected), timeout=20_000
        )
        await expect(page.locator("[data-testid=message][data-state=pending]")).to_have_count(0)
        shown = await shown_messages(page)
        assert [m["seq"] for m in shown] == list(range(1, len(expected) + 1))
        assert sorted(m["body"] for m in shown) == sorted(expected)
        seen.append([(m["seq"], m["body"]) for m in shown])
    assert seen[0] == seen[1]
    bob_bodies = [body for _, body in seen[1] if body.startswith("typed offline by bob")]
    assert bob_bodies == ["typed offline by bob, 1", "typed offline by bob, 2"]


async def sdk_user(
    http: aiohttp.ClientSession, url: str, name: str, room: str | None = None
) -> str:
    """Register `name` over HTTP and add them to the public `room`; returns their token."""
    credentials = {"username": name, "password": "correct horse battery"}
    async with http.post(f"{url}/api/v1/users", json=credentials) as r:
        assert r.status == 201, await r.text()
    async with http.post(f"{url}/api/v1/login", json=credentials) as r:
        token: str = (await r.json())["token"]
    if room is not None:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.put(f"{url}/api/v1/rooms/{room}/members/{name}", headers=headers) as r:
            assert r.status == 204, await r.text()
    return token


async def robot_send(
    http: aiohttp.ClientSession, ws_url: str, token: str, room: str, *texts: str
) -> None:
    """Send messages over a plain WebSocket, each acked before the next."""
    async with http.ws_connect(ws_url) as ws:
        await ws.send_json({"type": "hello", "token": token})
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        await ws.send_json({"type": "join", "room": room})
        for text in texts:
            frame = {"type": "send", "room": room, "id": uuid.uuid4().hex, "body": text}
            await ws.send_json(frame)
            while (frame := await ws.receive_json(timeout=5))["type"] != "ack":
                assert frame["type"] != "error", frame


async def test_a_private_room_is_invisible_until_invited_and_a_kick_takes_it_away(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    srv = server_factory()
    alice = await open_page(srv.url)
    carol = await open_page(srv.url)
    await register(alice, "alice")
    await create_room(alice, "lobby")
    await create_room(alice, "secret", private=True)
    await register(carol, "carol")

    await expect(carol.get_by_test_id("public-room-lobby")).to_be_visible()
    await expect(carol.get_by_test_id("public-room-secret")).to_have_count(0)
    await expect(carol.get_by_test_id("room-item-secret")).to_have_count(0)
    await join_by_name(carol, "secret")
    banner = carol.get_by_test_id("error-banner")
    await expect(banner).to_contain_text("Not found")
    await expect(banner).to_contain_text("secret")
    await carol.keyboard.press("Escape")
    await expect(banner).to_be_hidden()
    await carol.goto(f"{srv.url}/#room=secret")
    await expect(banner).to_contain_text("Not found")
    await expect(carol.get_by_test_id("room-item-secret")).to_have_count(0)

    await alice.get_by_test_id("invite-user").fill("carol")
    await alice.get_by_test_id("invite-submit").click()
    await expect(alice.get_by_test_id("member-carol")).to_be_visible()
    await carol.reload()
    await carol.get_by_test_id("room-item-secret").click()
    await expect(alice.get_by_test_id("presence-carol")).to_be_visible()
    await send(carol, "thanks for the invitation")
    await expect(bodies(alice)).to_have_text(["thanks for the invitation"])
    # carol is a plain member: no moderation controls for her.
    await expect(carol.get_by_test_id("kick-alice")).to_have_count(0)
    await expect(carol.get_by_test_id("invite-form")).to_be_hidden()

    await alice.get_by_test_id("kick-carol").click()
    await expect(carol.get_by_test_id("room-item-secret")).to_have_count(0)
    await expect(banner).to_contain_text("removed from #secret")
    await expect(alice.get_by_test_id("member-carol")).to_have_count(0)


async def test_hostile_bodies_are_shown_as_text_under_the_content_security_policy(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    srv = server_factory()
    alice = await open_page(srv.url)
    response = await alice.goto(srv.url)
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    await register(alice, "alice")
    await create_room(alice, "xss")
    hostile = [
        "<script>window.__xss=1</script>",
        '<img src=x onerror="window.__xss=2">',
        "javascript:window.__xss=3 and https://example.com/a?b=1&c=<2>",
    ]
    for text in hostile:
        await send(alice, text)
    box = alice.get_by_test_id("message-input")
    await box.fill("line one")
    await box.press("Shift+Enter")
    await box.press_sequentially("line two")
    await box.press("Enter")
    for _ in range(2):  # live, then from history after a reload
        await expect(bodies(alice)).to_have_text([*hostile, "line one\nline two"])
        messages = alice.get_by_test_id("messages")
        await expect(messages.locator("script, img, iframe")).to_have_count(0)
        links = messages.locator("a")
        await expect(links).to_have_count(1)
        await expect(links).to_have_attribute("href", "https://example.com/a?b=1&c=")
        await expect(links).to_have_attribute("rel", "noopener noreferrer")
        assert await alice.evaluate("typeof window.__xss") == "undefined"
        await alice.reload()


async def test_unread_counts_and_scrolling_back_through_history(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    srv = server_factory(args=["--rate-limit", "0"])
    alice = await open_page(srv.url)
    async with aiohttp.ClientSession() as http:
        robot = await sdk_user(http, srv.url, "robot")
        async with http.post(
            f"{srv.url}/api/v1/rooms",
            json={"name": "second"},
            headers={"Authorization": f"Bearer {robot}"},
        ) as r:
            assert r.status == 201
        texts = [f"history message {i}" for i in range(1, 118)]
        await robot_send(http, srv.ws_url, robot, "second", *texts)

        await register(alice, "alice")
        await create_room(alice, "first")
        await alice.get_by_test_id("join-second").click()
        await expect(alice.get_by_test_id("room-item-second")).to_have_attribute(
            "aria-current", "page"
        )
        await expect(alice.locator("[data-seq='117']")).to_be_visible()
        await expect(alice.get_by_test_id("presence-alice")).to_be_visible()  # joined
        await alice.get_by_test_id("room-item-first").click()
        await robot_send(http, srv.ws_url, robot, "second", "one", "two", "three")
        await expect(alice.get_by_test_id("unread-second")).to_have_text("3")
        await expect(alice.get_by_test_id("unread-first")).to_have_count(0)
        await expect(alice).to_have_title("(3) hubbub")

    await alice.get_by_test_id("message-input").press("Alt+ArrowDown")
    await expect(alice.get_by_test_id("room-item-second")).to_have_attribute("aria-current", "page")
    await expect(alice.get_by_test_id("unread-second")).to_have_count(0)
    await expect(alice).to_have_title("hubbub")
    messages = alice.get_by_test_id("messages")
    await expect(messages.locator("[data-seq='120']")).to_be_visible()
    shown = messages.get_by_test_id("message")
    count = await shown.count()
    assert count < 120
    while count < 120:
        await messages.evaluate("box => { box.scrollTop = 0; }")
        await expect(shown).not_to_have_count(count)
        count = await shown.count()
    await expect(alice.get_by_test_id("history-start")).to_be_visible()
    seqs = [m["seq"] for m in await shown_messages(alice)]
    assert seqs == list(range(1, 121))
    await alice.reload()
    await expect(alice.get_by_test_id("room-item-second")).to_have_attribute("aria-current", "page")
    await expect(alice.get_by_test_id("unread-first")).to_have_count(0)
    await expect(alice.get_by_test_id("unread-second")).to_have_count(0)


async def test_phone_width_has_a_room_drawer_and_sends(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    srv = server_factory()
    phone = await open_page(srv.url, viewport={"width": 390, "height": 844})
    await register(phone, "dana")
    sidebar = phone.get_by_test_id("sidebar")
    await expect(sidebar).to_be_hidden()
    await phone.get_by_test_id("rooms-toggle").click()
    await expect(sidebar).to_be_visible()
    await create_room(phone, "pocket")
    await phone.keyboard.press("Escape")
    await expect(sidebar).to_be_hidden()
    await phone.get_by_test_id("rooms-toggle").click()
    await phone.get_by_test_id("create-room-open").click()
    await phone.keyboard.press("Escape")
    await expect(phone.get_by_test_id("create-room-dialog")).to_be_hidden()
    await phone.get_by_test_id("room-item-pocket").click()
    await expect(sidebar).to_be_hidden()
    await phone.get_by_test_id("message-input").fill("sent from a phone")
    await phone.get_by_test_id("message-send").click()
    await expect(bodies(phone)).to_have_text(["sent from a phone"])
    await expect(phone.get_by_test_id("message").first).to_have_attribute("data-state", "sent")
    await phone.get_by_test_id("people-toggle").click()
    await expect(phone.get_by_test_id("presence-dana")).to_be_visible()
    await phone.keyboard.press("Escape")

    token = await phone.evaluate("localStorage.getItem('hubbub.token')")
    await phone.get_by_test_id("logout").click()
    await expect(phone.get_by_test_id("login-view")).to_be_visible()
    assert await phone.evaluate("localStorage.getItem('hubbub.token')") is None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{srv.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        assert r.status == 401
    await log_in(phone, "dana")
    await phone.get_by_test_id("rooms-toggle").click()
    await expect(phone.get_by_test_id("room-item-pocket")).to_be_visible()
