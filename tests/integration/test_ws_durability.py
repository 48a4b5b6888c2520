"""Guarantees 2 and 3 across kill -9: acked means durable, resends get the original ack."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
from support.wsutil import api_at, close_code, history_all, join, recv_until, request, send_msg

ACK_KEYS = ("room", "id", "seq", "ts")


def ack_key(ack: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(ack[k] for k in ACK_KEYS)


async def paced_sends(ws: Any, room: str, ids: list[str]) -> None:
    """Pipeline `send` frames without waiting for acks, but within a connection's budget of
    200 frames per second: a burst of 100, then 180 per second."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for k, mid in enumerate(ids):
        due = start + max(0, k - 100) / 180
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        await ws.send({"type": "send", "room": room, "id": mid, "body": mid, "ref": mid})


async def test_resend_after_kill_9_and_restart_returns_the_original_ack(
    server_factory, api, connect
):
    srv = server_factory()
    remote = api_at(api, srv)
    _, token = await remote.user()
    room = await remote.room(token)
    ws = await connect(token, url=srv.ws_url)
    await join(ws, room)
    first = await send_msg(ws, room, "survives", "keep-1")
    second = await send_msg(ws, room, "me too", "keep-2")

    srv.kill()
    await close_code(ws)  # the connection died with the server
    srv.start()

    ws = await connect(token, url=srv.ws_url)
    joined = await join(ws, room)
    assert joined["seq"] == 2
    again = await send_msg(ws, room, "survives", "keep-1")
    assert ack_key(again) == ack_key(first)
    again = await send_msg(ws, room, "me too", "keep-2")
    assert ack_key(again) == ack_key(second)
    conflict = await request(ws, {"type": "send", "room": room, "id": "keep-1", "body": "other"})
    assert conflict["type"] == "error" and conflict["code"] == "conflict", conflict
    nxt = await send_msg(ws, room, "after restart")
    assert nxt["seq"] == 3
    stored = await history_all(ws, room)
    assert [(m["id"], m["seq"], m["body"], m["ts"]) for m in stored] == [
        ("keep-1", 1, "survives", first["ts"]),
        ("keep-2", 2, "me too", second["ts"]),
        (nxt["id"], 3, "after restart", nxt["ts"]),
    ]


async def test_crash_mid_stream_loses_no_acked_message_and_the_log_stays_gapless(
    server_factory, api, connect
):
    srv = server_factory(env={"HUBBUB_RATE_LIMIT": "0"})
    remote = api_at(api, srv)
    url = srv.ws_url
    users = [await remote.user() for _ in range(10)]
    room = await remote.room(users[0][1])
    conns = []
    for _, token in users:
        ws = await connect(token, url=url)
        await join(ws, room)
        conns.append(ws)

    per_conn = 300  # 3000 sends in all
    ids = [[f"c{i}-{k}" for k in range(per_conn)] for i in range(len(conns))]
    acks: dict[str, dict[str, Any]] = {}
    enough = asyncio.Event()

    async def send_all(i: int, ws: Any) -> None:
        with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
            await paced_sends(ws, room, ids[i])

    async def read_acks(ws: Any) -> None:
        while True:
            msg = await ws.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            frame = json.loads(msg.data)
            if frame["type"] == "ack":
                assert frame["ref"] == frame["id"], frame
                acks[frame["id"]] = frame
                if len(acks) >= 1000:
                    enough.set()
            elif frame["type"] == "error":
                raise AssertionError(frame)

    readers = [asyncio.create_task(read_acks(ws)) for ws in conns]
    senders = [asyncio.create_task(send_all(i, ws)) for i, ws in enumerate(conns)]
    await asyncio.wait_for(enough.wait(), 20)
    srv.kill()  # mid-stream: thousands of sends are still in flight
    await asyncio.wait_for(asyncio.gather(*readers, *senders), 10)
    acked_before_crash = dict(acks)
    assert len(acked_before_crash) >= 1000

    srv.start()
    conns = []
    for _, token in users:
        ws = await connect(token, url=url)
        await join(ws, room)
        conns.append(ws)

    # The log is gapless and holds every acked message with its seq and ts.
    stored = await history_all(conns[0], room, 30)
    n = len(stored)
    assert [m["seq"] for m in stored] == list(range(1, n + 1))
    assert len({m["id"] for m in stored}) == n
    by_id = {m["id"]: m for m in stored}
    for mid, ack in acked_before_crash.items():
        assert mid in by_id, f"acked message {mid} (seq {ack['seq']}) lost in the crash"
        msg = by_id[mid]
        assert (msg["seq"], msg["ts"], msg["body"]) == (ack["seq"], ack["ts"], mid), (msg, ack)
        assert msg["from"] == users[int(mid[1 : mid.index("-")])][0]
    assert n >= len(acked_before_crash)

    # Every client resends everything it sent: acked ones get their original ack, stored
    # but unacked ones their stored seq, and the rest new seqs after n: no duplicates.
    async def resend_all(i: int, ws: Any) -> dict[str, dict[str, Any]]:
        sending = asyncio.create_task(paced_sends(ws, room, ids[i]))
        got: dict[str, dict[str, Any]] = {}
        pending = set(ids[i])
        while pending:
            frame, _ = await recv_until(ws, lambda f: f.get("ref") in pending, 30)
            assert frame["type"] == "ack", frame
            got[frame["ref"]] = frame
            pending.discard(frame["ref"])
        await sending
        return got

    results = await asyncio.gather(*(resend_all(i, ws) for i, ws in enumerate(conns)))
    second = {mid: ack for r in results for mid, ack in r.items()}
    for mid, ack in acked_before_crash.items():
        assert ack_key(second[mid]) == ack_key(ack), (mid, ack, second[mid])
    for mid, msg in by_id.items():
        assert (second[mid]["seq"], second[mid]["ts"]) == (msg["seq"], msg["ts"]), mid
    new_seqs = sorted(a["seq"] for mid, a in second.items() if mid not in by_id)
    assert new_seqs == list(range(n + 1, len(conns) * per_conn + 1))

    final = await history_all(conns[0], room, 30)
    assert [m["seq"] for m in final] == list(range(1, len(conns) * per_conn + 1))
    assert sorted(m["id"] for m in final) == sorted(mid for lst in ids for mid in lst)
    after = await send_msg(conns[1], room, "and life goes on")
    assert after["seq"] == len(conns) * per_conn + 1
