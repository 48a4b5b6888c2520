"""The parent's side of the load generator: start worker processes, command them, gather replies."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from hubbub.bench.loadgen import ConnSpec, worker_main
from hubbub.bench.wsclient import Endpoint


class LoadPool:
    """The parent's handle on a set of load generator processes."""

    def __init__(self, endpoint: Endpoint, workers: int, cpus: list[int]) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that may hold an event loop
        run = os.urandom(3).hex()  # in every message id: unique to this pool
        self.commands: list[Connection] = []
        self.replies: list[Connection] = []
        self.senders: list[int] = [0] * workers
        self.procs: list[mp.process.BaseProcess] = []
        for index in range(workers):
            command_in, command_out = ctx.Pipe(duplex=False)
            reply_in, reply_out = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=worker_main,
                args=(command_in, reply_out, endpoint, cpus, index, run),
                daemon=True,
            )
            proc.start()
            # Drop the parent's copies of the child's ends, so a dead worker reads as EOF.
            command_in.close()
            reply_out.close()
            self.commands.append(command_out)
            self.replies.append(reply_in)
            self.procs.append(proc)

    def __len__(self) -> int:
        return len(self.procs)

    def call(
        self, name: str, per_worker: list[dict[str, Any]], timeout: float = 120.0
    ) -> list[Any]:
        """Send one command to every worker (with its own arguments); gather the replies."""
        for pipe, args in zip(self.commands, per_worker, strict=True):
            pipe.send((name, args))
        replies = []
        deadline = time.monotonic() + timeout
        for pipe, proc in zip(self.replies, self.procs, strict=True):
            while not pipe.poll(1.0):
                if not proc.is_alive():
                    raise RuntimeError(f"load worker {proc.name} died ({proc.exitcode})")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"load worker {proc.name} did not answer {name!r}")
            try:
                reply = pipe.recv()
            except EOFError:
                raise RuntimeError(f"load worker {proc.name} died ({proc.exitcode})") from None
            if isinstance(reply, dict) and "error" in reply:
                raise RuntimeError(f"load worker {proc.name} failed {name!r}:\n{reply['error']}")
            replies.append(reply)
        return replies

    def broadcast(self, name: str, **args: Any) -> list[Any]:
        return self.call(name, [args] * len(self))

    def connect(self, specs: list[ConnSpec], concurrency: int) -> dict[str, Any]:
        """Open the connections round-robin over the workers; wait until all are joined."""
        shares = [specs[i :: len(self)] for i in range(len(self))]
        each = max(1, concurrency // len(self))
        start = time.monotonic()
        replies = self.call("connect", [{"specs": s, "concurrency": each} for s in shares], 300)
        failures: Counter[str] = Counter()
        for r in replies:
            failures.update(r["failures"])
        opened = sum(r["opened"] for r in replies)
        self.senders = [
            have + sum(spec.sender for spec in share)
            for have, share in zip(self.senders, shares, strict=True)
        ]
        return {"opened": opened, "failures": dict(failures), "s": time.monotonic() - start}

    def churn(self, specs: list[ConnSpec]) -> None:
        """Start one churner per spec, spread over the workers (`stop` ends them)."""
        self.call("churn", [{"specs": specs[i :: len(self)]} for i in range(len(self))])

    def set_rate(self, rate: float, window: int, body_size: int) -> None:
        """Send `rate` messages a second in total, shared by the workers by their senders."""
        total = sum(self.senders) or 1
        self.call(
            "rate",
            [
                {"rate": rate * n / total, "window": window, "body_size": body_size}
                for n in self.senders
            ],
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("close", [{}] * len(self), timeout=10)
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
