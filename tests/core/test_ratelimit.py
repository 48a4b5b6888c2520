"""Rate limits with time passed in: token buckets, the flood guard and per-connection limits."""

from __future__ import annotations

import pytest

from hubbub.core.limits import (
    FLOOD_LIMIT,
    FLOOD_WINDOW,
    ConnectionLimits,
    FloodGuard,
    PenaltyBox,
    TokenBucket,
)

T0 = 1_000.0  # an arbitrary monotonic clock reading


def test_token_bucket_allows_a_full_burst_at_once_then_refuses() -> None:
    bucket = TokenBucket(rate=20, burst=40, now=T0)
    assert [bucket.take(T0) for _ in range(40)] == [0.0] * 40
    assert bucket.take(T0) == pytest.approx(1 / 20)


def test_token_bucket_retry_after_is_the_time_until_the_next_token() -> None:
    bucket = TokenBucket(rate=4, burst=1, now=T0)
    assert bucket.take(T0) == 0.0
    assert bucket.take(T0) == pytest.approx(0.25)
    assert bucket.take(T0 + 0.1) == pytest.approx(0.15)
    assert bucket.take(T0 + 0.2) == pytest.approx(0.05)


def test_token_bucket_refused_take_spends_nothing() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=T0)
    bucket.take(T0)
    for _ in range(5):
        assert bucket.take(T0) == pytest.approx(0.1)
    assert bucket.take(T0 + 0.1) == 0.0


def test_token_bucket_waiting_retry_after_is_enough() -> None:
    bucket = TokenBucket(rate=20, burst=40, now=T0)
    now = T0
    for _ in range(40):
        bucket.take(now)
    for _ in range(100):
        wait = bucket.take(now)
        assert wait > 0
        now += wait + 1e-9  # a clock never stands still; this absorbs float rounding
        assert bucket.take(now) == 0.0


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=20, burst=40, now=T0)
    for _ in range(40):
        bucket.take(T0)
    later = T0 + 0.5  # ten tokens
    assert [bucket.take(later) for _ in range(10)] == [0.0] * 10
    assert bucket.take(later) > 0


def test_token_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(rate=20, burst=40, now=T0)
    much_later = T0 + 3_600
    assert [bucket.take(much_later) for _ in range(40)] == [0.0] * 40
    assert bucket.take(much_later) == pytest.approx(1 / 20)


def test_token_bucket_sustains_its_rate_over_time() -> None:
    bucket = TokenBucket(rate=20, burst=40, now=T0)
    allowed = sum(bucket.take(T0 + i / 1000) == 0.0 for i in range(10_000))  # 1000 frames/s
    assert allowed == pytest.approx(40 + 20 * 10, abs=1)


def test_flood_guard_tolerates_exactly_the_limit_within_the_window() -> None:
    guard = FloodGuard(limit=100, window=10.0)
    assert not any(guard.strike(T0 + i * 0.05) for i in range(100))
    assert guard.strike(T0 + 5.0)


def test_flood_guard_forgets_strikes_older_than_the_window() -> None:
    guard = FloodGuard(limit=100, window=10.0)
    for _ in range(100):
        assert not guard.strike(T0)
    assert not guard.strike(T0 + 10.5)
    for _ in range(99):
        assert not guard.strike(T0 + 11)


def test_flood_guard_counts_any_window_long_span_not_fixed_buckets() -> None:
    """docs/protocol.md: more than 100 rate_limited errors within 10 seconds closes the
    connection. Here 101 strikes fall within one second, straddling a fixed-window edge."""
    guard = FloodGuard(limit=100, window=10.0)
    assert not guard.strike(T0)
    struck = [guard.strike(T0 + 9.6 + i * 0.001) for i in range(99)]
    struck += [guard.strike(T0 + 10.1 + i * 0.001) for i in range(2)]
    assert not any(struck[:99])
    assert any(struck), "101 strikes within 0.6 s were tolerated"


def test_connection_limits_use_the_spec_defaults() -> None:
    assert (FLOOD_LIMIT, FLOOD_WINDOW) == (100, 10.0)
    limits = ConnectionLimits(rate=20, now=T0)
    assert limits.chatty is not None
    assert (limits.chatty.rate, limits.chatty.burst) == (20, 40)
    assert limits.all_frames is not None
    assert limits.all_frames.rate == 200


def test_connection_limits_send_and_typing_share_a_burst_of_twice_the_rate() -> None:
    limits = ConnectionLimits(rate=20, now=T0)
    assert [limits.check(chatty=True, now=T0) for _ in range(40)] == [0.0] * 40
    assert limits.check(chatty=True, now=T0) == pytest.approx(1 / 20)


def test_connection_limits_other_frames_pass_while_chatty_frames_are_limited() -> None:
    limits = ConnectionLimits(rate=20, now=T0)
    for _ in range(41):
        limits.check(chatty=True, now=T0)
    assert limits.check(chatty=False, now=T0) == 0.0


def test_connection_limits_cap_all_frames_at_200_per_second() -> None:
    limits = ConnectionLimits(rate=20, now=T0)
    assert [limits.check(chatty=False, now=T0) for _ in range(200)] == [0.0] * 200
    assert limits.check(chatty=False, now=T0) == pytest.approx(1 / 200)
    assert limits.check(chatty=False, now=T0 + 1 / 200 + 1e-9) == 0.0


def test_connection_limits_rate_zero_turns_limiting_off() -> None:
    limits = ConnectionLimits(rate=0, now=T0)
    assert all(limits.check(chatty=c, now=T0) == 0.0 for c in (True, False) for _ in range(10_000))


def test_penalty_box_keeps_a_key_out_for_its_seconds_then_forgets_it() -> None:
    box = PenaltyBox(10.0)
    box.add("user:eve", T0)
    assert box.remaining("user:eve", T0 + 4) == pytest.approx(6.0)
    assert box.remaining("user:bob", T0 + 4) == 0.0
    assert box.remaining("user:eve", T0 + 10) == 0.0
    assert "user:eve" not in box.until


def test_penalty_box_drops_the_expired_and_stays_within_its_limit() -> None:
    box = PenaltyBox(10.0, limit=3)
    for i in range(5):
        box.add(f"k{i}", T0 + i)
    assert list(box.until) == ["k2", "k3", "k4"]  # the oldest went first
    box.add("k5", T0 + 13.5)  # k2 and k3 have expired by now
    assert list(box.until) == ["k4", "k5"]


def test_penalty_box_of_zero_seconds_is_off() -> None:
    box = PenaltyBox(0.0)
    box.add("x", T0)
    assert box.remaining("x", T0) == 0.0
