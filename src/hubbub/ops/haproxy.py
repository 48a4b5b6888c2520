"""The HAProxy configuration of a hubbub deployment, from one template.

`hubbub cluster` renders it for its local nodes; deploy/haproxy.cfg is the same template
rendered for production (`hubbub cluster --print-haproxy-config`), and a test checks that
the file and the template agree.
"""

from __future__ import annotations

from dataclasses import dataclass

# Health checks: every 500 ms, every 250 ms once one failed; two failures take a node out of
# rotation (< 1 s after its /readyz turns 503), two successes bring it back.
CHECK = "inter 500ms fastinter 250ms downinter 1s fall 2 rise 2"
# How long a draining node keeps serving with /readyz at 503: the checks above need < 1 s.
DRAIN_GRACE = 2.0


@dataclass(frozen=True)
class HAProxyLayout:
    """Where HAProxy listens and which nodes it balances; `production` adds the system setup."""

    bind: str
    servers: tuple[tuple[str, str], ...]
    stats_bind: str
    production: bool = False
    stats_socket: str = "/run/haproxy/admin.sock"
    tls_cert: str | None = None  # None: the TLS lines are rendered commented out
    tls_bind: str | None = None  # None: port 443 on the address of `bind`


def render_haproxy_config(layout: HAProxyLayout) -> str:
    """The HAProxy configuration for `layout` (one template for production and local)."""
    return "\n".join(
        [
            *_global(layout),
            *_defaults(),
            *_frontend(layout),
            *_backend(layout),
            *_stats(layout),
        ]
    )


def production_haproxy_config() -> str:
    """deploy/haproxy.cfg: three nodes by name, HTTP on :80, the TLS lines ready to enable."""
    servers = tuple((f"node{i}", f"node{i}:8080") for i in (1, 2, 3))
    return render_haproxy_config(
        HAProxyLayout(bind=":80", servers=servers, stats_bind="127.0.0.1:8404", production=True)
    )


def _global(layout: HAProxyLayout) -> list[str]:
    if layout.production:
        system = ["log /dev/log local0", "chroot /var/lib/haproxy", "user haproxy"]
        system += ["group haproxy", "maxconn 100000"]
    else:
        system = ["log stdout format raw local0 notice"]  # maxconn: from the FD limit
    system += [f"stats socket {layout.stats_socket} mode 660 level admin"]
    system += ["ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets"]
    return [
        "# HAProxy in front of hubbub nodes: least connections, health checks on /readyz,",
        "# WebSocket tunnels, TLS termination. Rendered from the template in deploy/haproxy.cfg",
        "# (`hubbub cluster --print-haproxy-config`); `hubbub cluster` runs the same template on",
        "# 127.0.0.1. Check it with `haproxy -c -f haproxy.cfg`.",
        "global",
        *(f"    {line}" for line in system),
        "",
    ]


def _defaults() -> list[str]:
    return [
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    option dontlognull",
        "    # X-Forwarded-For carries the client's address to the nodes.",
        "    option forwardfor",
        "    timeout connect 5s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        "    timeout queue 10s",
        "    # An upgraded WebSocket is a tunnel: idle for up to an hour (nodes ping every 15 s).",
        "    timeout tunnel 1h",
        "    # A half-closed tunnel (one side sent FIN) is cut after 10 s, not after an hour.",
        "    timeout client-fin 10s",
        "    timeout server-fin 10s",
        "",
    ]


def _frontend(layout: HAProxyLayout) -> list[str]:
    tls = "" if layout.tls_cert else "# "
    cert = layout.tls_cert or "/etc/haproxy/certs/hubbub.pem"
    https = layout.tls_bind or layout.bind.rsplit(":", 1)[0] + ":443"
    return [
        "frontend hubbub",
        f"    bind {layout.bind}",
        "    # TLS termination: the certificate and its key in one PEM file; HTTP/1.1 only, as",
        "    # WebSockets need it. Enable both lines to serve HTTPS and redirect plain HTTP to it.",
        f"    {tls}bind {https} ssl crt {cert} alpn http/1.1",
        f"    {tls}http-request redirect scheme https code 301 unless {{ ssl_fc }}",
        "    http-request set-header X-Forwarded-Proto https if { ssl_fc }",
        "    default_backend nodes",
        "",
    ]


def _backend(layout: HAProxyLayout) -> list[str]:
    lines = [
        "backend nodes",
        "    # Long-lived WebSockets: a new client goes to the node holding the fewest.",
        "    balance leastconn",
        "    # /readyz is 503 while a node starts or drains (SIGTERM): two failed checks take it",
        f"    # out of rotation within a second, so nodes run with --drain-grace {DRAIN_GRACE:g}",
        "    # and their clients reconnect to the others. A node that comes back gets new",
        "    # clients after two good checks.",
        "    # A connection refused by a node that just died goes to another node at once: a",
        "    # retry on the same server would wait a 1 s turn-around each time.",
        "    retries 2",
        "    option redispatch 1",
        "    option httpchk GET /readyz",
        "    http-check expect status 200",
    ]
    addr = " init-addr last,libc,none" if layout.production else ""
    lines.append(f"    default-server check {CHECK}{addr}")
    lines += [f"    server {name} {address}" for name, address in layout.servers]
    return [*lines, ""]


def _stats(layout: HAProxyLayout) -> list[str]:
    return [
        "# HAProxy's own state: /stats (add ;csv for machines), /metrics for Prometheus.",
        "frontend stats",
        f"    bind {layout.stats_bind}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 5s",
        "",
    ]
