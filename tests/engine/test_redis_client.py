"""redis_client: the clients built from --redis URLs pack commands as redis-py would."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError
from support.redis_server import RedisServer, require_redis_server

from hubbub.engine.redis import client as redis_client

COMMANDS = [
    ("EVALSHA", "a" * 40, 3, "hubbub:{r}:seq", "k\u00e9y", b"raw\r\nbytes", "", 1.5, -7, 10**20),
    ("SCRIPT LOAD", "return 1"),
    (b"CONFIG GET", "maxmemory"),
    ("SET", bytearray(b"k"), memoryview(b"v")),
]


@pytest.mark.skipif(not redis_client.HIREDIS, reason="hiredis is not installed")
@pytest.mark.parametrize("command", COMMANDS)
def test_hiredis_packing_sends_the_bytes_redis_py_sends(command: tuple[object, ...]) -> None:
    packed = redis_client._hiredis_packing(Connection)().pack_command(*command)
    assert b"".join(packed) == b"".join(Connection().pack_command(*command))


@pytest.mark.skipif(not redis_client.HIREDIS, reason="hiredis is not installed")
def test_hiredis_packing_refuses_what_redis_py_refuses() -> None:
    with pytest.raises(DataError):
        redis_client._hiredis_packing(Connection)().pack_command("SET", "k", None)


async def test_a_client_of_one_server_round_trips_through_its_packer(tmp_path: Path) -> None:
    require_redis_server()
    server = RedisServer(tmp_path)
    server.start()
    try:
        client = redis_client.connect(server.url, socket_timeout=5)
        try:
            if redis_client.HIREDIS:
                assert issubclass(
                    client.connection_pool.connection_class, redis_client._HiredisPacking
                )
            await client.set("k\u00e9", "v\u00e9")
            async with client.pipeline(transaction=False) as pipe:
                pipe.get("k\u00e9").execute_command("SCRIPT LOAD", "return 1").incrbyfloat("f", 1.5)
                got = await pipe.execute()
            assert got[0] == "v\u00e9".encode()
            assert got[2] == 1.5
        finally:
            await client.aclose()
    finally:
        server.stop()
