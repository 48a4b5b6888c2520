"""External programs the integration tests drive (HAProxy, openssl, redis-server).

A test that needs one skips without it on a laptop and fails under CI (CI set), where
`make test` installs it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.needs import executable


def require(tool: str) -> str:
    """The executable of `tool` (also looked up in /usr/sbin); skip without it, fail under CI."""
    return executable(tool)


def haproxy_check(config: Path) -> subprocess.CompletedProcess[str]:
    """`haproxy -c` on `config`: what HAProxy thinks of a configuration file."""
    return subprocess.run(
        [require("haproxy"), "-c", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
