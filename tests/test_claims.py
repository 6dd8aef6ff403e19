"""The bulk pool's claims: dropped by time, never lost, and what was dropped told exactly."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from qomon_async._claims import Claims, micros
from qomon_async._models import Contact

T0 = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.timezone.utc)
MS = dt.timedelta(milliseconds=1)
SPAN = dt.timedelta(microseconds=Claims.span)


def claim(number: int, when: dt.datetime) -> Contact:
    return Contact(id=number, _created_at=when)


def test_a_steady_stream_keeps_the_window_and_not_twice_it() -> None:
    # 1,000 creates a second of Qomon's clock; the pool's floor trails by 5 s. Claims are
    # dropped each time a group begins: the table holds the window plus a group or two, where
    # dropping only once the table doubled held up to twice the window.
    claims = Claims()
    largest = 0
    for number in range(1, 30_001):
        now = T0 + number * MS
        claims.add(claim(number, now))
        if claims.full():
            claims.drop_before(now - dt.timedelta(seconds=5))
        largest = max(largest, len(claims))
    assert 5_000 <= len(claims) <= largest <= 5_000 + 2 * 500 + 1
    # Nothing of the window was lost: the last 5 s of claims are all there.
    assert all(number in claims for number in range(25_000, 30_001))
    assert 1 not in claims and claims.forgotten(T0 + MS)


def test_a_new_group_asks_for_a_drop_before_the_table_doubles() -> None:
    claims = Claims()
    claims.add(claim(1, T0))
    assert not claims.full()  # one group: nothing could be older than it
    claims.add(claim(2, T0 + SPAN / 2))
    assert not claims.full()
    claims.add(claim(3, T0 + SPAN))
    assert claims.full()  # a group began: the first may be droppable
    claims.keep_all()
    assert not claims.full()  # not asked again on every claim...
    claims.add(claim(4, T0 + SPAN + MS))
    assert not claims.full()
    claims.add(claim(5, T0 + 2 * SPAN + MS))
    assert claims.full()  # ...but once the next group begins
    claims.drop_before(T0 + SPAN)
    assert not claims.full()
    assert [n in claims for n in range(1, 6)] == [False, False, True, True, True]
    assert claims.dropped_from == T0 and claims.floor == T0 + SPAN
    assert claims.forgotten(T0 + SPAN / 2) and not claims.forgotten(T0 + SPAN)
    assert not claims.forgotten(T0 - MS)


def test_what_was_dropped_is_told_to_the_microsecond() -> None:
    # A time whose float timestamp, times 10**6, truncates one microsecond short: the dropped
    # claim's date must be the contact's own, and a floor at it must keep it.
    when = dt.datetime(2040, 3, 3, 15, 15, 39, 27856, tzinfo=dt.timezone.utc)
    assert int(when.timestamp() * 1_000_000) != (
        when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    ) // (dt.timedelta(microseconds=1))
    claims = Claims()
    claims.add(claim(7, when))
    claims.drop_before(when)
    assert 7 in claims and claims.floor is None and claims.dropped_from is None
    later = when + dt.timedelta(microseconds=1)
    claims.drop_before(later)
    assert 7 not in claims and len(claims) == 0
    assert claims.dropped_from == when and claims.floor == later
    assert claims.forgotten(when) and not claims.forgotten(later)
    assert not claims.forgotten(when - dt.timedelta(microseconds=1))


def test_a_date_from_the_future_does_not_hold_back_the_others() -> None:
    claims = Claims()
    claims.add(claim(1, dt.datetime(9999, 12, 31, tzinfo=dt.timezone.utc)))
    for number in range(2, 2_002):
        now = T0 + number * MS
        claims.add(claim(number, now))
        if claims.full():
            claims.drop_before(now - dt.timedelta(seconds=1))
    assert 1 in claims  # kept: safe, and one claim
    assert len(claims) <= 1 + 1_000 + 2 * 500 + 1


def test_a_late_claim_of_an_older_contact_is_dropped_in_its_turn() -> None:
    # A reconciled contact created seconds before the claims around it: it begins its own
    # group, is kept until the floor passes it, and its drop is told (dropped_from).
    claims = Claims()
    claims.add(claim(1, T0 + 10_000 * MS))
    claims.add(claim(2, T0 + 3_000 * MS))
    claims.add(claim(3, T0 + 10_001 * MS))
    assert claims.full()
    claims.drop_before(T0 + 2_000 * MS)
    assert all(n in claims for n in (1, 2, 3)) and claims.floor is None
    claims.drop_before(T0 + 5_000 * MS)
    assert 2 not in claims and 1 in claims and 3 in claims and len(claims) == 2
    assert claims.dropped_from == T0 + 3_000 * MS
    assert claims.forgotten(T0 + 3_000 * MS) and not claims.forgotten(T0 + 2_999 * MS)


def test_ids_far_apart_in_one_group_are_all_kept_exactly() -> None:
    # Ids are kept as 32-bit differences within a group until one does not fit; an id 2**32
    # away from a kept one (the same 32 low bits) is not taken for it.
    claims = Claims()
    near = [10_000_000 + k for k in range(5)]
    far = [2**62, -(2**63), 2**63 - 1, 10_000_000 - 2**31, 10_000_000 + 2**31]
    for number in near:
        claims.add(claim(number, T0))
    assert 10_000_000 + 2**32 not in claims and 10_000_000 - 2**32 not in claims
    for number in far:
        claims.add(claim(number, T0 + MS))
    assert all(number in claims for number in near + far) and len(claims) == 10
    assert 10_000_000 + 2**32 not in claims and 0 not in claims and None not in claims
    claims.drop_before(T0 + 2 * MS)
    assert not any(number in claims for number in near + far) and len(claims) == 0


def test_claims_without_a_date_or_for_in_doubt_items_are_never_dropped() -> None:
    claims = Claims()
    claims.add(Contact(id=1))
    claims.add(claim(2, T0), keep=True)
    claims.add(claim(3, T0))
    claims.add(Contact(id=None, _created_at=T0))  # no id: nothing to claim
    claims.drop_before(T0 + dt.timedelta(days=1))
    assert 1 in claims and 2 in claims and 3 not in claims and len(claims) == 2


# Each step: add a claim, or drop before a time; times (ms from T0) on a 25 ms grid over 3 s,
# so that claims share groups, fall just before or at a floor, and arrive out of order.
times = st.integers(0, 120).map(lambda step: 25 * step)
steps = st.lists(
    st.one_of(st.tuples(st.just("add"), times), st.tuples(st.just("drop"), times)),
    max_size=200,
)


@settings(max_examples=500, deadline=None)
@given(steps, st.sampled_from([1, -7, 2**28]))
def test_no_claim_is_lost_and_the_drops_are_told_exactly(
    ops: list[tuple[str, int]], stride: int
) -> None:
    # Ids: close together, or far enough apart that a group needs 64 bits for them.
    claims = Claims()
    created: dict[int, dt.datetime] = {}
    cuts: list[dt.datetime] = []
    for op, offset in ops:
        when = T0 + offset * MS
        if op == "add":
            number = (len(created) + 1) * stride
            created[number] = when
            claims.add(claim(number, when))
            continue
        before = {n for n in created if n in claims}
        claims.drop_before(when)
        after = {n for n in created if n in claims}
        # A drop keeps every claim created at or after its floor...
        assert {n for n in before if created[n] >= when} <= after
        # ...and leaves none more than two groups older than it (the table stays bounded).
        assert all(created[n] > when - 2 * SPAN for n in after)
        if before - after:
            cuts.append(when)
    present = {n for n in created if n in claims}
    assert len(claims) == len(present)
    assert 0 not in claims and (len(created) + 1) * stride not in claims
    dropped = [created[n] for n in created if n not in present]
    if not dropped:
        assert claims.floor is None and claims.dropped_from is None
        return
    # Every dropped claim is one reconciliation will not trust: never silently lost.
    assert all(claims.forgotten(when) for when in dropped)
    assert claims.dropped_from == min(dropped)
    assert claims.floor == max(cuts)


_ZONES = st.one_of(
    st.none(),
    st.integers(min_value=-23 * 60, max_value=23 * 60).map(
        lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
    ),
)


@given(
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    _ZONES,
)
@settings(max_examples=500)
def test_micros_is_the_exact_integer_and_gives_the_timestamp_to_the_bit(
    naive: dt.datetime, zone: dt.tzinfo | None
) -> None:
    """micros() by the timedelta's fields is the floor division by one microsecond it
    replaced, and micros / 10**6 is what datetime.timestamp() gives (a claim's time and the
    clock the create protocol learns from a date agree to the bit)."""
    when = naive.replace(tzinfo=zone)
    as_utc = when if zone is not None else when.replace(tzinfo=dt.timezone.utc)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    assert micros(when) == (as_utc - epoch) // dt.timedelta(microseconds=1)
    assert micros(when) / 1_000_000 == as_utc.timestamp()
