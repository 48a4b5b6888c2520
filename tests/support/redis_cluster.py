"""A private 3-master Redis Cluster for tests: redis-server processes on free ports, each in
its own temp directory, joined with `redis-cli --cluster create`, stopped by their PIDs."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from support.needs import executable, missing
from support.redis_server import REDIS_DURABLE, RedisServer, require_redis_server


def require_cluster_cli() -> str:
    """redis-cli, which creates the cluster; and redis-server itself."""
    require_redis_server()
    return executable("redis-cli", "it creates the Redis Cluster: apt-get install redis-tools")


def _info(port: int, section: str) -> str:
    """One `CLUSTER INFO`-style reply over a raw socket (RESP bulk string)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
        s.sendall(f"CLUSTER {section}\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            header, _, rest = data.partition(b"\r\n")
            if header.startswith(b"$") and len(rest) >= int(header[1:]):
                break
            if header.startswith(b"-"):
                break
    return data.decode(errors="replace")


class RedisCluster:
    """`masters` redis-server processes in cluster mode, all slots assigned, no replicas."""

    def __init__(self, directory: Path, masters: int = 3, durable: bool = True) -> None:
        self.cli = require_cluster_cli()
        self.servers: list[RedisServer] = []
        for number in range(masters):
            path = directory / f"node{number}"
            path.mkdir(parents=True, exist_ok=True)
            args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            args += ["--cluster-node-timeout", "2000"]
            self.servers.append(RedisServer(path, *args, *(REDIS_DURABLE if durable else ())))

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    @property
    def url(self) -> str:
        """The engine's URL of the cluster: every master as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self, timeout: float = 30.0) -> None:
        try:
            for server in self.servers:
                self._start_node(server)
            nodes = [f"127.0.0.1:{port}" for port in self.ports]
            create = [self.cli, "--cluster", "create", *nodes, "--cluster-replicas", "0"]
            subprocess.run(
                [*create, "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
            self._wait_ok(timeout)
        except BaseException:
            self.stop()
            raise

    def _start_node(self, server: RedisServer) -> None:
        """Start one node; a redis-server built without cluster support skips the test."""
        try:
            server.start()
        except RuntimeError:
            if "cluster" in server.log().lower():
                missing(f"redis-server has no cluster support:\n{server.log()[-500:]}")
            raise
        if "cluster support disabled" in _info(server.port, "INFO"):
            missing("redis-server has no cluster support")

    def _wait_ok(self, timeout: float) -> None:
        """Until every node says `cluster_state:ok` and knows every master."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [_info(port, "INFO") for port in self.ports]
            known = [f"cluster_known_nodes:{len(self.ports)}" in s for s in states]
            if all("cluster_state:ok" in s for s in states) and all(known):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the Redis Cluster did not reach cluster_state:ok in {timeout}s")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
