"""PostgreSQL URLs, one host or libpq's several (`postgresql://h1:5432,h2:5432/db?...`), in
the forms asyncpg and SQLAlchemy (psycopg) each accept.

A multi-host URL with `target_session_attrs=read-write` is how nodes and the worker follow a
failover: libpq and asyncpg try the hosts in order and keep the first that accepts writes, so
after a standby's promotion new connections find it without any change of configuration.
"""

from __future__ import annotations

import urllib.parse

SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432
SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")


def is_postgres(url: str) -> bool:
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme.split("+", 1)[0] in SCHEMES


def _parts(url: str) -> tuple[str, str, str, str]:
    """(userinfo with its `@` or "", hosts, path, query) of a PostgreSQL URL."""
    if not is_postgres(url):
        raise ValueError(
            f"not a PostgreSQL URL: {url!r} (expected postgresql://[user@]host[:port][,...]/db)"
        )
    rest = url.partition("://")[2]
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    user, at, hosts = netloc.rpartition("@")
    return user + at, hosts, path, query


def hosts(url: str) -> list[tuple[str, int]]:
    """The (host, port) pairs of the URL's netloc, in order; a port left out is 5432."""
    netloc_hosts = _parts(url)[1]
    found: list[tuple[str, int]] = []
    for item in netloc_hosts.split(",") if netloc_hosts else []:
        host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        if item.startswith("["):  # [IPv6]:port
            host, _, port = item[1:].partition("]")
            port = port.lstrip(":")
        if not host or (port and not port.isdigit()):
            raise ValueError(
                f"bad host {item!r} in the database URL: write host or host:port, "
                "several separated by commas (postgresql://h1:5432,h2:5432/db)"
            )
        found.append((host, int(port) if port else DEFAULT_PORT))
    return found


def check(url: str) -> None:
    """Raise ValueError, in sentences, for a malformed URL or target_session_attrs."""
    hosts(url)
    query = urllib.parse.parse_qs(_parts(url)[3])
    for value in query.get("target_session_attrs", []):
        if value not in SESSION_ATTRS:
            raise ValueError(
                f"target_session_attrs={value} in the database URL is not one of "
                f"{', '.join(SESSION_ATTRS)}; use read-write to follow a failover"
            )


def asyncpg_dsn(url: str) -> str:
    """asyncpg takes `postgresql://` (several hosts too); drop a SQLAlchemy `+driver` suffix."""
    check(url)
    return f"postgresql://{url.partition('://')[2]}"


def sqlalchemy_url(url: str) -> str:
    """The URL SQLAlchemy's psycopg dialect parses: several hosts move to `?host=h:p&...`.

    SQLAlchemy's URL parser takes one host in the netloc (it reads `5432,h2:5432` as a
    port); its PostgreSQL dialects take several as repeated `host` query parameters and
    hand psycopg libpq's comma-separated host and port lists."""
    check(url)
    user, netloc_hosts, path, query = _parts(url)
    base = f"postgresql+psycopg://{user}"
    listed = hosts(url)
    if len(listed) <= 1:
        return f"{base}{netloc_hosts}/{path}" + (f"?{query}" if query else "")
    if any(":" in host for host, _ in listed):
        raise ValueError(
            "an IPv6 address in a database URL with several hosts is not supported: "
            "name the hosts (or give their IPv4 addresses)"
        )
    multi = "&".join(f"host={host}:{port}" for host, port in listed)
    return f"{base}/{path}?{multi}" + (f"&{query}" if query else "")
