"""twin/config.py: check_warmup, the one rule for a warm-up (the engine and every config reader use it)."""

from __future__ import annotations

import numpy as np
import pytest

from twin.config import SpecError, check_warmup


@pytest.mark.parametrize("warmup, horizon", [(0, 1), (27, 28), (np.int64(5), 6)])
def test_a_warmup_shorter_than_the_horizon_is_allowed(warmup, horizon):
    assert check_warmup(warmup, horizon) == warmup


@pytest.mark.parametrize("warmup, horizon", [(1, 1), (28, 28), (30, 20), (-1, 5), (True, 5), (1.0, 5), ("3", 5)])
def test_a_warmup_that_leaves_no_day_to_count_is_refused(warmup, horizon):
    with pytest.raises(SpecError, match=r"^warmup: .* allowed: whole days in \[0, horizon - 1\]"):
        check_warmup(warmup, horizon)


def test_the_error_names_both_keys_and_the_bound():
    with pytest.raises(SpecError) as error:
        check_warmup(28, 20, warmup_key="evaluation.warmup", horizon_key="validation.horizon")
    assert str(error.value).startswith("evaluation.warmup: 28 is not allowed; allowed: whole days in "
                                       "[0, validation.horizon - 1] = [0, 19]")
