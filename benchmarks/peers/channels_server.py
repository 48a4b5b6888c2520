"""A Django Channels broadcast server: a JSON WebSocket consumer and groups.

The same workload as `raw_aiohttp.py` (see `wire.py`), written the Channels
way: Django is configured in this file (no project tree), an
`AsyncJsonWebsocketConsumer` at `/ws` speaks the raw frames (JSON through
orjson), and each room is a group of the channel layer. A `message` is
encoded once and handed to `group_send`; the layer delivers it to every
member's channel, whose consumer writes the text. `--layer memory` uses the
in-process `InMemoryChannelLayer`, `--layer redis` the `channels_redis`
layer (`--redis URL`), shared by every process on that Redis. Served by
uvicorn.

Run: python benchmarks/peers/channels_server.py --host 127.0.0.1 --port 8096 [--layer redis]
"""

from __future__ import annotations

from typing import Any

import django
import orjson
import uvicorn
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from wire import Seqs, Session, parse_args

SEQS = Seqs()
CAPACITY = 10_000  # frames a channel may hold before the layer drops them


def ready(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [path("readyz", ready), path("healthz", ready)]


def group(room: str) -> str:
    """A valid group name for any room (ASCII letters, digits, -_. only)."""
    return "room." + room.encode().hex()


def configure(layer: str, redis: str) -> None:
    if layer == "redis":
        backend = {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis], "capacity": CAPACITY},
        }
    else:
        backend = {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CAPACITY},
        }
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        ROOT_URLCONF=__name__,
        CHANNEL_LAYERS={"default": backend},
        LOGGING_CONFIG=None,
    )
    django.setup()


def application() -> Any:
    from channels.generic.websocket import AsyncJsonWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.core.asgi import get_asgi_application

    class ChatConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
        async def connect(self) -> None:
            self.session = Session(SEQS, node="channels")
            await self.accept()

        async def disconnect(self, code: int) -> None:
            for room in self.session.joined:
                await self.channel_layer.group_discard(group(room), self.channel_name)

        async def receive_json(self, content: Any, **kwargs: Any) -> None:
            out = self.session.receive(content)
            if out.close is not None:
                await self.close(out.close)
                return
            if out.enter is not None:
                await self.channel_layer.group_add(group(out.enter), self.channel_name)
            if out.exit is not None:
                await self.channel_layer.group_discard(group(out.exit), self.channel_name)
            for r in out.replies:
                await self.send_json(r)
            if out.broadcast is not None:
                room, message = out.broadcast
                text = orjson.dumps(message).decode()
                await self.channel_layer.group_send(
                    group(room), {"type": "chat.message", "text": text}
                )

        async def chat_message(self, event: dict[str, Any]) -> None:
            await self.send(text_data=event["text"])

        @classmethod
        async def decode_json(cls, text_data: str) -> Any:
            return orjson.loads(text_data)

        @classmethod
        async def encode_json(cls, content: Any) -> str:
            return orjson.dumps(content).decode()

    return ProtocolTypeRouter(
        {
            "http": get_asgi_application(),
            "websocket": URLRouter([path("ws", ChatConsumer.as_asgi())]),
        }
    )


def main() -> None:
    args = parse_args(
        __doc__,
        layer={"choices": ("memory", "redis"), "default": "memory", "help": "channel layer"},
        redis={"default": "redis://127.0.0.1:6379/0", "help": "Redis URL of --layer redis"},
    )
    configure(args.layer, args.redis)
    uvicorn.run(
        application(),
        host=args.host,
        port=args.port,
        ws="websockets",
        ws_max_size=65536,
        ws_ping_interval=None,
        ws_per_message_deflate=False,
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
