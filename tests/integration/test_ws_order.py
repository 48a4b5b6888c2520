"""Guarantee 1: per-room order, gapless seq, under concurrent senders."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.wsutil import api_at, history_all, join, module_server, recv_until, user


@pytest.fixture(scope="module")
def unlimited_server(tmp_path_factory, shared_server):
    yield from module_server(tmp_path_factory, shared_server, env={"HUBBUB_RATE_LIMIT": "0"})


async def read_all(
    ws: Any, room: str, total: int, refs: set[str]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Read until `total` messages of `room` and a reply to every ref in `refs` arrived."""
    stream: list[dict[str, Any]] = []
    acks: dict[str, dict[str, Any]] = {}
    while len(stream) < total or len(acks) < len(refs):
        frame, _ = await recv_until(ws, lambda f: True, 30)
        if frame["type"] == "message" and frame["room"] == room:
            stream.append(frame)
        elif frame.get("ref") in refs:
            assert frame["type"] == "ack", frame
            acks[frame["ref"]] = frame
    return stream, acks


async def test_concurrent_senders_every_receiver_sees_seq_1_to_n_in_order(
    api, connect, unlimited_server
):
    remote = api_at(api, unlimited_server)
    url = unlimited_server.ws_url
    _, owner_token = await user(remote)
    room = await remote.room(owner_token)
    senders = []
    for _ in range(5):
        _, token = await user(remote)
        ws = await connect(token, url=url)
        await join(ws, room)
        senders.append(ws)
    receivers = []
    for token in (owner_token, owner_token):
        ws = await connect(token, url=url)
        await join(ws, room)
        receivers.append(ws)

    per_sender = 80
    total = per_sender * len(senders)
    id_lists = [[f"s{i}-{k}" for k in range(per_sender)] for i in range(len(senders))]
    reading = [
        asyncio.create_task(read_all(ws, room, total, set(ids)))
        for ws, ids in zip(senders, id_lists, strict=True)
    ]
    reading += [asyncio.create_task(read_all(ws, room, total, set())) for ws in receivers]

    async def send_all(ws: Any, ids: list[str]) -> None:
        for mid in ids:  # pipelined: no waiting for acks
            await ws.send({"type": "send", "room": room, "id": mid, "body": mid, "ref": mid})

    await asyncio.gather(*(send_all(ws, ids) for ws, ids in zip(senders, id_lists, strict=True)))
    results = await asyncio.gather(*reading)
    acks = {mid: ack for _, acked in results for mid, ack in acked.items()}

    # Acks: every seq 1..N exactly once.
    assert sorted(a["seq"] for a in acks.values()) == list(range(1, total + 1))
    by_seq = {a["seq"]: mid for mid, a in acks.items()}
    # Every joined connection (senders included) sees the whole room, in seq order.
    for stream, _ in results:
        assert [m["seq"] for m in stream] == list(range(1, total + 1))
        assert [m["id"] for m in stream] == [by_seq[s] for s in range(1, total + 1)]
        assert all(m["ts"] == acks[m["id"]]["ts"] and m["body"] == m["id"] for m in stream)
    # One connection's frames are handled in order: its messages get increasing seqs.
    for ids in id_lists:
        seqs = [acks[mid]["seq"] for mid in ids]
        assert seqs == sorted(seqs)

    stored = await history_all(receivers[0], room)
    assert [(m["seq"], m["id"]) for m in stored] == [(s, by_seq[s]) for s in range(1, total + 1)]


async def test_rooms_have_independent_sequences_under_interleaving(api, connect, unlimited_server):
    remote = api_at(api, unlimited_server)
    _, token = await user(remote)
    rooms = [await remote.room(token) for _ in range(3)]
    ws = await connect(token, url=unlimited_server.ws_url)
    for room in rooms:
        await join(ws, room)
    n = 30
    for k in range(n):
        for room in rooms:
            await ws.send({"type": "send", "room": room, "id": f"i{k}", "body": "x"})
    got: dict[str, list[int]] = {room: [] for room in rooms}
    while sum(len(v) for v in got.values()) < n * len(rooms):
        frame, _ = await recv_until(ws, lambda f: f["type"] == "message", 30)
        got[frame["room"]].append(frame["seq"])
    for room in rooms:
        assert got[room] == list(range(1, n + 1))
