"""A private Redis Sentinel group: a primary, replicas and sentinels on free ports of 127.0.0.1.

Every process is a `redis-server` with its own directory and config file (a sentinel runs
`redis-server sentinel.conf --sentinel`), started as our child and stopped by its PID. The
config files are real ones, so what Redis and Sentinel rewrite into them (a promotion, a new
`replicaof`, the sentinels' view of the group) survives a restart, as it would under a
process supervisor. Sentinel timings are short (down after 2 s) so that a failover takes
a few seconds; every wait polls a condition with a deadline.

`hubbub cluster --ha` runs one; so do the tests (tests/support/redis_sentinel.py finds the
`redis-server` binary their way: a skip, or a failure under CI, without one).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

POLL = 0.05  # seconds between two looks at a condition


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL)


class RedisProcess:
    """One redis-server (a data node, or a sentinel) with its own config file."""

    def __init__(
        self, executable: str, directory: Path, lines: list[str], sentinel: bool = False
    ) -> None:
        self.executable = executable
        self.directory = directory
        self.lines = lines
        self.sentinel = sentinel
        self.name = "sentinel" if sentinel else "redis"
        self.config = directory / f"{self.name}.conf"
        self.log_path = directory / f"{self.name}.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """The first start writes the config file on a free port (retried if another
        process takes the port first); later starts read the file back as it is now."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(1 if self.port else 5):
            if not self.port or not self.config.exists():
                port = self.port or free_port()
                head = [f"port {port}", "bind 127.0.0.1", f'dir "{self.directory}"']
                head += [f'logfile "{self.log_path}"', "daemonize no"]
                self.config.write_text("\n".join([*head, *self.lines]) + "\n")
            else:
                port = self.port
            cmd = [self.executable, str(self.config), *(["--sentinel"] if self.sentinel else [])]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            if self._wait_pong(port, timeout):
                self.port = port
                return
            self.config.unlink(missing_ok=True)  # a lost port race: another port next time
        raise RuntimeError(f"{self.name} did not start:\n{self.log()[-3000:]}")

    def _wait_pong(self, port: int, timeout: float) -> bool:
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
        raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.log()[-3000:]}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, timeout: float = 2.0) -> redis.Redis:
        """A synchronous client (decoded replies) that fails at once, without retries."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
        )

    def query(self, *command: Any) -> Any:
        """One command on a fresh connection; None if the process does not answer."""
        client = self.client()
        try:
            return client.execute_command(*command)  # type: ignore[no-untyped-call]
        except (redis.ConnectionError, redis.TimeoutError):
            return None
        finally:
            client.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9: nothing is flushed beyond what was already written (fsynced, with AOF)."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def signal(self, sig: int) -> None:
        """Send `sig` (SIGSTOP and SIGCONT pause and resume) if the process runs."""
        if self.alive:
            assert self.proc is not None
            os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def replication(server: RedisProcess) -> dict[str, Any]:
    """INFO replication of `server` ({} if it does not answer)."""
    info = server.query("INFO", "replication")
    return info if isinstance(info, dict) else {}


class SentinelGroup:
    """A primary (`servers[0]` at first), `replicas` replicas and `sentinels` sentinels.

    `durable` runs every data node with `appendonly yes`, `appendfsync always`;
    `min_replicas_to_write` sets Redis's option of that name on every data node (it only
    matters on the primary, and any of them may become it)."""

    def __init__(
        self,
        directory: Path,
        *,
        master: str = "hubbub",
        replicas: int = 2,
        sentinels: int = 3,
        quorum: int = 2,
        durable: bool = True,
        min_replicas_to_write: int = 0,
        down_after_ms: int = 2000,
        failover_timeout_ms: int = 5000,
        executable: str | None = None,
    ) -> None:
        if executable is None:
            executable = shutil.which("redis-server")
            if executable is None:
                raise RuntimeError("a Redis Sentinel group needs redis-server on PATH")
        self.executable = executable
        self.directory = directory
        self.master = master
        self.quorum = quorum
        self.sentinel_timing = (down_after_ms, failover_timeout_ms)
        data = ['save ""', "repl-diskless-sync-delay 0", "min-replicas-max-lag 5"]
        data += [f"min-replicas-to-write {min_replicas_to_write}"]
        data += ["appendonly yes", "appendfsync always"] if durable else ["appendonly no"]
        self.servers = [
            RedisProcess(self.executable, directory / f"redis{number}", list(data))
            for number in range(1 + replicas)
        ]
        self.sentinels = [
            RedisProcess(self.executable, directory / f"sentinel{number}", [], sentinel=True)
            for number in range(sentinels)
        ]

    @property
    def url(self) -> str:
        """The engine's `--redis` URL of this group: every sentinel, and the master's name."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.master}"

    # Starting and stopping

    def start(self, timeout: float = 30.0) -> None:
        """Start the primary, its replicas (synced), then the sentinels; wait until every
        sentinel knows every replica and every other sentinel (a failover can then start)."""
        try:
            primary, *replicas = self.servers
            primary.start(timeout)
            for server in replicas:
                server.lines.append(f"replicaof 127.0.0.1 {primary.port}")
                server.start(timeout)
            self.wait_replicated(primary, len(replicas), timeout)
            down_after, failover_timeout = self.sentinel_timing
            for sentinel in self.sentinels:
                sentinel.lines += [
                    f"sentinel monitor {self.master} 127.0.0.1 {primary.port} {self.quorum}",
                    f"sentinel down-after-milliseconds {self.master} {down_after}",
                    f"sentinel failover-timeout {self.master} {failover_timeout}",
                    f"sentinel parallel-syncs {self.master} {len(replicas)}",
                ]
                sentinel.start(timeout)
            self.wait_settled(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """The sentinels first (no failover while the data nodes go down), then the rest."""
        for process in [*self.sentinels, *self.servers]:
            process.stop()

    # What the sentinels say

    def master_address(self) -> tuple[str, int] | None:
        """The primary's address if every live sentinel names the same one, else None.

        Read from `SENTINEL MASTER`, as redis-py's discovery does (`SENTINEL MASTERS`), and
        only once no failover is in progress: during one, `GET-MASTER-ADDR-BY-NAME` already
        answers the promoted replica while `SENTINEL MASTER` still names the old primary."""
        named = set()
        for sentinel in self.sentinels:
            if not sentinel.alive:
                continue
            state = sentinel.query("SENTINEL MASTER", self.master)
            if not state or "failover_in_progress" in str(state.get("flags", "")):
                return None
            named.add((str(state["ip"]), int(state["port"])))
        return named.pop() if len(named) == 1 else None

    def primary(self) -> RedisProcess:
        """The data node the sentinels name as primary (RuntimeError if they disagree)."""
        address = self.master_address()
        for server in self.servers:
            if address == ("127.0.0.1", server.port):
                return server
        raise RuntimeError(f"the sentinels name no single primary of this group: {address}")

    def _settled(self) -> bool:
        address = self.master_address()
        live = [s for s in self.servers if s.alive and ("127.0.0.1", s.port) != address]
        others = sum(s.alive for s in self.sentinels) - 1
        for sentinel in self.sentinels:
            if not sentinel.alive:
                continue
            state = sentinel.query("SENTINEL MASTER", self.master)
            known = sentinel.query("SENTINEL SLAVES", self.master)
            if not state or known is None or "s_down" in str(state.get("flags", "")):
                return False
            up = {int(r["port"]) for r in known if "s_down" not in str(r.get("flags", ""))}
            if up != {s.port for s in live} or int(state["num-other-sentinels"]) < others:
                return False
        return address is not None

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Until every live sentinel agrees on the primary, sees every live data node as
        its replica, and knows every other live sentinel."""
        wait_for(self._settled, timeout, f"the sentinels of {self.master} to settle")

    # Replication

    def wait_replicated(self, primary: RedisProcess, count: int, timeout: float = 30.0) -> None:
        """Until `primary` is a primary with `count` replicas online."""

        def online() -> bool:
            info = replication(primary)
            states = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            online = [s for s in states if s.get("state") == "online"]
            return info.get("role") == "master" and len(online) >= count

        wait_for(online, timeout, f"{count} replicas online on 127.0.0.1:{primary.port}")

    def wait_replica_of(self, server: RedisProcess, primary: RedisProcess, timeout: float) -> None:
        """Until `server` replicates `primary` with its link up."""

        def following() -> bool:
            info = replication(server)
            return (
                info.get("role") == "slave"
                and info.get("master_port") == primary.port
                and info.get("master_link_status") == "up"
            )

        wait_for(following, timeout, f"127.0.0.1:{server.port} to replicate {primary.port}")

    # Faults

    def kill_primary(self) -> RedisProcess:
        """kill -9 of the current primary; returns it (to restart it, say)."""
        primary = self.primary()
        primary.kill()
        return primary

    def wait_failover(self, old: RedisProcess, timeout: float = 30.0) -> RedisProcess:
        """Until every live sentinel names a primary other than `old` and that data node
        says it is one; returns it."""
        found: list[RedisProcess] = []

        def promoted() -> bool:
            address = self.master_address()
            if address is None or address == ("127.0.0.1", old.port):
                return False
            server = self.primary()
            if replication(server).get("role") != "master":
                return False
            found.append(server)
            return True

        wait_for(promoted, timeout, f"a failover away from 127.0.0.1:{old.port}")
        return found[-1]

    def failover(self, timeout: float = 30.0) -> RedisProcess:
        """`SENTINEL FAILOVER` (a planned switch, the old primary alive); returns the new one."""
        old = self.primary()
        live = next(s for s in self.sentinels if s.alive)
        with contextlib.closing(live.client()) as client:
            client.execute_command("SENTINEL", "FAILOVER", self.master)  # type: ignore[no-untyped-call]
        return self.wait_failover(old, timeout)
