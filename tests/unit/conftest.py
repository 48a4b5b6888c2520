"""Unit-test fixtures: the `engine` fixture runs a test once per engine in `ENGINES`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_handles import ENGINES, EngineUnderTest


@pytest.fixture(params=sorted(ENGINES))
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EngineUnderTest]:
    """A started engine on fresh, empty data; closed after the test."""
    handle = ENGINES[request.param](tmp_path)
    await handle.start()
    try:
        yield handle
    finally:
        await handle.close()
