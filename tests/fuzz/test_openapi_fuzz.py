"""Schemathesis against the live server's own OpenAPI document (/api/openapi.json).

Every operation of the document is called with data generated from it (valid and invalid),
authenticated with a real token, and each answer is checked: not a server error, a status
the document lists, a body its schema accepts, the content type it declares, and the
missing-auth, unsupported-method and invalid-data probes. So the document and the server
cannot drift apart: a failure here means one of them is wrong.

Bounded: a few examples per operation, derandomized, no example database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from support.fuzzutil import World

from hubbub.server.openapi import openapi_document

MAX_EXAMPLES = 10


@pytest.fixture(scope="module")
def requests_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


# The document is built in-process to parametrize at collection time (schemathesis's lazy
# `from_fixture` loader does not work with this pytest); `test_the_served_document_is_the_
# one_fuzzed` proves it is the document the live server serves.
schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")


def test_the_served_document_is_the_one_fuzzed(fuzz_server: Any) -> None:
    served = requests.get(f"{fuzz_server.url}/api/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(openapi_document()))


def token_for(case: Any, world: World, session: requests.Session) -> str:
    """The fuzzer's token; a fresh one for logout, which revokes the token it is called with."""
    if case.path != "/api/v1/logout":
        return world.tokens["fuzzer"]
    creds = {"username": world.names["fuzzer"], "password": "correct horse battery"}
    r = session.post(f"{world.base}/api/v1/login", json=creds, timeout=10)
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return token


@schema.parametrize()
# With a pytest parameter each operation gets its own test id (under pytest 9, schemathesis's
# unparametrized items all share one id); the parameter names the fuzz server's engine.
@pytest.mark.parametrize("engine", ["sqlite"])
def test_the_server_keeps_to_its_openapi_document(
    case: Any, world: World, requests_session: requests.Session, engine: str
) -> None:
    token = token_for(case, world, requests_session)
    case.call_and_validate(
        base_url=world.base,
        session=requests_session,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
