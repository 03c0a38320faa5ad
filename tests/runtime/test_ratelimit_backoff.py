"""The back-off bucket behind the wrong-PSKc verdicts (issue 16): the burst, then gaps that
double up to a cap, forgotten after a quiet period or a reset."""

from __future__ import annotations

from gateway.ratelimit import BackoffBucket, BucketTable, TokenBucket


def _takes(b: BackoffBucket, until: float, step: float = 0.1) -> list[float]:
    got = []
    t = 0.0
    while t <= until:
        if b.take(t):
            got.append(round(t, 1))
        t += step
    return got


def test_burst_then_doubling_gaps_up_to_the_cap() -> None:
    b = BackoffBucket(rate=10 / 60, burst=5, max_gap=12.0)
    got = _takes(b, 60.0)
    assert got[:5] == [0.0, 0.1, 0.2, 0.3, 0.4]
    gaps = [round(y - x, 1) for x, y in zip(got[4:], got[5:], strict=False)]
    assert gaps == [6.0, 12.0, 12.0, 12.0, 12.0]  # 1/rate, doubled, then capped
    assert b.gap == 12.0


def test_over_six_minutes_the_back_off_halves_a_plain_buckets_rate() -> None:
    """The difference the back-off makes, against a token bucket alone."""
    b = TokenBucket(rate=10 / 60, burst=5)
    plain = len([t for t in range(3600) if b.take(t / 10)])
    assert plain == 5 + 59  # 5, then 10 a minute
    bb = BackoffBucket(rate=10 / 60, burst=5, max_gap=12.0)
    assert len(_takes(bb, 359.9)) == 5 + 30  # 5, then one per 12 s


def test_wait_time_and_available_include_the_gap() -> None:
    b = BackoffBucket(rate=1.0, burst=1, max_gap=8.0)
    assert b.take(0.0)  # empties it: gap 1 s
    assert not b.available(0.5) and abs(b.wait_time(0.5) - 0.5) < 1e-9
    assert b.take(1.0)  # gap 2 s now
    assert not b.available(2.5) and abs(b.wait_time(2.5) - 0.5) < 1e-9
    assert b.take(3.0)


def test_quiet_period_and_reset_forget_the_back_off() -> None:
    b = BackoffBucket(rate=1.0, burst=2, max_gap=16.0, quiet_reset=60.0)
    for t in (0.0, 0.1, 1.1, 3.1, 7.1):
        assert b.take(t)
    assert b.gap == 8.0
    assert b.take(100.0) and b.gap == 0.0  # quiet for 60 s: a fresh start (full burst)
    assert b.take(100.1) and b.gap == 1.0
    b.reset()
    assert b.gap == 0.0 and b.available(100.1 + 1.0)


def test_bucket_table_makes_backoff_buckets_when_asked() -> None:
    assert type(BucketTable(1.0, 2).get("a")) is TokenBucket
    table = BucketTable(1.0, 2, max_gap=4.0)
    got = table.get("a")
    assert isinstance(got, BackoffBucket) and got.max_gap == 4.0
