"""What `--redis-replicas 1` costs: send->ack and send->delivery latency of the Redis log.

Starts a private redis-server primary (`appendonly yes`, `appendfsync always`, no
automatic AOF rewrite) and one replica on free ports, drives `RedisLog` directly (no
WebSocket, no PostgreSQL lookup: the Redis part of a send alone) and times, per message,
the append's return (the ack) and the arrival of its publication at a subscriber on its
own connection (the delivery to a node).
Modes: `--redis-replicas 0` (one script, no WAIT) and `--redis-replicas 1`; loads:
`sequential` (one send at a time: the latency of an idle room) and `loaded` (`--senders`
tasks each keeping one send in flight, spread over 10 rooms). Each pass runs in a child
process on this tree's `src`; `--baseline REV` adds a git revision's `src`, and the trees
take turns, so both see the same machine. Medians over `--repeat` passes:

    .venv/bin/python benchmarks/redis_replicas.py --baseline main --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
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


async def measure_all(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One pass of every mode and load on the running pair (a child process's job)."""
    results: dict[str, dict[str, float]] = {}
    for replicas in (0, 1):
        for load, senders, count in (
            ("sequential", 1, args.count),
            ("loaded", args.senders, args.count // 4),
        ):
            client = Redis(host="127.0.0.1", port=args.port)
            await client.flushall()
            await replica_online(client)
            rooms = [f"room{i}" for i in range(10 if senders > 1 else 1)]
            figures = await Run(client, replicas).measure(client, rooms, senders, count)
            results[f"replicas={replicas} {load}"] = figures
            await client.aclose()
    return results


def baseline_src(revision: str, into: Path) -> Path:
    """The `src` of a git revision of this repository, extracted into `into`."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def child_run(args: argparse.Namespace, src: Path, port: int) -> dict[str, dict[str, float]]:
    command = [sys.executable, __file__, "--child", "--port", str(port)]
    command += ["--count", str(args.count), "--senders", str(args.senders)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    figures: dict[str, dict[str, float]] = json.loads(output)
    return figures


def report(runs: dict[str, list[dict[str, dict[str, float]]]]) -> None:
    """Medians over the repeats, per tree, mode and load."""
    names = list(next(iter(next(iter(runs.values()))[0].values())))
    print(f"{'tree':<12}{'run':<24}" + "".join(f"{name:>14}" for name in names))
    for case in next(iter(runs.values()))[0]:
        for tree, passes in runs.items():
            medians = [statistics.median(p[case][name] for p in passes) for name in names]
            print(f"{tree:<12}{case:<24}" + "".join(f"{value:>14.2f}" for value in medians))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="sends per sequential run")
    parser.add_argument("--senders", type=int, default=32, help="concurrent senders (loaded)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per tree (medians)")
    parser.add_argument("--baseline", metavar="REV", help="also measure this git revision")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure_all(args))))
        return
    # SIGTERM runs the `finally` below too: no redis-server is left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": Path(__file__).resolve().parent.parent / "src"}
        if args.baseline:
            trees[args.baseline] = baseline_src(args.baseline, Path(tmp))
        (Path(tmp) / "primary").mkdir()
        (Path(tmp) / "replica").mkdir()
        durable = ("--appendonly", "yes", "--appendfsync", "always")
        # No AOF rewrite (a fork) in the middle of a pass: every pass writes as much, so the
        # rewrites would keep landing on the same tree's turn.
        durable += ("--auto-aof-rewrite-percentage", "0")
        primary, port = start_redis(Path(tmp) / "primary", *durable)
        replica, _ = start_redis(Path(tmp) / "replica", "--replicaof", "127.0.0.1", str(port))
        runs: dict[str, list[dict[str, dict[str, float]]]] = {tree: [] for tree in trees}
        try:
            # The trees take turns, in alternating order: the machine's drift hits both.
            for number in range(args.repeat):
                order = list(trees.items())
                for tree, src in order if number % 2 == 0 else reversed(order):
                    runs[tree].append(child_run(args, src, port))
        finally:
            for proc in (replica, primary):
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(15)
    report(runs)


if __name__ == "__main__":
    main()
