"""The chat screen's layout and how it draws `hubbub.tui.model.Chat`: status line, rooms,
messages, who is online, who is typing, and the input line. It draws; it never calls the server."""

from __future__ import annotations

import time
from typing import Final

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, OptionList, Static

from hubbub.tui.model import Chat, Message
from hubbub.tui.widgets import Line, MessagePane, message_widget, note_line

_STATE_STYLES: Final = {"live": "bold green", "reconnecting": "bold yellow"}


def beginning(room: str) -> Line:
    return Line(note_line(f"— the beginning of #{room} —", "dim"), 0)


class ChatView(Vertical):
    """Everything under the footer; the app updates the model, then asks for a redraw."""

    def __init__(self, chat: Chat, url: str) -> None:
        super().__init__(id="chat")
        self.chat, self.url = chat, url
        self.status = Static(id="status")
        self.rooms = OptionList(id="rooms")
        self.pane = MessagePane(id="pane")
        self.people = Static(id="people")
        self.typing = Static(id="typing")
        self.input = Input(placeholder="a message, or /help", id="input")
        self._typing_shown = ""

    def compose(self) -> ComposeResult:
        yield self.status
        with Horizontal(id="body"):
            yield self.rooms
            yield self.pane
            yield self.people
        yield self.typing
        yield self.input

    def on_mount(self) -> None:
        self.rooms.border_title, self.pane.border_title = "Rooms", "Messages"
        self.people.border_title = "Online"

    def note(self, text: Text) -> None:
        """A line of the client's own in the pane (it is not kept when switching rooms)."""
        self.pane.add_note(text)

    async def show(self, name: str | None) -> None:
        """Put a room on screen (or an empty pane when none is left)."""
        if name is not None:
            room = self.chat.switch(name)
            lines = [message_widget(m, self.chat.me) for m in room.ordered()]
            if not room.more_before:
                lines.insert(0, beginning(name))
            await self.pane.show(lines)
        else:
            self.chat.current = None
            await self.pane.show([])
        self.draw_rooms()
        self.draw_people()
        self.draw_typing()

    def show_message(self, message: Message) -> None:
        """A new message: at the bottom of the pane, or counted as unread in the room list."""
        if message.room == self.chat.current:
            self.pane.add_message(message_widget(message, self.chat.me), message.id)
            self.draw_typing()
        else:
            self.draw_rooms()

    def show_older(self, name: str, messages: list[Message], more: bool) -> None:
        """An older page of the room on screen, above what is shown."""
        if name != self.chat.current:
            return
        lines = [message_widget(m, self.chat.me) for m in messages]
        if not more:
            lines.insert(0, beginning(name))
        self.pane.add_older(lines)

    def draw_rooms(self) -> None:
        options = []
        for name in sorted(self.chat.rooms):
            room = self.chat.rooms[name]
            label = Text(f"#{name}", style="bold" if name == self.chat.current else "")
            if room.unread:
                label.append(f" ({room.unread})", style="bold yellow")
            options.append(label)
        self.rooms.set_options(options)
        if self.chat.current in self.chat.rooms:
            self.rooms.highlighted = sorted(self.chat.rooms).index(self.chat.current)

    def draw_people(self) -> None:
        room = self.chat.rooms.get(self.chat.current or "")
        text = Text()
        for user in sorted(room.online if room else (), key=str.lower):
            text.append(f"● {user}\n", style="bold green" if user == self.chat.me else "")
        self.people.update(text)

    def draw_typing(self) -> None:
        line = self.chat.typing_line(time.monotonic())
        if line != self._typing_shown:  # called every tick: redraw only a change
            self._typing_shown = line
            self.typing.update(Text(line, style="italic dim"))

    def draw_status(self, state: str, user: str, why: str = "") -> None:
        status = Text("hubbub", style="bold")
        status.append(f"  {self.chat.me or user or '?'} @ {self.url}")
        if self.chat.current:
            status.append(f"  #{self.chat.current}", style="bold")
        status.append("  ")
        status.append(f"● {state}", style=_STATE_STYLES.get(state, "bold red"))
        if why:
            status.append(f"  {why}", style="dim")
        self.status.update(status)
