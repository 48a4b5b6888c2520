"""What a test needs from the machine: without it the test skips on a laptop, and fails
when CI is set (CI must never turn green by not testing something)."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def missing(message: str) -> NoReturn:
    """Skip the calling test for `message`, or fail it under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (required when CI is set)")
    pytest.skip(message)


def executable(tool: str, hint: str = "make test installs what the tests need") -> str:
    """The path of `tool` (also looked up in /usr/sbin), or `missing`."""
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin")
    if found is None:
        missing(f"{tool} is not installed ({hint})")
    return found
