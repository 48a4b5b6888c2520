"""The terminal client's Textual app: rooms, messages, presence and typing over `hubbub.Client`.

The app speaks no protocol of its own: every HTTP call and frame goes through the SDK, which
reconnects, re-joins with `since` and resends pending sends by itself. The app follows the
SDK's `connection` events for the connection state, and renders `hubbub.tui.model.Chat`.
The slash commands are parsed by `tui.commands` and run by `tui.slash`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, ClassVar, Final

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.widgets import Footer, Input, OptionList

from hubbub.client import Client, HubbubError
from hubbub.tui import commands, slash
from hubbub.tui.login import LoginScreen
from hubbub.tui.model import Chat, Message
from hubbub.tui.view import ChatView
from hubbub.tui.widgets import MessagePane, error_line, message_line, note_line

PAGE: Final = 50  # messages per history page
TYPING_EVERY: Final = 3.0  # seconds between two `typing` frames while typing
_FIRST_RETRY: Final = 0.2  # seconds before connecting again when the server cannot be reached


class ChatApp(App[None]):
    """`hubbub chat`: log in, then chat in the rooms you belong to."""

    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "hubbub"
    AUTO_FOCUS = "#input"
    ENABLE_COMMAND_PALETTE = False  # Ctrl+P is "previous room" here
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit"),
        Binding("ctrl+n", "next_room(1)", "Next room"),
        Binding("ctrl+p", "next_room(-1)", "Previous room"),
        Binding("pageup", "page_up", "Older", show=False),
        Binding("pagedown", "page_down", "Newer", show=False),
    ]

    state: reactive[str] = reactive("signed out")
    why: reactive[str] = reactive("")  # why the connection is down, while reconnecting

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.username, self.password, self.token = username, password, token
        self.client_options = client_options or {}
        self.chat = Chat()
        self._client: Client | None = None
        self._typed_at = 0.0
        self._loading_older = False
        # Kept, not queried: the app's queries look at the screen on top (the log-in one, say).
        self.view = ChatView(self.chat, url)

    @property
    def client(self) -> Client:
        assert self._client is not None, "the client is made when the app mounts"
        return self._client

    def compose(self) -> ComposeResult:
        yield self.view
        yield Footer()

    # -- signing in ---------------------------------------------------------------------------

    async def on_mount(self) -> None:
        # Made here, on the app's loop: the SDK's session and queues belong to it.
        self._client = Client(self.url, token=self.token, **self.client_options)
        self.set_interval(0.2, self._tick)
        self._draw_status()
        if self.token:
            self.run_worker(self._start(), group="session")
        elif self.username and self.password:
            error = await self.sign_in(self.username, self.password, False)
            if error is None:
                self.run_worker(self._start(), group="session")
            else:
                self._ask_login(error)
        else:
            self._ask_login()

    async def on_unmount(self) -> None:
        if self._client is not None:
            await self._client.close()

    def _ask_login(self, error: str = "") -> None:
        def logged_in(ok: bool | None) -> None:
            if ok:
                self.run_worker(self._start(), group="session")

        screen = LoginScreen(self.url, self.sign_in, self.username or "", error)
        self.push_screen(screen, logged_in)

    async def sign_in(self, username: str, password: str, register: bool) -> str | None:
        """Log in (registering first if asked); returns what went wrong, or None."""
        try:
            if register:
                await self.client.register(username, password)
            await self.client.login(username, password)
        except HubbubError as error:
            if error.code == "unauthorized":
                return "wrong username or password"
            return error.message
        self.username = username
        return None

    async def _start(self) -> None:
        """Connect (retrying while the server is away), then join every room of the user."""
        self.state = "connecting"
        delay = _FIRST_RETRY
        while True:
            try:
                await self.client.connect()
                break
            except HubbubError as error:
                if error.code == "unauthorized":
                    self.state = "signed out"
                    self._ask_login("the token was refused: log in again")
                    return
                if delay == _FIRST_RETRY:  # said once; the status line shows "connecting"
                    self.note(error_line(f"{error.message}; trying again"))
            await asyncio.sleep(delay)  # the server is away: back off before the next try
            delay = min(delay * 2, 10.0)
        self.chat.me = self.client.user or ""
        self.run_worker(self._pump(), group="events")
        await self._guard(self._enter_rooms())

    async def _enter_rooms(self) -> None:
        me = await self.client.me()
        names = sorted(str(room["name"]) for room in me.get("rooms", []))
        for name in names:
            await self.enter_room(name, show=False)
        if names:
            await self._show(self.chat.current or names[0])
        else:
            self.note(note_line("You are in no room yet: /join ROOM or /create ROOM (/help)."))

    async def enter_room(self, name: str, show: bool = True) -> None:
        """Join a room (subscribe; a member of a public room), load its latest page, show it."""
        joined = await self.client.join(name)
        self.chat.joined(joined)
        await self._load_latest(name)
        if show:
            await self._show(name)
        else:
            self.view.draw_rooms()

    async def _load_latest(self, name: str) -> None:
        page = await self.client.ws_history(name, limit=PAGE)
        messages = [m for m in map(Message.from_frame, page["messages"]) if m is not None]
        self.chat.add_history(name, messages, bool(page.get("more")), older=True)

    # -- events -------------------------------------------------------------------------------

    async def _pump(self) -> None:
        """Render every event of the SDK until it ends (logged out elsewhere: 4001)."""
        try:
            async for event in self.client.events():
                await self._on_event(event)
        except HubbubError as error:
            self.state = "signed out"
            self.chat.rooms.clear()
            await self._show(None)
            self.note(error_line(f"disconnected: {error.code} {error.message}"))
            if error.code == "unauthorized":  # logged out elsewhere, or the token expired
                self._ask_login("signed out by the server: log in again")

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind, room = event.get("type"), str(event.get("room", ""))
        if kind == "message":
            message = Message.from_frame(event)
            if message is not None and self.chat.add_message(message):
                self.view.show_message(message)
        elif kind == "presence":
            self.chat.presence(event)
            self.view.draw_people()
        elif kind == "typing":
            self.chat.typing(event, time.monotonic())
            self.view.draw_typing()
        elif kind == "left":
            await self.drop_room(room)
            self.note(note_line(f"You are no longer in #{room} ({event.get('reason', 'left')})."))
        elif kind == "error":
            if room:  # a room that could not be re-joined after a reconnect
                await self.drop_room(room)
            where = f"#{room}: " if room else ""
            self.note(error_line(f"{where}{event.get('message', '')}"))
        elif kind == "connection":
            self._connection(event)
        elif kind == "joined" and event.get("recovered") is False:
            # Too much was missed to replay: start again from the latest page.
            self.chat.rooms.pop(room, None)
            self.chat.joined(event)
            await self._guard(self._load_latest(room))
            if room == self.chat.current:
                await self._show(room)

    # -- drawing ------------------------------------------------------------------------------

    @property
    def pane(self) -> MessagePane:
        return self.view.pane

    @property
    def input(self) -> Input:
        return self.view.input

    def note(self, text: Text) -> None:
        self.view.note(text)

    async def _show(self, name: str | None) -> None:
        await self.view.show(name)
        self._draw_status()

    async def drop_room(self, name: str) -> None:
        """A room is gone from the list; when it was on screen, another one takes its place."""
        on_screen = name == self.chat.current
        self.chat.forget(name)
        if on_screen:
            await self._show(self.chat.current)
        else:
            self.view.draw_rooms()

    def _draw_status(self) -> None:
        self.view.draw_status(self.state, self.username or "", self.why)

    def _connection(self, event: dict[str, Any]) -> None:
        """The SDK's word on the connection: `connected`, `disconnected` (again after every
        failed attempt, with the reason) or `resumed` (every room re-joined)."""
        state, reason = event.get("state"), str(event.get("reason", ""))
        if state == "disconnected":
            if self.state == "live":
                self.note(error_line(f"connection lost ({reason}): reconnecting…"))
            self.why = reason
            self.state = "reconnecting"
        elif state in ("connected", "resumed"):
            if self.state == "reconnecting":
                self.note(note_line("reconnected: caught up."))
            self.why = ""
            self.state = "live"

    def watch_state(self) -> None:
        self._draw_status()

    def watch_why(self) -> None:
        self._draw_status()

    def _tick(self) -> None:
        """Let typing notices expire."""
        self.view.draw_typing()

    # -- input --------------------------------------------------------------------------------

    @on(Input.Changed, "#input")
    def typed(self, event: Input.Changed) -> None:
        """Tell the room we are typing, at most once every few seconds."""
        room, now = self.chat.current, time.monotonic()
        if not room or not event.value or event.value.startswith("/"):
            return
        if now - self._typed_at >= TYPING_EVERY and self.client.connected:
            self._typed_at = now
            self.run_worker(self._guard(self.client.typing(room)))

    @on(Input.Submitted, "#input")
    def submitted(self, event: Input.Submitted) -> None:
        event.input.clear()
        parsed = commands.parse(event.value)
        if isinstance(parsed, commands.Say):
            self._say(parsed.body)
        elif isinstance(parsed, commands.Invalid):
            self.note(error_line(parsed.reason))
        elif isinstance(parsed, commands.Command):
            self.run_worker(self._guard(slash.run(self, parsed)))

    def _say(self, body: str) -> None:
        room = self.chat.current
        if room is None:
            self.note(error_line("join a room first: /join ROOM"))
            return
        id = uuid.uuid4().hex
        now_ms = int(time.time() * 1000)
        pending = message_line(Message(room, 0, id, self.chat.me, body, now_ms), "")
        pending.append("  (sending…)", style="dim")
        self.pane.add_pending(pending, id)
        self._typed_at = 0.0  # the next keystroke is a new bout of typing

        async def send() -> None:
            try:
                await self.client.send(room, body, id=id)
            except HubbubError as error:
                self.pane.fail_pending(id, f"not sent: {error.message}")

        self.run_worker(send())

    async def _guard(self, work: Awaitable[None]) -> None:
        """Run a call; an error answer (or a server out of reach) becomes a line in the pane,
        in the SDK's words: the server's sentence, or "cannot reach URL: CAUSE"."""
        try:
            await work
        except HubbubError as error:
            self.note(error_line(error.message or error.code))

    # -- keys and clicks ----------------------------------------------------------------------

    async def action_next_room(self, step: int) -> None:
        names = sorted(self.chat.rooms)
        if names:
            at = names.index(self.chat.current) if self.chat.current in names else 0
            await self._show(names[(at + step) % len(names)])

    @on(OptionList.OptionSelected, "#rooms")
    async def room_chosen(self, event: OptionList.OptionSelected) -> None:
        names = sorted(self.chat.rooms)
        if 0 <= event.option_index < len(names):
            await self._show(names[event.option_index])
            self.input.focus()

    def action_page_up(self) -> None:
        if self.pane.scroll_y <= 0:
            self._load_older()
        else:
            self.pane.scroll_page_up()

    def action_page_down(self) -> None:
        self.pane.scroll_page_down()

    @on(MessagePane.ReachedTop)
    def reached_top(self) -> None:
        self._load_older()

    def _load_older(self) -> None:
        room = self.chat.rooms.get(self.chat.current or "")
        if room is None or not room.more_before or self._loading_older:
            return
        self._loading_older = True
        self.run_worker(self._guard(self._page_back(room.name)))

    async def _page_back(self, name: str) -> None:
        try:
            oldest = self.chat.room(name).oldest
            page = await self.client.ws_history(name, before=oldest, limit=PAGE)
        finally:
            self._loading_older = False
        if name not in self.chat.rooms:
            return  # left meanwhile
        messages = [m for m in map(Message.from_frame, page["messages"]) if m is not None]
        more = bool(page.get("more"))
        self.chat.add_history(name, messages, more, older=True)
        self.view.show_older(name, messages, more)
