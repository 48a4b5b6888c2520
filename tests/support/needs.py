"""What a test needs from the machine: without it the test skips on a laptop, and fails
when CI is set (CI must never turn green by not testing something).

This is the only place that decides between the two: a test or helper that needs a
program, a Python package or a service asks here (`executable`, `modules`) or calls
`missing` with what it could not find.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import NoReturn

import pytest

SYSTEM_PATH = "/usr/sbin:/sbin:/usr/bin"


def missing(message: str) -> NoReturn:
    """Skip the calling test for `message`, or fail it under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (required when CI is set)")
    pytest.skip(message)


def executable(
    tool: str, hint: str = "make test installs what the tests need", extra_path: str = ""
) -> str:
    """The path of `tool` on PATH, in `extra_path` or in /usr/sbin, /sbin, /usr/bin;
    otherwise `missing`."""
    path = os.pathsep.join(p for p in (extra_path, SYSTEM_PATH) if p)
    found = shutil.which(tool) or shutil.which(tool, path=path)
    if found is None:
        missing(f"{tool} is not installed ({hint})")
    return found


def modules(*names: str, hint: str) -> None:
    """Every Python package in `names` is importable; otherwise `missing`."""
    absent = [name for name in names if importlib.util.find_spec(name) is None]
    if absent:
        missing(f"Python packages missing: {', '.join(absent)} ({hint})")
