"""The token cache (`core.tokens`): bounded, and an entry ends at the recheck or the
token's expiry, whichever comes first."""

from __future__ import annotations

from hubbub.core.tokens import RECHECK_MS, TokenCache

NOW = 1_700_000_000_000
FAR = NOW + 10 * RECHECK_MS


def test_a_cached_token_answers_until_its_recheck() -> None:
    cache = TokenCache()
    cache.put("h1", "alice", FAR, NOW)
    assert cache.get("h1", NOW + RECHECK_MS - 1) == "alice"
    assert cache.get("h1", NOW + RECHECK_MS) is None
    assert len(cache) == 0  # an ended entry is dropped when asked for


def test_a_token_expiring_before_the_recheck_ends_at_its_expiry() -> None:
    cache = TokenCache()
    cache.put("h1", "alice", NOW + 10, NOW)
    assert cache.get("h1", NOW + 9) == "alice"
    assert cache.get("h1", NOW + 10) is None


def test_ended_entries_are_dropped_as_new_ones_come() -> None:
    cache = TokenCache()
    for i in range(5):
        cache.put(f"old{i}", "alice", FAR, NOW)
    cache.put("new", "bob", FAR, NOW + RECHECK_MS)  # the old ones ended just now
    assert len(cache) == 1
    assert cache.get("new", NOW + RECHECK_MS) == "bob"


def test_a_full_cache_drops_its_oldest_entry() -> None:
    cache = TokenCache(limit=3)
    for i in range(5):
        cache.put(f"h{i}", f"user{i}", FAR, NOW + i)
    assert len(cache) == 3
    assert [cache.get(f"h{i}", NOW + 5) for i in range(5)] == [
        None,
        None,
        "user2",
        "user3",
        "user4",
    ]


def test_caching_a_token_again_renews_it_and_moves_it_to_the_back() -> None:
    cache = TokenCache(limit=2)
    cache.put("h1", "alice", FAR, NOW)
    cache.put("h2", "bob", FAR, NOW + 1)
    cache.put("h1", "alice", FAR, NOW + 2)
    cache.put("h3", "carol", FAR, NOW + 3)  # full: h2 is now the oldest
    assert cache.get("h1", NOW + RECHECK_MS + 1) == "alice"
    assert cache.get("h2", NOW + 3) is None
    assert cache.get("h3", NOW + 3) == "carol"


def test_a_forgotten_token_is_gone() -> None:
    cache = TokenCache()
    cache.put("h1", "alice", FAR, NOW)
    cache.forget("h1")
    cache.forget("unknown")
    assert cache.get("h1", NOW) is None
