"""`hubbub chat` (the Textual client), driven headless by Textual's pilot against a real server."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from support.api import unique
from support.server import ServerProcess, free_port
from textual.content import Content
from textual.pilot import Pilot
from textual.widgets import Input

from hubbub.client import Client, HubbubError
from hubbub.protocol import rules
from hubbub.tui import commands
from hubbub.tui.app import ChatApp
from hubbub.tui.login import LoginScreen
from hubbub.tui.model import TYPING_SHOWN_FOR, Chat, Message
from hubbub.tui.widgets import Line

PASSWORD = "correct horse"
SIZE = (100, 30)
FAST = {"backoff_initial": 0.05, "backoff_max": 0.5}
SCREENSHOT = "terminal.svg"  # in `screenshot_dir`: docs/img under `make screenshots`


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One SQLite server for this module (the client is the subject here, not the engines);
    no rate limit, so a test fills a room's history at once."""
    server = ServerProcess(tmp_path_factory.mktemp("chat-tui"), args=["--rate-limit", "0"])
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def people(chat_server: ServerProcess) -> AsyncIterator[Callable[..., Any]]:
    """`await person(name=None)`: a registered, logged-in and connected SDK client."""
    made: list[Client] = []

    async def person(name: str | None = None, url: str | None = None) -> Client:
        client = Client(url or chat_server.url, **FAST)
        made.append(client)
        name = name or unique("p")
        await client.register(name, PASSWORD)
        await client.login(name, PASSWORD)
        await client.connect()
        return client

    yield person
    for client in made:
        await client.close()


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str) -> None:
    """Let the app run until the condition holds; fail after a deadline."""
    deadline = time.monotonic() + 10.0
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}\n--- pane:\n{pane(pilot)}")
        await pilot.pause(0.02)


async def frames_until(
    client: Client, last: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """An SDK client's events up to and including the first for which `last` holds."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(10.0):
        async for frame in client.events():
            frames.append(frame)
            if last(frame):
                return frames
    raise AssertionError(f"the events ended: {frames}")


def pane(pilot: Pilot[None]) -> str:
    app = pilot.app
    assert isinstance(app, ChatApp)
    return app.pane.plain()


def focused(app: ChatApp) -> str | None:
    """The id of the widget with the focus (keys pressed before it has one are lost)."""
    widget = app.screen.focused
    return widget.id if widget is not None else None


def shown(widget: Any) -> str:
    """The text a Static draws (after any markup was or was not applied)."""
    visual = widget.visual
    assert isinstance(visual, Content)
    return visual.plain


async def say(pilot: Pilot[None], line: str) -> None:
    """Type a line into the input, key by key, and press Enter."""
    await pilot.press(*line, "enter")


async def command(pilot: Pilot[None], line: str) -> None:
    """Put a line (a command, or a message) in the input at once, and press Enter: keys cost
    ~70 ms each in the pilot, and `say` already shows that typing works."""
    app = pilot.app
    assert isinstance(app, ChatApp)
    app.input.value = line
    await pilot.press("enter")


async def test_log_in_join_talk_and_see_others(
    chat_server: ServerProcess, people: Callable[..., Any]
) -> None:
    bob = await people()
    room = unique("r")
    await bob.create_room(room)
    await bob.join(room)
    alice_name = unique("alice")
    app = ChatApp(chat_server.url, client_options=FAST)
    async with app.run_test(size=SIZE) as pilot:
        # The log-in screen: a new account, registered and logged in at once.
        await until(pilot, lambda: focused(app) == "username", "the log-in screen")
        await pilot.press(*alice_name, "enter", *PASSWORD)
        await pilot.click("#register")
        await until(pilot, lambda: app.state == "live", "the connection")
        await until(pilot, lambda: "no room yet" in pane(pilot), "your rooms loaded")

        await command(pilot, f"/join {room}")
        await until(pilot, lambda: app.chat.current == room, "the room on screen")
        await until(pilot, lambda: bob.user in shown(app.view.people), "bob in the presence list")
        assert f"#{room}" in shown(app.view.status) and "● live" in shown(app.view.status)

        await say(pilot, "hello bob")
        await until(pilot, lambda: f"{alice_name}  hello bob" in pane(pilot), "my message")
        await until(pilot, lambda: "sending" not in pane(pilot), "the echo")
        heard = await frames_until(bob, lambda f: f["type"] == "message")
        assert heard[-1]["from"] == alice_name and heard[-1]["body"] == "hello bob"
        # Nine keys in well under 3 s: one `typing` frame (then the message), no more.
        assert [f["user"] for f in heard if f["type"] == "typing"] == [alice_name]

        await bob.typing(room)
        await until(pilot, lambda: shown(app.view.typing) == f"{bob.user} is typing…", "typing")
        await bob.send(room, "[bold red]x[/] and [link=http://evil]y[/link]")
        await until(pilot, lambda: "[bold red]x[/]" in pane(pilot), "bob's message")
        last = list(app.pane.query_children(Line))[-1]
        assert drawn(last).endswith(f"{bob.user}  [bold red]x[/] and [link=http://evil]y[/link]")
        assert shown(app.view.typing) == ""  # bob sent: no longer typing

        carol = await people()
        await carol.join(room)
        await until(pilot, lambda: carol.user in shown(app.view.people), "carol online")
        await carol.close()
        await until(pilot, lambda: carol.user not in shown(app.view.people), "carol offline")

        await command(pilot, "/who")
        await until(pilot, lambda: f"Members of #{room}:" in pane(pilot), "/who")
        assert f"Online in #{room}: {', '.join(sorted([alice_name, bob.user]))}" in pane(pilot)

        mine = unique("r")
        await command(pilot, f"/create {mine} private")
        await until(pilot, lambda: app.chat.current == mine, "the new room on screen")
        assert f"Created #{mine} (private)." in pane(pilot)
        await command(pilot, f"/invite {bob.user}")
        await until(pilot, lambda: f"Invited {bob.user} to #{mine}." in pane(pilot), "/invite")
        assert (await bob.join(mine))["room"] == mine  # the private room lets bob in now

        await bob.send(room, "while you look elsewhere")
        await until(pilot, lambda: f"#{room} (1)" in rooms_list(app), "an unread count")
        for _ in range(2):  # two rooms: one of these shows it
            if app.chat.current != room:
                await pilot.press("ctrl+n")
        await until(pilot, lambda: "while you look elsewhere" in pane(pilot), "the message")
        assert f"#{room} (" not in rooms_list(app)  # read now

        await command(pilot, "/frobnicate")
        await until(pilot, lambda: "unknown command /frobnicate" in pane(pilot), "an error")
        nowhere = unique("nowhere")
        await command(pilot, f"/join {nowhere}")
        await until(pilot, lambda: f"! no room {nowhere!r}" in pane(pilot), "the error")

        await command(pilot, f"/leave {room}")
        await until(pilot, lambda: room not in app.chat.rooms, "the room left")
        assert f"You are no longer in #{room} (left)." in pane(pilot)
        assert alice_name not in (await bob.room(room))["members"]
        await command(pilot, "/leave")  # the room on screen now: alice's own, which she keeps
        await until(pilot, lambda: mine not in app.chat.rooms, "the room put away")
        assert f"You own #{mine}, so you stay a member" in pane(pilot)
        await command(pilot, "/quit")
        await until(pilot, lambda: not app.is_running, "the app to exit")


def drawn(line: Line, width: int = 200) -> str:
    """A line of the pane as the screen shows it (rendered, wrapped at `width`)."""
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(line.shown)
    return "\n".join(row.rstrip() for row in console.export_text().rstrip("\n").splitlines())


def rooms_list(app: ChatApp) -> str:
    return "\n".join(
        str(app.view.rooms.get_option_at_index(i).prompt)
        for i in range(app.view.rooms.option_count)
    )


async def test_scroll_back_loads_older_pages_up_to_the_beginning(
    chat_server: ServerProcess, people: Callable[..., Any]
) -> None:
    bob = await people()
    room = unique("r")
    await bob.create_room(room)
    await bob.join(room)
    await asyncio.gather(*(bob.send(room, f"message number {i}") for i in range(1, 121)))
    reader = await people()  # its token, given as --token would
    app = ChatApp(chat_server.url, token=reader.token, client_options=FAST)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state == "live", "the connection")
        await command(pilot, f"/join {room}")
        await until(pilot, lambda: "message number 120" in pane(pilot), "the latest page")
        assert "message number 71" in pane(pilot) and "message number 70" not in pane(pilot)

        # Scrolled to the top (as by the mouse wheel): the page before comes in above, and
        # what was at the top stays in view rather than jumping to the oldest line.
        app.pane.release_anchor()
        app.pane.scroll_home(animate=False)
        await until(pilot, lambda: "message number 21" in pane(pilot), "an older page")
        assert "message number 20" not in pane(pilot)
        await until(pilot, lambda: app.pane.scroll_y > 0, "the place kept")

        async def page_up_until_the_beginning() -> None:
            while "the beginning of" not in pane(pilot):
                await pilot.press("pageup")

        await asyncio.wait_for(page_up_until_the_beginning(), 10.0)
        lines = pane(pilot).splitlines()
        assert lines[0] == f"— the beginning of #{room} —"
        assert [line.split("  ", 1)[1] for line in lines[1:]] == [
            f"message number {i}" for i in range(1, 121)
        ]


async def test_signed_out_by_the_server_asks_to_log_in_again(
    chat_server: ServerProcess, people: Callable[..., Any]
) -> None:
    me = await people()
    app = ChatApp(chat_server.url, token=me.token, client_options=FAST)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state == "live", "the connection")
        await me.logout()  # revokes the token the app uses too: the server closes with 4001
        await until(pilot, lambda: focused(app) == "username", "the log-in screen")
        assert app.state == "signed out"
        assert isinstance(app.screen, LoginScreen)
        assert app.screen.query_one("#username", Input).value == ""
        app.screen.query_one("#password", Input).focus()
        app.screen.query_one("#username", Input).value = me.user
        app.screen.query_one("#password", Input).value = PASSWORD
        await pilot.press("enter")  # in the password field: log in
        await until(pilot, lambda: app.state == "live", "live again")


class Gate:
    """A TCP relay in front of a server that can turn new connections away: the client's path
    stays shut while the server is back, so others talk in its absence."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.open = True
        self.port = 0
        self._listener: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Gate:
        self._listener = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._listener.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._listener is not None
        self._listener.close()
        for writer in list(self._writers):
            writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not self.open:
                return
            try:
                upstream = await asyncio.open_connection("127.0.0.1", self.target)
            except OSError:
                return  # the server is down: so is the path
            self._writers |= {writer, upstream[1]}
            await asyncio.gather(self._pipe(reader, upstream[1]), self._pipe(upstream[0], writer))
        finally:
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)


async def test_reconnects_after_a_server_restart_and_catches_up(
    server_factory: Callable[..., ServerProcess], people: Callable[..., Any]
) -> None:
    server = server_factory()
    bob = await people(url=server.url)
    room = unique("r")
    await bob.create_room(room)
    name = unique("alice")
    async with Client(server.url) as registrar:
        await registrar.register(name, PASSWORD)
    async with Gate(server.port) as gate:
        # --user and --password: no log-in screen.
        app = ChatApp(gate.url, username=name, password=PASSWORD, client_options=FAST)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.state == "live", "the connection")
            await command(pilot, f"/join {room}")
            await until(pilot, lambda: app.chat.current == room, "the room")

            server.kill()
            await until(pilot, lambda: app.state == "reconnecting", "reconnecting")
            assert "● reconnecting" in shown(app.view.status)
            await command(pilot, "sent while away")
            await until(pilot, lambda: "sent while away  (sending…)" in pane(pilot), "pending")

            gate.open = False
            await asyncio.to_thread(server.start)
            await bob.join(room)  # bob's SDK reconnected by itself; this waits for it
            await bob.send(room, "said in your absence")
            assert app.state == "reconnecting"
            gate.open = True
            await until(pilot, lambda: app.state == "live", "live again")
            await until(pilot, lambda: "(sending…)" not in pane(pilot), "my message acked")
            await bob.send(room, "welcome back")
            await until(pilot, lambda: "welcome back" in pane(pilot), "bob's live message")
            text = pane(pilot)
            assert "connection lost (the connection was lost): reconnecting…" in text
            assert "reconnected: caught up." in text
            said = [line.split("  ", 1)[1] for line in text.splitlines() if "  " in line]
            # Replayed (since the last seq seen), resent once, then live: each once, in order.
            assert said == ["said in your absence", "sent while away", "welcome back"]
            assert sorted(app.chat.rooms[room].messages) == [1, 2, 3]


async def test_screenshot_of_a_conversation(
    chat_server: ServerProcess, people: Callable[..., Any], screenshot_dir: Path
) -> None:
    """docs/img/terminal.svg (`make screenshots`): fixed names and words (only this test
    uses them)."""
    bob, carol = await people("bob"), await people("carol")
    await bob.create_room("general", topic="everything and nothing")
    await bob.create_room("ops")
    for room in ("general", "ops"):
        await bob.join(room)
        await carol.join(room)
    async with Client(chat_server.url) as registrar:
        await registrar.register("alice", PASSWORD)
    app = ChatApp(chat_server.url, username="alice", password=PASSWORD, client_options=FAST)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state == "live", "the connection")
        await command(pilot, "/join ops")
        await until(pilot, lambda: app.chat.current == "ops", "ops")
        await command(pilot, "/join general")
        await until(pilot, lambda: app.chat.current == "general", "general")
        await bob.send("general", "morning all! the deploy of 2.4 is done")
        await carol.send("general", "nice, the latency graphs look flat")
        await say(pilot, "great work, thanks bob")
        await bob.send("general", "markup stays literal: [bold red]not red[/]")
        await carol.send(
            "general",
            "**release notes** are in `docs/changes.md`; a long line wraps under the text, "
            "not under the names, like this one does",
        )
        await carol.send("ops", "disk on db-2 at 81%, watching it")
        await carol.typing("general")
        await until(pilot, lambda: "carol is typing…" in shown(app.view.typing), "carol typing")
        await until(pilot, lambda: "#ops (1)" in rooms_list(app), "ops unread")
        await until(pilot, lambda: "like this one does" in pane(pilot), "the last message")
        await until(pilot, lambda: "sending" not in pane(pilot), "the echo")
        await pilot.pause()
        picture = app.export_screenshot(title="hubbub chat")
    assert picture.startswith("<svg") and ">hubbub&#160;chat<" in picture, picture[:200]
    saved = screenshot_dir / SCREENSHOT
    if not saved.exists() or unstable(saved.read_text()) != unstable(picture):
        saved.write_text(picture)  # rewritten only when more than the clock changed
    assert unstable(saved.read_text()) == unstable(picture)


def unstable(svg: str) -> str:
    """The picture without what changes at every run: the times, the port, the SVG's ids."""
    return re.sub(r"terminal-\d+|\d\d:\d\d|127\.0\.0\.1:\d+", "#", svg)


def test_input_lines_parse_to_commands_messages_or_usage() -> None:
    assert commands.parse("  ") is None
    assert commands.parse("hello") == commands.Say("hello")
    assert commands.parse("//join is a command") == commands.Say("/join is a command")
    assert commands.parse("/JOIN lobby") == commands.Command("join", ("lobby",))
    assert commands.parse("/leave") == commands.Command("leave", ())
    assert commands.parse("/create ops private") == commands.Command("create", ("ops", "private"))
    assert commands.parse("/create ops secret") == commands.Invalid("usage: /create ROOM [private]")
    assert commands.parse("/invite") == commands.Invalid("usage: /invite USER [ROOM]")
    assert commands.parse("/") == commands.Invalid("type /help for the list of commands")
    assert commands.parse("/rooms archived") == commands.Command("rooms", ("archived",))
    assert commands.parse("/rooms all") == commands.Invalid("usage: /rooms [archived]")
    assert commands.parse("/delete-room ops ops") == commands.Command("delete-room", ("ops", "ops"))
    unconfirmed = commands.parse("/delete-room ops opz")
    assert isinstance(unconfirmed, commands.Invalid)
    assert unconfirmed.reason.endswith("type its name twice: /delete-room ops ops")
    unknown = commands.parse("/frobnicate now")
    assert isinstance(unknown, commands.Invalid) and "unknown command /frobnicate" in unknown.reason


def test_the_model_counts_unread_drops_repeats_and_lets_typing_fade() -> None:
    chat = Chat(me="alice")
    chat.joined({"room": "a", "presence": ["alice", "bob"]})
    chat.joined({"room": "b", "presence": []})
    assert chat.current == "a"

    def message(room: str, seq: int, sender: str) -> Message:
        return Message(room, seq, f"m{seq}", sender, "hi", 0)

    chat.typing({"room": "a", "user": "bob"}, now=100.0)
    chat.typing({"room": "a", "user": "carol"}, now=100.0)
    assert chat.typing_line(now=101.0) == "bob and carol are typing…"
    assert chat.add_message(message("a", 1, "bob"))
    assert not chat.add_message(message("a", 1, "bob"))  # a replay is not shown twice
    assert chat.typing_line(now=101.0) == "carol is typing…"  # bob sent it
    assert chat.typing_line(now=100.0 + TYPING_SHOWN_FOR) == ""  # carol's notice faded

    chat.add_message(message("b", 1, "bob"))
    chat.add_message(message("b", 2, "alice"))  # my own, from another device
    assert (chat.rooms["a"].unread, chat.rooms["b"].unread) == (0, 1)
    assert chat.switch("b").unread == 0
    chat.presence({"room": "a", "user": "bob", "status": "offline"})
    assert chat.rooms["a"].online == {"alice"}
    chat.forget("b")
    assert chat.current == "a"


async def test_refused_input_shows_the_servers_sentence(
    chat_server: ServerProcess, people: Callable[..., Any]
) -> None:
    me = await people()
    room = unique("r")
    await me.create_room(room)
    app = ChatApp(chat_server.url, token=me.token, client_options=FAST)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state == "live", "the connection")
        await until(pilot, lambda: app.chat.current == room, "the room")
        bad = f"Design{room}"
        sentences = [
            (f"/join {bad}", f"{rules.ROOM}; try design{room}"),
            (f"/create {bad}", f"{rules.ROOM}; try design{room}"),
            ("x" * 4100, "a message is at most 4000 characters; this one is 100 over"),
        ]
        for line, sentence in sentences:
            await command(pilot, line)
            await until(pilot, lambda s=sentence: s in pane(pilot), sentence)
        errors = [line for line in pane(pilot).splitlines() if line.startswith(("!", "not sent"))]
        assert errors == [
            f"! {rules.ROOM}; try design{room}",
            f"! {rules.ROOM}; try design{room}",
            "! not sent: a message is at most 4000 characters; this one is 100 over",
        ]
        for junk in ("invalid frame", "$.", "bad_request", "too_large", "\\A", "[a-z"):
            assert junk not in pane(pilot)

        await command(pilot, "/delete-room lobby")
        assert "to confirm, type its name twice: /delete-room lobby lobby" in pane(pilot)


async def test_connection_errors_name_the_url_and_the_cause() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    app = ChatApp(url, username="someone", password=PASSWORD, client_options=FAST)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LoginScreen), "the log-in screen")
        error = app.screen.query_one("#login-error")
        said = f"cannot reach {url}: connection refused (is the server running, on that port?)"
        await until(pilot, lambda: shown(error) == said, "the reason")
        assert "ssl" not in shown(error)


async def test_help_rooms_markdown_and_wrapping_line_up(
    chat_server: ServerProcess, people: Callable[..., Any]
) -> None:
    bob = await people()
    room = unique("r")
    await bob.create_room(room, topic="where the build is discussed")
    await bob.join(room)
    me = await people()
    app = ChatApp(chat_server.url, token=me.token, client_options=FAST)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state == "live", "the connection")
        await command(pilot, "/help")
        await until(pilot, lambda: "/delete-room ROOM ROOM" in pane(pilot), "/help")
        help_line = list(app.pane.query_children(Line))[-1]
        rows = drawn(help_line, 70).splitlines()
        starts = {
            row.index(does[:10]) for row in rows for _, does in commands.HELP if does[:10] in row
        }
        assert len(starts) == 1 and len(rows) > len(commands.HELP)  # one column, some wrapped
        column = starts.pop()
        assert all(row[:column].strip() == "" or row[column - 2 : column] == "  " for row in rows)

        await command(pilot, "/rooms")
        await until(pilot, lambda: f"#{room}  1 member  where the build" in pane(pilot), "/rooms")
        await command(pilot, f"/join {room}")
        await until(pilot, lambda: app.chat.current == room, "the room")

        await bob.send(room, "plain text stays  as  typed: 2 * 3 = 6, <b>x</b> # not a title")
        await bob.send(room, "**strong** _em_ `code` [site](https://example.org) ![img](x.png)")
        await bob.send(room, "> quoted\n\n- one\n- two\n\n```\nfenced <i>\n```")
        long = "word " * 40
        await bob.send(room, long.strip())
        await until(pilot, lambda: "word word" in pane(pilot), "the messages")
        lines = list(app.pane.query_children(Line))[-4:]
        plain, rich, blocks, wrapped = lines
        assert drawn(plain).endswith(
            "plain text stays  as  typed: 2 * 3 = 6, <b>x</b> # not a title"
        )
        assert drawn(rich).endswith("strong em code site (https://example.org) !img (x.png)")
        shown_blocks = drawn(blocks)
        assert "▌ quoted" in shown_blocks and "• one" in shown_blocks
        assert "fenced <i>" in shown_blocks
        rows = drawn(wrapped, 60).splitlines()
        body_at = rows[0].index("word")
        assert len(rows) > 1 and all(row.index("word") == body_at for row in rows)


async def test_owners_archive_unarchive_and_delete_their_rooms(
    chat_server: ServerProcess, people: Callable[..., Any]
) -> None:
    me = await people()
    room = unique("r")
    await me.create_room(room)
    app = ChatApp(chat_server.url, token=me.token, client_options=FAST)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.chat.current == room, "the room")
        await command(pilot, "/archive")
        await until(pilot, lambda: f"Archived #{room}: it is read-only" in pane(pilot), "/archive")
        assert (await me.room(room))["archived"] is True
        await command(pilot, "/rooms archived")
        await until(pilot, lambda: f"#{room}  1 member (joined)" in pane(pilot), "the archived")
        await command(pilot, f"/unarchive {room}")
        await until(pilot, lambda: f"#{room} is open again." in pane(pilot), "/unarchive")
        assert (await me.room(room))["archived"] is False
        await command(pilot, f"/delete-room {room} {room}")
        await until(pilot, lambda: f"Deleted #{room} and its messages." in pane(pilot), "deleted")
        assert room not in app.chat.rooms
        with pytest.raises(HubbubError) as caught:
            await me.room(room)
        assert caught.value.code == "not_found"
