"""What each field of a frame or body must be, in words for the person who sent it.

A refused frame or body is answered with the rule it broke, as a sentence about the
input ("room names are lower-case letters, digits, - and _ ... try design-review"),
never with a validator's words, a regex or a JSON path. The WebSocket frames
(`frames.parse_frame`) and the HTTP bodies (`bodies.convert`) share these sentences, so
a rule reads the same over both; the name rules' patterns are here too. The
machine-readable `code` stays `bad_request`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

PASSWORD_MIN: Final = 8
PASSWORD_MAX: Final = 1024
HISTORY_MAX_LIMIT: Final = 200
TOPIC_MAX: Final = 1000
USERNAME_RE: Final = re.compile(r"\A[A-Za-z0-9_.-]{1,32}\Z")
ROOM_RE: Final = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,63}\Z")

USERNAME: Final = "user names are 1 to 32 characters: letters A-Z and a-z, digits, _ . and -"
PASSWORD: Final = f"passwords are {PASSWORD_MIN} to {PASSWORD_MAX} characters long"
ROOM: Final = (
    "room names are 1 to 64 characters: lower-case letters a-z, digits, - and _, "
    "starting with a letter or a digit"
)
TOPIC: Final = f"a topic is text of at most {TOPIC_MAX} characters"
PRIVATE: Final = "private is true or false"
ARCHIVED: Final = "archived is true (archive the room: read-only, out of lists) or false"
DELETION_PASSWORD: Final = "password is your account's password, as a string"
DELETED_ACCOUNT: Final = (
    "that name belonged to a deleted account; it is not given out again: choose another"
)
BODY_EMPTY: Final = "a message needs some text: it cannot be empty or only spaces"
MESSAGE_ID: Final = (
    "a message id is 1 to 64 characters: letters, digits, _ . : and - (any unique "
    "string you choose, such as a UUID)"
)
REF: Final = "ref is a label of yours echoed on the answer: text of at most 64 characters"
TOKEN: Final = "token is the text that POST /api/v1/login answered with"
SEQ: Final = "a seq is a whole number from 0 up (a message's place in its room)"
LIMIT: Final = (
    f"limit is how many messages to answer with: a whole number from 1 to {HISTORY_MAX_LIMIT}"
)
KEY_MAX: Final = 32
MAX_REACTION_KEYS: Final = 50
TARGET: Final = "target is the seq of a message of this room: a whole number from 0 up"
REPLY_TO: Final = "reply_to is the seq of the message of this room you answer: a whole number"
THREAD: Final = "thread is the seq of a thread's first message in this room: a whole number"
KEY: Final = (
    f"a reaction key is 1 to {KEY_MAX} characters without spaces or control characters: "
    "an emoji such as 👍 or a :shortcode:"
)
NO_UPDATES: Final = (
    "edits, deletes, reactions, replies, threads and topics are not available with --redis yet"
)

FIELDS: Final[dict[str, str]] = {
    "username": USERNAME,
    "password": PASSWORD,
    "room": ROOM,
    "name": ROOM,
    "topic": TOPIC,
    "private": PRIVATE,
    "body": BODY_EMPTY,
    "id": MESSAGE_ID,
    "ref": REF,
    "token": TOKEN,
    "since": SEQ,
    "before": SEQ,
    "after": SEQ,
    "limit": LIMIT,
    "target": TARGET,
    "reply_to": REPLY_TO,
    "thread": THREAD,
    "key": KEY,
}

# Control characters but tab, newline and carriage return (a CRLF line end is a line
# end): the others would be stored and shown as boxes, or ring a terminal's bell.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def archived_room(room: str) -> str:
    """Why a send to an archived room is refused."""
    return f"#{room} is archived: it is read-only"


def archived_members(room: str) -> str:
    """Why a membership change in an archived room is refused."""
    return f"#{room} is archived: its members and roles cannot change (leaving still works)"


def name_held(room: str, free_after: str) -> str:
    """Why a room cannot be created under the name of one deleted within the grace."""
    return f"#{room} was deleted; the name is free again after {free_after}"


def suggest_room(name: str) -> str | None:
    """A valid room name close to `name` ("Design Review" -> "design-review"), if any."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9_-]+", "-", folded).strip("-_")[:64].rstrip("-_")
    return slug if slug != name and ROOM_RE.match(slug) else None


def room_rule(value: object) -> str:
    """The room-name rule, with a suggestion made from the refused name."""
    suggestion = suggest_room(value) if isinstance(value, str) else None
    return f"{ROOM}; try {suggestion}" if suggestion else ROOM


def field_rule(field: str, value: object = None) -> str:
    if field in ("room", "name"):
        return room_rule(value)
    return FIELDS.get(field, f"{field} has a value this server does not accept")


def body_problem(body: str) -> str | None:
    """Why a message body is refused beyond its length, or None."""
    if not body.strip():
        return BODY_EMPTY
    if (found := _CONTROL.search(body)) is not None:
        code = f"U+{ord(found.group()):04X}"
        return (
            f"a message cannot hold control characters ({code} at character "
            f"{found.start() + 1}); newlines and tabs are fine"
        )
    return None


_ZWJ: Final = "\u200d"


def key_problem(key: str) -> str | None:
    """Why a reaction key is refused, or None: 1 to 32 code points, none of them a space,
    a separator or a control, format or unassigned character (Unicode categories Z* and C*),
    so a key shows as what it is and cannot hide another key behind invisible characters.

    The one exception is the zero-width joiner (U+200D, a format character) between two
    visible characters: it is what joins emoji such as 👩‍💻, and refusing it would refuse
    the emoji people pick."""
    if not key:
        return KEY
    if len(key) > KEY_MAX:
        return f"{KEY}; this one is {len(key) - KEY_MAX} over"
    for i, char in enumerate(key):
        if char == _ZWJ and 0 < i < len(key) - 1 and _ZWJ not in (key[i - 1], key[i + 1]):
            continue
        if unicodedata.category(char)[0] in "CZ":
            code = f"U+{ord(char):04X}"
            return f"{KEY}; {code} at character {i + 1} is not allowed"
    return None
