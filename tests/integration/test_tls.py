"""Encryption in transit: a node serving https and wss itself, and HAProxy terminating TLS.

Each run makes a throwaway CA with the `openssl` command and signs a certificate for
127.0.0.1 (an IP SAN). Clients trust that CA only: registration, login and a WebSocket
session (hello, join, send, ack) go through; a client that does not trust it fails
verification, and plain HTTP to the TLS port gets no answer. HAProxy is required for its
test: without it that test skips, or fails when CI is set.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from support.api import Api
from support.server import ServerProcess, free_port
from support.tools import haproxy_check, require
from support.ws import WS
from support.wsutil import recv_until, uid

from hubbub.ops.cluster import Cluster
from hubbub.ops.haproxy import HAProxyLayout, render_haproxy_config
from hubbub.ops.processes import spawn_haproxy, stop_process
from hubbub.server.config import Config
from hubbub.server.node import tls_context

HUBBUB = [sys.executable, "-m", "hubbub"]


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA's certificate: what clients trust
    cert: Path  # the server's certificate for 127.0.0.1
    key: Path  # its private key
    pem: Path  # both in one file, as HAProxy wants them


def openssl(*args: str) -> None:
    subprocess.run([require("openssl"), *args], capture_output=True, check=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA and a server certificate it signed for IP 127.0.0.1 (EC keys: fast to make)."""
    d = tmp_path_factory.mktemp("tls")
    ca_key, ca, key, csr, cert = (d / n for n in ("ca.key", "ca.pem", "key.pem", "csr", "cert"))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=hubbub test CA",
    )
    openssl("req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext = d / "ext.cnf"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    pem = d / "hubbub.pem"
    pem.write_text(cert.read_text() + key.read_text())
    return Certificates(ca, cert, key, pem)


def trusting(certs: Certificates) -> ssl.SSLContext:
    """A client context that trusts the test CA and nothing else."""
    return ssl.create_default_context(cafile=str(certs.ca))


class TLSServerProcess(ServerProcess):
    """`hubbub serve --tls-cert --tls-key`: https and wss, ready once /readyz answers 200
    over TLS (verified against the test CA)."""

    def __init__(self, data: Path, certs: Certificates) -> None:
        super().__init__(data, args=["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)])
        self.context = trusting(certs)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/ws"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw,
                    self.context.wrap_socket(raw, server_hostname="127.0.0.1") as s,
                ):
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).split(b" ", 2)[1:2] == [b"200"]:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log()}")


@pytest.fixture(scope="module")
def tls_node(
    certs: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TLSServerProcess]:
    srv = TLSServerProcess(tmp_path_factory.mktemp("tls-node"), certs)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


async def chat_through(url: str, ws_url: str, context: ssl.SSLContext) -> None:
    """Register, log in, create a room over `url`; hello, join, send and its ack over
    `ws_url`, with clients that verify the server against `context`."""
    connector = aiohttp.TCPConnector(ssl=context)
    async with aiohttp.ClientSession(connector=connector) as http:
        api = Api(http, url)
        _, token = await api.user()
        room = await api.room(token)
        ws = WS(await http.ws_connect(ws_url, max_msg_size=0))
        try:
            await ws.hello(token)
            await ws.join(room)
            msg_id = uid("m")
            frame = {"type": "send", "room": room, "id": msg_id, "body": "over TLS", "ref": msg_id}
            await ws.send(frame)
            ack, _ = await recv_until(ws, lambda f: f.get("ref") == msg_id, 10.0)
            assert ack["type"] == "ack", ack
            assert ack["seq"] == 1
        finally:
            await ws.close()
        status, body = await api.call("GET", f"/api/v1/rooms/{room}/messages?after=0", token)
        assert status == 200, body
        assert [m["body"] for m in body["messages"]] == ["over TLS"]


async def test_a_node_serves_https_and_wss(tls_node: TLSServerProcess, certs: Certificates) -> None:
    await chat_through(tls_node.url, tls_node.ws_url, trusting(certs))
    assert f'"url":"https://127.0.0.1:{tls_node.port}"' in tls_node.log().replace(" ", "")


async def test_a_client_that_does_not_trust_the_ca_is_refused(tls_node: TLSServerProcess) -> None:
    async with aiohttp.ClientSession() as http:  # the system's CAs only
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as refused:
            await http.get(tls_node.url + "/healthz")
        assert "certificate verify failed" in str(refused.value)
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await http.ws_connect(tls_node.ws_url)


async def test_plain_http_to_the_tls_port_gets_no_answer(tls_node: TLSServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{tls_node.port}/healthz") as r:
                await r.read()


def test_the_node_speaks_tls_1_2_at_least(tls_node: TLSServerProcess, certs: Certificates) -> None:
    context = tls_context(Config(tls_cert=str(certs.cert), tls_key=str(certs.key)))
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    client = trusting(certs)
    client.maximum_version = ssl.TLSVersion.TLSv1_2  # the oldest a node accepts still works
    with (
        socket.create_connection(("127.0.0.1", tls_node.port), timeout=5) as raw,
        client.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        assert s.version() == "TLSv1.2"
        assert s.selected_alpn_protocol() is None  # the client offered none


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("missing", "No such file or directory"),
        ("swapped", "not a PEM certificate chain and its private key"),
    ],
)
def test_a_bad_certificate_stops_the_node_with_one_line(
    certs: Certificates, tmp_path: Path, which: str, expected: str
) -> None:
    cert, key = (
        (tmp_path / "nope.pem", certs.key) if which == "missing" else (certs.key, certs.cert)
    )
    result = subprocess.run(
        [*HUBBUB, "serve", "--data", str(tmp_path), "--tls-cert", str(cert), "--tls-key", str(key)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("hubbub: cannot load --tls-cert"), result.stderr
    assert expected in line


# --- HAProxy terminating TLS ---------------------------------------------------------------


async def test_haproxy_terminates_tls_in_front_of_a_plain_node(
    certs: Certificates, tmp_path: Path, server_factory: object
) -> None:
    require("haproxy")
    node: ServerProcess = server_factory()  # type: ignore[operator]
    https_port, http_port, stats_port = free_port(), free_port(), free_port()
    layout = HAProxyLayout(
        bind=f"127.0.0.1:{http_port}",
        tls_bind=f"127.0.0.1:{https_port}",
        servers=(("node1", f"127.0.0.1:{node.port}"),),
        stats_bind=f"127.0.0.1:{stats_port}",
        stats_socket=str(tmp_path / "haproxy.sock"),
        tls_cert=str(certs.pem),
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_haproxy_config(layout))
    checked = haproxy_check(config)
    assert checked.returncode == 0, checked.stderr
    proc = spawn_haproxy(config, tmp_path / "haproxy.log")
    try:
        url = f"https://127.0.0.1:{https_port}"
        await wait_healthy(url, trusting(certs), proc, tmp_path / "haproxy.log")
        await chat_through(url, f"wss://127.0.0.1:{https_port}/ws", trusting(certs))
        async with aiohttp.ClientSession() as http:
            # Plain HTTP is redirected to https (same Host: right on the default ports).
            async with http.get(
                f"http://127.0.0.1:{http_port}/healthz", allow_redirects=False
            ) as r:
                assert r.status == 301
                assert r.headers["Location"].startswith("https://")
            # The system's CAs do not know the test CA.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await http.get(url + "/healthz")
    finally:
        stop_process(proc)


async def wait_healthy(
    url: str, context: ssl.SSLContext, proc: subprocess.Popen[bytes], log: Path
) -> None:
    """Until HAProxy answers /healthz 200 over TLS (its node is up by its checks)."""
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        while True:
            assert proc.poll() is None, tail(log)
            try:
                async with http.get(url + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            assert time.monotonic() < deadline, f"HAProxy did not answer:\n{tail(log)}"
            await asyncio.sleep(0.05)


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def test_hubbub_cluster_renders_tls_termination_haproxy_accepts(certs: Certificates) -> None:
    cluster = Cluster(2, database="postgresql://unused", tls_cert=str(certs.pem))
    try:
        text = cluster.haproxy_config()
        assert cluster.url == f"https://127.0.0.1:{cluster.port}"
        assert cluster.ws_url == f"wss://127.0.0.1:{cluster.port}/ws"
        assert f"bind 127.0.0.1:{cluster.port} ssl crt {certs.pem} alpn http/1.1" in text
        assert f"bind 127.0.0.1:{cluster.http_port}\n" in text
        config = cluster.workdir / "haproxy.cfg"
        config.write_text(text)
        checked = haproxy_check(config)
        assert checked.returncode == 0, checked.stderr
    finally:
        cluster.stop()
