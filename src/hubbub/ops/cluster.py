"""`hubbub cluster`: N nodes, the worker and HAProxy on one machine, started and stopped by PID.

The HAProxy configuration comes from one template (`hubbub.ops.haproxy`): `hubbub cluster`
renders it for its nodes on 127.0.0.1, and deploy/haproxy.cfg is the same template rendered
for production (`hubbub cluster --print-haproxy-config`). The `Cluster` class is the
importable API the tests and chaos tests use: start, stop, kill and restart single nodes.
The processes it is made of (nodes, HAProxy, a private PostgreSQL and redis-server) are
`hubbub.ops.processes`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hubbub.ops.ha import NODE_ARGS as HA_NODE_ARGS
from hubbub.ops.ha import DataTier
from hubbub.ops.haproxy import (
    DRAIN_GRACE,
    HAProxyLayout,
    production_haproxy_config,
    render_haproxy_config,
)
from hubbub.ops.processes import (
    DRAIN_TIMEOUT,
    HUBBUB,
    NodeProcess,
    PrivatePostgres,
    PrivateRedis,
    free_port,
    http_status,
    reap,
    signal_and_reap,
    spawn,
    spawn_haproxy,
    wait_for,
)

# --- the cluster ----------------------------------------------------------------------------


@dataclass
class Cluster:
    """N `hubbub serve` nodes on one PostgreSQL (and Redis), the worker, and HAProxy in front.

    `database`/`redis` are URLs of running servers; `private=True` starts a PostgreSQL and a
    redis-server of its own instead and removes them at `stop()`. `data` holds the nodes'
    directories, logs and the generated haproxy.cfg (a temp dir, removed at stop, if None).
    """

    size: int = 3
    database: str | None = None
    redis: str | None = None
    private: bool = False
    # Private servers with no single point of failure (hubbub.ops.ha): a Sentinel-managed
    # Redis with two replicas, and PostgreSQL with a synchronous standby.
    ha: bool = False
    port: int = 0  # HAProxy's port; 0 picks a free one
    host: str = "127.0.0.1"
    data: Path | None = None
    drain_grace: float = DRAIN_GRACE
    node_args: Sequence[str] = ()
    # Arguments for one node only (by name, "node1"...), after the shared ones: the last
    # --redis or --database given wins (a node that reaches the data tier another way).
    node_args_for: Mapping[str, Sequence[str]] = field(default_factory=dict)
    worker: bool | None = None  # None: with Redis, when `hubbub worker` exists
    # A PEM with the certificate chain and its key: HAProxy serves https/wss on `port` and
    # redirects plain HTTP on `http_port` to it; the nodes behind it stay plain.
    tls_cert: str | None = None
    say: Callable[[str], None] = lambda line: None
    nodes: list[NodeProcess] = field(init=False)
    stats_port: int = field(init=False)

    def __post_init__(self) -> None:
        self.private = self.private or self.ha
        if self.private == bool(self.database) or (self.private and self.redis):
            raise ValueError(
                "give --database postgresql://... (and --redis redis://...) or --private"
            )
        if self.redis:
            from hubbub.engine.redis.client import check_url

            check_url(self.redis)  # before any process starts: a ValueError in sentences
        self._temp_data = self.data is None
        self.workdir = self.data or Path(tempfile.mkdtemp(prefix="hubbub-cluster-"))
        self.port = self.port or free_port()
        self.stats_port = free_port()
        self.http_port = free_port() if self.tls_cert else self.port
        self.nodes = [
            NodeProcess(f"node{i}", free_port(), self.workdir / f"node{i}", [])
            for i in range(1, self.size + 1)
        ]
        self.worker_proc: subprocess.Popen[bytes] | None = None
        self.worker_metrics_port = free_port()
        self.haproxy_proc: subprocess.Popen[bytes] | None = None
        self.private_redis: PrivateRedis | None = None
        self.private_postgres: PrivatePostgres | None = None
        self.private_ha: DataTier | None = None
        self._backend_urls: tuple[str, str | None] = ("", None)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_cert else 'http'}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls_cert else 'ws'}://{self.host}:{self.port}/ws"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.stats_port}/stats"

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        """Start everything and wait until every node is ready and in HAProxy's rotation."""
        try:
            database, redis = self._backend_urls = self._backends(timeout)
            from hubbub.engine.migrations import upgrade

            upgrade(database)  # once, before N nodes would race to migrate it
            args = ["--database", database, "--drain-grace", f"{self.drain_grace:g}"]
            args += ["--redis", redis] if redis else []
            args += HA_NODE_ARGS if self.ha else ()
            for node in self.nodes:
                node.data.mkdir(parents=True, exist_ok=True)
                node.args = [*args, *self.node_args, *self.node_args_for.get(node.name, ())]
                node.spawn()
            for node in self.nodes:
                node.wait_ready(timeout)
            self._start_worker(database, redis)
            self._start_haproxy(timeout)
            if self.worker_proc is not None and self.worker_proc.poll() is not None:
                log = (self.workdir / "worker.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"hubbub worker exited:\n{log}")
        except BaseException:
            self.stop()
            raise

    def _backends(self, timeout: float) -> tuple[str, str | None]:
        if not self.private:
            assert self.database is not None
            return self.database, self.redis
        if self.ha:
            self.private_ha = DataTier()
            self.private_ha.start(timeout)
            return self.private_ha.database_url, self.private_ha.redis_url
        self.private_postgres = PrivatePostgres()
        self.private_redis = PrivateRedis()
        self.private_postgres.start(timeout)
        self.private_redis.start(timeout)
        return self.private_postgres.url, self.private_redis.url

    def kill_worker(self, sig: int = signal.SIGKILL) -> None:
        """Signal the worker (kill -9 by default) and reap it."""
        signal_and_reap(self.worker_proc, sig, DRAIN_TIMEOUT)

    def restart_worker(self) -> None:
        """Start the worker again on the cluster's backends (after `kill_worker`)."""
        database, redis = self._backend_urls
        self._start_worker(database, redis)

    def _start_worker(self, database: str, redis: str | None) -> None:
        if not (self.worker if self.worker is not None else redis is not None):
            return
        cmd = [*HUBBUB, "worker", "--database", database, "--node-id", "worker"]
        cmd += ["--redis", redis] if redis else []
        cmd += ["--host", "127.0.0.1", "--metrics-port", str(self.worker_metrics_port)]
        self.worker_proc = spawn(cmd, self.workdir / "worker.log")

    def haproxy_config(self) -> str:
        """This cluster's HAProxy configuration: the production template on 127.0.0.1."""
        servers = tuple((node.name, f"127.0.0.1:{node.port}") for node in self.nodes)
        layout = HAProxyLayout(
            bind=f"{self.host}:{self.http_port}",
            servers=servers,
            stats_bind=f"127.0.0.1:{self.stats_port}",
            stats_socket=str(self.workdir / "haproxy.sock"),
            tls_cert=self.tls_cert,
            tls_bind=f"{self.host}:{self.port}" if self.tls_cert else None,
        )
        return render_haproxy_config(layout)

    def _start_haproxy(self, timeout: float) -> None:
        config = self.workdir / "haproxy.cfg"
        config.write_text(self.haproxy_config())
        log = self.workdir / "haproxy.log"
        self.haproxy_proc = spawn_haproxy(config, log)

        def routing() -> bool:
            assert self.haproxy_proc is not None
            if self.haproxy_proc.poll() is not None:
                raise RuntimeError(f"haproxy exited:\n{log.read_text()[-3000:]}")
            states = self.haproxy_states()
            return all(states.get(node.name) == "UP" for node in self.nodes)

        wait_for(routing, timeout, "HAProxy does not route to every node", log)
        wait_for(lambda: http_status(self.url + "/healthz") == 200, timeout, "no answer", log)

    def haproxy_states(self) -> dict[str, str]:
        """Each node's state in HAProxy's backend: UP, DOWN, or a transition like "UP 1/2"
        (up, one failed check). Empty while HAProxy does not answer."""
        try:
            with urllib.request.urlopen(self.stats_url + ";csv", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return {}
        rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == "nodes" and row["svname"] not in ("BACKEND", "FRONTEND")
        }

    def in_rotation(self, node: NodeProcess | str) -> bool:
        """Whether HAProxy sends new connections to `node` (UP, even if a check just failed)."""
        return self.haproxy_states().get(self.node(node).name, "").startswith("UP")

    def wait_rotation(self, node: NodeProcess | str, expected: bool, timeout: float = 10.0) -> None:
        """Wait until HAProxy has taken `node` out of rotation (False) or back in (True)."""
        target = self.node(node)
        wait_for(
            lambda: self.in_rotation(target) == expected,
            timeout,
            f"{target.name} is {'not ' if expected else ''}in HAProxy's rotation",
            self.workdir / "haproxy.log",
        )

    def node(self, node: NodeProcess | str) -> NodeProcess:
        if isinstance(node, NodeProcess):
            return node
        for candidate in self.nodes:
            if candidate.name == node:
                return candidate
        raise KeyError(node)

    def kill(self, node: NodeProcess | str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to a node; after SIGKILL, also wait until it is gone."""
        target = self.node(node)
        target.signal(sig)
        if sig == signal.SIGKILL:
            self.wait_exit(target, 10)

    def wait_exit(self, node: NodeProcess | str, timeout: float) -> int:
        """A node's exit status, once it has exited (a drain takes grace + a few seconds)."""
        proc = self.node(node).proc
        assert proc is not None
        return proc.wait(timeout)

    def restart(self, node: NodeProcess | str, timeout: float = 30.0) -> None:
        """Stop a node if it runs (SIGTERM: a drain), start it on the same port, wait ready."""
        target = self.node(node)
        if target.alive:
            signal_and_reap(target.proc, signal.SIGTERM, self._drain_wait)
        target.spawn()
        target.wait_ready(timeout)

    @property
    def _drain_wait(self) -> float:
        """How long a node's drain may take before it is killed."""
        return self.drain_grace + DRAIN_TIMEOUT + 10

    def stop(self) -> None:
        """Stop everything by PID: the nodes first (SIGTERM, all at once: acks in flight go
        out through HAProxy), then the worker, HAProxy and the private servers; remove temp
        dirs."""
        draining = [node for node in self.nodes if node.alive]
        for node in draining:
            node.signal(signal.SIGTERM)
        for node in draining:  # all leave at once: a second SIGTERM cuts the grace short
            with contextlib.suppress(RuntimeError):
                wait_for(node.not_ready, 2.0, "", None)
            node.signal(signal.SIGTERM)
        for node in self.nodes:
            reap(node.proc, self._drain_wait)
        signal_and_reap(self.worker_proc, signal.SIGTERM, 15)
        signal_and_reap(self.haproxy_proc, signal.SIGTERM, 10)
        for private in (self.private_redis, self.private_postgres, self.private_ha):
            if private is not None:
                private.stop()
        if self._temp_data:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def processes(self) -> dict[str, int]:
        """The PIDs of everything this cluster started and still runs, by name."""
        procs: dict[str, subprocess.Popen[bytes] | None] = {n.name: n.proc for n in self.nodes}
        procs["worker"] = self.worker_proc
        procs["haproxy"] = self.haproxy_proc
        procs["redis"] = self.private_redis.proc if self.private_redis else None
        procs["postgres"] = self.private_postgres.proc if self.private_postgres else None
        running = {k: p.pid for k, p in procs.items() if p is not None and p.poll() is None}
        return running | (self.private_ha.processes() if self.private_ha else {})


# --- the command ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=3, help="how many `hubbub serve` nodes")
    parser.add_argument("--host", default="127.0.0.1", help="address HAProxy listens on")
    parser.add_argument("--port", type=int, default=8080, help="HAProxy's port, the one URL")
    parser.add_argument("--database", help="postgresql://... shared by every node")
    parser.add_argument(
        "--redis",
        help="redis://..., redis+sentinel://host:26379[,...]/MASTER or "
        "redis+cluster://host:port[,host:port...] for fan-out, presence and the log",
    )
    parser.add_argument(
        "--private",
        action="store_true",
        help="start a PostgreSQL and a redis-server of the cluster's own, removed at exit",
    )
    parser.add_argument(
        "--ha",
        action="store_true",
        help="like --private, with no single point of failure: Redis with two replicas and "
        "three sentinels, PostgreSQL with a synchronous standby; nodes ack after a replica",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("./hubbub-cluster"),
        help="nodes' directories, logs and the generated haproxy.cfg",
    )
    parser.add_argument(
        "--drain-grace",
        type=float,
        default=DRAIN_GRACE,
        help="each node's --drain-grace, matched to HAProxy's health checks",
    )
    parser.add_argument(
        "--tls-cert",
        help="PEM with the certificate chain and its key: HAProxy serves https and wss on "
        "--port (TLS termination) and redirects plain HTTP on another port to it",
    )
    parser.add_argument(
        "--print-haproxy-config",
        action="store_true",
        help="print the production HAProxy configuration (deploy/haproxy.cfg) and exit",
    )
    parser.add_argument("node_args", nargs="*", help="flags after `--` go to every `hubbub serve`")


class _Interrupted(Exception):
    """SIGTERM or SIGINT arrived: stop the cluster."""


def _interrupt(signum: int, frame: object) -> None:
    raise _Interrupted


def run(args: argparse.Namespace, out: IO[str] = sys.stdout) -> int:
    """`hubbub cluster`: start, print the URL, serve until SIGINT/SIGTERM, stop everything."""
    if args.print_haproxy_config:
        out.write(production_haproxy_config())
        return 0

    def say(line: str) -> None:
        print(f"hubbub cluster: {line}", file=out, flush=True)

    cluster = Cluster(
        args.nodes,
        database=args.database,
        redis=args.redis,
        private=args.private,
        ha=args.ha,
        port=args.port,
        host=args.host,
        data=args.data,
        drain_grace=args.drain_grace,
        node_args=args.node_args,
        tls_cert=args.tls_cert,
        say=say,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    try:
        cluster.start()
        _announce(cluster, say)
        _watch(cluster, say)
    except _Interrupted:
        pass
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # the stop runs to its end
        say("stopping (nodes drain first)")
        cluster.stop()
        say("stopped")
    return 0


def _announce(cluster: Cluster, say: Callable[[str], None]) -> None:
    say(f"serving on {cluster.url} (WebSocket {cluster.ws_url})")
    if cluster.tls_cert:
        say(f"plain HTTP on http://{cluster.host}:{cluster.http_port} redirects to it")
    for node in cluster.nodes:
        say(f"{node.name}: {node.url} pid {node.pid}, log {node.log_path}")
    if cluster.haproxy_proc is not None:
        say(f"HAProxy: pid {cluster.haproxy_proc.pid}, stats {cluster.stats_url}")
    if cluster.worker_proc is not None:
        metrics = f"http://127.0.0.1:{cluster.worker_metrics_port}/metrics"
        say(f"worker: pid {cluster.worker_proc.pid}, metrics {metrics}")
    for label, private in (
        ("PostgreSQL", cluster.private_postgres),
        ("Redis", cluster.private_redis),
    ):
        if private is not None and private.proc is not None:
            say(f"private {label}: {private.url} pid {private.proc.pid}, data {private.directory}")
    if cluster.private_ha is not None:
        tier = cluster.private_ha
        say(f"Redis Sentinel: {tier.redis_url}, data {tier.redis.directory}")
        say(f"PostgreSQL primary and standby: {tier.database_url}")
        pids = ", ".join(f"{name} {pid}" for name, pid in tier.processes().items())
        say(f"data tier pids: {pids}")
    say(f"configuration and logs in {cluster.workdir}")
    say("Ctrl-C stops everything")


def _watch(cluster: Cluster, say: Callable[[str], None]) -> None:
    """Run until interrupted, telling once about each process that exits on its own."""
    told: set[str] = set()
    while True:
        running = cluster.processes()
        for node in cluster.nodes:
            if node.name not in running and node.name not in told:
                told.add(node.name)
                say(f"{node.name} exited with {node.proc.poll() if node.proc else None}")
        if "haproxy" not in running and "haproxy" not in told:
            told.add("haproxy")
            say("HAProxy exited: the cluster is unreachable")
        time.sleep(0.5)
