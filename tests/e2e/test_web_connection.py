"""The web app's connection in headless Chromium against a real `hubbub serve`: the browser
going offline and back, a network path that dies without a close, an outbox that survives a
reload, the message length counter, and error banners that do not outlive their cause."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, WebSocketRoute, expect
from support.webui import bodies, create_room, join_by_name, register, send, sent

pytestmark = pytest.mark.asyncio(loop_scope="module")

# The server pings every HEARTBEAT seconds and the app pings at the same interval (it reads
# `welcome.heartbeat`): a dead path is found within two intervals, so tests wait two plus a
# margin for a busy machine.
HEARTBEAT = 2.0
FOUND_DEAD_MS = int((2 * HEARTBEAT + 4) * 1000)
SERVER_ARGS = ["--heartbeat", str(HEARTBEAT)]


def pending(page: Page) -> Any:
    return page.locator("[data-testid=message][data-state=pending]")


async def stored_messages(srv: Any, page: Page, room: str) -> list[dict[str, Any]]:
    """The room's messages as the server holds them, read with the page's token."""
    token = await page.evaluate("localStorage.getItem('hubbub.token')")
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{srv.url}/api/v1/rooms/{room}/messages",
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        assert r.status == 200, await r.text()
        messages: list[dict[str, Any]] = (await r.json())["messages"]
    return messages


async def stored_outbox(page: Page, user: str) -> list[dict[str, Any]]:
    text = await page.evaluate(f"localStorage.getItem('hubbub.outbox.{user}')")
    return [] if text is None else list(json.loads(text))


async def two_in_a_room(srv: Any, open_page: Any, room: str) -> tuple[Page, Page]:
    alice = await open_page(srv.url)
    bob = await open_page(srv.url)
    await register(alice, "alice")
    await register(bob, "bob")
    await create_room(alice, room)
    await join_by_name(bob, room)
    await expect(alice.get_by_test_id("presence-bob")).to_be_visible()
    return alice, bob


async def test_offline_is_shown_at_once_presence_turns_unknown_and_the_queue_goes_once(
    server_factory: Callable[..., Any], open_page: Any, tmp_path: Path
) -> None:
    srv = server_factory(args=SERVER_ARGS)
    alice, bob = await two_in_a_room(srv, open_page, "train")
    sockets: list[Any] = []
    alice.on("websocket", lambda socket: sockets.append(socket))
    people = alice.get_by_test_id("people")
    await expect(people).to_have_attribute("data-presence", "known")
    await expect(alice.get_by_test_id("presence-unknown")).to_be_hidden()

    await alice.context.set_offline(True)
    state = alice.get_by_test_id("conn-state")
    await expect(state).to_have_text("offline")
    await expect(state).to_have_attribute("data-state", "offline")
    await expect(people).to_have_attribute("data-presence", "unknown")
    await expect(alice.get_by_test_id("presence-unknown")).to_be_visible()
    dot = alice.get_by_test_id("presence-bob").locator(".dot")
    colour = await dot.evaluate("d => getComputedStyle(d).backgroundColor")
    assert colour == "rgb(107, 115, 133)", colour  # --muted, not the green of "online"
    await send(alice, "typed in a tunnel")
    await expect(pending(alice)).to_have_count(1)
    await alice.screenshot(path=str(tmp_path / "offline.png"))

    # The server drops alice once its pings go unanswered; all that time alice's page
    # stays offline and opens no socket.
    await expect(bob.get_by_test_id("presence-alice")).to_have_count(0, timeout=FOUND_DEAD_MS)
    await expect(state).to_have_text("offline")
    assert sockets == []

    await alice.context.set_offline(False)
    await expect(state).to_have_text("live")
    await expect(people).to_have_attribute("data-presence", "known")
    await expect(bodies(bob)).to_have_text(["typed in a tunnel"])
    await expect(sent(alice)).to_have_count(1)
    await expect(pending(alice)).to_have_count(0)
    await expect(bob.get_by_test_id("presence-alice")).to_be_visible()
    assert len(sockets) == 1, "one reconnect, at once"
    stored = await stored_messages(srv, bob, "train")
    assert [m["body"] for m in stored] == ["typed in a tunnel"]
    assert await stored_outbox(alice, "alice") == []


async def test_a_missed_pong_drops_the_socket_at_once_and_resumes_from_the_last_seq(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    """The path to the server goes silent without a close (the test's route swallows every
    frame both ways): the app's next ping finds it, it shows *reconnecting* without waiting
    for a close event, and the next connection replays what was missed."""
    srv = server_factory(args=SERVER_ARGS)
    alice, bob = await two_in_a_room(srv, open_page, "tunnel")
    silent: set[int] = set()  # connections whose frames are swallowed
    routes: list[WebSocketRoute] = []
    held: asyncio.Queue[WebSocketRoute] = asyncio.Queue()  # never passed to the server

    def route(page_side: WebSocketRoute) -> None:
        number = len(routes)
        routes.append(page_side)
        if number == 1:  # the first reconnect: held, so *reconnecting* stays in view
            held.put_nowait(page_side)
            return
        server_side = page_side.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if number not in silent:
                server_side.send(message)

        def from_server(message: str | bytes) -> None:
            if number not in silent:
                page_side.send(message)

        def page_closed(code: int | None, reason: str | None) -> None:
            if number not in silent:
                asyncio.get_running_loop().create_task(server_side.close())
            # else the close goes nowhere either: the page hears nothing back

        page_side.on_message(from_page)
        page_side.on_close(page_closed)
        server_side.on_message(from_server)

    await alice.route_web_socket("**/ws", route)
    await alice.reload()
    state = alice.get_by_test_id("conn-state")
    await expect(state).to_have_text("live")
    await send(bob, "before the path died")
    await expect(bodies(alice)).to_have_text(["before the path died"])

    silent.add(0)
    await send(bob, "while alice's path was dead")
    await expect(state).to_have_text("reconnecting", timeout=FOUND_DEAD_MS)
    await expect(alice.get_by_test_id("people")).to_have_attribute("data-presence", "unknown")
    second = await asyncio.wait_for(held.get(), 5)  # the next socket, after a backoff
    await send(alice, "typed while reconnecting")
    await second.close(code=1011)
    await expect(state).to_have_text("live")
    await expect(bodies(alice)).to_have_text(
        ["before the path died", "while alice's path was dead", "typed while reconnecting"]
    )
    await expect(sent(alice)).to_have_count(3)
    await expect(bodies(bob)).to_have_text(
        ["before the path died", "while alice's path was dead", "typed while reconnecting"]
    )
    assert len(routes) == 3
    stored = await stored_messages(srv, bob, "tunnel")
    assert [m["seq"] for m in stored] == [1, 2, 3]


async def test_messages_typed_before_a_reload_are_shown_pending_and_sent_once_after_it(
    server_factory: Callable[..., Any], open_page: Any
) -> None:
    srv = server_factory(args=SERVER_ARGS)
    alice, bob = await two_in_a_room(srv, open_page, "crash")
    held: asyncio.Queue[WebSocketRoute] = asyncio.Queue()
    hold = [False]

    def route(page_side: WebSocketRoute) -> None:
        if hold[0]:
            held.put_nowait(page_side)  # answered by nobody: the page waits for its welcome
        else:
            page_side.connect_to_server()

    await alice.route_web_socket("**/ws", route)
    await alice.context.set_offline(True)
    await expect(alice.get_by_test_id("conn-state")).to_have_text("offline")
    await send(alice, "first, typed offline")
    await send(alice, "second, typed offline")
    await expect(pending(alice)).to_have_count(2)
    kept = await stored_outbox(alice, "alice")
    assert [p["body"] for p in kept] == ["first, typed offline", "second, typed offline"]

    # Back online, but the connection gets no further than its hello: the tab is reloaded
    # (or crashes) with both messages unsent.
    hold[0] = True
    await alice.context.set_offline(False)
    await asyncio.wait_for(held.get(), 5)
    await alice.reload()
    after_reload = await asyncio.wait_for(held.get(), 5)
    await expect(alice.get_by_test_id("conn-state")).to_have_text("connecting")
    await expect(pending(alice)).to_have_count(2)
    await expect(bodies(alice)).to_have_text(["first, typed offline", "second, typed offline"])
    ids = await pending(alice).evaluate_all("nodes => nodes.map(n => n.dataset.id)")
    assert ids == [p["id"] for p in kept], "the same ids as before the reload"
    await expect(bodies(bob)).to_have_count(0)

    hold[0] = False
    await after_reload.close(code=1011)
    await expect(alice.get_by_test_id("conn-state")).to_have_text("live")
    expected = ["first, typed offline", "second, typed offline"]
    await expect(bodies(bob)).to_have_text(expected)
    await expect(sent(alice)).to_have_count(2)
    assert await stored_outbox(alice, "alice") == []

    await alice.reload()
    await expect(alice.get_by_test_id("conn-state")).to_have_text("live")
    await expect(sent(alice)).to_have_count(2)
    await expect(pending(alice)).to_have_count(0)
    stored = await stored_messages(srv, bob, "crash")
    assert [(m["body"], m["id"]) for m in stored] == [
        (body, p["id"]) for body, p in zip(expected, kept, strict=True)
    ]


async def test_the_length_counter_and_a_pasted_5000_characters_refused_in_full(
    server_factory: Callable[..., Any], open_page: Any, tmp_path: Path
) -> None:
    srv = server_factory()
    page = await open_page(srv.url)
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await register(page, "erin")
    await create_room(page, "essays")
    box = page.get_by_test_id("message-input")
    counter = page.get_by_test_id("message-counter")

    await box.fill("a" * 3599)
    await expect(counter).to_be_hidden()
    await box.press("b")
    await expect(counter).to_have_text("3600 / 4000")
    await expect(counter).to_have_attribute("data-state", "near")
    # Code points, as the server counts: 3700 emoji are 7400 UTF-16 units, and fit.
    await box.fill("😀" * 3700)
    await expect(counter).to_have_text("3700 / 4000")
    await box.press("Enter")
    await expect(sent(page)).to_have_count(1)
    await expect(counter).to_be_hidden()

    essay = "".join(f"{i % 10}" for i in range(5000))
    await page.evaluate("text => navigator.clipboard.writeText(text)", essay)
    await box.focus()
    await page.keyboard.press("ControlOrMeta+V")
    await expect(box).to_have_value(essay)
    await expect(counter).to_have_text("5000 / 4000: 1000 over")
    await expect(counter).to_have_attribute("data-state", "over")
    await expect(box).to_have_attribute("aria-invalid", "true")
    await box.press("Enter")
    banner = page.get_by_test_id("error-text")
    await expect(banner).to_have_text(
        "Too long: a message is at most 4000 characters and this one is 1000 over. "
        "Shorten it, or split it in two, and send again."
    )
    await expect(box).to_have_value(essay)
    await expect(page.get_by_test_id("message")).to_have_count(1)
    await page.screenshot(path=str(tmp_path / "too-long.png"))

    await box.fill(essay[:4000])
    await expect(counter).to_have_text("4000 / 4000")
    await expect(box).to_have_attribute("aria-invalid", "false")
    await page.get_by_test_id("message-send").click()
    await expect(page.get_by_test_id("error-banner")).to_be_hidden()
    await expect(sent(page)).to_have_count(2)
    await expect(bodies(page).last).to_have_text(essay[:4000])


async def test_a_refused_message_keeps_its_reason_until_discarded_and_banners_do_not_linger(
    server_factory: Callable[..., Any], open_page: Any, tmp_path: Path
) -> None:
    """A node with `--max-body 10` refuses what the page lets through: the message stays,
    marked *not sent* with the server's reason (a reload keeps it), until discarded. The
    banner of a failed attempt goes with the next attempt and with a change of room."""
    srv = server_factory(args=["--max-body", "10"])
    page = await open_page(srv.url)
    await register(page, "finn")
    await create_room(page, "short")
    await create_room(page, "long")
    banner = page.get_by_test_id("error-banner")

    await send(page, "fifteen letters")
    failed = page.locator("[data-testid=message][data-state=failed]")
    await expect(failed).to_have_count(1)
    reason = "Too long: a message is at most 10 characters; this one is 5 over"
    await expect(failed.get_by_test_id("message-reason")).to_have_text(reason)
    await expect(banner).to_contain_text(reason)
    await send(page, "ok")
    await expect(banner).to_be_hidden()
    await expect(sent(page)).to_have_count(1)
    await page.screenshot(path=str(tmp_path / "refused.png"))

    await page.reload()
    await expect(page.get_by_test_id("conn-state")).to_have_text("live")
    await expect(failed.get_by_test_id("message-reason")).to_have_text(reason)
    await expect(sent(page)).to_have_count(1)
    await failed.get_by_test_id("message-discard").click()
    await expect(failed).to_have_count(0)
    await expect(page.get_by_test_id("message")).to_have_count(1)
    assert await stored_outbox(page, "finn") == []

    await join_by_name(page, "nowhere")
    await expect(banner).to_contain_text("Not found")
    await page.get_by_test_id("room-item-short").click()
    await expect(banner).to_be_hidden()
    await join_by_name(page, "nowhere")
    await expect(banner).to_contain_text("Not found")
    await join_by_name(page, "long")
    await expect(banner).to_be_hidden()
    await expect(page.get_by_test_id("room-item-long")).to_have_attribute("aria-current", "page")
