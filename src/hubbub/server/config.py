"""The one configuration object: command-line flags with `HUBBUB_<FLAG>` environment twins."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data: Path = Path("./hubbub-data")
    database: str | None = None
    database_read: str | None = None
    redis: str | None = None
    redis_replicas: int = 0
    node_id: str = field(default_factory=_default_node_id)
    rate_limit: float = 20.0
    heartbeat: float = 15.0
    canary_interval: float = 5.0
    hello_timeout: float = 10.0
    replay_cap: int = 1000
    max_frame: int = 65536
    max_body: int = 4000
    send_buffer: int = 4 * 1024 * 1024
    token_ttl: int = 30 * 24 * 3600
    room_name_grace: int = 7 * 24 * 3600
    drain_timeout: float = 10.0
    drain_grace: float = 0.0
    permessage_deflate: bool = False
    reuse_port: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    allowed_origins: str = ""
    trusted_proxies: str = ""
    login_failures: int = 10
    login_window: float = 900.0
    frame_rate: float = 200.0
    history_rate: float = 10.0
    max_connections_per_user: int = 32
    max_connections_per_address: int = 256
    max_rooms_per_connection: int = 1000
    rooms_per_hour: int = 20
    header_timeout: float = 10.0
    abuse_penalty: float = 10.0
    log_level: str = "info"

    def check(self) -> None:
        """Refuse combinations of settings that cannot work (a ValueError says why)."""
        if self.reuse_port and not self.redis:
            # Each process would have its own in-process fan-out and presence: a message
            # sent through one would never reach the clients of the others.
            raise ValueError(
                "--reuse-port needs --redis (and --database postgresql://...): processes "
                "sharing a port must share fan-out and presence, which only the "
                "distributed engine does"
            )
        if not 0 <= self.canary_interval <= 3600:
            raise ValueError(
                f"--canary-interval must be 0 (off) to 3600 seconds, not {self.canary_interval:g}"
            )
        if bool(self.tls_cert) != bool(self.tls_key):
            # Half a TLS setup would serve plain HTTP where the operator meant HTTPS.
            raise ValueError("--tls-cert and --tls-key go together: give both or neither")
        from hubbub.server.edge.origins import OriginPolicy

        OriginPolicy.parse(self.allowed_origins)  # a ValueError names a bad entry

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{(self.data / 'hubbub.db').resolve()}"


_HELP = {
    "host": "address to listen on",
    "port": "port for HTTP and WebSocket",
    "data": "directory for local state (the SQLite database on the embedded default)",
    "database": "sqlite:///path (default: SQLite in --data) or postgresql://... (several "
    "hosts: postgresql://h1:5432,h2:5432/db?target_session_attrs=read-write)",
    "database_read": "postgresql://... of a streaming replica for history reads (reads "
    "it has not replayed yet go to the primary)",
    "redis": (
        "redis://... (one server), redis+sentinel://host:26379[,host:26379...]/MASTER[?db=N]"
        " (the primary Redis Sentinel names) or redis+cluster://host:port[,host:port...]"
        " (a Redis Cluster) for fan-out, presence and the shared message log"
        " (default: in-process)"
    ),
    "redis_replicas": "ack a message only once this many Redis replicas have it (WAIT)",
    "node_id": "this node's name in welcome frames, logs and metrics (default: host and pid)",
    "rate_limit": "send + typing frames per second per connection, bursts of twice that; 0 = off",
    "heartbeat": "seconds between WebSocket pings; silent clients are dropped",
    "canary_interval": "seconds between canaries a node sends itself through Redis pub/sub; "
    "none back for 3 intervals turns /readyz to 503 and rebuilds the subscription; 0 = off "
    "(with --redis only)",
    "hello_timeout": "seconds a new connection has to send hello",
    "replay_cap": "most messages replayed by a join with since",
    "max_frame": "largest WebSocket message in bytes (close 1009 above)",
    "max_body": "longest message body in characters (too_large above)",
    "send_buffer": "bytes queued per connection before a slow reader is closed with 1008",
    "token_ttl": "token lifetime in seconds",
    "room_name_grace": "seconds a deleted room's name stays reserved before a new room "
    "may take it (and the old room's rows are purged)",
    "drain_timeout": "seconds SIGTERM waits for acks in flight before closing",
    "drain_grace": "seconds a draining node keeps serving with /readyz at 503, so the load "
    "balancer takes it out of rotation before its clients reconnect",
    "permessage_deflate": "negotiate permessage-deflate (off by default)",
    "reuse_port": "listen with SO_REUSEPORT, so several nodes share --port and the kernel "
    "spreads connections over them (one node per core; needs --redis)",
    "tls_cert": "PEM certificate chain: serve https and wss (needs --tls-key)",
    "tls_key": "PEM private key for --tls-cert",
    "allowed_origins": "comma-separated origins (scheme://host[:port]) allowed to open "
    "WebSockets and make CORS calls besides the node's own; * allows any",
    "trusted_proxies": "comma-separated addresses or networks of load balancers whose "
    "X-Forwarded-For names the client (default: none, the peer address is the client)",
    "login_failures": "failed logins per account and per address within --login-window "
    "before logins are refused with 429 rate_limited; 0 = off",
    "login_window": "seconds over which failed logins are counted",
    "frame_rate": "WebSocket frames of all kinds per second per connection (bursts of "
    "as many); 0 = off",
    "history_rate": "history requests per second per connection and per user over HTTP "
    "(bursts of twice that); 0 = off",
    "max_connections_per_user": "open WebSockets per user on this node; 0 = no limit",
    "max_connections_per_address": "open WebSockets per client address on this node; 0 = no limit",
    "max_rooms_per_connection": "rooms one WebSocket may have joined at once; 0 = no limit",
    "rooms_per_hour": "rooms a user may create per hour; 0 = no limit",
    "header_timeout": "seconds a new connection has to send its request headers (slowloris)",
    "abuse_penalty": "seconds a user cut off for flooding or an oversized frame is refused "
    "at hello (an address, for an oversized frame before hello: at the upgrade); 0 = off",
    "log_level": "debug, info, warning or error",
}


def add_arguments(parser: argparse.ArgumentParser, only: set[str] | None = None) -> None:
    """Add every Config field as `--flag`, defaulting to `HUBBUB_FLAG` from the environment."""
    defaults = Config(node_id="")
    for f in fields(Config):
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        env = "HUBBUB_" + f.name.upper()
        default: Any = getattr(defaults, f.name)
        if f.type == "bool" or isinstance(default, bool):
            parser.add_argument(
                flag,
                action="store_true",
                default=os.environ.get(env, "").lower() in {"1", "true", "yes", "on"},
                help=f"{_HELP[f.name]} [env {env}]",
            )
            continue
        kind: Any = type(default) if default not in (None, "") else str
        if f.name == "data":
            kind = Path
        parser.add_argument(
            flag,
            type=kind,
            default=os.environ.get(env, default) if f.name != "node_id" else os.environ.get(env),
            help=f"{_HELP[f.name]} [env {env}]",
        )


def from_namespace(ns: argparse.Namespace) -> Config:
    values: dict[str, Any] = {}
    for f in fields(Config):
        if not hasattr(ns, f.name):
            continue
        value = getattr(ns, f.name)
        if value is None and f.name == "node_id":
            continue
        default = getattr(Config, f.name, None)
        if isinstance(value, str) and isinstance(default, (int, float)) and f.name != "node_id":
            value = type(default)(value)
        if f.name == "data":
            value = Path(value)
        values[f.name] = value
    return Config(**values)
