"""A client that stops reading costs the node bounded memory, is cut off, and slows no one.

One node (`--send-buffer` 256 KiB, rate limits off) and one room: a sender posts at a
fixed rate well below saturation, and a few members measure end-to-end latency (the send
time travels in the body). Windows without and with a slow consumer alternate; in the
latter a raw socket completes the handshake, says hello, joins, then never reads again.
Per window the p99 of every member's latencies is taken; each window with the slow
consumer is compared with the window without it next to it in time (the machine's other
load drifts, and neighbours share it), and the median of those ratios decides, so that
one noisy window on a shared machine cannot. The node and the clients run on separate
cores, windows are of one length, and this process collects no garbage while measuring.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
from support.api import Api
from support.latency import (
    Members,
    SlowConsumer,
    drop_replies,
    p99,
    rss,
    send_at_rate,
    slow_consumers_total,
)

SEND_BUFFER = 256 * 1024
RATE = 1000  # messages/s: a few percent of what one node sustains
BODY = 800  # characters: ~800 KB/s for the slow reader, and ~2,000 messages a window so
# that a window's p99 is not decided by a handful of messages
MEMBERS = 4  # members measuring latency
PAIRS = 7  # (without, with) window pairs
WINDOW = 3.5  # seconds of a window without the slow consumer before one was cut off
# (then as long as the last slow consumer lived: windows of one length compare alike)
SLOW_DEADLINE = 20.0  # seconds the node may take to cut the slow consumer off
MIN_SAMPLES = 2000  # per window, so that its p99 means something
TOLERANCE = 1.10  # the slow consumer may move the members' p99 by at most 10%...
# ...or by this much. On a quiet machine the ratio is 0.95-1.10 and the medians are within
# 0.1 ms; on a loaded one (CI, after an hour of other tests) both windows' p99s spread 1-8 ms
# and a run measured 1.45x, 1.6 ms apart, with no defect: the node's extra work for the
# slow socket (filling its kernel buffer) shows once the cores are contended. What this test
# guards against is a node that waits for the slow reader: the members would then wait with
# it, up to its lifetime (3.4 s here), dozens of times this floor. A CI run with the machine
# shared measured 1.29x, 22.7 ms apart (one window at 330 ms without a defect), so the floor
# sits above what noise does and far below what waiting does. The precise ratio is a figure
# this test prints (docs/performance.md), not a bound a shared machine can hold.
NOISE_FLOOR = 0.050  # seconds
# The node holds at most --send-buffer for a connection, plus one loop turn of frames;
# the rest is slack for the allocator, SQLite's page cache and the other connections.
RSS_BOUND = 4 * SEND_BUFFER + 4 * 1024 * 1024


async def test_a_reader_that_stops_is_cut_off_holds_bounded_memory_and_slows_no_one(
    server_factory: Any, http: aiohttp.ClientSession, shm_data: Path
) -> None:
    srv = server_factory(
        env={"HUBBUB_SEND_BUFFER": str(SEND_BUFFER), "HUBBUB_RATE_LIMIT": "0"}, data=shm_data
    )
    assert srv.proc is not None
    pid = srv.proc.pid
    # The node on one core and this test's clients on another, where there are two: then
    # neither's work shows up as the other's latency.
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(pid, {cpus[0]})
        os.sched_setaffinity(0, {cpus[1]})
    api = Api(http, srv.url)
    owner, owner_token = await api.user()
    room = await api.room(owner_token)
    users = [await api.user() for _ in range(MEMBERS + 1)]
    slow_user, slow_token = users.pop()

    members = Members()
    sent = [0]
    tasks: list[asyncio.Task[Any]] = []
    sockets = []
    for _, token in [(owner, owner_token), *users]:
        ws = await http.ws_connect(srv.ws_url, max_msg_size=0)
        sockets.append(ws)
        await ws.send_json({"type": "hello", "token": token})
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        await ws.send_json({"type": "join", "room": room})
        while (await ws.receive_json(timeout=5))["type"] != "joined":
            pass
    sender, *readers = sockets
    tasks.append(asyncio.create_task(drop_replies(sender)))
    tasks += [asyncio.create_task(members.read(ws, i == 0)) for i, ws in enumerate(readers)]
    tasks.append(asyncio.create_task(send_at_rate(sender, room, sent, RATE, BODY)))
    try:
        await members.measure(1.0)  # warm-up: caches, allocator, connections
        rss_before = rss(pid)
        rss_peak = rss_before
        metric = await slow_consumers_total(http, srv.url)
        assert metric == 0, "a member was cut off: the test client cannot keep up"
        base_p99: list[float] = []
        slow_p99: list[float] = []
        lifetimes: list[float] = []
        codes: list[int | None] = []

        async def without() -> None:
            # The same user joins in this window too, but reads: the node then does the
            # same work per message, and only the reading differs.
            extra = await http.ws_connect(srv.ws_url, max_msg_size=0)
            try:
                await extra.send_json({"type": "hello", "token": slow_token})
                await extra.send_json({"type": "join", "room": room})
                reading = asyncio.create_task(drop_replies(extra))
                samples = await members.measure(lifetimes[-1] if lifetimes else WINDOW)
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
            finally:
                await extra.close()
            assert len(samples) >= MIN_SAMPLES, len(samples)
            base_p99.append(p99(samples))
            # It left (seen by the members): the next window starts clean.
            assert await asyncio.wait_for(members.offline.get(), 10) == slow_user

        async def with_slow() -> None:
            nonlocal metric, rss_peak
            slow = SlowConsumer(srv.port)
            try:
                await slow.open(slow_token, room)
                started = time.monotonic()
                members.window = samples = []
                # Until the node cuts it off, which the members see as the slow user going
                # offline (nothing is asked of the node meanwhile, so nothing else costs it
                # time); the node's RSS is read from /proc as the backlog builds up.
                gone = asyncio.create_task(members.offline.get())
                while not gone.done():
                    rss_peak = max(rss_peak, rss(pid))
                    assert time.monotonic() - started < SLOW_DEADLINE, "never cut off"
                    await asyncio.wait([gone], timeout=0.1)
                members.window = None
                lifetimes.append(time.monotonic() - started)
                assert gone.result() == slow_user
                rss_peak = max(rss_peak, rss(pid))
                now = await slow_consumers_total(http, srv.url)
                assert now == metric + 1, (metric, now)
                metric = now
                assert len(samples) >= MIN_SAMPLES, (len(samples), lifetimes)
                slow_p99.append(p99(samples))
                codes.append(await slow.drain())
            finally:
                slow.close()

        # This process's own collector pauses would count as the node's latency.
        gc.disable()
        try:
            for i in range(PAIRS):
                for window in (without, with_slow) if i % 2 == 0 else (with_slow, without):
                    await window()
        finally:
            gc.enable()
        received_before_end = members.received
    finally:
        os.sched_setaffinity(0, cpus)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ws in sockets:
            await ws.close()

    growth = rss_peak - rss_before
    ratios = [s / b for b, s in zip(base_p99, slow_p99, strict=True)]
    ratio = statistics.median(ratios)
    moved = statistics.median(slow_p99) - statistics.median(base_p99)
    print(
        f"\nslow consumer: lifetimes {[round(t, 2) for t in lifetimes]} s, close codes {codes}; "
        f"server RSS growth {growth / 1024:.0f} KiB (bound {RSS_BOUND // 1024} KiB); "
        f"members' p99 ms without {[round(x * 1000, 2) for x in base_p99]} "
        f"with {[round(x * 1000, 2) for x in slow_p99]}: ratios {[round(r, 2) for r in ratios]}, "
        f"median {ratio:.3f}x, medians {moved * 1000:+.2f} ms apart; {sent[0]} sent"
    )
    # Cut off: the close the node sent (if the buffer let it through) is 1008, never another.
    assert all(code in (None, 1008) for code in codes), codes
    # Bounded memory: everything sent while a slow consumer was joined, minus what its
    # socket took, would have piled up on the node without the bound.
    assert growth <= RSS_BOUND, (growth, RSS_BOUND)
    assert sum(lifetimes) * RATE * BODY > 2 * RSS_BOUND, "too little sent to prove the bound"
    # The others did not wait for it.
    assert received_before_end > 0
    assert ratio <= TOLERANCE or moved <= NOISE_FLOOR, (base_p99, slow_p99)
