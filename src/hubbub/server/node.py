"""The composition root: builds a node from its Config, serves it, and drains it on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import signal
import ssl

from aiohttp import web

from hubbub import metrics
from hubbub.core.chat import Chat
from hubbub.core.join import Joins
from hubbub.core.limits import HttpLimits, LoginThrottle
from hubbub.core.presence import RoomPresence
from hubbub.engine import EngineSettings, open_engine
from hubbub.protocol.errors import Unavailable
from hubbub.server.config import Config
from hubbub.server.edge.clientaddr import TrustedProxies
from hubbub.server.edge.origins import OriginPolicy, cors_middleware, refusal, response_headers
from hubbub.server.edge.slowloris import HeaderDeadline
from hubbub.server.gateway import Connection, Gateway
from hubbub.server.http import (
    CHAT,
    DRAINING,
    LIMITS,
    PROBLEM,
    STARTED,
    add_routes,
    errors_middleware,
)
from hubbub.server.replies import PROXIES, error_response
from hubbub.server.websocket import WebSocketHandler
from hubbub.web import add_web_routes

log = logging.getLogger(__name__)
# Seconds an idle HTTP keep-alive connection is kept between requests (aiohttp's default is
# an hour, which lets idle clients pile up file descriptors).
KEEPALIVE_TIMEOUT = 75.0


class Node:
    """One `hubbub serve` process: engine, rules, gateway and the HTTP application."""

    def __init__(self, config: Config) -> None:
        config.check()
        self.config = config
        self.tls = tls_context(config)  # before anything starts: a bad file stops here
        self.origins = OriginPolicy.parse(config.allowed_origins)
        metrics.set_build_info(config.node_id)
        self.engine = open_engine(
            EngineSettings(
                config.database_url,
                config.redis,
                config.redis_replicas,
                config.node_id,
                config.heartbeat,
                config.canary_interval,
                database_read=config.database_read,
            )
        )
        engine = self.engine
        self.chat = Chat(
            engine.store,
            engine.log,
            engine.bus,
            engine.presence,
            token_ttl=config.token_ttl,
            name_grace=config.room_name_grace,
            throttle=LoginThrottle(engine.counters, config.login_failures, config.login_window),
        )
        self.presence = RoomPresence(engine.presence, engine.bus)
        joins = Joins(
            self.chat,
            engine.log,
            engine.bus,
            self.presence,
            replay_cap=config.replay_cap,
            max_rooms=config.max_rooms_per_connection,
        )
        self.gateway = Gateway(config.send_buffer)
        self.gateway.on_room_left = self._room_left
        self.gateway.on_room_closed = engine.bus.unsubscribe
        self.gateway.on_revoked = self.chat.forget_token  # revoked on any node
        self.gateway.on_changed = self.chat.room_changed  # archived, deleted on any node
        engine.bus.attach(self.gateway)
        # Draining has two steps: `unready` turns /readyz to 503 (the load balancer stops
        # routing here), `draining` refuses new clients and frames once the grace is over.
        self.unready = asyncio.Event()
        self.draining = asyncio.Event()
        self.started = asyncio.Event()
        self.websockets = WebSocketHandler(self.chat, joins, self.gateway, config, self.draining)
        self.app = web.Application(
            middlewares=[errors_middleware, cors_middleware(self.origins)],
            client_max_size=64 * 1024,
        )
        self.app[CHAT] = self.chat
        self.app[PROXIES] = TrustedProxies.parse(config.trusted_proxies)
        self.app[DRAINING] = self.unready
        self.app[STARTED] = self.started
        self.app[PROBLEM] = engine.problem
        self.app[LIMITS] = HttpLimits(engine.counters, config.rooms_per_hour, config.history_rate)
        add_routes(self.app)
        self.app.router.add_get("/ws", self._websocket)
        add_web_routes(self.app)
        self.app.on_response_prepare.append(response_headers(self.origins))
        self.stopping = asyncio.Event()
        self.hurry = asyncio.Event()

    def _room_left(self, conn: Connection, room: str) -> None:
        self.gateway.spawn(self.presence.leave(room, conn.user, conn.id))

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not self.origins.allows(origin, request.headers.get("Host")):
            # Before the upgrade: a page of another site never gets a socket to speak
            # through (cross-site WebSocket hijacking).
            assert origin is not None
            log.info("origin refused", extra={"origin": origin, "path": request.path})
            return error_response(refusal(origin))
        if self.draining.is_set():
            return error_response(Unavailable("this node is draining"))
        return await self.websockets.run(request)

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain and stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signalled)
        await self.engine.start()
        # Everything made so far (modules, the engine, the app) lives as long as the node:
        # frozen, the collector never walks it again. Without this the first full collection,
        # set off by some burst of frames, walked the whole start-up heap: a ~50 ms pause.
        gc.collect()
        gc.freeze()
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=5.0,
            keepalive_timeout=KEEPALIVE_TIMEOUT,
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            self.config.host,
            self.config.port,
            backlog=4096,
            reuse_address=True,
            reuse_port=self.config.reuse_port or None,
            ssl_context=self.tls,
        )
        await site.start()
        assert runner.server is not None  # set up above
        headers_deadline = HeaderDeadline(runner.server, self.config.header_timeout)
        headers_deadline.start()
        self.started.set()
        metrics.READY.set(1)
        scheme = "https" if self.tls else "http"
        log.info(
            "listening",
            extra={
                "url": f"{scheme}://{self.config.host}:{self.config.port}",
                "database": _redacted(self.config.database_url),
            },
        )
        try:
            await self.stopping.wait()
            await self.drain()
        finally:
            headers_deadline.stop()
            await runner.cleanup()
            await self.engine.close()
            log.info("stopped")

    def _signalled(self) -> None:
        """The first SIGTERM/SIGINT starts the drain; a second one cuts its grace short."""
        if self.stopping.is_set():
            self.hurry.set()
        self.stopping.set()

    async def drain(self) -> None:
        """Leave the rotation, refuse new clients, finish the acks in flight, close with 1001.

        For `drain_grace` seconds only /readyz answers 503 and the node serves as before:
        health checks take it out of the load balancer's rotation first, so the clients it
        closes reconnect to other nodes, and clients routed here meanwhile are not refused.
        """
        log.info("draining", extra={"grace": self.config.drain_grace})
        self.unready.set()
        metrics.READY.set(0)
        if self.config.drain_grace > 0 and not self.hurry.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.hurry.wait(), self.config.drain_grace)
        self.draining.set()
        await self.gateway.wait_tasks(self.config.drain_timeout)
        self.gateway.flush()
        await self.gateway.close_all(1001, "node draining: reconnect and rejoin with since")


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The server side of TLS for `--tls-cert`/`--tls-key` (None without them): TLS 1.2 at
    least, HTTP/1.1 in ALPN (WebSockets upgrade over it). A file that is missing or not a
    matching PEM certificate and key is a ValueError naming both, not a traceback."""
    if not config.tls_cert or not config.tls_key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except ssl.SSLError as exc:  # an OSError too: caught first, its strerror says little
        reason = f"not a PEM certificate chain and its private key ({exc.reason or exc})"
    except OSError as exc:
        reason = exc.strerror or str(exc)
    else:
        return context
    raise ValueError(
        f"cannot load --tls-cert {config.tls_cert} with --tls-key {config.tls_key}: {reason}"
    )


def _redacted(url: str) -> str:
    """A database URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}"
    return url


def raise_open_files_limit() -> int:
    """Every connection is an open file: lift the soft limit to the hard one (which only a
    privileged process could raise further). Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            return want
    return soft


def serve(config: Config) -> None:
    limit = raise_open_files_limit()
    log.info("open files limit", extra={"limit": limit})

    async def main() -> None:
        await Node(config).run()

    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
