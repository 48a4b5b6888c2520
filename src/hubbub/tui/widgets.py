"""The chat screen's widgets: the message pane with its scroll-back, and how lines are drawn.

Every piece of user text (names, bodies, room names, server messages) goes on screen as a
`rich.text.Text` built with `append`, never as a markup string: a body such as `[bold]x[/]` is
shown as typed, not interpreted.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.containers import VerticalScroll
from textual.message import Message as TextualMessage
from textual.widgets import Static

from hubbub.tui.model import Message


def message_line(message: Message, me: str) -> Text:
    """`12:34 alice  hello`: the local time, the sender (yourself in another colour), the body."""
    line = Text()
    line.append(time.strftime("%H:%M", time.localtime(message.ts / 1000)), style="dim")
    line.append(" ")
    line.append(message.sender, style="bold green" if message.sender == me else "bold cyan")
    line.append("  ")
    line.append(message.body)
    return line


def note_line(text: str, style: str = "italic") -> Text:
    """A line of the client's own (a command's answer, a state change), not a message."""
    return Text(text, style=style)


def error_line(text: str) -> Text:
    return Text(f"! {text}", style="bold red")


class Line(Static):
    """One line of the pane; it keeps its `Text` so that tests and copies can read it."""

    def __init__(self, text: Text, seq: int | None = None, classes: str | None = None) -> None:
        super().__init__(text, markup=False, classes=classes)
        self.text = text
        self.seq = seq


class MessagePane(VerticalScroll):
    """The messages of the room on screen, oldest at the top, kept scrolled to the newest until
    the reader scrolls up. Scrolling to the very top asks for older messages (`ReachedTop`)."""

    class ReachedTop(TextualMessage):
        """The reader is at the top: the app loads an older page, if there is one."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.can_focus = False  # the input keeps the focus; PageUp/PageDown scroll from there
        self.last_seq = 0  # the newest message shown
        self._pending: dict[str, Line] = {}  # sends not yet echoed back, by message id

    def on_mount(self) -> None:
        self.anchor()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value <= 0 < old_value:
            self.post_message(self.ReachedTop())

    async def show(self, lines: list[tuple[Text, int]]) -> None:
        """Replace everything with these (text, seq) lines, scrolled to the newest."""
        await self.remove_children()
        self._pending.clear()
        self.last_seq = max((seq for _, seq in lines), default=0)
        await self.mount_all(Line(text, seq) for text, seq in lines)
        self.anchor()

    def add_message(self, text: Text, seq: int, id: str) -> None:
        """A new message at the bottom; it replaces the pending line of the same send."""
        pending = self._pending.pop(id, None)
        if pending is not None:
            pending.remove()
        self.last_seq = max(self.last_seq, seq)
        self.mount(Line(text, seq))

    def add_older(self, lines: list[tuple[Text, int]]) -> None:
        """Older messages above the oldest shown, keeping what the reader looks at in place."""
        if not lines:
            return
        before = self.max_scroll_y - self.scroll_y
        self.mount(*(Line(text, seq) for text, seq in lines), before=0)
        self.call_after_refresh(self._keep_place, before)

    def _keep_place(self, distance_from_end: float) -> None:
        self.scroll_to(y=self.max_scroll_y - distance_from_end, animate=False, immediate=True)

    def add_pending(self, text: Text, id: str) -> None:
        """A message sent and not yet acknowledged (reconnecting, say), shown dimmed."""
        line = Line(text, classes="pending")
        self._pending[id] = line
        self.mount(line)

    def fail_pending(self, id: str, reason: str) -> None:
        pending = self._pending.pop(id, None)
        if pending is not None:
            pending.remove()
        self.add_note(error_line(reason))

    def add_note(self, text: Text) -> None:
        self.mount(Line(text, classes="note"))

    def plain(self) -> str:
        """The pane's text as shown, one line per message or note."""
        return "\n".join(line.text.plain for line in self.query_children(Line))
