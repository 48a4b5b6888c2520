"""Close codes: 1009 too big, 1007 bad UTF-8, 1008 flooding, 1001 draining, 4001 logged out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from typing import Any

import aiohttp
import pytest
from support.wsutil import (
    api_at,
    assert_usable,
    close_code,
    history_all,
    join,
    messages,
    module_server,
    recv_until,
    request,
    send_msg,
    send_raw_text,
    uid,
    user,
)


def ping_of_size(size: int, ref: str) -> str:
    """A valid `ping` frame of exactly `size` bytes (padded with an ignored unknown field)."""
    empty = json.dumps({"type": "ping", "ref": ref, "pad": ""}, separators=(",", ":"))
    frame = json.dumps(
        {"type": "ping", "ref": ref, "pad": "x" * (size - len(empty))}, separators=(",", ":")
    )
    assert len(frame.encode()) == size
    return frame


# --- 1009 ----------------------------------------------------------------------------------------


async def test_frame_of_exactly_64_kib_is_accepted(api, connect):
    _, token = await user(api)
    ws = await connect(token)
    await ws.ws.send_str(ping_of_size(65536, "big"))
    reply, _ = await recv_until(ws, lambda f: f.get("ref") == "big")
    assert reply["type"] == "pong", reply


async def test_frame_over_64_kib_closes_1009(api, connect):
    _, token = await user(api)
    ws = await connect(token)
    await ws.ws.send_str(ping_of_size(65537, "too-big"))
    assert await close_code(ws) == 1009


async def test_send_frame_far_over_64_kib_closes_1009(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    await join(ws, room)
    await ws.send({"type": "send", "room": room, "id": uid(), "body": "x" * 200_000})
    assert await close_code(ws) == 1009
    # Nothing was stored.
    other = await connect(token)
    assert (await request(other, {"type": "history", "room": room}))["messages"] == []


async def test_oversized_first_frame_closes_1009_before_hello(connect):
    ws = await connect()
    await ws.ws.send_str(ping_of_size(70000, "pre-hello"))
    assert await close_code(ws) == 1009


# --- 1007 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xfe", b'{"type":"ping","ref":"\xc3\x28"}', b'{"type":"ping","ref":"\xed\xa0\x80"}'],
    ids=["garbage", "bad-continuation", "encoded-surrogate"],
)
async def test_text_frame_with_invalid_utf8_closes_1007(api, connect, payload):
    _, token = await user(api)
    ws = await connect(token)
    await send_raw_text(ws, payload)
    assert await close_code(ws) == 1007


async def test_invalid_utf8_as_first_frame_closes_1007(connect):
    ws = await connect()
    await send_raw_text(ws, b'{"type":"hello","token":"\xff"}')
    assert await close_code(ws) == 1007


# --- 1008 ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory, shared_server):
    yield from module_server(tmp_path_factory, shared_server, env={"HUBBUB_RATE_LIMIT": "5"})


async def test_client_that_keeps_flooding_is_closed_1008(api, connect, limited_server):
    remote = api_at(api, limited_server)
    _, token = await user(remote)
    room = await remote.room(token)
    ws = await connect(token, url=limited_server.ws_url)
    await join(ws, room)
    observer = await connect(token, url=limited_server.ws_url)
    with contextlib.suppress(ConnectionError, aiohttp.ClientError):
        for i in range(400):
            await ws.send({"type": "send", "room": room, "id": f"flood-{i}", "body": "x"})
    limited = 0
    code = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        msg = await asyncio.wait_for(ws.ws.receive(), max(deadline - loop.time(), 0.01))
        if msg.type != aiohttp.WSMsgType.TEXT:
            code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else None
            break
        frame = json.loads(msg.data)
        if frame["type"] == "error":
            assert frame["code"] == "rate_limited", frame
            limited += 1
    assert code == 1008, (msg, limited)
    assert limited > 0
    # Only the flooding connection is closed.
    await assert_usable(observer)


async def test_slow_consumer_whose_send_buffer_overflows_is_cut_off_and_can_resume(
    server_factory, api, connect, http
):
    srv = server_factory(env={"HUBBUB_SEND_BUFFER": "262144", "HUBBUB_RATE_LIMIT": "0"})
    remote = api_at(api, srv)
    _, owner_token = await remote.user()
    slow_name, slow_token = await remote.user()
    room = await remote.room(owner_token)
    owner = await connect(owner_token, url=srv.ws_url)
    await join(owner, room)
    # 200 messages of 4,000 characters: one history page of them is ~0.8 MB.
    for batch in range(2):
        ids = [f"big-{batch}-{k}" for k in range(100)]
        for mid in ids:
            await owner.send({"type": "send", "room": room, "id": mid, "body": "x" * 4000})
        await recv_until(owner, lambda f, last=ids[-1]: f.get("id") == last and f["type"] == "ack")

    # The slow client joins, asks for ~32 MB of history and never reads: far more than the
    # socket buffers hold, so the node's own buffer for it overflows.
    slow = await http.ws_connect(srv.ws_url, autoping=False)
    await slow.send_json({"type": "hello", "token": slow_token})
    assert (await slow.receive_json(timeout=5))["type"] == "welcome"
    await slow.send_json({"type": "join", "room": room})
    assert (await slow.receive_json(timeout=5))["type"] == "joined"
    await recv_until(owner, lambda f: f["type"] == "presence" and f["status"] == "online")
    for _ in range(40):
        await slow.send_json({"type": "history", "room": room, "limit": 200})

    # The node cuts it off: the others see it go offline, and keep working.
    event, _ = await recv_until(
        owner, lambda f: f["type"] == "presence" and f["user"] == slow_name, 30
    )
    assert event["status"] == "offline", event
    await assert_usable(owner)
    # What the slow client gets ends with a 1008 close (or just ends, if the node had to drop
    # the connection with its buffer full); never with another close code.
    frames = 0
    while (msg := await slow.receive(timeout=10)).type in (
        aiohttp.WSMsgType.TEXT,
        aiohttp.WSMsgType.PING,
    ):
        frames += msg.type == aiohttp.WSMsgType.TEXT
    assert frames < 40, "every history reply arrived: nothing was cut off"
    if msg.type == aiohttp.WSMsgType.CLOSE:
        assert msg.data == 1008, msg
    # It may come back and resume.
    again = await connect(slow_token, url=srv.ws_url)
    joined = await join(again, room, since=199)
    assert (joined["seq"], joined["recovered"]) == (200, True)
    (replayed,) = await messages(again, room, 1)
    assert replayed["seq"] == 200


# --- 1001 ----------------------------------------------------------------------------------------


async def readyz(port: int) -> int | None:
    """GET /readyz over a fresh connection: the status, or None if nothing answers."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 2)
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


async def joined_connections(srv: Any, api: Any, connect: Any, n: int) -> tuple[Any, str, list]:
    """`n` users on `srv`, each with a connection joined to one room."""
    remote = api_at(api, srv)
    users = [await remote.user() for _ in range(n)]
    room = await remote.room(users[0][1])
    conns = []
    for _, token in users:
        ws = await connect(token, url=srv.ws_url)
        await join(ws, room)
        conns.append(ws)
    return users, room, conns


async def test_sigterm_finishes_acks_in_flight_then_closes_1001_and_exits_0(
    server_factory, api, connect
):
    srv = server_factory(env={"HUBBUB_RATE_LIMIT": "0"})
    users, room, conns = await joined_connections(srv, api, connect, 3)

    sent: list[list[str]] = [[] for _ in conns]
    replies: list[dict[str, dict[str, Any]]] = [{} for _ in conns]
    closes: list[int | None] = [None for _ in conns]
    warmed_up = asyncio.Event()

    async def reader(i: int, ws: Any) -> None:
        while True:
            msg = await ws.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                closes[i] = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else -1
                return
            frame = json.loads(msg.data)
            if "ref" in frame:
                replies[i][frame["ref"]] = frame
                if sum(len(r) for r in replies) >= 30:
                    warmed_up.set()

    async def burst(i: int, ws: Any, start: int, n: int) -> None:
        """Pipeline `n` sends (no waiting for acks); 110 frames stay under the 200/s budget."""
        for k in range(start, start + n):
            mid = f"c{i}-{k}"
            await ws.send({"type": "send", "room": room, "id": mid, "body": mid, "ref": mid})
            sent[i].append(mid)

    readers = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(conns)]
    await asyncio.gather(*(burst(i, ws, 0, 10) for i, ws in enumerate(conns)))
    await asyncio.wait_for(warmed_up.wait(), 10)  # the node is up and acking
    # 300 more sends are written, then SIGTERM lands while the node works through them.
    await asyncio.gather(*(burst(i, ws, 10, 100) for i, ws in enumerate(conns)))
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    unanswered_at_sigterm = sum(len(x) for x in sent) - sum(len(r) for r in replies)
    rc = await asyncio.to_thread(srv.proc.wait, 30)
    await asyncio.wait_for(asyncio.gather(*readers), 10)
    assert unanswered_at_sigterm > 0  # the scenario happened: sends were in flight

    assert rc == 0, srv.log()[-3000:]
    assert closes == [1001] * len(conns), closes
    acked: dict[str, dict[str, Any]] = {}
    for i in range(len(conns)):
        kinds = [replies[i][m]["type"] if m in replies[i] else None for m in sent[i]]
        n_acked = kinds.count("ack")
        # Frames are handled in order: the acked ones are a prefix of what was sent, the rest
        # got `unavailable` (read while draining) or nothing (never read).
        assert kinds[:n_acked] == ["ack"] * n_acked, kinds
        for mid in sent[i][n_acked:]:
            frame = replies[i].get(mid)
            assert frame is None or frame.get("code") == "unavailable", frame
        acked.update({m: replies[i][m] for m in sent[i][:n_acked]})
    assert len(acked) >= 30

    # Everything acked survived; nothing unacked was stored.
    srv.start()
    ws = await connect(users[0][1], url=srv.ws_url)
    stored = await history_all(ws, room)
    assert {m["id"]: m["seq"] for m in stored} == {m: a["seq"] for m, a in acked.items()}
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))


async def test_readyz_answers_503_while_the_node_drains_after_sigterm(
    server_factory, api, connect, http
):
    srv = server_factory()
    users, _, conns = await joined_connections(srv, api, connect, 2)
    # A client slow to answer the server's Close frame (it never reads) gives the drain
    # something to wait for.
    slow = await http.ws_connect(srv.ws_url, autoclose=False, autoping=False)
    await slow.send_json({"type": "hello", "token": users[1][1]})
    assert (await slow.receive_json(timeout=5))["type"] == "welcome"
    assert await readyz(srv.port) == 200

    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    exited = asyncio.create_task(asyncio.to_thread(srv.proc.wait, 30))
    statuses: list[int | None] = []
    while not exited.done():  # poll until the node stops answering
        status = await readyz(srv.port)
        statuses.append(status)
        if status is None:
            break
    assert await exited == 0
    for ws in conns:
        assert await close_code(ws) == 1001
    while (msg := await slow.receive(timeout=5)).type == aiohttp.WSMsgType.PING:
        pass
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1001), msg
    answered = [s for s in statuses if s is not None]
    assert 503 in answered, f"readyz after SIGTERM answered {statuses} (None: no answer)"
    assert 200 not in answered[answered.index(503) :], statuses


# --- 4001 ----------------------------------------------------------------------------------------


async def test_logout_closes_that_tokens_connections_with_unauthorized_4001(api, connect):
    name, token = await api.user()
    status, body = await api.call(
        "POST", "/api/v1/login", json={"username": name, "password": "correct horse"}
    )
    assert status == 200, body
    other_token = body["token"]
    room = await api.room(token)
    doomed = [await connect(token), await connect(token)]
    await join(doomed[0], room)
    survivor = await connect(other_token)
    await join(survivor, room)

    assert (await api.call("POST", "/api/v1/logout", token))[0] == 204
    for ws in doomed:
        frame, _ = await recv_until(ws, lambda f: f["type"] == "error")
        assert frame["code"] == "unauthorized", frame
        assert await close_code(ws) == 4001
    # The same user's connection with another token is untouched.
    await assert_usable(survivor)
    await send_msg(survivor, room, "still here")
    # And the revoked token cannot say hello again.
    ws = await connect()
    await ws.send({"type": "hello", "token": token})
    frame = await ws.recv()
    assert frame["type"] == "error" and frame["code"] == "unauthorized", frame
    assert await close_code(ws) == 4001
