"""Prometheus metrics of a node or worker (one registry per process, served at /metrics).

Every name here is part of the operations contract: deploy/prometheus/alerts.yml and
deploy/grafana/hubbub.json query them, and docs/operations.md says what each means.
A unit test checks that every `hubbub_*` name those files use is defined here.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from hubbub import __version__

BUILD_INFO = Gauge(
    "hubbub_build_info", "Always 1: the version and node id of this process", ["version", "node"]
)

CONNECTIONS = Gauge("hubbub_connections", "Open, authenticated WebSocket connections")
FRAMES_IN = Counter("hubbub_frames_in_total", "WebSocket frames received after hello")
FRAMES_OUT = Counter("hubbub_frames_out_total", "WebSocket frames written to clients")
ACKS = Counter("hubbub_acks_total", "Messages acknowledged (durable)")
ACK_LATENCY = Histogram(
    "hubbub_ack_latency_seconds",
    "From a send frame to its durable ack",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ERRORS = Counter("hubbub_errors_total", "Error frames sent to clients, by code", ["code"])
SLOW_CONSUMERS = Counter("hubbub_slow_consumers_total", "Connections cut off for not reading")
SLOW_REQUESTS = Counter(
    "hubbub_slow_requests_total", "Connections closed for not sending a request in time"
)
HTTP_REQUESTS = Counter("hubbub_http_requests_total", "HTTP API requests", ["status"])
READY = Gauge("hubbub_ready", "1 while the node takes new clients")
ROOMS = Gauge("hubbub_rooms", "Rooms with at least one connection of this node joined")
FANOUT_LATENCY = Histogram(
    "hubbub_fanout_latency_seconds",
    "From a message's ts (assigned by the log) to its frames being queued on this node",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BACKEND_ERRORS = Counter(
    "hubbub_backend_errors_total", "Calls to a backend that failed (redis, postgres)", ["backend"]
)
GAP_FILLS = Counter(
    "hubbub_gap_fills_total", "Seq gaps of a room read from the log before delivering further"
)
GAP_FILLED = Counter("hubbub_gap_filled_messages_total", "Messages delivered by gap fills")
CANARY_AGE = Gauge(
    "hubbub_fanout_canary_age_seconds",
    "Seconds since this node's own canary last came back through Redis pub/sub",
)
CANARY_FAILURES = Counter(
    "hubbub_fanout_canary_failures_total",
    "Times no canary came back for 3 intervals and the subscription was rebuilt",
)
PRESENCE_EXPIRED = Counter(
    "hubbub_presence_expired_nodes_total", "Dead nodes whose presence entries were expired"
)
WORKER_LAG = Gauge(
    "hubbub_worker_lag_messages", "Messages in the Redis log not yet in PostgreSQL (last pass)"
)
WORKER_PERSISTED = Counter(
    "hubbub_worker_persisted_total", "Messages moved from the Redis log into PostgreSQL"
)
WORKER_BATCH = Histogram(
    "hubbub_worker_batch_seconds",
    "Time to move one batch from the Redis log into PostgreSQL",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def set_build_info(node: str) -> None:
    """Publish `hubbub_build_info{version, node} 1`: dashboards join on it to name nodes."""
    BUILD_INFO.labels(__version__, node).set(1)
