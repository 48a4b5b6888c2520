"""The SDK's resume cursors (`hubbub.client.state.RoomCursors`): every entry of a room's log
moves them, so a re-join with `since` replays neither messages nor updates seen before."""

from __future__ import annotations

from hubbub.client.state import RoomCursors


def test_messages_and_updates_move_the_cursor_and_their_replays_are_repeats() -> None:
    cursors = RoomCursors()
    cursors.joined({"type": "join", "room": "r"}, {"type": "joined", "room": "r", "seq": 4})
    message = {"type": "message", "room": "r", "seq": 5, "id": "a", "body": "hi"}
    update = {"type": "update", "room": "r", "seq": 6, "kind": "react", "target": 5, "key": "+1"}
    assert cursors.fresh(message)
    assert cursors.fresh(update)
    assert cursors.last["r"] == 6  # the re-join asks since=6: the update is not replayed
    assert not cursors.fresh(update)
    assert not cursors.fresh(message)
    assert cursors.fresh({**update, "seq": 7})
