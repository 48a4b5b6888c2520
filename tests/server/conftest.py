"""In-process fixtures: a node's aiohttp application on the embedded engine in a tmp dir,
served by aiohttp's own TestServer. The schema is migrated once per session (each test
starts from a copy) and argon2 runs at its cheapest, so each test takes milliseconds. No
subprocess, no PostgreSQL, no Redis."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from support.inprocess import PASSWORD, Signup

from hubbub.core import passwords
from hubbub.engine.sqlite import database
from hubbub.server.config import Config
from hubbub.server.node import Node

DB_NAME = "hubbub.db"


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database at the newest schema."""
    path = tmp_path_factory.mktemp("schema") / DB_NAME
    database.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
async def node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated: Path
) -> AsyncIterator[Node]:
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(passwords, "default_hasher", lambda: cheap)
    shutil.copyfile(migrated, tmp_path / DB_NAME)
    monkeypatch.setattr(database, "upgrade", lambda url: None)
    node = Node(Config(data=tmp_path, node_id="test-node", heartbeat=30.0))
    await node.engine.start()
    node.started.set()
    yield node
    await node.gateway.close_all(1001, "going away")
    await node.engine.close()


@pytest.fixture
async def client(node: Node) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(node.app)) as client:
        yield client


@pytest.fixture
def signup(client: TestClient[Any, Any]) -> Signup:
    """Register `name` and log in: its bearer token."""

    async def signup(name: str) -> str:
        r = await client.post("/api/v1/users", json={"username": name, "password": PASSWORD})
        assert r.status == 201, await r.text()
        r = await client.post("/api/v1/login", json={"username": name, "password": PASSWORD})
        assert r.status == 200, await r.text()
        token: str = (await r.json())["token"]
        return token

    return signup
