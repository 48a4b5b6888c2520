"""The input line's language (`/join ROOM`, `/leave [ROOM]`, ... or a message), without I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# (what to type, what it does): `/help` shows them in two aligned columns.
HELP: Final = (
    ("/join ROOM", "join a public room (or a private one you were invited to) and show it"),
    ("/leave [ROOM]", "leave a room (default: this one); you stop being a member"),
    ("/create ROOM [private]", 'create a room (public unless "private") and join it'),
    ("/invite USER [ROOM]", "add USER to a room (default: this one); needed for private rooms"),
    ("/rooms [archived]", "the public rooms (or the archived ones): members and topic"),
    ("/archive [ROOM]", "make a room of yours read-only and take it out of the lists"),
    ("/unarchive ROOM", "open an archived room of yours again"),
    ("/delete-room ROOM ROOM", "delete a room of yours and its messages (type its name twice)"),
    ("/who", "who is online here, and who the members are"),
    ("/help", "this list"),
    ("/quit", "leave the program"),
    ("//text", 'send "/text" as a message'),
    ("anything else", "is sent to the room on screen"),
    ("Ctrl+N / Ctrl+P", "next / previous room"),
    ("PageUp / PageDown", "scroll (PageUp at the top loads older messages)"),
    ("Tab", "moves between the input and the room list"),
    ("Ctrl+Q", "quits"),
)


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
    "rooms": (0, 1, "/rooms [archived]"),
    "archive": (0, 1, "/archive [ROOM]"),
    "unarchive": (1, 1, "/unarchive ROOM"),
    "delete-room": (1, 2, "/delete-room ROOM ROOM"),
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
    if name == "rooms" and args not in ([], ["archived"]):
        return Invalid("usage: /rooms [archived]")
    if name == "delete-room" and args[1:] != args[:1]:
        return Invalid(
            f"deleting #{args[0]} removes its messages for good: to confirm, type its name "
            f"twice: /delete-room {args[0]} {args[0]}"
        )
    return Command(name, tuple(args))
