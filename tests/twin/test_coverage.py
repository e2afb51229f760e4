"""twin/coverage.py: protection periods in whole days, and the starting stock in days of mean demand."""

from __future__ import annotations

import numpy as np
import pytest

from twin.coverage import protection_periods, starting_stock
from twin.spec import LeadTimeSpec


def test_protection_period_is_the_rounded_lead_time_plus_the_review_period():
    lead = np.array([0.0, 1.0, 2.4, 2.5, 2.6, 3.5, 7.0, 17.5])
    # rounded to the nearest whole day, halves to even (2.5 -> 2, 3.5 -> 4, 17.5 -> 18), then + review
    np.testing.assert_array_equal(protection_periods(lead, 1), [1, 2, 3, 3, 4, 5, 8, 19])
    np.testing.assert_array_equal(protection_periods(lead, 0), [0, 1, 2, 2, 3, 4, 7, 18])
    np.testing.assert_array_equal(protection_periods(lead, 7), [7, 8, 9, 9, 10, 11, 14, 25])
    assert protection_periods(lead, 1).dtype == np.int64


def test_protection_period_rounds_as_the_twin_rounds_its_lead_times():
    """A lane's whole-day lead times are the law's draws rounded by np.rint; an expected lead time is rounded
    the same way (deterministic 2.5 is sampled as 2 days, and its protection period is 2 + R)."""
    for mean in (0.5, 1.5, 2.5, 3.49, 3.5):
        sampled = LeadTimeSpec(dist="deterministic", mean=mean).sample(np.random.default_rng(0), 1)[0]
        assert protection_periods(np.array([mean]), 1)[0] == sampled + 1


def test_per_node_review_periods_broadcast():
    np.testing.assert_array_equal(protection_periods(np.array([2.0, 3.0]), np.array([1, 7])), [3, 10])


@pytest.mark.parametrize("lead, review, key", [
    (np.array([-1.0]), 1, "lead_times"), (np.array([np.nan]), 1, "lead_times"), (np.array([np.inf]), 1, "lead_times"),
    (np.array([1.0]), -1, "review_period"), (np.array([1.0]), 1.5, "review_period"),
    (np.array([1.0]), True, "review_period"),
])
def test_bad_inputs_are_refused_naming_the_argument(lead, review, key):
    with pytest.raises(ValueError, match=key):
        protection_periods(lead, review)


def test_starting_stock_is_days_of_mean_demand_per_node():
    mean = np.array([[10.0, 1.0], [4.0, 0.3], [2.5, 0.75]])
    days = np.array([0.0, 3.0, 2.0])
    np.testing.assert_allclose(starting_stock(mean, days, integer_units=False), [[0, 0], [12, 0.9], [5, 1.5]])
    # whole units: to the nearest, halves to even (0.9 -> 1, 1.5 -> 2)
    np.testing.assert_array_equal(starting_stock(mean, days, integer_units=True), [[0, 0], [12, 1], [5, 2]])


@pytest.mark.parametrize("days", [np.array([1.0, 2.0]), np.array([[1.0], [2.0], [3.0]]), np.array([1.0, -1.0, 0.0]),
                                  np.array([1.0, np.nan, 0.0])])
def test_starting_stock_refuses_bad_days(days):
    with pytest.raises(ValueError, match="days"):
        starting_stock(np.ones((3, 2)), days, integer_units=False)
