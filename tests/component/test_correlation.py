"""Correlation of account returns on constructed series whose correlations are known exactly."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from decimal import Decimal

from orchestrator.domain.correlate import correlate
from orchestrator.domain.correlation import AccountCorrelation, CorrelationResult

DAYS = [date(2026, 1, 5) + timedelta(days=i) for i in range(8)]
UNIT = Decimal("0.01")
# Mean-zero, mutually orthogonal patterns (Walsh functions): their correlation is exactly 0.
BASE = [UNIT, -UNIT] * 4
NOISE = [UNIT, UNIT, -UNIT, -UNIT] * 2
THIRD = [UNIT, -UNIT, -UNIT, UNIT] * 2  # orthogonal to both


def series(values: list[Decimal], days: list[date] = DAYS) -> dict[date, Decimal]:
    return dict(zip(days, values, strict=True))


def mix(base_weight: Decimal, noise_weight: Decimal, offset: Decimal = Decimal(0)) -> list[Decimal]:
    """``base_weight·BASE + noise_weight·NOISE + offset``: its correlation with BASE is
    ``base_weight / sqrt(base_weight² + noise_weight²)``."""
    return [base_weight * b + noise_weight * n + offset for b, n in zip(BASE, NOISE, strict=True)]


def run(
    returns: dict[str, dict[date, Decimal]],
    *,
    account_ids: list[str] | None = None,
    threshold: str = "0.7",
    min_observations: int = 5,
    max_peers: int = 10,
) -> dict[str, AccountCorrelation]:
    result = correlate(
        account_ids if account_ids is not None else list(returns),
        DAYS,
        returns,
        threshold=Decimal(threshold),
        min_observations=min_observations,
        max_peers=max_peers,
    )
    assert isinstance(result, CorrelationResult)
    return result.by_account()


def test_two_perfectly_correlated_accounts_form_one_group_and_the_independent_one_is_alone() -> (
    None
):
    returns = {
        "twin-a": series(BASE),
        "twin-b": series(mix(Decimal(2), Decimal(0), offset=Decimal("0.003"))),
        "loner": series(NOISE),
    }

    result = run(returns)

    a, b, loner = result["twin-a"], result["twin-b"], result["loner"]
    assert a.group is not None
    assert a.group == b.group
    assert a.peers == ["twin-b"]
    assert b.peers == ["twin-a"]
    assert a.max_correlation == Decimal("1.0000")
    assert loner.group is None
    assert loner.peers == []
    assert loner.max_correlation == Decimal("0.0000")
    assert all(not r.insufficient_history for r in result.values())
    assert all(r.observations == len(DAYS) for r in result.values())


def test_anti_correlated_accounts_are_not_grouped() -> None:
    returns = {
        "long": series(BASE),
        "short": series(mix(Decimal(-1), Decimal(0))),
    }

    result = run(returns)

    assert result["long"].group is None
    assert result["short"].group is None
    assert result["long"].peers == []
    assert result["long"].max_correlation == Decimal("-1.0000")


def test_groups_are_connected_components_so_a_bridge_joins_two_uncorrelated_accounts() -> None:
    returns = {
        "x": series(BASE),
        "y-bridge": series(mix(Decimal(1), Decimal(1))),  # 0.7071 with each of x and z
        "z": series(NOISE),
    }

    result = run(returns, threshold="0.7")

    assert result["x"].group == result["y-bridge"].group == result["z"].group
    assert result["x"].group is not None
    assert result["x"].peers == ["y-bridge"]
    assert result["y-bridge"].peers == ["x", "z"]
    assert result["x"].max_correlation == Decimal("0.7071")


def test_accounts_below_min_observations_are_flagged_and_left_ungrouped() -> None:
    short_days = DAYS[:3]
    returns = {
        "full-a": series(BASE),
        "full-b": series(mix(Decimal(3), Decimal(0))),
        "short": series(BASE[:3], short_days),  # would correlate perfectly, given the data
    }

    result = run(returns, account_ids=["full-a", "full-b", "short", "no-data"], min_observations=5)

    for account_id, observations in (("short", 3), ("no-data", 0)):
        flagged = result[account_id]
        assert flagged.insufficient_history is True
        assert flagged.group is None
        assert flagged.peers == []
        assert flagged.max_correlation is None
        assert flagged.observations == observations
    assert result["full-a"].peers == ["full-b"]
    assert result["full-a"].insufficient_history is False
    assert "short" not in result["full-b"].peers


def test_min_observations_boundary_counts_exactly() -> None:
    returns = {"a": series(BASE), "b": series(BASE[:5], DAYS[:5])}

    assert run(returns, min_observations=5)["b"].insufficient_history is False
    assert run(returns, min_observations=6)["b"].insufficient_history is True


def test_peers_are_sorted_strongest_first_and_capped_at_max_peers() -> None:
    # Correlation with "a-base" is 1/sqrt(1 + t²): t=0.1 → 0.9950, 0.3 → 0.9578, 0.5 → 0.8944.
    # The names sort in the opposite order of strength so sorting by name would be caught.
    returns = {
        "a-base": series(BASE),
        "b-weak": series(mix(Decimal(1), Decimal("0.5"))),
        "m-mid": series(mix(Decimal(1), Decimal("0.3"))),
        "z-strong": series(mix(Decimal(1), Decimal("0.1"))),
    }

    capped = run(returns, max_peers=2)
    uncapped = run(returns, max_peers=10)
    none = run(returns, max_peers=0)

    assert capped["a-base"].peers == ["z-strong", "m-mid"]
    assert uncapped["a-base"].peers == ["z-strong", "m-mid", "b-weak"]
    assert none["a-base"].peers == []
    assert capped["a-base"].max_correlation == Decimal("0.9950")
    assert all(len(r.peers) <= 2 for r in capped.values())
    # The cap limits the peer list, never the group.
    assert len({r.group for r in capped.values()}) == 1


def test_peers_below_the_threshold_are_not_listed() -> None:
    returns = {
        "a-base": series(BASE),
        "b-weak": series(mix(Decimal(1), Decimal("0.5"))),  # 0.8944
        "z-strong": series(mix(Decimal(1), Decimal("0.1"))),  # 0.9950
    }

    result = run(returns, threshold="0.9")

    assert result["a-base"].peers == ["z-strong"]


def test_group_names_and_peers_do_not_depend_on_input_order() -> None:
    returns = {
        "g1-a": series(BASE),
        "g1-b": series(mix(Decimal(2), Decimal("0.1"))),
        "g2-a": series(NOISE),
        "g2-b": series(mix(Decimal("0.1"), Decimal(3))),
        "solo": series(THIRD),
    }
    ids = list(returns)

    outcomes = []
    for order in itertools.permutations(ids):
        reordered = {account_id: returns[account_id] for account_id in reversed(order)}
        outcomes.append(run(reordered, account_ids=list(order)))

    first = outcomes[0]
    assert all(outcome == first for outcome in outcomes)
    assert first["g1-a"].group == first["g1-b"].group
    assert first["g2-a"].group == first["g2-b"].group
    assert first["g1-a"].group != first["g2-a"].group
    assert first["solo"].group is None


def test_a_constant_series_correlates_with_nothing() -> None:
    returns = {
        "flat": series([Decimal("0.002")] * len(DAYS)),
        "a": series(BASE),
        "b": series(mix(Decimal(1), Decimal("0.1"))),
    }

    result = run(returns, threshold="0.0001")

    flat = result["flat"]
    assert flat.group is None
    assert flat.peers == []
    assert flat.max_correlation == Decimal("0.0000")
    assert flat.insufficient_history is False
    assert "flat" not in result["a"].peers
    assert "flat" not in result["b"].peers
    assert result["a"].group == result["b"].group is not None


def test_results_are_decimals_quantized_to_four_places() -> None:
    returns = {
        "a": series(BASE),
        "b": series(mix(Decimal(1), Decimal("0.3"))),
        "c": series(NOISE),
    }

    result = correlate(
        list(returns),
        DAYS,
        returns,
        threshold=Decimal("0.7"),
        min_observations=5,
        max_peers=10,
    )

    assert isinstance(result.threshold, Decimal)
    assert result.threshold == Decimal("0.7")
    for account in result.accounts:
        assert isinstance(account.max_correlation, Decimal)
        assert account.max_correlation.as_tuple().exponent == -4
    assert result.by_account()["a"].max_correlation == Decimal("0.9578")


def test_results_cover_every_requested_account_in_sorted_order() -> None:
    returns = {"b": series(BASE), "a": series(NOISE)}

    result = correlate(
        ["b", "c", "a"],
        DAYS,
        returns,
        threshold=Decimal("0.7"),
        min_observations=5,
        max_peers=10,
    )

    assert [a.account_id for a in result.accounts] == ["a", "b", "c"]


def test_a_single_usable_account_has_no_correlation_and_no_group() -> None:
    result = run({"only": series(BASE)}, account_ids=["only"])

    assert result["only"].group is None
    assert result["only"].max_correlation is None
    assert result["only"].peers == []


def test_no_days_flags_everyone_as_insufficient() -> None:
    result = correlate(
        ["a", "b"],
        [],
        {},
        threshold=Decimal("0.7"),
        min_observations=2,
        max_peers=10,
    )

    assert all(a.insufficient_history for a in result.accounts)
    assert all(a.observations == 0 for a in result.accounts)
