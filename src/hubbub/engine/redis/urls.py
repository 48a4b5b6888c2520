"""The `--redis` URLs: which kind each names, parsed, and refused in sentences when malformed.

- `redis://host:port/db`, `rediss://...`, `unix://...`: one Redis server (redis-py parses
  these itself).
- `redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/MASTER[?db=N]`: the
  primary that the sentinels at those addresses (port 26379 when left out) name MASTER; the
  credentials and `db` are those of the Redis servers, the sentinels are asked without.
- `redis+cluster://[user[:password]@]host:port[,host:port...]`: a Redis Cluster, seeded by
  those addresses; one database, so no `/db` path and no options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

CLUSTER_SCHEME: Final = "redis+cluster://"
SENTINEL_SCHEME: Final = "redis+sentinel://"
SINGLE_SCHEMES: Final = ("redis://", "rediss://", "unix://")
SENTINEL_PORT: Final = 26379
SENTINEL_EXAMPLE: Final = "redis+sentinel://host:26379[,host:26379...]/MASTER[?db=N]"


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEME)


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEME)


def check_url(url: str) -> None:
    """Raise ValueError for a URL that names no kind, or names one badly (the message says
    what is wrong and what is expected)."""
    if is_cluster_url(url):
        cluster_seeds(url)
    elif is_sentinel_url(url):
        sentinel_target(url)
    elif not url.startswith(SINGLE_SCHEMES):
        raise ValueError(
            f"unsupported Redis URL {shown(url)!r}: expected redis://host:port/db for one "
            f"server, {SENTINEL_EXAMPLE} for a primary that Redis Sentinel watches, or "
            "redis+cluster://host:port[,host:port...] for a Redis Cluster"
        )


def cluster_seeds(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """The seed addresses, user name and password of a `redis+cluster://` URL."""
    if not is_cluster_url(url):
        raise ValueError(f"not a Redis Cluster URL: {shown(url)!r}")
    rest = url[len(CLUSTER_SCHEME) :]
    userinfo, _, hosts = rest.rpartition("@")
    hosts, _, path = hosts.partition("/")
    if path or "?" in hosts:
        raise ValueError(f"a Redis Cluster URL takes no database or options: {shown(url)!r}")
    username, password = credentials(userinfo)
    return addresses(url, hosts, None), username, password


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """What a `redis+sentinel://` URL names."""

    sentinels: list[tuple[str, int]]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def sentinel_target(url: str) -> SentinelTarget:
    """Parse a `redis+sentinel://` URL (see the module docstring)."""
    if not is_sentinel_url(url):
        raise ValueError(f"not a Redis Sentinel URL: {shown(url)!r} (expected {SENTINEL_EXAMPLE})")
    rest, _, query = url[len(SENTINEL_SCHEME) :].partition("?")
    userinfo, _, rest = rest.rpartition("@")
    hosts, slash, master = rest.partition("/")
    if not slash or not master or "/" in master:
        raise ValueError(
            f"the Redis Sentinel URL {shown(url)!r} must name the master after the sentinels' "
            f"addresses, as one path segment: {SENTINEL_EXAMPLE}"
        )
    username, password = credentials(userinfo)
    sentinels = addresses(url, hosts, SENTINEL_PORT)
    return SentinelTarget(sentinels, unquote(master), _db(url, query), username, password)


def _db(url: str, query: str) -> int:
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - {"db"})
    if unknown:
        raise ValueError(
            f"the Redis Sentinel URL {shown(url)!r} has the option(s) {', '.join(unknown)}; "
            f"it takes only db: {SENTINEL_EXAMPLE}"
        )
    raw = options.get("db", "0")
    if not raw.isdigit():
        raise ValueError(
            f"db in the Redis Sentinel URL {shown(url)!r} must be a database number "
            f"(0, 1, ...), got {raw!r}"
        )
    return int(raw)


def addresses(url: str, hosts: str, default_port: int | None) -> list[tuple[str, int]]:
    """`host:port,host:port` as pairs; a port may be left out only with a `default_port`."""
    found: list[tuple[str, int]] = []
    for part in hosts.split(","):
        parsed = urlsplit(f"//{part}")
        try:
            port = parsed.port if parsed.port is not None else default_port
        except ValueError:  # not a number, or out of range
            port = None
        if not parsed.hostname or port is None:
            rule = "host:port" if default_port is None else "host or host:port"
            raise ValueError(f"expected {rule} in the Redis URL {shown(url)!r}, got {part!r}")
        found.append((parsed.hostname, port))
    return found


def credentials(userinfo: str) -> tuple[str | None, str | None]:
    """The user name and password of a URL's `user:password` part (percent-decoded)."""
    if not userinfo:
        return None, None
    user, colon, secret = userinfo.partition(":")
    return unquote(user) or None, unquote(secret) if colon else None


def shown(url: str) -> str:
    """The URL as error messages show it: without its password."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{hosts}"
