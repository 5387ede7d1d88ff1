"""How a signal's orders in flight are shared among its batches (``orders_shares``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from workflows.order_slots import orders_shares


def test_a_bound_of_the_whole_signal_gives_every_leg_a_slot() -> None:
    # 5,000 legs in batches of 300: an equal share would be 294 each.
    legs = [300] * 16 + [200]
    assert orders_shares(5000, legs) == legs


def test_shares_follow_the_legs_and_add_up_to_the_bound() -> None:
    assert orders_shares(600, [300] * 16 + [200]) == [36] * 16 + [24]
    assert orders_shares(5, [2, 2, 1]) == [2, 2, 1]
    # Largest remainders first, ties to the earlier batch.
    assert orders_shares(4, [1, 1, 1]) == [2, 1, 1]


def test_every_batch_gets_one_slot_at_least() -> None:
    assert orders_shares(2, [2, 2, 1]) == [1, 1, 1]
    # 2 of 301 legs: the large batch's second slot goes to the small one.
    assert orders_shares(2, [1, 300]) == [1, 1]


@given(
    limit=st.integers(min_value=1, max_value=10_000),
    legs=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=40),
)
def test_shares_are_proportional_and_bounded(limit: int, legs: list[int]) -> None:
    shares = orders_shares(limit, legs)
    assert len(shares) == len(legs)
    assert all(share >= 1 for share in shares)
    if limit >= len(legs):
        assert sum(shares) == limit
    else:
        assert shares == [1] * len(legs)
    if limit >= sum(legs):
        assert all(share >= n for share, n in zip(shares, legs, strict=True))
    total = sum(legs)
    for share, n in zip(shares, legs, strict=True):
        # Never more than one slot above the exact proportion, nor below one slot.
        assert share <= max(1, limit * n // total + 1)
