"""A deadline for a new connection's request headers: the slowloris defence.

aiohttp waits for a request's headers as long as the client keeps the socket open, so a
client that opens many connections and sends a header byte now and then holds a socket
and a file descriptor per connection for ever (slowloris). Every node sweeps its HTTP
connections once a second (or twice per timeout, if that is shorter) and closes those
that have not completed their first request within `--header-timeout` seconds. A
WebSocket, once upgraded, has completed its request and is never touched; an idle
keep-alive connection between requests is aiohttp's own `keepalive_timeout`.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from hubbub import metrics

log = logging.getLogger(__name__)

SWEEP = 1.0  # seconds between sweeps at most (a shorter timeout sweeps twice as often)


class HeaderDeadline:
    """Closes the connections of `server` that sent no complete request within `timeout`."""

    def __init__(self, server: web.Server, timeout: float) -> None:
        self.server = server
        self.timeout = timeout
        # A slow client lives at most timeout + 2 * sweep: first seen, then closed.
        self.sweep = min(SWEEP, timeout / 2)
        self._first_seen: dict[RequestHandler, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.timeout > 0:
            self._timer = asyncio.get_running_loop().call_later(self.sweep, self._sweep)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._first_seen.clear()

    def _sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        seen, self._first_seen = self._first_seen, {}
        closed = 0
        for handler in self.server.connections:
            # `_request_count` counts the requests whose headers aiohttp has parsed on this
            # connection: zero means the first request is still incomplete.
            if handler._request_count:
                continue
            first = seen.get(handler, now)
            if now - first >= self.timeout and handler.transport is not None:
                handler.transport.close()
                closed += 1
            else:
                self._first_seen[handler] = first
        if closed:
            metrics.SLOW_REQUESTS.inc(closed)
            log.info("closed connections that sent no request in time", extra={"count": closed})
        self._timer = asyncio.get_running_loop().call_later(self.sweep, self._sweep)
