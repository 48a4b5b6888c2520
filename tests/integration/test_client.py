"""The Python SDK against a real `hubbub serve`: calls, events, reconnect, resume and resend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from support.api import unique
from support.server import ServerProcess, free_port

from hubbub.client import Client, HubbubError
from hubbub.protocol import rules

PASSWORD = "correct horse"
FAST = {"backoff_initial": 0.05, "backoff_max": 0.5}

Events = AsyncIterator[dict[str, Any]]


async def wait_until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Poll a condition (never a fixed sleep) until it holds."""
    async with asyncio.timeout(within):
        # The conditions are client state (`connected`, a task done) with no event to wait on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def next_event(events: Events, kind: str, within: float = 10.0) -> dict[str, Any]:
    """The next event of a type, skipping the others (presence, typing, ...)."""
    async with asyncio.timeout(within):
        async for event in events:
            if event["type"] == kind:
                return event
    raise AssertionError(f"the event stream ended before a {kind!r} event")


async def messages(events: Events, count: int, within: float = 20.0) -> list[dict[str, Any]]:
    """The next `count` message events; asserts the stream does not end before."""
    return [await next_event(events, "message", within) for _ in range(count)]


async def logged_in(url: str, name: str | None = None, **options: Any) -> Client:
    """A client with a fresh account, logged in (not connected)."""
    client = Client(url, **options)
    name = name or unique()
    await client.register(name, PASSWORD)
    await client.login(name, PASSWORD)
    return client


async def test_two_clients_exchange_messages(server: ServerProcess) -> None:
    alice_name, bob_name = unique("alice"), unique("bob")
    alice = await logged_in(server.url, alice_name)
    bob = await logged_in(server.url, bob_name)
    async with alice, bob:
        room = unique("r")
        created = await alice.create_room(room, topic="general chat")
        assert created["name"] == room and created["owner"] == alice_name
        await alice.connect()
        await bob.connect()
        assert alice.user == alice_name and bob.user == bob_name
        assert alice.session_id and alice.node and alice.heartbeat
        alice_events, bob_events = alice.events(), bob.events()

        joined = await alice.join(room)
        assert joined["type"] == "joined" and joined["room"] == room and joined["seq"] == 0
        assert (await bob.join(room))["room"] == room
        assert (await next_event(alice_events, "presence"))["user"] == bob_name

        ack = await alice.send(room, "hi bob", id="first-message")
        assert ack["type"] == "ack" and ack["id"] == "first-message" and ack["seq"] == 1
        for events in (alice_events, bob_events):
            message = await next_event(events, "message")
            assert message["from"] == alice_name and message["body"] == "hi bob"
            assert message["seq"] == 1 and message["id"] == "first-message"
        reply = await bob.send(room, "hi alice")
        assert reply["seq"] == 2 and len(reply["id"]) > 0
        for events in (alice_events, bob_events):
            assert (await next_event(events, "message"))["body"] == "hi alice"
        assert alice.last_seq == {room: 2}

        await bob.typing(room)
        assert (await next_event(alice_events, "typing"))["user"] == bob_name
        assert await alice.ping() >= 0

        page = await bob.history(room)
        assert [m["body"] for m in page["messages"]] == ["hi bob", "hi alice"]
        assert page["more"] is False
        page = await bob.ws_history(room, after=1)
        assert [m["seq"] for m in page["messages"]] == [2]
        assert sorted(await alice.presence(room)) == sorted([alice_name, bob_name])
        assert room in [r["name"] for r in await bob.rooms()]
        assert room in [r["name"] for r in (await alice.me())["rooms"]]
        assert bob_name in (await alice.room(room))["members"]

        assert (await bob.leave(room))["type"] == "left"
        assert bob.last_seq == {}
        await alice.send(room, "bob left")
        # The message sent while bob was not joined is replayed: he joins with `since`.
        await bob.join(room, since=2)
        assert (await next_event(bob_events, "message"))["body"] == "bob left"


async def test_pipelined_sends_are_all_acked_with_increasing_seqs(server: ServerProcess) -> None:
    client = await logged_in(server.url)
    async with client:
        room = unique("r")
        await client.create_room(room)
        await client.connect()
        events = client.events()
        await client.join(room)
        # 30 stays inside the default burst of the rate limit (40).
        bodies = [f"message {i}" for i in range(30)]
        acks = await asyncio.gather(*(client.send(room, body) for body in bodies))
        assert [ack["seq"] for ack in acks] == list(range(1, 31))
        received = await messages(events, 30)
        assert [m["seq"] for m in received] == list(range(1, 31))
        assert [m["body"] for m in received] == bodies
        assert [m["id"] for m in received] == [ack["id"] for ack in acks]


async def test_resend_after_kill_keeps_ids_and_completes_each_send_once(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(args=["--rate-limit", "0"])
    sender = await logged_in(srv.url, **FAST)
    watcher = await logged_in(srv.url, **FAST)
    async with sender, watcher:
        room = unique("r")
        await sender.create_room(room)
        await sender.connect()
        await watcher.connect()
        sender_events, watcher_events = sender.events(), watcher.events()
        await sender.join(room)
        await watcher.join(room)

        ids = [f"m{i}" for i in range(150)]
        first = [asyncio.create_task(sender.send(room, f"body {i}", id=i)) for i in ids[:100]]
        # Kill -9 as soon as the first message is durable and published: the sender has most of
        # its acks still to read (or never sent), some for messages already stored, whose
        # resends must be answered with the original ack, not stored again.
        watched = [(await next_event(watcher_events, "message"))["seq"]]
        srv.kill()
        await wait_until(lambda: not sender.connected and not watcher.connected)
        # Sent while the server is down: they wait, and go out after the reconnect.
        second = [asyncio.create_task(sender.send(room, f"body {i}", id=i)) for i in ids[100:]]
        await asyncio.sleep(0)
        tasks = first + second
        assert sum(not task.done() for task in tasks) >= 50
        await asyncio.to_thread(srv.start)

        async with asyncio.timeout(30):
            acks = await asyncio.gather(*tasks)
        assert [ack["id"] for ack in acks] == ids
        assert sorted(ack["seq"] for ack in acks) == list(range(1, 151))
        # Exactly one stored message per id: nothing was stored twice under a new id.
        page = await watcher.history(room, limit=200)
        assert len(page["messages"]) == 150
        assert sorted(m["id"] for m in page["messages"]) == sorted(ids)
        seq_of = {ack["id"]: ack["seq"] for ack in acks}
        assert all(seq_of[m["id"]] == m["seq"] for m in page["messages"])

        # Both event streams: every seq once, in order, and one `resumed` among them.
        for events, seen in ((sender_events, []), (watcher_events, watched)):
            reconnects = 0
            async with asyncio.timeout(30):
                async for event in events:
                    if event["type"] == "connection" and event["state"] == "resumed":
                        reconnects += 1
                    elif event["type"] == "message":
                        seen.append(event["seq"])
                        if len(seen) == 150:
                            break
            assert seen == list(range(1, 151))
            assert reconnects == 1


async def test_sigterm_drain_closes_with_1001_and_client_resumes_on_restart(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory()
    reader = await logged_in(srv.url, **FAST)
    writer = await logged_in(srv.url, **FAST)
    async with reader, writer:
        room = unique("r")
        await reader.create_room(room)
        await reader.connect()
        await writer.connect()
        events = reader.events()
        await reader.join(room)
        await writer.join(room)
        for i in range(3):
            await writer.send(room, f"before {i}")
        assert [m["seq"] for m in await messages(events, 3)] == [1, 2, 3]

        await asyncio.to_thread(srv.terminate)
        await wait_until(lambda: not reader.connected)
        pending = asyncio.create_task(writer.send(room, "while restarting", id="during"))
        await asyncio.to_thread(srv.start)

        lost = await next_event(events, "connection", within=20)
        assert lost["state"] == "disconnected" and lost["close_code"] == 1001
        assert lost["reason"].startswith("the server is going away")
        ack = await asyncio.wait_for(pending, 20)
        assert ack["id"] == "during" and ack["seq"] == 4
        await writer.send(room, "after")
        received = await messages(events, 2)
        assert [(m["seq"], m["body"]) for m in received] == [(4, "while restarting"), (5, "after")]
        assert reader.last_seq == {room: 5}


async def test_bad_token_raises_unauthorized(server: ServerProcess) -> None:
    client = Client(server.url, token="not-a-token")
    with pytest.raises(HubbubError) as caught:
        await client.connect()
    assert caught.value.code == "unauthorized"
    await client.close()
    with pytest.raises(HubbubError) as caught:
        async with Client(server.url, token="still-not-a-token"):
            pass
    assert caught.value.code == "unauthorized"


async def test_logout_closes_the_connection_and_ends_the_client(server: ServerProcess) -> None:
    client = await logged_in(server.url)
    async with client:
        room = unique("r")
        await client.create_room(room)
        await client.connect()
        await client.join(room)
        events = client.events()
        await client.logout()
        with pytest.raises(HubbubError) as caught:
            async with asyncio.timeout(10):
                async for _ in events:
                    pass
        assert caught.value.code == "unauthorized"
        with pytest.raises(HubbubError) as caught:
            await client.send(room, "after logout")
        assert caught.value.code == "closed"


async def test_errors_carry_code_and_status(server: ServerProcess) -> None:
    name = unique()
    client = await logged_in(server.url, name)
    async with client:
        with pytest.raises(HubbubError) as caught:
            await client.register(name, PASSWORD)
        assert (caught.value.code, caught.value.status) == ("conflict", 409)
        with pytest.raises(HubbubError) as caught:
            await client.room(unique("nosuchroom"))
        assert (caught.value.code, caught.value.status) == ("not_found", 404)
        room = unique("r")
        await client.create_room(room)
        with pytest.raises(HubbubError) as caught:
            await client.history(room, limit=1000)
        assert (caught.value.code, caught.value.status) == ("bad_request", 400)
        await client.connect()
        with pytest.raises(HubbubError) as caught:
            await client.send(room, "not joined yet")
        assert (caught.value.code, caught.value.status) == ("not_joined", None)
        await client.join(room)
        await client.send(room, "same id", id="twice")
        with pytest.raises(HubbubError) as caught:
            await client.send(room, "another body", id="twice")
        assert caught.value.code == "conflict"
        with pytest.raises(HubbubError) as caught:
            await client.join(unique("nosuchroom"))
        assert caught.value.code == "not_found"


async def test_rate_limited_send_carries_retry_after(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(args=["--rate-limit", "1"])
    client = await logged_in(srv.url)
    async with client:
        room = unique("r")
        await client.create_room(room)
        await client.connect()
        await client.join(room)
        results = await asyncio.gather(
            *(client.send(room, f"flood {i}") for i in range(6)), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors and all(isinstance(e, HubbubError) for e in errors)
        limited = [e for e in errors if isinstance(e, HubbubError)]
        assert all(e.code == "rate_limited" for e in limited)
        assert all(e.retry_after is not None and e.retry_after > 0 for e in limited)


async def test_join_since_replays_and_duplicates_are_not_yielded(server: ServerProcess) -> None:
    writer = await logged_in(server.url)
    reader = await logged_in(server.url)
    async with writer, reader:
        room = unique("r")
        await writer.create_room(room)
        await writer.connect()
        await writer.join(room)
        for i in range(5):
            await writer.send(room, f"m{i}")
        await reader.connect()
        events = reader.events()
        joined = await reader.join(room, since=2)
        assert joined["seq"] == 5 and joined["recovered"] is True
        assert [m["seq"] for m in await messages(events, 3)] == [3, 4, 5]
        # Asking again for what was already seen replays nothing new to the caller.
        await reader.join(room, since=0)
        await writer.send(room, "fresh")
        assert [m["body"] for m in await messages(events, 1)] == ["fresh"]


async def test_moderation_calls_and_a_ban_ends_the_room_for_the_banned(
    server: ServerProcess,
) -> None:
    owner = await logged_in(server.url)
    guest_name = unique("guest")
    guest = await logged_in(server.url, guest_name)
    async with owner, guest:
        room = unique("r")
        assert (await owner.create_room(room, private=True))["private"] is True
        with pytest.raises(HubbubError) as caught:
            await guest.room(room)
        assert caught.value.code == "not_found"
        await owner.add_member(room, guest_name)
        await owner.promote(room, guest_name)
        assert guest_name in (await owner.room(room))["moderators"]
        await owner.demote(room, guest_name)
        assert guest_name not in (await owner.room(room))["moderators"]

        await guest.connect()
        events = guest.events()
        await guest.join(room)
        await owner.ban(room, guest_name)
        left = await next_event(events, "left")
        assert left["room"] == room and left.get("reason") == "banned"
        assert guest.last_seq == {}
        assert await owner.bans(room) == [guest_name]
        await owner.unban(room, guest_name)
        assert await owner.bans(room) == []
        await owner.add_member(room, guest_name)
        await owner.remove_member(room, guest_name)
        assert guest_name not in (await owner.room(room))["members"]


async def test_without_reconnect_a_drop_ends_the_client(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory()
    client = await logged_in(srv.url, reconnect=False)
    async with client:
        room = unique("r")
        await client.create_room(room)
        await client.connect()
        await client.join(room)
        events = client.events()
        srv.kill()
        with pytest.raises(HubbubError) as caught:
            async with asyncio.timeout(10):
                async for _ in events:
                    pass
        assert caught.value.code == "unavailable"
        assert not client.connected
        with pytest.raises(HubbubError) as caught:
            await client.send(room, "too late")
        assert caught.value.code == "closed"


@pytest.mark.parametrize("resend_rate", [20.0, 0.0])
async def test_backlog_resent_after_restart_completes_under_the_default_rate_limit(
    server_factory: Callable[..., ServerProcess], resend_rate: float
) -> None:
    # The server keeps its default limit (20 sends a second, bursts of 40). The client paces its
    # resends (resend_rate=20) or, unpaced, retries the resends answered `rate_limited` (and
    # resumes once more if the server closes it with 1008 for flooding).
    srv = server_factory()
    client = await logged_in(srv.url, resend_rate=resend_rate, **FAST)
    async with client:
        room = unique("r")
        await client.create_room(room)
        await client.connect()
        events = client.events()
        await client.join(room)
        await client.send(room, "before")
        srv.kill()
        await wait_until(lambda: not client.connected)
        tasks = [asyncio.create_task(client.send(room, f"queued {i}")) for i in range(70)]
        await asyncio.to_thread(srv.start)
        async with asyncio.timeout(30):
            acks = await asyncio.gather(*tasks)
        assert sorted(ack["seq"] for ack in acks) == list(range(2, 72))
        received = await messages(events, 71)
        assert [m["seq"] for m in received] == list(range(1, 72))


async def test_connection_events_say_connected_disconnected_and_resumed(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(args=["--rate-limit", "0"])
    reader = await logged_in(srv.url, **FAST)
    writer = await logged_in(srv.url, **FAST)
    async with reader, writer:
        room = unique("r")
        await writer.create_room(room)
        await reader.connect()
        events = reader.events()
        first = await anext(events)
        assert first == {
            "type": "connection",
            "state": "connected",
            "session": reader.session_id,
            "node": reader.node,
        }
        await reader.join(room)
        await writer.connect()
        await writer.join(room)
        for i in range(1, 4):
            await writer.send(room, f"before {i}")
        assert [m["seq"] for m in await messages(events, 3)] == [1, 2, 3]

        srv.kill()
        lost = await next_event(events, "connection")
        assert lost["state"] == "disconnected" and lost["reason"] == "the connection was lost"
        assert lost["close_code"] in (1006, None) and lost["retry_in"] > 0
        # The node is down: each attempt fails, and says why.
        refused = await next_event(events, "connection")
        assert refused["state"] == "disconnected" and refused["retry_in"] > 0
        assert refused["reason"].startswith(f"cannot reach {srv.url}: connection refused")
        away = [asyncio.create_task(writer.send(room, f"away {i}")) for i in range(4, 7)]
        await asyncio.to_thread(srv.start)

        seen: list[int] = []
        states = []
        async with asyncio.timeout(20):
            async for event in events:
                if event["type"] == "connection":
                    states.append(event["state"])
                    if event["state"] == "resumed":
                        assert event["rooms"] == {room: 3}
                        assert event["session"] == reader.session_id != first["session"]
                        await asyncio.gather(*away)
                        await writer.send(room, "after 7")
                elif event["type"] == "message":
                    seen.append(event["seq"])
                    if event["body"] == "after 7":
                        break
        assert set(states) <= {"disconnected", "resumed"} and states[-1] == "resumed"
        assert states.count("resumed") == 1
        assert seen == [4, 5, 6, 7]  # nothing lost, nothing twice
        assert reader.last_seq == {room: 7}


async def test_a_server_out_of_reach_is_named_with_the_cause() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with Client(url) as client:
        with pytest.raises(HubbubError) as caught:
            await client.login("someone", PASSWORD)
    said = f"cannot reach {url}: connection refused (is the server running, on that port?)"
    assert (caught.value.code, caught.value.message) == ("unavailable", said)
    client = Client(url, token="a-token")
    with pytest.raises(HubbubError) as caught:
        await client.connect()
    await client.close()
    assert (caught.value.code, caught.value.message) == ("unavailable", said)
    async with Client("http://no-such-host.invalid:8080") as client:
        with pytest.raises(HubbubError) as caught:
            await client.rooms()
    assert caught.value.message == (
        "cannot reach http://no-such-host.invalid:8080: no such host (the name does not resolve)"
    )


async def test_a_frame_over_the_servers_limit_fails_once_and_the_client_goes_on(
    server: ServerProcess,
) -> None:
    """A paste larger than the server's frame limit closes the connection (1009): that send
    fails with too_large, is not resent after the reconnect, and the next send is acked."""
    client = await logged_in(server.url)
    async with client:
        room = unique("r")
        await client.create_room(room)
        await client.connect()
        await client.join(room)
        with pytest.raises(HubbubError) as caught:
            await client.send(room, "x" * 70_000)
        assert caught.value.code == "too_large"
        assert "more than the server accepts" in caught.value.message
        ack = await asyncio.wait_for(client.send(room, "after the paste"), 30)
        assert ack["seq"] == 1
        page = await client.history(room)
        assert [m["body"] for m in page["messages"]] == ["after the paste"]


async def test_refused_input_reads_as_the_servers_sentence(server: ServerProcess) -> None:
    client = await logged_in(server.url)
    async with client:
        room = unique("r")
        await client.create_room(room)
        await client.connect()
        await client.join(room)
        bad_name = f"Design Review {room}"
        attempts = [
            (client.create_room(bad_name), f"{rules.ROOM}; try design-review-{room}"),
            (client.join(bad_name), f"{rules.ROOM}; try design-review-{room}"),
            (client.send(room, "   "), rules.BODY_EMPTY),
            (
                client.send(room, "x" * 4100),
                "a message is at most 4000 characters; this one is 100 over",
            ),
        ]
        for call, sentence in attempts:
            with pytest.raises(HubbubError) as caught:
                await call
            assert caught.value.message == sentence
