"""The server `hubbub bench` drives: its URL, its reachability, what can be read of it.

Any hubbub URL works (one node, HAProxy in front of a cluster): the HTTP base
is the URL itself and the WebSocket endpoint is derived from it. The server's
resident memory comes from its `/metrics` (`process_resident_memory_bytes`,
of whichever node answered) or, when it runs on this machine and its process
id is given, from `/proc`, which also gives its CPU time and CPUs.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from hubbub.bench import procstat
from hubbub.bench.wsclient import SOCKETIO_PATH, Dialect, Endpoint

DEFAULT_PORTS = {"http": 80, "https": 443}
SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


class BadTarget(ValueError):
    """The URL is malformed, or nothing that answers like the server is there."""


@dataclass(frozen=True)
class Target:
    """The HTTP base URL and the WebSocket endpoint of one server (or load balancer)."""

    base: str  # http(s)://host:port/prefix, no trailing slash
    endpoint: Endpoint

    @classmethod
    def parse(cls, url: str, dialect: Dialect = "hubbub", verify: bool = True) -> Target:
        parts = urllib.parse.urlsplit(url.strip())
        scheme = SCHEMES.get(parts.scheme.lower())
        if scheme is None or not parts.hostname:
            raise BadTarget(f"not an http:// or https:// URL: {url!r}")
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError as exc:
            raise BadTarget(f"bad port in {url!r}: {exc}") from None
        prefix = parts.path.rstrip("/")
        if prefix.endswith("/ws"):  # a WebSocket URL given as is: its base is the rest
            prefix = prefix[: -len("/ws")]
        path = prefix + (SOCKETIO_PATH if dialect == "socketio" else "/ws")
        host = parts.hostname
        netloc = f"[{host}]" if ":" in host else host
        endpoint = Endpoint(host, port, path, scheme == "https", verify, dialect)
        return cls(f"{scheme}://{netloc}:{port}{prefix}", endpoint)

    def _context(self) -> ssl.SSLContext | None:
        return self.endpoint.ssl_context()

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET base + path: (status, body); raises OSError when nothing answers."""
        request = urllib.request.Request(self.base + path, headers={"User-Agent": "hubbub-bench"})
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self._context()) as r:
                return int(r.status), r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def check(self, api: bool = True) -> None:
        """Fail with a clear BadTarget unless the server answers.

        With `api`, it must be a hubbub (GET /healthz answers 200); otherwise (a server
        without hubbub's HTTP API) its port must at least accept connections.
        """
        if not api:
            import socket

            try:
                socket.create_connection((self.endpoint.host, self.endpoint.port), 5).close()
            except OSError as exc:
                raise BadTarget(f"cannot reach {self.base}: {exc}") from None
            return
        try:
            status, _ = self.get("/healthz")
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            hint = " (--insecure skips the check)" if isinstance(reason, ssl.SSLError) else ""
            raise BadTarget(f"cannot reach {self.base}: {reason}{hint}") from None
        if status != 200:
            raise BadTarget(f"{self.base} is not a hubbub server: GET /healthz answered {status}")

    def metrics_rss_kib(self) -> int | None:
        """`process_resident_memory_bytes` from /metrics, in KiB; None when not readable."""
        with contextlib.suppress(OSError, ValueError):
            status, body = self.get("/metrics")
            if status == 200:
                for line in body.decode(errors="replace").splitlines():
                    if line.startswith("process_resident_memory_bytes "):
                        return int(float(line.split()[1])) // 1024
        return None


class Observed:
    """What a measurement reads of the server: its process when local and known, else nothing.

    Satisfies `measure.Server`: without a process id the server's CPU figures are 0
    and it counts as alive.
    """

    def __init__(self, target: Target, pid: int | None = None) -> None:
        self.target, self.pid = target, pid
        self.cpus: list[int] = sorted(os.sched_getaffinity(pid)) if pid else []

    def alive(self) -> bool:
        return self.pid is None or os.path.exists(f"/proc/{self.pid}")

    def cpu_seconds(self) -> float:
        return procstat.cpu_seconds(self.pid) if self.pid and self.alive() else 0.0

    def wait_seconds(self) -> float:
        return procstat.run_queue_wait_seconds(self.pid) if self.pid and self.alive() else 0.0

    def rss_kib(self) -> tuple[int | None, str]:
        """The server's resident memory and where it was read: /metrics first, then /proc."""
        if self.target.endpoint.dialect == "hubbub":
            rss = self.target.metrics_rss_kib()
            if rss is not None:
                return rss, "metrics"
        if self.pid and self.alive():
            return procstat.rss_kib(self.pid), "proc"
        return None, "unknown"
