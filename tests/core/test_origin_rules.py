"""The origin rule of server.edge.origins, table-driven: which (Origin, Host) pairs may go on."""

from __future__ import annotations

import pytest

from hubbub.server.config import Config
from hubbub.server.edge.origins import Origin, OriginPolicy, parse_origin

NONE = OriginPolicy()
LISTED = OriginPolicy.parse("https://app.example.com, http://localhost:3000")
ANY = OriginPolicy.parse("*")


@pytest.mark.parametrize(
    ("policy", "origin", "host", "allowed"),
    [
        # No Origin header: not a browser (SDK, bots, hubbub chat).
        (NONE, None, "chat.example.com", True),
        (NONE, None, None, True),
        # Same origin: the Origin's host and port are the Host header's.
        (NONE, "https://chat.example.com", "chat.example.com", True),
        (NONE, "http://127.0.0.1:8080", "127.0.0.1:8080", True),
        (NONE, "https://chat.example.com:8443", "chat.example.com:8443", True),
        (NONE, "HTTPS://Chat.Example.COM", "chat.example.com", True),
        (NONE, "https://chat.example.com", "chat.example.com:443", True),
        (NONE, "http://[::1]:8080", "[::1]:8080", True),
        # Behind a TLS-terminating proxy the scheme is not compared, the port is.
        (NONE, "http://chat.example.com", "chat.example.com", True),
        (NONE, "https://chat.example.com", "chat.example.com:80", False),
        (NONE, "http://127.0.0.1:8081", "127.0.0.1:8080", False),
        (NONE, "http://127.0.0.1", "127.0.0.1:8080", False),
        # Another site, a look-alike, a sub-domain: refused.
        (NONE, "https://evil.example", "chat.example.com", False),
        (NONE, "https://chat.example.com.evil.example", "chat.example.com", False),
        (NONE, "https://evil.chat.example.com", "chat.example.com", False),
        (NONE, "https://chat.example.com", None, False),
        (NONE, "https://chat.example.com", "", False),
        # Not origins: the opaque null, other schemes, paths, credentials, garbage.
        (NONE, "null", "chat.example.com", False),
        (NONE, "file://", "chat.example.com", False),
        (NONE, "chrome-extension://abc", "abc", False),
        (NONE, "https://chat.example.com/path", "chat.example.com", False),
        (NONE, "https://user@chat.example.com", "chat.example.com", False),
        (NONE, "https://chat.example.com:99999", "chat.example.com:99999", False),
        (NONE, "", "chat.example.com", False),
        # Listed origins, with their default port written or not.
        (LISTED, "https://app.example.com", "chat.example.com", True),
        (LISTED, "https://app.example.com:443", "chat.example.com", True),
        (LISTED, "http://localhost:3000", "chat.example.com", True),
        (LISTED, "http://app.example.com", "chat.example.com", False),
        (LISTED, "http://localhost:3001", "chat.example.com", False),
        (LISTED, "https://chat.example.com", "chat.example.com", True),
        # *: any origin, even one that does not parse.
        (ANY, "https://evil.example", "chat.example.com", True),
        (ANY, "null", "chat.example.com", True),
    ],
)
def test_the_origin_rule(
    policy: OriginPolicy, origin: str | None, host: str | None, allowed: bool
) -> None:
    assert policy.allows(origin, host) is allowed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", set()),
        (" , ", set()),
        ("https://a.example", {Origin("https", "a.example", 443)}),
        ("https://a.example/", {Origin("https", "a.example", 443)}),
        (
            "http://A.example:8080,https://b.example:443",
            {
                Origin("http", "a.example", 8080),
                Origin("https", "b.example", 443),
            },
        ),
    ],
)
def test_allowed_origins_parse(text: str, expected: set[Origin]) -> None:
    policy = OriginPolicy.parse(text)
    assert policy.listed == expected
    assert not policy.any


@pytest.mark.parametrize(
    "text",
    ["a.example", "https://*.example", "https://a.example/app", "ftp://a.example", "null", "*x"],
)
def test_allowed_origins_refuses_what_is_not_an_origin(text: str) -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        OriginPolicy.parse(text)
    with pytest.raises(ValueError, match="is not an origin"):
        Config(allowed_origins=text).check()


def test_origins_print_as_browsers_send_them() -> None:
    for text in ("https://a.example", "http://a.example:8080", "http://[::1]:8080"):
        origin = parse_origin(text)
        assert origin is not None
        assert str(origin) == text


@pytest.mark.parametrize(("cert", "key"), [("cert.pem", None), (None, "key.pem"), ("cert.pem", "")])
def test_tls_cert_and_key_go_together(cert: str | None, key: str | None) -> None:
    with pytest.raises(ValueError, match="--tls-cert and --tls-key go together"):
        Config(tls_cert=cert, tls_key=key).check()
