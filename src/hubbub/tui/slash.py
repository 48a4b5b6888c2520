"""What each slash command does (`/join`, `/leave`, `/rooms`, ...): SDK calls, then lines in
the chat app's pane. `commands` parses the input line; this runs what it parsed, on the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from hubbub.client import HubbubError
from hubbub.tui.commands import HELP, Command
from hubbub.tui.widgets import note_line

if TYPE_CHECKING:
    from hubbub.tui.app import ChatApp


async def run(app: ChatApp, command: Command) -> None:
    """Do what a parsed slash command says: SDK calls, then lines in the pane. An error
    answer is raised as the SDK's `HubbubError` (the app shows it as a line)."""
    name, args = command.name, command.args
    if name == "join":
        await app.enter_room(args[0])
    elif name == "leave":
        await _leave(app, args[0] if args else _here(app))
    elif name == "create":
        private = args[1:] == ("private",)
        await app.client.create_room(args[0], private=private)
        await app.enter_room(args[0])
        app.note(note_line(f"Created #{args[0]}{' (private)' if private else ''}."))
    elif name == "invite":
        room = args[1] if len(args) > 1 else _here(app)
        await app.client.add_member(room, args[0])
        app.note(note_line(f"Invited {args[0]} to #{room}."))
    elif name == "rooms":
        await _list_rooms(app, archived=bool(args))
    elif name == "archive":
        room = args[0] if args else _here(app)
        await app.client.archive_room(room)
        app.note(note_line(f"Archived #{room}: it is read-only now (/unarchive {room})."))
    elif name == "unarchive":
        await app.client.unarchive_room(args[0])
        app.note(note_line(f"#{args[0]} is open again."))
    elif name == "delete-room":
        await app.client.delete_room(args[0])
        await app.drop_room(args[0])  # the server's `left` may come first: no harm
        app.note(note_line(f"Deleted #{args[0]} and its messages."))
    elif name == "who":
        await _who(app, _here(app))
    elif name == "help":
        _help(app)
    elif name == "quit":
        app.exit()


def _here(app: ChatApp) -> str:
    if app.chat.current is None:
        raise HubbubError("bad_request", "you are in no room: name one")
    return app.chat.current


async def _leave(app: ChatApp, room: str) -> None:
    """Give up the membership; the server's `left` event then takes the room off screen."""
    try:
        await app.client.remove_member(room, app.chat.me)
    except HubbubError as error:
        if error.code != "forbidden":
            raise
        # The owner cannot leave: stop following the room on this connection instead.
        await app.client.leave(room)
        await app.drop_room(room)
        app.note(note_line(f"You own #{room}, so you stay a member; /join shows it again."))


def _help(app: ChatApp) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(ratio=1)
    for usage, does in HELP:
        grid.add_row(Text(usage), Text(does))
    plain = "\n".join(f"{usage}  {does}" for usage, does in HELP)
    app.pane.add_note(Text(plain), shown=grid)


async def _list_rooms(app: ChatApp, archived: bool) -> None:
    """The public rooms (or the archived ones one can see): name, members, topic."""
    found = await app.client.rooms(archived=archived)
    shown = [room for room in found if archived or not room.get("private")]
    if not shown:
        app.note(note_line("No archived room." if archived else "No public room yet."))
        return
    app.note(note_line("Archived rooms:" if archived else "Public rooms (/join ROOM):", ""))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(no_wrap=True, style="dim")
    grid.add_column(ratio=1)
    plain = []
    for room in sorted(shown, key=lambda room: str(room["name"])):
        count = len(room.get("members", []))
        mine = " (joined)" if room["name"] in app.chat.rooms else ""
        row = (f"#{room['name']}", f"{count} member{'' if count == 1 else 's'}{mine}")
        topic = str(room.get("topic") or "")
        grid.add_row(Text(row[0]), Text(row[1]), Text(topic))
        plain.append("  ".join((*row, topic)).rstrip())
    app.pane.add_note(Text("\n".join(plain)), shown=grid)


async def _who(app: ChatApp, room: str) -> None:
    details = await app.client.room(room)
    online = sorted(app.chat.rooms[room].online if room in app.chat.rooms else ())
    members = sorted(str(member) for member in details.get("members", []))
    app.note(note_line(f"Online in #{room}: {', '.join(online) or 'nobody'}", ""))
    app.note(note_line(f"Members of #{room}: {', '.join(members) or 'nobody'}", ""))
