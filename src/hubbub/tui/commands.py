"""The input line's language (`/join ROOM`, `/leave [ROOM]`, ... or a message), without I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

HELP: Final = """\
/join ROOM             join a public room (or a private one you were invited to) and show it
/leave [ROOM]          leave a room (default: this one); you stop being a member
/create ROOM [private] create a room (public unless "private") and join it
/invite USER [ROOM]    add USER to a room (default: this one); needed for private rooms
/who                   who is online here, and who the members are
/help                  this list
/quit                  leave the program
//text                 send "/text" as a message
anything else          is sent to the room on screen
Keys: Ctrl+N / Ctrl+P next / previous room, PageUp / PageDown scroll (PageUp at the top loads
older messages), Tab moves between the input and the room list, Ctrl+Q quits."""


@dataclass(frozen=True)
class Command:
    """A slash command: its name (without the slash) and its words."""

    name: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Say:
    """A message to send to the room on screen."""

    body: str


@dataclass(frozen=True)
class Invalid:
    """A line that looks like a command but is not a valid one; `reason` says what to type."""

    reason: str


# name -> (least, most) arguments, and the usage shown when they do not fit.
_ARITY: Final = {
    "join": (1, 1, "/join ROOM"),
    "leave": (0, 1, "/leave [ROOM]"),
    "create": (1, 2, "/create ROOM [private]"),
    "invite": (1, 2, "/invite USER [ROOM]"),
    "who": (0, 0, "/who"),
    "help": (0, 0, "/help"),
    "quit": (0, 0, "/quit"),
}


def parse(line: str) -> Command | Say | Invalid | None:
    """What a submitted line asks for; None for a blank line."""
    if not line.strip():
        return None
    if line.startswith("//"):
        return Say(line[1:])
    if not line.startswith("/"):
        return Say(line)
    words = line[1:].split()
    if not words:
        return Invalid("type /help for the list of commands")
    name, args = words[0].lower(), words[1:]
    if name not in _ARITY:
        return Invalid(f"unknown command /{name}: type /help for the list")
    least, most, usage = _ARITY[name]
    if not least <= len(args) <= most:
        return Invalid(f"usage: {usage}")
    if name == "create" and args[1:] not in ([], ["private"]):
        return Invalid("usage: /create ROOM [private]")
    return Command(name, tuple(args))
