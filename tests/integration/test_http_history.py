"""HTTP API, history: GET /api/v1/rooms/{room}/messages?before=&after=&limit= (spec "History").

Most tests read one room of 230 messages (`filled_room`, seq 1..230), built once per module over
WebSocket; the paging rules are checked against exact seq ranges.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

N = 230  # FILLED_ROOM_SIZE in conftest.py


def seqs(n_from: int, n_to: int) -> list[int]:
    """seq n_from..n_to inclusive."""
    return list(range(n_from, n_to + 1))


async def history(api: Any, room: str, token: str, **params: Any) -> tuple[int, Any]:
    query = ("?" + urlencode(params)) if params else ""
    return await api.call("GET", f"/api/v1/rooms/{room}/messages{query}", token)


async def page(api: Any, room: str, token: str, **params: Any) -> tuple[list[int], bool]:
    """(the seqs of the page, more) for a query that must succeed."""
    status, body = await history(api, room, token, **params)
    assert status == 200, (params, status, body)
    assert set(body) == {"messages", "more"}, body
    assert isinstance(body["more"], bool), body
    got = [m["seq"] for m in body["messages"]]
    assert got == sorted(got), f"not in ascending seq order: {got}"
    return got, body["more"]


@pytest.fixture
def filled(filled_room: Any) -> Any:
    assert filled_room.last == N
    return filled_room


# --- shape and content ---------------------------------------------------------------------------


async def test_history_messages_carry_exactly_what_was_sent_and_acked(api, filled):
    status, body = await history(api, filled.room, filled.owner.token, limit=20)
    assert status == 200, body
    assert len(body["messages"]) == 20
    for message in body["messages"]:
        ack = filled.acks[message["seq"] - 1]
        assert message == {
            "room": filled.room,
            "seq": ack["seq"],
            "id": ack["id"],
            "from": filled.owner.name,
            "body": ack["body"],
            "ts": ack["ts"],
        }


async def test_room_last_seq_is_the_newest_message(api, filled):
    status, body = await api.call("GET", f"/api/v1/rooms/{filled.room}", filled.owner.token)
    assert status == 200, body
    room = body.get("room", body)
    assert room["last_seq"] == N


async def test_history_of_a_public_room_is_readable_by_a_non_member(api, new_user, filled):
    reader = await new_user()
    got, more = await page(api, filled.room, reader.token, limit=3)
    assert got == seqs(N - 2, N)
    assert more is True


# --- no bound ------------------------------------------------------------------------------------


async def test_history_without_bounds_answers_the_newest_50_with_more(api, filled):
    got, more = await page(api, filled.room, filled.owner.token)
    assert got == seqs(N - 49, N)
    assert more is True


async def test_history_limit_picks_the_newest_messages(api, filled):
    for limit in (1, 7, 50):
        got, more = await page(api, filled.room, filled.owner.token, limit=limit)
        assert got == seqs(N - limit + 1, N), limit
        assert more is True


async def test_history_accepts_the_maximum_limit_of_200(api, filled):
    got, more = await page(api, filled.room, filled.owner.token, limit=200)
    assert got == seqs(N - 199, N)
    assert more is True


# --- before --------------------------------------------------------------------------------------


async def test_history_before_is_exclusive_and_answers_the_newest_below_it(api, filled):
    got, more = await page(api, filled.room, filled.owner.token, before=100, limit=10)
    assert got == seqs(90, 99)
    assert more is True


async def test_history_before_uses_the_default_limit_of_50(api, filled):
    got, more = await page(api, filled.room, filled.owner.token, before=200)
    assert got == seqs(150, 199)
    assert more is True


async def test_history_before_reports_no_more_when_the_page_reaches_seq_1(api, filled):
    got, more = await page(api, filled.room, filled.owner.token, before=11, limit=10)
    assert got == seqs(1, 10)
    assert more is False
    got, more = await page(api, filled.room, filled.owner.token, before=11, limit=50)
    assert got == seqs(1, 10)
    assert more is False
    got, more = await page(api, filled.room, filled.owner.token, before=12, limit=10)
    assert got == seqs(2, 11)
    assert more is True


async def test_history_before_1_is_empty(api, filled):
    assert await page(api, filled.room, filled.owner.token, before=1) == ([], False)


async def test_history_before_beyond_the_last_seq_answers_the_newest(api, filled):
    got, more = await page(api, filled.room, filled.owner.token, before=10_000, limit=5)
    assert got == seqs(N - 4, N)
    assert more is True


# --- after ---------------------------------------------------------------------------------------


async def test_history_after_is_exclusive_and_answers_the_oldest_above_it(api, filled):
    got, more = await page(api, filled.room, filled.owner.token, after=100, limit=10)
    assert got == seqs(101, 110)
    assert more is True


async def test_history_after_0_starts_at_the_first_message(api, filled):
    got, more = await page(api, filled.room, filled.owner.token, after=0)
    assert got == seqs(1, 50)
    assert more is True


async def test_history_after_reports_no_more_when_the_page_reaches_the_newest(api, filled):
    got, more = await page(api, filled.room, filled.owner.token, after=N - 10, limit=10)
    assert got == seqs(N - 9, N)
    assert more is False
    got, more = await page(api, filled.room, filled.owner.token, after=N - 11, limit=10)
    assert got == seqs(N - 10, N - 1)
    assert more is True
    got, more = await page(api, filled.room, filled.owner.token, after=N - 5)
    assert got == seqs(N - 4, N)
    assert more is False


async def test_history_after_the_last_seq_is_empty(api, filled):
    assert await page(api, filled.room, filled.owner.token, after=N) == ([], False)
    assert await page(api, filled.room, filled.owner.token, after=N + 1000) == ([], False)


async def test_history_after_with_limit_200(api, filled):
    got, more = await page(api, filled.room, filled.owner.token, after=0, limit=200)
    assert got == seqs(1, 200)
    assert more is True
    got, more = await page(api, filled.room, filled.owner.token, after=30, limit=200)
    assert got == seqs(31, N)
    assert more is False


# --- both bounds ---------------------------------------------------------------------------------


async def test_history_with_both_bounds_answers_the_newest_inside_them(api, filled):
    got, more = await page(api, filled.room, filled.owner.token, after=10, before=20, limit=5)
    assert got == seqs(15, 19)
    assert more is True, "older messages (11..14) exist inside the bounds"


async def test_history_with_both_bounds_never_crosses_either_bound(api, filled):
    # Whether `more` is true here (older messages exist, but below `after`) is not pinned down
    # by the spec, so only the page itself is checked.
    got, _ = await page(api, filled.room, filled.owner.token, after=10, before=20, limit=50)
    assert got == seqs(11, 19)
    got, _ = await page(api, filled.room, filled.owner.token, after=10, before=11)
    assert got == []


# --- paging through everything -------------------------------------------------------------------


async def test_history_pages_backwards_through_every_message_once(api, filled):
    seen: list[int] = []
    params: dict[str, int] = {"limit": 64}
    for _ in range(10):
        got, more = await page(api, filled.room, filled.owner.token, **params)
        assert len(got) == (64 if more else N % 64)
        seen = got + seen
        if not more:
            break
        params["before"] = got[0]
    assert seen == seqs(1, N)


async def test_history_pages_forwards_through_every_message_once(api, filled):
    seen: list[int] = []
    params: dict[str, int] = {"after": 0, "limit": 64}
    for _ in range(10):
        got, more = await page(api, filled.room, filled.owner.token, **params)
        assert len(got) == (64 if more else N % 64)
        seen += got
        if not more:
            break
        params["after"] = got[-1]
    assert seen == seqs(1, N)


# --- bad parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "limit",
    ["0", "201", "-1", "1000", "abc", "1.5", "5abc", "0x10", "1e2", " 7", "+3", "1_0", "\u0663"],
)
async def test_history_rejects_a_limit_outside_1_to_200_or_not_an_integer(
    api, filled, limit, assert_error
):
    result = await history(api, filled.room, filled.owner.token, limit=limit)
    assert_error(result, 400, "bad_request")


@pytest.mark.parametrize("bound", ["before", "after"])
@pytest.mark.parametrize("value", ["abc", "1.5", "ten"])
async def test_history_rejects_a_bound_that_is_not_an_integer(
    api, filled, bound, value, assert_error
):
    result = await history(api, filled.room, filled.owner.token, **{bound: value})
    assert_error(result, 400, "bad_request")


async def test_history_rejects_a_bad_limit_together_with_bounds(api, filled, assert_error):
    result = await history(api, filled.room, filled.owner.token, after=5, limit=0)
    assert_error(result, 400, "bad_request")
    result = await history(api, filled.room, filled.owner.token, before=50, limit=201)
    assert_error(result, 400, "bad_request")


# --- small rooms ---------------------------------------------------------------------------------


async def test_history_of_an_empty_room_is_empty_without_more(api, new_user):
    owner = await new_user()
    room = await api.room(owner.token)
    assert await page(api, room, owner.token) == ([], False)
    assert await page(api, room, owner.token, after=0) == ([], False)
    assert await page(api, room, owner.token, before=10, limit=200) == ([], False)


async def test_history_of_a_missing_room_is_404(api, new_user, unique, assert_error):
    me = await new_user()
    assert_error(await history(api, unique("r"), me.token), 404, "not_found")


async def test_history_of_a_private_room_is_404_for_non_members(
    api, party, new_user, send_messages, assert_error
):
    p = await party(private=True, members=1)
    await send_messages(p.owner.token, p.room, ["secret"])
    outsider = await new_user()
    assert_error(await history(api, p.room, outsider.token), 404, "not_found")
    # A member reads it.
    status, body = await history(api, p.room, p.members[0].token)
    assert status == 200, body
    assert [m["body"] for m in body["messages"]] == ["secret"]


async def test_history_shows_a_message_once_it_is_acked(api, new_user, send_messages):
    owner = await new_user()
    room = await api.room(owner.token)
    [ack] = await send_messages(owner.token, room, ["just now"])
    status, body = await history(api, room, owner.token)
    assert status == 200, body
    assert body == {
        "messages": [
            {
                "room": room,
                "seq": 1,
                "id": ack["id"],
                "from": owner.name,
                "body": "just now",
                "ts": ack["ts"],
            }
        ],
        "more": False,
    }


async def test_history_returns_bodies_verbatim(api, new_user, send_messages):
    owner = await new_user()
    room = await api.room(owner.token)
    bodies = [
        "héllo wörld",
        "emoji 😀👍🏽 and CJK 漢字",
        '  leading and trailing spaces, "quotes", \\backslash\\  ',
        "line one\nline two\r\n\ttabbed",
        "<script>alert(1)</script> & &amp;",
        "x" * 4000,
        "😀" * 4000,
    ]
    acks = await send_messages(owner.token, room, bodies)
    status, body = await history(api, room, owner.token)
    assert status == 200
    assert [m["body"] for m in body["messages"]] == [a["body"] for a in acks]
    assert sorted(m["body"] for m in body["messages"]) == sorted(bodies)


async def test_history_lists_the_sender_of_each_message(api, party, send_messages):
    p = await party(members=1)
    bob = p.members[0]
    await send_messages(p.owner.token, p.room, ["from the owner"])
    await send_messages(bob.token, p.room, ["from bob"])
    status, body = await history(api, p.room, bob.token)
    assert status == 200
    assert [(m["seq"], m["from"], m["body"]) for m in body["messages"]] == [
        (1, p.owner.name, "from the owner"),
        (2, bob.name, "from bob"),
    ]
