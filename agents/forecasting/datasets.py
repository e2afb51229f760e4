"""Real series bundled inside statsmodels (installed with statsforecast): nothing is downloaded.

`load_panel("statsmodels:NAME")` reads one of them; `real_series(NAME)` gives the
long table (`series_id, date, value`) a user's file would hold.
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


def real_series(name: str) -> pd.DataFrame:
    """The long table of bundled dataset `name`; DataError naming the allowed names otherwise."""
    if name not in REAL_DATASETS:
        raise DataError(f"data.path: statsmodels:{name} is not a bundled dataset; allowed: "
                        + ", ".join(f"statsmodels:{n}" for n in REAL_DATASETS))
    return REAL_DATASETS[name]().reset_index(drop=True)
