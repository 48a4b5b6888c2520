"""HTTP bodies as msgspec structs: the requests, validated once at the edge, and the
replies, which the OpenAPI document describes (server/openapi.py builds it from these);
each reply struct has the builder of its body next to it.

A request body is read as a JSON object, then converted to its struct in one call. A
body that breaks a rule is answered with the rule of its first bad field, fields taken
in the order the struct declares them (the order the spec lists them), whatever order
the client wrote them in.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final, TypeVar

import msgspec
import orjson

from hubbub.protocol import rules
from hubbub.protocol.errors import ERROR_CODES, BadRequest, ProtocolError
from hubbub.protocol.rules import PASSWORD_MAX, PASSWORD_MIN, ROOM_RE, TOPIC_MAX, USERNAME_RE

NOT_AN_OBJECT: Final = "the body must be a JSON object"
USERNAME_RULE: Final = rules.USERNAME
PASSWORD_RULE: Final = rules.PASSWORD
LOGIN_RULE: Final = "username and password must be strings"
ROOM_NAME_RULE: Final = rules.ROOM
TOPIC_RULE: Final = rules.TOPIC
PRIVATE_RULE: Final = rules.PRIVATE

Username = Annotated[str, msgspec.Meta(pattern=USERNAME_RE.pattern)]
Password = Annotated[str, msgspec.Meta(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]
RoomName = Annotated[str, msgspec.Meta(pattern=ROOM_RE.pattern)]
Topic = Annotated[str, msgspec.Meta(max_length=TOPIC_MAX)]


class RequestBody(msgspec.Struct):
    """A JSON request body; `rules` names the rule each field breaks when it is bad."""

    rules: ClassVar[dict[str, str]]


class Registration(RequestBody):
    """`POST /api/v1/users`."""

    username: Username
    password: Password

    rules = {"username": USERNAME_RULE, "password": PASSWORD_RULE}


class Credentials(RequestBody):
    """`POST /api/v1/login`: any strings (a wrong one is a failed login, 401)."""

    username: str
    password: str

    rules = {"username": LOGIN_RULE, "password": LOGIN_RULE}


class NewRoom(RequestBody):
    """`POST /api/v1/rooms`: null is taken as absent (no topic, not private)."""

    name: RoomName
    topic: Topic | None = None
    private: bool | None = None

    rules = {"name": ROOM_NAME_RULE, "topic": TOPIC_RULE, "private": PRIVATE_RULE}


class RoomChanges(RequestBody):
    """`PATCH /api/v1/rooms/{room}`: the fields to change, each optional (absent or null
    leaves it as it is); more fields join these as rooms gain settings."""

    archived: bool | None = None
    topic: Topic | None = None

    rules = {"archived": rules.ARCHIVED, "topic": TOPIC_RULE}


class AccountDeletion(RequestBody):
    """`DELETE /api/v1/me`: the account's password, as a confirmation."""

    password: str

    rules = {"password": rules.DELETION_PASSWORD}


B = TypeVar("B", bound=RequestBody)


def json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object; BadRequest for anything else."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest(NOT_AN_OBJECT) from None
    if not isinstance(data, dict):
        raise BadRequest(NOT_AN_OBJECT)
    return data


def convert(data: dict[str, Any], kind: type[B]) -> B:
    """`data` as a `kind`; BadRequest with the rule of the first bad field."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError:
        raise BadRequest(_first_broken_rule(data, kind)) from None


def _first_broken_rule(data: dict[str, Any], kind: type[RequestBody]) -> str:
    for field in msgspec.structs.fields(kind):
        if field.encode_name not in data:
            if field.required:
                return kind.rules[field.name]
            continue
        try:
            msgspec.convert(data[field.encode_name], field.type)
        except msgspec.ValidationError:
            rule = kind.rules[field.name]
            # A refused room name comes with a valid one made from it, when there is one.
            return rules.room_rule(data[field.encode_name]) if rule == rules.ROOM else rule
    raise AssertionError(f"{kind.__name__} refused a body whose every field is valid")


# Replies: what the server answers (docs/protocol.md, "Objects").


class User(msgspec.Struct):
    name: str


class Room(msgspec.Struct):
    name: str
    topic: str
    private: bool
    owner: str
    moderators: list[str]
    members: list[str]
    last_seq: int
    created_at: int
    archived: bool


class Reaction(msgspec.Struct):
    """One key standing on a message: `users` names up to 10 of the `count` who hold it;
    `me` says whether the caller does."""

    key: str
    count: int
    users: list[str]
    me: bool


class Replies(msgspec.Struct):
    """A thread's summary, on its root."""

    count: int
    last_seq: int
    last_ts: int


class Message(msgspec.Struct):
    """A message in its current state (the latest body, `edited` the ts of its latest
    edit), or the tombstone of a deleted one: no `body`, `"deleted": true`. `reply_to`,
    `thread`, `reactions` and `replies` (on a thread's root) only when it has them."""

    room: str
    seq: int
    id: str
    sender: str = msgspec.field(name="from")
    ts: int
    body: str | msgspec.UnsetType = msgspec.UNSET
    deleted: bool | msgspec.UnsetType = msgspec.UNSET
    edited: int | msgspec.UnsetType = msgspec.UNSET
    reply_to: int | msgspec.UnsetType = msgspec.UNSET
    thread: int | msgspec.UnsetType = msgspec.UNSET
    reactions: list[Reaction] | msgspec.UnsetType = msgspec.UNSET
    replies: Replies | msgspec.UnsetType = msgspec.UNSET


class Version(msgspec.Struct):
    """One version of a message: the original (its own seq) or an edit (the edit's seq)."""

    seq: int
    body: str
    ts: int


class Session(msgspec.Struct):
    id: str
    created: int
    last_used: int
    expires: int
    user_agent: str
    address: str
    current: bool


class Status(msgspec.Struct, omit_defaults=True):
    status: str
    reason: str | None = None  # why a node is not ready, in a sentence (`stalled`)


class UserReply(msgspec.Struct):
    user: User


class LoginReply(msgspec.Struct):
    token: str
    user: User


class MeReply(msgspec.Struct):
    user: User
    rooms: list[Room]


class SessionsReply(msgspec.Struct):
    sessions: list[Session]


class RoomReply(msgspec.Struct):
    room: Room


class RoomsReply(msgspec.Struct):
    rooms: list[Room]


class UsersReply(msgspec.Struct):
    users: list[str]


class HistoryReply(msgspec.Struct):
    messages: list[Message]
    more: bool


class VersionsReply(msgspec.Struct):
    """`GET .../messages/{seq}/edits`: the versions of a message, oldest first."""

    versions: list[Version]


ErrorCode = Annotated[str, msgspec.Meta(extra_json_schema={"enum": list(ERROR_CODES)})]


class ErrorDetail(msgspec.Struct):
    code: ErrorCode
    message: str
    retry_after: float | msgspec.UnsetType = msgspec.UNSET  # rate_limited only


class ErrorReply(msgspec.Struct):
    """Every error: `{"error": {code, message}}`."""

    error: ErrorDetail


# Reply builders: the bodies the structs above describe, as dicts for the JSON encoder
# (`Json` is an object of docs/protocol.md, "Objects", as core builds it).
Json = dict[str, Any]


def user_reply(user: Json) -> Json:
    return {"user": user}


def login_reply(token: str, user: Json) -> Json:
    return {"token": token, "user": user}


def sessions_reply(sessions: list[Json]) -> Json:
    return {"sessions": sessions}


def room_reply(room: Json) -> Json:
    return {"room": room}


def rooms_reply(rooms: list[Json]) -> Json:
    return {"rooms": rooms}


def users_reply(users: list[str]) -> Json:
    return {"users": users}


def history_reply(messages: list[Json], more: bool) -> Json:
    return {"messages": messages, "more": more}


def versions_reply(versions: list[Json]) -> Json:
    return {"versions": versions}


def status_reply(status: str, reason: str | None = None) -> Json:
    return {"status": status} if reason is None else {"status": status, "reason": reason}


def error_reply(error: ProtocolError) -> Json:
    return {"error": error.payload()}
