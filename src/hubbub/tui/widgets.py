"""The chat screen's widgets: the message pane with its scroll-back, and how lines are drawn.

Every piece of user text (names, bodies, room names, server messages) goes on screen as a
`rich.text.Text` built with `append`, never as a markup string: a body such as `[bold]x[/]` is
shown as typed, not interpreted. A body written in Markdown is drawn with the safe subset of
`SafeMarkdown`; any other body is drawn exactly as typed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Final

from markdown_it import MarkdownIt
from markdown_it.token import Token
from rich.console import RenderableType
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.message import Message as TextualMessage
from textual.widgets import Static

from hubbub.tui.model import Message

# The Markdown a body may use: emphasis, strong, code spans, fenced code, quotes, lists and
# links (drawn as their text and URL). Nothing else is read: no headings, images, tables or HTML.
_MARKDOWN: Final = MarkdownIt("zero", {"html": False}).enable(
    ["emphasis", "backticks", "link", "newline", "fence", "blockquote", "list"]
)
# Tokens of text with no Markdown in it: such a body is drawn as typed, not re-flowed.
_PLAIN: Final = frozenset({"paragraph_open", "paragraph_close", "inline", "text", "softbreak"})


def _tokens(tokens: Iterable[Token]) -> Iterable[Token]:
    for token in tokens:
        yield token
        yield from _tokens(token.children or ())


class SafeMarkdown(Markdown):
    """Rich's Markdown, parsed with the subset above only; links are shown, never followed."""

    def __init__(self, markup: str) -> None:
        super().__init__(markup, code_theme="ansi_dark", hyperlinks=False)
        self.parsed = _MARKDOWN.parse(markup)


def uses_markdown(body: str) -> bool:
    """Whether a body has any of the Markdown subset in it (else it is shown as typed)."""
    return any(token.type not in _PLAIN for token in _tokens(_MARKDOWN.parse(body)))


def message_body(body: str) -> RenderableType:
    return SafeMarkdown(body) if uses_markdown(body) else Text(body)


def _prefix(message: Message, me: str) -> Text:
    line = Text()
    line.append(time.strftime("%H:%M", time.localtime(message.ts / 1000)), style="dim")
    line.append(" ")
    line.append(message.sender, style="bold green" if message.sender == me else "bold cyan")
    line.append("  ")
    return line


def message_line(message: Message, me: str) -> Text:
    """`12:34 alice  hello`: the local time, the sender (yourself in another colour), the body."""
    return _prefix(message, me).append(message.body)


def columns(left: Text, right: RenderableType) -> Table:
    """Two columns: a long right-hand side wraps under itself, not under the left one."""
    grid = Table.grid()
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1)
    grid.add_row(left, right)
    return grid


def message_widget(message: Message, me: str, seq: int | None = None) -> Line:
    """A message as a line of the pane: the body wraps under the body, not under the sender."""
    text = message_line(message, me)
    shown = columns(_prefix(message, me), message_body(message.body))
    return Line(text, message.seq if seq is None else seq, shown=shown)


def note_line(text: str, style: str = "italic") -> Text:
    """A line of the client's own (a command's answer, a state change), not a message."""
    return Text(text, style=style)


def error_line(text: str) -> Text:
    return Text(f"! {text}", style="bold red")


class Line(Static):
    """One line of the pane; it keeps its `Text` so that tests and copies can read it."""

    def __init__(
        self,
        text: Text,
        seq: int | None = None,
        classes: str | None = None,
        shown: RenderableType | None = None,
    ) -> None:
        """`text` is the line's plain form; `shown`, when given, is what is drawn instead."""
        self.shown = text if shown is None else shown
        super().__init__(self.shown, markup=False, classes=classes)
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

    async def show(self, lines: list[Line]) -> None:
        """Replace everything with these lines, scrolled to the newest."""
        await self.remove_children()
        self._pending.clear()
        self.last_seq = max((line.seq or 0 for line in lines), default=0)
        await self.mount_all(lines)
        self.anchor()

    def add_message(self, line: Line, id: str) -> None:
        """A new message at the bottom; it replaces the pending line of the same send."""
        pending = self._pending.pop(id, None)
        if pending is not None:
            pending.remove()
        self.last_seq = max(self.last_seq, line.seq or 0)
        self.mount(line)

    def add_older(self, lines: list[Line]) -> None:
        """Older messages above the oldest shown, keeping what the reader looks at in place."""
        if not lines:
            return
        before = self.max_scroll_y - self.scroll_y
        self.mount(*lines, before=0)
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

    def add_note(self, text: Text, shown: RenderableType | None = None) -> None:
        self.mount(Line(text, classes="note", shown=shown))

    def plain(self) -> str:
        """The pane's text as shown, one line per message or note."""
        return "\n".join(line.text.plain for line in self.query_children(Line))
