"""Logs are structured JSON lines with the node id, and never carry a token or a password."""

from __future__ import annotations

import json

from support.api import Api


async def test_logs_are_json_lines_with_the_node_id_and_no_secrets(http, server_factory, connect):
    srv = server_factory(args=["--node-id", "node-under-test", "--log-level", "debug"])
    api = Api(http, srv.url)
    password = "a secret password"
    name, token = await api.user(password=password)
    ws = await connect(token, url=srv.ws_url)
    await ws.send({"type": "join", "room": "no-such-room"})
    assert (await ws.recv_type("error"))["code"] == "not_found"
    assert (await api.call("POST", "/api/v1/logout", token))[0] == 204
    assert await ws.expect_close() == 4001
    await api.call("POST", "/api/v1/login", json={"username": name, "password": "wrong one!"})
    srv.stop()

    lines = [line for line in srv.log().splitlines() if line.strip()]
    assert lines, "the server logged nothing"
    entries = [json.loads(line) for line in lines]
    assert all(e["node"] == "node-under-test" for e in entries), entries
    assert {"listening", "draining", "stopped"} <= {e["msg"] for e in entries}
    # A WebSocket is named by its `connection` id in logs; `session` means a login only.
    assert not [e for e in entries if "session" in e], entries
    text = srv.log()
    assert token not in text
    assert password not in text
