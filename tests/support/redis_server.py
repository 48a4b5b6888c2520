"""A private redis-server for tests: a free port, a temp directory, stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from support.needs import executable


def require_redis_server() -> str:
    """The redis-server executable; without one a test skips, or fails when CI is set."""
    return executable("redis-server", "apt-get install redis-server")


# What the distributed engine is documented to need for "acked means durable" on Redis.
REDIS_DURABLE = ("--appendonly", "yes", "--appendfsync", "always")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on 127.0.0.1; restartable on the same directory."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.executable = require_redis_server()
        self.directory = directory
        self.args = list(args)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "redis.log"

    def start(self, timeout: float = 20.0) -> None:
        """Start on a fresh free port (the first start) or on the same port (a restart)."""
        for _ in range(5):  # another process may take the free port before redis binds it
            port = self.port or free_port()
            cmd = [self.executable, "--port", str(port), "--bind", "127.0.0.1"]
            cmd += ["--dir", str(self.directory), "--save", "", "--daemonize", "no"]
            cmd += ["--logfile", str(self.log_path), *self.args]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            if self._wait_ready(port, timeout):
                self.port = port
                return
        raise RuntimeError(f"redis-server did not start:\n{self.log()}")

    def _wait_ready(self, port: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):  # not -LOADING: the AOF is read
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **options: Any) -> Redis:
        """A client that reports a lost server at once instead of retrying."""
        options.setdefault("retry", Retry(NoBackoff(), 0))
        return Redis(host="127.0.0.1", port=self.port, **options)

    def kill(self) -> None:
        """kill -9: nothing is flushed beyond what was already fsynced."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
