"""Processes `hubbub cluster` and the tests start and stop by PID: nodes, HAProxy, and a
PostgreSQL and redis-server of their own (`PrivatePostgres`, `PrivateRedis`), and a PostgreSQL
primary with a synchronous standby (`PostgresPair`).

Each is started on 127.0.0.1 on a free port, waited for until it answers, and stopped with
SIGTERM, then SIGKILL after a timeout; logs go to files the caller names.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HUBBUB = [sys.executable, "-m", "hubbub"]

# A node's own drain after its grace: acks in flight (--drain-timeout, 10 s) and closes.
DRAIN_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _probe_context() -> ssl.SSLContext:
    """TLS for probing our own HAProxy on this machine: its certificate names the public
    host (or is self-signed), so it is not verified; nothing but a status is read."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status of GET `url`, or None when nothing answers."""
    context = _probe_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path | None) -> None:
    """Poll `condition` until it holds; fail with `what` (and the log's tail) at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} (waited {timeout:g} s)\n{tail}")
        time.sleep(0.05)


def spawn(cmd: list[str], log: Path, user: str | None = None) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own session (Ctrl-C reaches only the cluster), output to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, user=user
        )


def signal_and_reap(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> int | None:
    """Send `sig`, then reap; the exit status (None: never started)."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
    return reap(proc, timeout)


def reap(proc: subprocess.Popen[bytes] | None, timeout: float) -> int | None:
    """Wait up to `timeout` for `proc` to exit, then SIGKILL it; its exit status."""
    if proc is None:
        return None
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode


@dataclass
class NodeProcess:
    """One `hubbub serve` subprocess of the cluster, restartable on the same port."""

    name: str
    port: int
    data: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data / "server.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        cmd = [*HUBBUB, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--data", str(self.data), "--node-id", self.name, *self.args]
        self.proc = spawn(cmd, self.log_path)

    def signal(self, sig: int) -> None:
        """Send `sig` unless the node has exited (and been reaped: its PID may be reused)."""
        if self.proc is not None:
            self.proc.send_signal(sig)

    def not_ready(self) -> bool:
        """Exited, or /readyz is not 200 (a drain has begun)."""
        return not self.alive or http_status(self.url + "/readyz") != 200

    def wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
            return http_status(self.url + "/readyz") == 200

        wait_for(ready, timeout, f"{self.name} is not ready", self.log_path)


def haproxy_executable() -> str:
    """HAProxy's path (Debian puts it in /usr/sbin, not always on PATH)."""
    exe = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if exe is None:
        raise RuntimeError("hubbub cluster needs HAProxy (apt-get install haproxy)")
    return exe


def spawn_haproxy(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """Run HAProxy in the foreground on `config` (stop it by PID with SIGTERM)."""
    return spawn([haproxy_executable(), "-db", "-f", str(config)], log)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout`; the exit status (None: never started)."""
    return signal_and_reap(proc, signal.SIGTERM, timeout)


class PrivateRedis:
    """A redis-server of the cluster's own: durable (AOF, fsync always), removed at stop."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="hubbub-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("--private needs redis-server on PATH")
        cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        cmd += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        log = self.directory / "redis.log"
        self.proc = spawn(cmd, log)
        wait_for(self._pong, timeout, "redis-server did not start", log)

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        signal_and_reap(self.proc, signal.SIGTERM, 15)
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL cluster of the cluster's own: initdb into a temp dir, trust auth, removed
    at stop. `postgres` runs as our child (not daemonized by pg_ctl) so it stops by PID."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="hubbub-postgres-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        # initdb and postgres refuse to run as root: use the system's postgres account.
        self.user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def start(self, timeout: float, settings: tuple[str, ...] = ()) -> None:
        """initdb, then run the server with `settings` (`name=value`, as for `postgres -c`)."""
        self.own_directory()
        init = [str(self.bindir() / "initdb"), "-D", str(self.data), "-U", "postgres"]
        init += ["--auth=trust", "--encoding=UTF8", "--no-sync"]
        if spawn(init, self.log, self.user).wait(120) != 0:
            raise RuntimeError(f"initdb failed:\n{self.log.read_text()[-3000:]}")
        self.launch(timeout, settings)

    def own_directory(self) -> None:
        """The server's account owns the temp dir (initdb and postgres refuse root)."""
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            os.chown(self.directory, account.pw_uid, account.pw_gid)

    def launch(self, timeout: float, settings: tuple[str, ...] = ()) -> None:
        """Run `postgres` on the existing data directory; wait until it accepts connections."""
        cmd = [str(self.bindir() / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        cmd += ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.data}"]
        for setting in settings:
            cmd += ["-c", setting]
        self.proc = spawn(cmd, self.log, self.user)
        wait_for(self._accepts, timeout, "PostgreSQL did not start", self.log)

    def bindir(self) -> Path:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version)
        if found:
            return found[-1].parent
        initdb = shutil.which("initdb")
        if initdb is None:
            raise RuntimeError("--private needs PostgreSQL's initdb (/usr/lib/postgresql/*/bin)")
        return Path(initdb).parent

    def _accepts(self) -> bool:
        import psycopg

        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError("PostgreSQL exited at start-up")
        try:
            with psycopg.connect(self.url, connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        signal_and_reap(self.proc, signal.SIGINT, 30)  # SIGINT: PostgreSQL's "fast" shutdown
        shutil.rmtree(self.directory, ignore_errors=True)


class PostgresPair:
    """A primary and a synchronous streaming standby of the cluster's own, for failover.

    The primary commits only once the standby has flushed the commit's WAL
    (`synchronous_standby_names = 'ANY 1 (standby)'`, synchronous_commit on), so everything
    acknowledged survives the primary's death once the standby is promoted. The standby is a
    `pg_basebackup -R` copy that streams from the primary; promoted, it runs without a standby
    of its own (its commits no longer wait: a lone survivor must keep accepting writes)."""

    STANDBY_NAME = "standby"

    def __init__(self) -> None:
        self.primary = PrivatePostgres()
        self.standby = PrivatePostgres()

    @property
    def url(self) -> str:
        """Both hosts, primary first; libpq and asyncpg keep the one that accepts writes."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"

    def start(self, timeout: float) -> None:
        sync = f"synchronous_standby_names=ANY 1 ({self.STANDBY_NAME})"
        self.primary.start(timeout, ("wal_level=replica", "max_wal_senders=5", sync))
        self.standby.own_directory()
        backup = [str(self.standby.bindir() / "pg_basebackup"), "-D", str(self.standby.data)]
        backup += ["-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres"]
        backup += ["-R", "-X", "stream", "--checkpoint=fast", "--no-sync"]
        if spawn(backup, self.standby.log, self.standby.user).wait(120) != 0:
            raise RuntimeError(f"pg_basebackup failed:\n{self.standby.log.read_text()[-3000:]}")
        # cluster_name is the application_name the standby's WAL receiver reports.
        self.standby.launch(timeout, (f"cluster_name={self.STANDBY_NAME}", "hot_standby=on"))
        wait_for(self._synchronous, timeout, "the standby did not become synchronous", None)

    def _synchronous(self) -> bool:
        state = _query(
            self.primary.url,
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
            self.STANDBY_NAME,
        )
        return state in ("sync", "quorum")

    def postmaster_pid(self, server: PrivatePostgres) -> int:
        """The postmaster's PID, as PostgreSQL wrote it in postmaster.pid's first line."""
        return int((server.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster: no shutdown checkpoint, no goodbye to clients
        (its backends notice their postmaster is gone and exit)."""
        os.kill(self.postmaster_pid(self.primary), signal.SIGKILL)
        reap(self.primary.proc, 10)

    def promote(self, timeout: float) -> None:
        """`pg_promote()` on the standby; return once it is out of recovery (accepts writes)."""
        _query(self.standby.url, "SELECT pg_promote(true, %s)", int(timeout))

        def writable() -> bool:
            return _query(self.standby.url, "SELECT pg_is_in_recovery()") is False

        wait_for(writable, timeout, "the standby did not leave recovery", self.standby.log)

    def stop(self) -> None:
        try:
            self.standby.stop()
        finally:
            self.primary.stop()


def _query(url: str, sql: str, *args: object) -> object:
    """The first column of the first row of `sql` on `url` (None: no row, or no server)."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
            row = conn.execute(sql, args).fetchone()
            return row[0] if row else None
    except psycopg.OperationalError:
        return None


def _version(initdb: Path) -> tuple[int, ...]:
    name = initdb.parent.parent.name
    return tuple(int(p) for p in name.split(".") if p.isdigit())
