"""What `--redis-replicas 1` costs: send->ack and send->delivery latency of the Redis log.

Starts a private redis-server primary (`appendonly yes`, `appendfsync always`) and one
replica on free ports, drives `RedisLog` directly (no WebSocket, no PostgreSQL lookup: the
Redis part of a send alone) and times, per message, the append's return (the ack) and the
arrival of its publication at a subscriber on its own connection (the delivery to a node).
Modes: `--redis-replicas 0` (one script, no WAIT) and `--redis-replicas 1`. Run it from
another tree's `src` to compare implementations:

    PYTHONPATH=src .venv/bin/python benchmarks/redis_replicas.py
    PYTHONPATH=/path/to/other/checkout/src .venv/bin/python benchmarks/redis_replicas.py

Two loads: `sequential` (one send at a time: the latency of an idle room) and `loaded`
(`--senders` tasks each keeping one send in flight, spread over 10 rooms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import msgspec
from redis.asyncio import Redis

from hubbub.engine.redis.log import RedisLog
from hubbub.engine.redis.schema import channel

_decode = msgspec.msgpack.Decoder().decode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(directory: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    executable = shutil.which("redis-server") or "redis-server"
    cmd = [executable, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    cmd += ["--save", "", "--logfile", str(directory / "redis.log"), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("redis-server did not start")


async def replica_online(client: Redis) -> None:
    deadline = time.monotonic() + 20
    while (await client.info("replication")).get("slave0", {}).get("state") != "online":
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not come online")
        await asyncio.sleep(0.02)


class Run:
    """One mode and load: send times, ack times and delivery times per (room, id)."""

    def __init__(self, client: Redis, replicas: int) -> None:
        self.log = RedisLog(client, lambda m: None, wait_replicas=replicas, wait_timeout_ms=2000)
        self.sent: dict[tuple[str, str], float] = {}
        self.acked: dict[tuple[str, str], float] = {}
        self.delivered: dict[tuple[str, str], float] = {}
        self.listening = asyncio.Event()

    async def send(self, room: str, msg_id: str) -> None:
        self.sent[room, msg_id] = time.perf_counter()
        await self.log.append(room, "bench", msg_id, "x" * 100)
        self.acked[room, msg_id] = time.perf_counter()

    async def listen(self, client: Redis, rooms: list[str], expected: int) -> None:
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(*(channel(room) for room in rooms))
            self.listening.set()
            last = time.monotonic()
            while len(self.delivered) < expected:
                item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if item is None:  # a subscription confirmation, or nothing within 1 s
                    if time.monotonic() - last > 10:
                        raise RuntimeError("publications stopped coming")
                    continue
                last = time.monotonic()
                fields = _decode(item["data"])
                self.delivered[fields[0], fields[2]] = time.perf_counter()

    async def measure(
        self, client: Redis, rooms: list[str], senders: int, count: int
    ) -> dict[str, float]:
        listener = asyncio.create_task(self.listen(client, rooms, senders * count))
        await self.listening.wait()
        started = time.perf_counter()

        async def sender(number: int) -> None:
            for i in range(count):
                await self.send(rooms[number % len(rooms)], f"s{number}-{i}")

        await asyncio.gather(*(sender(n) for n in range(senders)))
        await listener
        elapsed = time.perf_counter() - started
        await self.log.close()
        acks = [1000 * (self.acked[k] - self.sent[k]) for k in self.sent]
        deliveries = [1000 * (self.delivered[k] - self.sent[k]) for k in self.sent]
        return {
            "msgs/s": len(acks) / elapsed,
            "ack p50": percentile(acks, 50),
            "ack p99": percentile(acks, 99),
            "delivery p50": percentile(deliveries, 50),
            "delivery p99": percentile(deliveries, 99),
        }


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


async def benchmark(args: argparse.Namespace, port: int) -> list[tuple[str, dict[str, float]]]:
    results: list[tuple[str, dict[str, float]]] = []
    for repeat in range(args.repeat):
        for replicas in (0, 1):
            for load, senders, count in (
                ("sequential", 1, args.count),
                ("loaded", args.senders, args.count // 4),
            ):
                client = Redis(host="127.0.0.1", port=port)
                await client.flushall()
                await replica_online(client)
                rooms = [f"room{i}" for i in range(10 if senders > 1 else 1)]
                figures = await Run(client, replicas).measure(client, rooms, senders, count)
                results.append((f"replicas={replicas} {load} #{repeat + 1}", figures))
                await client.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="sends per sequential run")
    parser.add_argument("--senders", type=int, default=32, help="concurrent senders (loaded)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "primary").mkdir()
        (Path(tmp) / "replica").mkdir()
        durable = ("--appendonly", "yes", "--appendfsync", "always")
        primary, port = start_redis(Path(tmp) / "primary", *durable)
        replica, _ = start_redis(Path(tmp) / "replica", "--replicaof", "127.0.0.1", str(port))
        try:
            results = asyncio.run(benchmark(args, port))
        finally:
            for proc in (replica, primary):
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(15)
    print(f"{'run':<28}" + "".join(f"{name:>14}" for name in results[0][1]))
    for name, figures in results:
        print(f"{name:<28}" + "".join(f"{value:>14.2f}" for value in figures.values()))


if __name__ == "__main__":
    main()
