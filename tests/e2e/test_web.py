"""The web app in headless Chromium against a real `hubbub serve`: two users chatting, a kill -9
and restart of the node, private rooms, hostile message bodies, unread counts, history paging
and a phone-sized screen."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import WebSocketRoute, expect
from support.browser import DESKTOP
from support.webui import (
    bodies,
    create_room,
    join_by_name,
    log_in,
    member_action,
    register,
    send,
    sent,
    shown_messages,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

SCREENSHOT = "webapp.png"  # in `screenshot_dir`: docs/img under `make screenshots`


CONVERSATION = [
    ("bob", "Hi alice! Is the new web app live?"),
    ("alice", "Yes: every node serves it at /, no build step and nothing from a CDN."),
    ("bob", "Nice. What happens when a node restarts?"),
    (
        "alice",
        "It reconnects, rejoins with since = the last seq it saw and resends what you "
        "typed offline, once. Details: https://example.com/hubbub/webapp",
    ),
    ("bob", "Exactly once and in order. Shipping it!"),
]


async def test_two_users_chat_live_with_presence_typing_and_history(
    server_factory: Callable[..., Any], open_page: Any, screenshot_dir: Path
) -> None:
    srv = server_factory()
    alice = await open_page(srv.url)
    bob = await open_page(srv.url)
    pages = {"alice": alice, "bob": bob}
    await register(alice, "alice")
    await register(bob, "bob")
    await create_room(alice, "core-team", topic="Release planning", private=True)
    await create_room(alice, "random", topic="Lunch, links and cats")
    await create_room(alice, "general", topic="Everything about hubbub")
    await bob.get_by_test_id("rooms-refresh").click()
    await expect(bob.get_by_test_id("public-room-core-team")).to_have_count(0)
    await bob.get_by_test_id("join-general").click()
    await expect(bob.get_by_test_id("room-item-general")).to_have_attribute("aria-current", "page")

    await expect(alice.get_by_test_id("presence-bob")).to_be_visible()
    await expect(bob.get_by_test_id("presence-alice")).to_be_visible()
    await expect(alice.get_by_test_id("member-bob")).to_be_visible()

    # Typing shows on the other side while the first words are typed, and goes with the send.
    for sender, text in CONVERSATION[:2]:
        other = alice if sender == "bob" else bob
        box = pages[sender].get_by_test_id("message-input")
        await box.press_sequentially(text[:3])
        await expect(other.get_by_test_id("typing")).to_have_text(f"{sender} is typing…")
        await box.fill(text)
        await box.press("Enter")
        await expect(other.get_by_test_id("typing")).to_have_text("")
    for sender, text in CONVERSATION[2:]:
        await send(pages[sender], text)
    expected = [text for _, text in CONVERSATION]
    for page in (alice, bob):
        await expect(bodies(page)).to_have_text(expected)
        await expect(sent(page)).to_have_count(len(expected))

    await bob.reload()
    await expect(bob.get_by_test_id("conn-state")).to_have_text("live")
    await expect(bodies(bob)).to_have_text(expected)
    shown = await shown_messages(bob)
    assert [(m["seq"], m["from"]) for m in shown] == [
        (seq, sender) for seq, (sender, _) in enumerate(CONVERSATION, 1)
    ]
    await expect(bob.get_by_test_id("messages").locator("time")).to_have_count(len(expected))
    await expect(bob.get_by_test_id("day-separator")).to_have_text(["Today"])

    await join_by_name(bob, "random")
    await expect(bob.get_by_test_id("room-item-random")).to_have_attribute("aria-current", "page")
    await send(bob, "Lunch at noon?")
    await expect(alice.get_by_test_id("unread-random")).to_have_text("1")
    await expect(alice.get_by_test_id("presence-bob")).to_be_visible()
    await alice.evaluate("document.activeElement.blur()")
    picture = screenshot_dir / SCREENSHOT
    await alice.screenshot(path=str(picture))
    png = picture.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (DESKTOP["width"], DESKTOP["height"])


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
        await expect(sent(page)).to_have_count(len(expected), timeout=20_000)
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


async def test_a_private_room_is_invisible_until_invited_and_moderation_takes_it_away(
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

    # A public room is joined from the list and left with the room's Leave button.
    await carol.get_by_test_id("join-lobby").click()
    await expect(carol.get_by_test_id("room-item-lobby")).to_have_attribute("aria-current", "page")
    await expect(carol.get_by_test_id("public-room-lobby")).to_have_count(0)
    await carol.get_by_test_id("room-leave").click()
    await expect(carol.get_by_test_id("room-item-lobby")).to_have_count(0)
    await expect(carol.get_by_test_id("public-room-lobby")).to_be_visible()

    await alice.get_by_test_id("invite-user").fill("carol")
    await alice.get_by_test_id("invite-submit").click()
    await expect(alice.get_by_test_id("member-carol")).to_be_visible()
    await carol.reload()
    await carol.get_by_test_id("room-item-secret").click()
    await expect(alice.get_by_test_id("presence-carol")).to_be_visible()
    await send(carol, "thanks for the invitation")
    await expect(bodies(alice)).to_have_text(["thanks for the invitation"])
    # carol is a plain member: no moderation controls for her.
    await expect(carol.get_by_test_id("member-menu-alice-open")).to_have_count(0)
    await expect(carol.get_by_test_id("invite-form")).to_be_hidden()

    await member_action(alice, "kick", "carol")
    await expect(carol.get_by_test_id("room-item-secret")).to_have_count(0)
    await expect(banner).to_contain_text("removed from #secret")
    await expect(alice.get_by_test_id("member-carol")).to_have_count(0)
    await expect(alice.get_by_test_id("presence-carol")).to_have_count(0)

    # Invited again, promoted and demoted, then banned: the room goes and stays invisible.
    await alice.get_by_test_id("invite-user").fill("carol")
    await alice.get_by_test_id("invite-submit").click()
    await member_action(alice, "promote", "carol")
    await expect(alice.get_by_test_id("member-carol")).to_contain_text("moderator")
    await member_action(alice, "demote", "carol")
    await expect(alice.get_by_test_id("member-carol")).not_to_contain_text("moderator")
    await carol.reload()
    await expect(carol.get_by_test_id("room-item-secret")).to_be_visible()
    await expect(alice.get_by_test_id("presence-carol")).to_be_visible()
    await member_action(alice, "ban", "carol")
    await expect(carol.get_by_test_id("room-item-secret")).to_have_count(0)
    await expect(banner).to_contain_text("banned from #secret")
    await join_by_name(carol, "secret")
    await expect(banner).to_contain_text("Not found")


async def test_hostile_bodies_are_shown_as_text_under_the_content_security_policy(
    server_factory: Callable[..., Any], open_page: Any, page_problems: Any
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
    async with aiohttp.ClientSession() as http, http.get(f"{srv.url}/static/app.js") as r:
        assert r.status == 200
        assert r.content_type in ("text/javascript", "application/javascript")  # nosniff
        assert r.headers["Content-Security-Policy"] == policy
        assert r.headers["X-Content-Type-Options"] == "nosniff"
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
        await expect(sent(alice)).to_have_count(len(hostile) + 1)
        messages = alice.get_by_test_id("messages")
        await expect(messages.locator("script, img, iframe")).to_have_count(0)
        links = messages.locator("a")
        await expect(links).to_have_count(1)
        await expect(links).to_have_attribute("href", "https://example.com/a?b=1&c=")
        await expect(links).to_have_attribute("rel", "noopener noreferrer nofollow")
        assert await alice.evaluate("typeof window.__xss") == "undefined"
        await alice.reload()

    # The policy is in force: even a script element made by the page's own code never runs.
    page_problems.tolerate("violates the following Content Security Policy directive")
    violated = await alice.evaluate(INJECT_INLINE_SCRIPT)
    assert violated.startswith("script-src"), violated
    assert await alice.evaluate("typeof window.__xss") == "undefined"


INJECT_INLINE_SCRIPT = """() => new Promise(resolve => {
    document.addEventListener("securitypolicyviolation", e => resolve(e.violatedDirective));
    const script = document.createElement("script");
    script.textContent = "window.__xss = 4";
    document.head.append(script);
})"""


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

    box = alice.get_by_test_id("message-input")
    await box.fill("a draft for #first")
    await box.press("Alt+ArrowDown")
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
    # Each room keeps its draft.
    await expect(box).to_have_value("")
    await box.press("Alt+ArrowUp")
    await expect(alice.get_by_test_id("room-item-first")).to_have_attribute("aria-current", "page")
    await expect(box).to_have_value("a draft for #first")
    await alice.reload()
    await expect(alice.get_by_test_id("room-item-first")).to_have_attribute("aria-current", "page")
    await expect(alice.get_by_test_id("unread-first")).to_have_count(0)
    await expect(alice.get_by_test_id("unread-second")).to_have_count(0)


async def test_phone_width_has_a_room_drawer_sends_and_logs_out_every_tab(
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

    # A second tab shares the session; logging out in one closes the other's socket (4001).
    other_tab = await phone.context.new_page()
    await other_tab.goto(srv.url)
    await expect(other_tab.get_by_test_id("conn-state")).to_have_text("live")
    token = await phone.evaluate("localStorage.getItem('hubbub.token')")
    await phone.get_by_test_id("logout").click()
    await expect(phone.get_by_test_id("login-view")).to_be_visible()
    await expect(other_tab.get_by_test_id("login-view")).to_be_visible()
    await expect(other_tab.get_by_test_id("error-banner")).to_contain_text("session has ended")
    assert await phone.evaluate("localStorage.getItem('hubbub.token')") is None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{srv.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        assert r.status == 401
    await log_in(phone, "dana")
    await phone.get_by_test_id("rooms-toggle").click()
    await expect(phone.get_by_test_id("room-item-pocket")).to_be_visible()


async def test_a_send_whose_ack_was_lost_is_resent_with_its_id_and_stored_once(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    """The first connection loses both the ack and the message frame of one send, then drops:
    the app resends the same `id` on the next connection and the server stores one message."""
    srv = server_factory()
    alice = await open_page(srv.url)
    target = "sent once, though its ack was lost"
    sends: list[list[str]] = []  # per connection: the ids of the page's send frames

    def route(page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()
        ids: list[str] = []
        sends.append(ids)
        lossy = len(sends) == 1
        lost: set[str] = set()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "send":
                ids.append(frame["id"])
                if lossy and frame["body"] == target:
                    lost.add(frame["id"])
            server_side.send(message)

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("id") not in lost:
                page_side.send(message)
            elif frame["type"] == "ack":
                asyncio.get_running_loop().create_task(page_side.close(code=4000))

        page_side.on_message(from_page)
        server_side.on_message(from_server)

    await alice.route_web_socket("**/ws", route)
    await register(alice, "alice")
    await create_room(alice, "flaky")
    await send(alice, target)
    await expect(alice.get_by_test_id("message")).to_have_attribute("data-state", "sent")
    await expect(alice.get_by_test_id("conn-state")).to_have_text("live")
    await send(alice, "and the next one")
    await expect(bodies(alice)).to_have_text([target, "and the next one"])
    await expect(sent(alice)).to_have_count(2)
    assert [m["seq"] for m in await shown_messages(alice)] == [1, 2]

    assert len(sends) == 2, "one reconnect"
    assert sends[1][0] == sends[0][0], "the resend kept its id"
    token = await alice.evaluate("localStorage.getItem('hubbub.token')")
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{srv.url}/api/v1/rooms/flaky/messages",
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        stored = (await r.json())["messages"]
    assert [(m["seq"], m["id"], m["body"]) for m in stored] == [
        (1, sends[0][0], target),
        (2, sends[1][1], "and the next one"),
    ]


async def test_a_message_between_the_history_read_and_the_join_is_not_lost(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    """bob's page reads the room's (empty) history, alice posts, then bob's join reaches the
    server: the join answers seq 1 with no replay, and the page reads the gap over HTTP."""
    srv = server_factory()
    alice = await open_page(srv.url)
    bob = await open_page(srv.url)
    held: list[str | bytes] = []
    to_server: list[WebSocketRoute] = []

    def route(page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()
        to_server.append(server_side)

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "join" and frame["room"] == "race":
                held.append(message)
            else:
                server_side.send(message)

        page_side.on_message(from_page)
        server_side.on_message(page_side.send)

    await bob.route_web_socket("**/ws", route)
    await register(alice, "alice")
    await register(bob, "bob")
    await create_room(alice, "race")
    await join_by_name(bob, "race")
    await expect(bob.get_by_test_id("history-start")).to_have_text("No messages yet: say hello!")
    await send(alice, "posted while bob's join was on its way")
    await expect(sent(alice)).to_have_count(1)
    assert len(held) == 1
    to_server[-1].send(held.pop())
    await expect(bodies(bob)).to_have_text(["posted while bob's join was on its way"])
    await expect(bob.get_by_test_id("history-start")).to_have_text("This is the start of #race.")
    await send(alice, "and a live one")
    await expect(bodies(bob)).to_have_text(
        ["posted while bob's join was on its way", "and a live one"]
    )


async def test_a_bad_room_name_is_explained_with_a_name_to_try(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    """The server's sentence, not the browser's "match the requested format": the rule
    and a valid name made from the one typed, in the dialog and when joining by name."""
    srv = server_factory()
    page = await open_page(srv.url)
    await register(page, "erin")
    await page.get_by_test_id("create-room-open").click()
    await page.get_by_test_id("create-room-name").fill("Design Review")
    await page.get_by_test_id("create-room-submit").click()
    problem = page.get_by_test_id("create-room-error")
    await expect(problem).to_contain_text("room names are 1 to 64 characters")
    await expect(problem).to_contain_text("try design-review")
    await expect(page.get_by_test_id("create-room-dialog")).to_be_visible()
    await page.get_by_test_id("create-room-name").fill("design-review")
    await page.get_by_test_id("create-room-submit").click()
    await expect(page.get_by_test_id("create-room-dialog")).to_be_hidden()
    await page.get_by_test_id("join-room-name").fill("Ops-Chat")
    await page.get_by_test_id("join-room-submit").click()
    await expect(page.get_by_test_id("error-text")).to_contain_text("try ops-chat")
