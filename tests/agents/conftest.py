"""What the forecaster tests share: a synthetic panel whose promotions, known in advance, drive demand."""

from __future__ import annotations

import numpy as np
import pytest

from agents.forecasting.data import panel_from_arrays


def make_promotion_panel(n: int = 20, t: int = 240, future: int = 14, seed: int = 0, weekly: float = 0.2):
    """Poisson demand with a weekly pattern (+-`weekly`), tripled on random promotion days known in advance:
    (the panel of the first `t` days with the promotions to `t + future`, the demand after, the promotions after)."""
    rng = np.random.default_rng(seed)
    promo = (rng.random((n, t + future)) < 0.15).astype(np.float32)
    level = rng.uniform(3, 8, (n, 1))
    mean = level * (1 + weekly * np.sin(2 * np.pi * np.arange(t + future) / 7)) * (1 + 2.0 * promo)
    demand = rng.poisson(mean).astype(float)
    panel = panel_from_arrays(demand[:, :t], future=future, covariates=promo[..., None], covariate_names=("promotion",),
                              categories={"store": np.arange(n) % 4})
    return panel, demand[:, t:], promo[:, t:]


@pytest.fixture(scope="session")
def promotion_panel():
    """`make_promotion_panel`, for the tests of the global networks (LSTM, Transformer)."""
    return make_promotion_panel
