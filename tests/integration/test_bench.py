"""`hubbub bench` as a subprocess against real servers: a hubbub node, and a python-socketio app.

Tiny sizes and short windows: these check that every scenario runs and that its
figures agree with each other and with the server's own record, not how fast
anything is.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from array import array
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.needs import modules
from support.server import ServerProcess, free_port

from hubbub.bench import UNLIMITED_ENV, output, phases
from hubbub.bench.measure import Window

HERE = Path(__file__).resolve().parent
SOCKETIO_APP = HERE.parent / "support" / "bench_socketio_app.py"
BENCH_TIMEOUT = 60
SMALL = ["--workers", "1", "--users", "2", "--rooms", "2", "--quiet"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One hubbub node without its per-client limits (the bench sends fast, from one
    address, with few users)."""
    srv = ServerProcess(tmp_path_factory.mktemp("bench-node"), env=UNLIMITED_ENV)
    srv.start()
    yield srv
    srv.stop()


def bench(url: str, *args: str, json_path: Path | None = None) -> tuple[int, str, dict[str, Any]]:
    """Run `hubbub bench`; (exit code, stdout + stderr, the JSON it wrote or {})."""
    argv = [sys.executable, "-m", "hubbub", "bench", url, *args]
    if json_path is not None:
        argv += ["--json", str(json_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=BENCH_TIMEOUT)
    output = done.stdout + done.stderr
    report = json.loads(json_path.read_text()) if json_path and json_path.exists() else {}
    return done.returncode, output, report


def results(code: int, output: str, report: dict[str, Any], scenario: str) -> dict[str, Any]:
    assert code == 0, output
    figures: dict[str, Any] = report["results"][scenario]
    assert "failed" not in figures, output
    return figures


def get_json(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        return json.loads(r.read())


def login(base: str, name: str, password: str = "hubbub-bench-password") -> str:
    body = json.dumps({"username": name, "password": password}).encode()
    request = urllib.request.Request(
        base + "/api/v1/login", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        return str(json.loads(r.read())["token"])


def room_names(base: str, token: str) -> set[str]:
    return {room["name"] for room in get_json(base + "/api/v1/rooms", token)["rooms"]}


def test_fanout_at_a_fixed_rate_delivers_every_message_to_every_member(
    node: Any, tmp_path: Path, unique: Any
) -> None:
    prefix = unique("f") + "-"
    code, out, report = bench(
        node.url,
        "fanout",
        *SMALL,
        "--members",
        "5",
        "--rate",
        "40",
        "--duration",
        "1",
        "--latency-sample",
        "1",
        "--room-prefix",
        prefix,
        json_path=tmp_path / "r.json",
    )
    r = results(code, out, report, "fanout")
    assert r["mode"] == "fixed"
    assert r["connections"] == 2 * 5
    assert r["acked"] > 0
    assert r["acked"] == r["sent"]
    assert r["deliveries"] == r["acked"] * 5 == r["expected_deliveries"]
    assert r["e2e_p50_ms"] is not None and r["e2e_p50_ms"] <= r["e2e_p99_ms"]
    assert len(r["steps"]) >= 1 and all("delivered_per_s" in s for s in r["steps"])
    assert r["health"]["error_frames"] == 0
    assert report["accounts"] == "api" and report["dialect"] == "hubbub"


def test_fanout_ramp_records_each_step(node: Any, tmp_path: Path, unique: Any) -> None:
    prefix = unique("r") + "-"
    code, out, report = bench(
        node.url,
        "fanout",
        *SMALL,
        "--members",
        "3",
        "--start-rate",
        "20",
        "--step",
        "2",
        "--step-seconds",
        "0.4",
        "--max-steps",
        "3",
        "--room-prefix",
        prefix,
        json_path=tmp_path / "r.json",
    )
    r = results(code, out, report, "fanout")
    assert r["mode"] == "ramp"
    assert [s["rate_msgs_per_s"] for s in r["steps"]] == [20, 40, 80]
    assert r["delivered_per_s"] == max(s["delivered_per_s"] for s in r["steps"]) > 0
    assert r["deliveries"] == r["acked"] * 3
    assert "ended before saturation" in out  # three short steps do not saturate a node


def test_send_acks_are_the_messages_the_server_stored(
    node: Any, tmp_path: Path, unique: Any
) -> None:
    prefix, users = unique("s") + "-", unique("sender") + "-"
    code, out, report = bench(
        node.url,
        "send",
        *SMALL,
        "--senders",
        "3",
        "--window",
        "4",
        "--duration",
        "1",
        "--room-prefix",
        prefix,
        "--user-prefix",
        users,
        "--no-cleanup",  # the rooms and their sender are read afterwards
        json_path=tmp_path / "r.json",
    )
    r = results(code, out, report, "send")
    assert r["acked"] > 0 and r["acked"] == r["sent"]
    assert r["acked_per_s"] > 0 and r["ack_p50_ms"] is not None
    token = login(node.url, f"{users}0")
    stored = 0
    for room in (f"{prefix}send-0", f"{prefix}send-1"):
        base = f"{node.url}/api/v1/rooms/{room}/messages"
        newest = get_json(f"{base}?limit=1", token)["messages"]
        oldest = get_json(f"{base}?after=0&limit=1", token)["messages"]
        assert oldest[0]["seq"] == 1  # a fresh room: seqs 1..N without gaps, N messages
        assert newest[0]["from"].startswith(users)
        stored += newest[0]["seq"]
    assert stored == r["acked"]


def test_connections_open_idle_and_read_the_rss_from_metrics(
    node: Any, tmp_path: Path, unique: Any
) -> None:
    code, out, report = bench(
        node.url,
        "connections",
        *SMALL,
        "--connections",
        "60",
        "--room-prefix",
        unique("c") + "-",
        json_path=tmp_path / "r.json",
    )
    r = results(code, out, report, "connections")
    assert r["opened"] == r["open_at_end"] == 60
    assert r["failed_connections"] == 0
    assert r["connects_per_s"] > 0
    assert r["rss_source"] == "metrics"
    assert r["rss_before_kib"] > 1024 and r["rss_after_kib"] > 1024


def test_churn_cycles_without_errors(node: Any, tmp_path: Path, unique: Any) -> None:
    code, out, report = bench(
        node.url,
        "churn",
        *SMALL,
        "--churners",
        "3",
        "--duration",
        "1",
        "--room-prefix",
        unique("ch") + "-",
        json_path=tmp_path / "r.json",
    )
    r = results(code, out, report, "churn")
    assert r["cycles"] > 0 and r["cycles_per_s"] > 0
    assert r["errors"] == 0 and r["errors_total"] == 0
    assert r["cycle_p50_ms"] is not None


def post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def strict_node(tmp_path: Path, **limits: str) -> ServerProcess:
    """A node with the bench's own limits (per connection) off and `limits` on."""
    (tmp_path / "strict-node").mkdir()
    srv = ServerProcess(tmp_path / "strict-node", env={**UNLIMITED_ENV, **limits})
    srv.start()
    return srv


def test_new_bench_accounts_are_no_failed_logins_and_lock_no_one_out(
    tmp_path: Path, unique: Any
) -> None:
    """Six new accounts from one address, twice (the second run finds them), against a
    node that refuses an address after two failed logins: a person logging in from the
    same address afterwards is let in."""
    node = strict_node(tmp_path, HUBBUB_LOGIN_FAILURES="2")
    try:
        _bench_twice_then_log_in(node, unique)
    finally:
        node.stop()


def _bench_twice_then_log_in(strict_node: ServerProcess, unique: Any) -> None:
    users, rooms = unique("newb") + "-", unique("lock") + "-"
    for _ in range(2):
        code, out, _ = bench(
            strict_node.url,
            "connections",
            "--workers", "1", "--users", "6", "--rooms", "1", "--quiet",
            "--connections", "6", "--user-prefix", users, "--room-prefix", rooms,
            "--no-cleanup",  # the second run finds the accounts of the first
        )  # fmt: skip
        assert code == 0, out
    person = {"username": unique("person"), "password": "a long enough password"}
    status, _ = post_json(strict_node.url + "/api/v1/users", person)
    assert status == 201
    status, body = post_json(strict_node.url + "/api/v1/login", person)
    assert status == 200, body
    assert "token" in body


def test_a_server_limit_the_setup_hits_is_named_with_its_flag(tmp_path: Path, unique: Any) -> None:
    """Two rooms for one user to create where the node allows one per hour: exit 1 at
    once, with the server's words and the flag that relaxes the limit, not a wait of an
    hour."""
    node = strict_node(tmp_path, HUBBUB_ROOMS_PER_HOUR="1")
    started = time.monotonic()
    try:
        code, out, _ = bench(
            node.url,
            "send",
            "--workers", "1", "--users", "1", "--rooms", "2", "--quiet",
            "--senders", "2", "--duration", "1",
            "--user-prefix", unique("quota") + "-",
            "--room-prefix", unique("q") + "-",
        )  # fmt: skip
    finally:
        node.stop()
    assert code == 1, out
    assert "at most 1 new rooms per hour" in out
    assert "--rooms-per-hour" in out and "HUBBUB_ROOMS_PER_HOUR=0" in out
    assert "Traceback" not in out
    assert time.monotonic() - started < BENCH_TIMEOUT / 2


def test_refused_connections_name_the_limit_behind_them(tmp_path: Path, unique: Any) -> None:
    """Eight connections from one address to a node that takes five per address: the
    report says three failed and names the flags that set the limit."""
    node = strict_node(tmp_path, HUBBUB_MAX_CONNECTIONS_PER_ADDRESS="5")
    try:
        code, out, _ = bench(
            node.url,
            "connections",
            "--workers", "1", "--users", "8", "--rooms", "1", "--quiet",
            "--connections", "8",
            "--user-prefix", unique("cap") + "-", "--room-prefix", unique("cap") + "-",
        )  # fmt: skip
    finally:
        node.stop()
    assert code == 0, out  # the run completes and reports what it could open
    assert "429" in out, out
    assert "--max-connections-per-address" in out and "--max-connections-per-user" in out, out
    assert "Traceback" not in out


def test_cleanup_removes_the_rooms_and_accounts_the_run_created(
    tmp_path: Path, unique: Any
) -> None:
    """By default the run deletes what it created, without a failed login: a person who
    logs in from the same address afterwards is let in (two failures lock it), no bench
    room is listed, and a bench account's login answers 401."""
    node = strict_node(tmp_path, HUBBUB_LOGIN_FAILURES="2")
    try:
        person = {"username": unique("person"), "password": "a long enough password"}
        assert post_json(node.url + "/api/v1/users", person)[0] == 201
        rooms = unique("gone") + "-"
        code, out, report = bench(
            node.url,
            "send",
            "--workers", "1", "--users", "2", "--rooms", "2", "--quiet",
            "--senders", "2", "--duration", "1",
            "--user-prefix", unique("gone") + "-", "--room-prefix", rooms,
            json_path=tmp_path / "r.json",
        )  # fmt: skip
        results(code, out, report, "send")
        created = report["created"]
        assert len(created["rooms"]) == 2 and len(created["accounts"]) == 2
        assert "cleanup: removed 2 rooms and 2 accounts" in out
        assert report["cleanup"] == "cleanup: removed 2 rooms and 2 accounts"
        token = login(node.url, person["username"], person["password"])
        assert not {n for n in room_names(node.url, token) if n.startswith(rooms)}
        for name in created["accounts"]:
            status, body = post_json(
                node.url + "/api/v1/login",
                {"username": name, "password": "hubbub-bench-password"},
            )
            assert status == 401, body
    finally:
        node.stop()


def test_no_cleanup_keeps_the_rooms_and_accounts(node: Any, tmp_path: Path, unique: Any) -> None:
    users, rooms = unique("kept") + "-", unique("kept") + "-"
    code, out, report = bench(
        node.url,
        "send",
        *SMALL,
        "--senders", "2", "--duration", "1",
        "--user-prefix", users, "--room-prefix", rooms, "--no-cleanup",
        json_path=tmp_path / "r.json",
    )  # fmt: skip
    results(code, out, report, "send")
    assert "kept (--no-cleanup): the 2 rooms and 2 accounts this run created" in out
    assert report["created"]["accounts"] == [f"{users}0", f"{users}1"]
    token = login(node.url, f"{users}1")
    assert {f"{rooms}send-0", f"{rooms}send-1"} <= room_names(node.url, token)


def test_piped_output_shows_plain_progress_while_it_runs(node: Any, unique: Any) -> None:
    """Not a terminal: a line per phase and one at least every 5 s of a long phase, read
    while the bench still runs, and no control characters."""
    argv = [sys.executable, "-m", "hubbub", "bench", node.url, "send"]
    argv += ["--workers", "1", "--users", "2", "--rooms", "2", "--senders", "2"]
    argv += ["--duration", "6", "--room-prefix", unique("pipe") + "-"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        running: list[str] = []  # the lines read before the bench ended
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if proc.poll() is None:
                running.append(line)
        out = proc.stdout.read()
        assert proc.wait(BENCH_TIMEOUT) == 0, "".join(lines) + out
    finally:
        proc.kill()
        proc.wait()
    text = "".join(lines)
    assert "accounts: 2 users, 2 rooms: 4/4 users and rooms set up" in text
    assert "send: connecting: 2/2 connections (2 open)" in text
    assert any(re.match(r"send: 2 senders, window 8: [1-5]/6 s \(", line) for line in running)
    assert "cleanup: removed" in text or "cannot delete" in text
    control = {c for c in text + out if not c.isprintable() and c != "\n"}
    assert not control, control  # no escape sequences, no carriage returns


def test_a_stalled_setup_says_what_it_waits_for_and_the_limit_behind_it(
    tmp_path: Path, unique: Any
) -> None:
    """One failed login locks this address out for 5 s: the bench's logins are refused
    with a short Retry-After that it waits out; meanwhile a line explains the stall with
    the server's answer and the flag that relaxes the limit, then the run goes on."""
    node = strict_node(tmp_path, HUBBUB_LOGIN_FAILURES="1", HUBBUB_LOGIN_WINDOW="5")
    try:
        wrong = {"username": unique("nobody"), "password": "not the password"}
        assert post_json(node.url + "/api/v1/login", wrong)[0] == 401
        code, out, _ = bench(
            node.url,
            "connections",
            "--workers", "1", "--users", "2", "--rooms", "1", "--quiet",
            "--connections", "2", "--stall-seconds", "1",
            "--user-prefix", unique("stall") + "-", "--room-prefix", unique("st") + "-",
        )  # fmt: skip
    finally:
        node.stop()
    assert code == 0, out
    stall = next(line for line in out.splitlines() if "the server's last answer" in line)
    assert stall.startswith("accounts: 2 users, 1 rooms: 0/3 users and rooms set up for ")
    assert "waiting for the server's answers to registrations, logins" in stall
    assert "429 rate_limited 'too many failed logins from this address'" in stall
    assert "(retry after " in stall
    assert "--login-failures" in stall and "HUBBUB_LOGIN_FAILURES=0" in stall


@pytest.mark.parametrize(
    ("url", "message"),
    [("http://127.0.0.1:1", "cannot reach"), ("ftp://example.com", "not an http")],
)
def test_a_bad_url_is_a_clear_error_and_exit_code_2(url: str, message: str) -> None:
    code, out, _ = bench(url, "send", "--quiet")
    assert code == 2, out
    assert message in out
    assert "Traceback" not in out


def test_an_unknown_scenario_is_exit_code_2() -> None:
    code, out, _ = bench("http://127.0.0.1:1/", "nonsense", "--quiet")
    assert code == 2
    assert "unknown scenario nonsense" in out


def test_plot_writes_png_files(node: Any, tmp_path: Path, unique: Any) -> None:
    modules("matplotlib", hint="pip install 'hubbub[bench]'")
    plots = tmp_path / "plots"
    code, out, _ = bench(
        node.url,
        "send",
        *SMALL,
        "--senders",
        "2",
        "--duration",
        "1",
        "--room-prefix",
        unique("p") + "-",
        "--plot",
        str(plots),
    )
    assert code == 0, out
    for name in ("latency_cdf.png", "throughput.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def socketio_app(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """tests/support/bench_socketio_app.py on a free port; its base URL."""
    modules("socketio", hint="pip install 'hubbub[dev]'")
    port = free_port()
    log = (tmp_path_factory.mktemp("socketio") / "app.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(SOCKETIO_APP), "--port", str(port)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, "the socketio app exited"
            try:
                get_json(url + "/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, "the socketio app did not start"
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_socketio_dialect_drives_a_python_socketio_server(
    socketio_app: str, tmp_path: Path
) -> None:
    # The app pings every 0.5 s: a client that did not answer would be dropped mid-run.
    code, out, report = bench(
        socketio_app,
        "--dialect",
        "socketio",
        "fanout",
        "send",
        "churn",
        *SMALL,
        "--members",
        "4",
        "--rate",
        "40",
        "--duration",
        "1",
        "--senders",
        "2",
        "--churners",
        "2",
        json_path=tmp_path / "r.json",
    )
    assert report["accounts"] == "names"
    fanout = results(code, out, report, "fanout")
    assert fanout["acked"] > 0
    assert fanout["deliveries"] == fanout["acked"] * 4
    assert fanout["health"]["closed_connections"] == {}
    send = results(code, out, report, "send")
    assert send["acked"] > 0 and send["acked"] == send["sent"]
    churn = results(code, out, report, "churn")
    assert churn["cycles"] > 0 and churn["errors"] == 0


def window(**cpu: float) -> Window:
    figures: dict[str, Any] = {
        "load_cpu": 0.1,
        "worker_cpu_max": 0.1,
        "load_cpus_busy": 0.2,
        "server_cpu": 0.5,
        "server_cpus_busy": 0.5,
        "server_wait": 0.0,
    } | cpu
    return Window(
        seconds=1.0,
        deliveries=0,
        acks=0,
        sent=0,
        errors=0,
        throttled=0,
        server_cpu_count=1,
        latencies=array("q"),
        ack_latencies=array("q"),
        error_samples=Counter(),
        closed=Counter(),
        **figures,
    )


@pytest.mark.parametrize(
    ("cpu", "bound", "saturated"),
    [
        ({}, False, False),
        ({"worker_cpu_max": 0.99}, True, False),  # one event loop filled its CPU
        ({"load_cpus_busy": 0.99, "load_cpu": 0.7}, True, False),  # we filled the load CPUs
        ({"load_cpus_busy": 0.99, "load_cpu": 0.2}, False, True),  # someone else did
    ],
)
def test_the_client_is_the_bottleneck_when_its_own_processes_fill_the_cpus(
    cpu: dict[str, float], bound: bool, saturated: bool
) -> None:
    w = window(**cpu)
    assert phases.client_bound(w) is bound
    assert phases.cpus_saturated(w) is saturated
    health = {
        "windows": 4,
        "client_bound_windows": 3 if bound else 0,
        "cpus_saturated_windows": 2 if saturated else 0,
        "worker_cpu_max": w.worker_cpu_max,
        "load_cpus_busy_max": w.load_cpus_busy,
    }
    notes = " ".join(output.warnings({"send": {"health": health}}))
    assert ("CLIENT side was the bottleneck in 3 of 4" in notes) is bound
    assert ("CPUs were saturated in 2 of 4" in notes) is saturated
