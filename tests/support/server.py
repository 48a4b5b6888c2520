"""A real `hubbub serve` process on a free port, and the settings of the shared servers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HUBBUB = [sys.executable, "-m", "hubbub"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One `hubbub serve` subprocess; restartable on the same data directory."""

    def __init__(
        self, data: Path, env: dict[str, str] | None = None, args: list[str] | None = None
    ):
        self.data = data
        self.port = free_port()
        self.extra_env = env or {}
        self.extra_args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def command(self) -> list[str]:
        cmd = [*HUBBUB, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        return [*cmd, "--data", str(self.data), *self.extra_args]

    def spawn(self) -> None:
        """Start the process without waiting for it (`wait_ready` waits)."""
        env = dict(os.environ)
        env.update(self.extra_env)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def start(self, timeout: float = 20.0) -> None:
        self.spawn()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).split(b" ", 2)[1:2] == [b"200"]:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def audit_events(self) -> list[dict[str, Any]]:
        """The audit log's lines in the node's log so far (docs/security.md)."""
        lines = [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]
        return [entry for entry in lines if entry.get("logger") == "hubbub.audit"]

    def kill(self) -> None:
        """kill -9: no chance to flush anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


# The engines the protocol suite runs against: every test of the shared server runs once
# per engine, with the engine in its id (`test_x[sqlite]`, `test_x[postgres]`, `test_x[redis]`).
SERVER_ENGINES = ("sqlite", "postgres", "redis")
# The shared servers carry thousands of tests through a few pooled users, all from one
# address: the abuse limits that count per user or per address over time (history calls,
# rooms created per hour, connections, the penalty after a flood, failed logins from the
# address: wrong passwords, logins of deleted accounts) would trip on the suite, not on an
# abuser. The spec's per-connection rate limits stay on; the others have their own tests on
# their own nodes (tests/integration/test_abuse_limits.py, test_login_throttle.py).
SHARED_ENV = {
    "HUBBUB_HISTORY_RATE": "0",
    "HUBBUB_ROOMS_PER_HOUR": "0",
    "HUBBUB_MAX_CONNECTIONS_PER_USER": "0",
    "HUBBUB_MAX_CONNECTIONS_PER_ADDRESS": "0",
    "HUBBUB_ABUSE_PENALTY": "0",
    "HUBBUB_LOGIN_FAILURES": "0",
}
