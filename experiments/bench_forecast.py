"""Forecaster speed and accuracy on the twin: 500 store-SKU series x 2 years of daily demand.

    python -m experiments.bench --forecast          # the engine benchmark, then this section
    python -m experiments.bench --forecast-only [--forecasters lstm,transformer,oracle]

Each forecaster is fitted on the first 670 days (covariates known to day 730)
and predicts the last 60; the table gives fit and predict seconds and the MAE
against the actual demand, also relative to the oracle (the true mean). The
LSTM and the Transformer run on CUDA when present, else on the CPU with one
torch thread; the device column says which. A benchmark, not a test: it prints
figures and never fails.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ("seasonal_naive", "moving_average", "ets", "arima", "gradient_boosting", "glm", "lstm", "transformer",
           "oracle")
NETWORKS = ("lstm", "transformer")  # torch: one CPU thread (CUDA when present), left out of --quick
SERIES, DAYS, HORIZON = 500, 730, 60


def twin_panel():
    """The first 500 (store, SKU) series of the paper's network over 730 days, seed 0, baseline scenario."""
    from agents.forecasting.data import panel_from_twin
    from twin.spec import network_from_dict

    network = network_from_dict(yaml.safe_load((ROOT / "conf/network/paper_5x20.yaml").read_text()))
    return panel_from_twin(network, DAYS, seed=0).select(slice(0, SERIES))


def run_one(name: str, panel) -> dict:
    """Fit on all but the last HORIZON days, predict them; seconds and MAE."""
    from agents.forecasting import metrics
    from agents.forecasting.factory import forecaster_factory

    params = {"name": name}
    if name in NETWORKS:
        params["threads"] = 1
    forecaster = forecaster_factory(params)()
    history = panel.until(panel.length - HORIZON, future=HORIZON)
    started = time.perf_counter()
    forecaster.fit(history)
    fitted = time.perf_counter()
    forecast = forecaster.predict(HORIZON)
    done = time.perf_counter()
    forecaster.predict(HORIZON)  # again, warm: what a live refit-free forecast costs
    again = time.perf_counter() - done
    actual = panel.values[:, -HORIZON:]
    device = str(getattr(forecaster, "device", "cpu"))
    return {"forecaster": name, "fit_s": fitted - started, "predict_s": done - fitted, "predict_again_s": again,
            "mae": metrics.mae(actual, forecast.mean), "device": device}


def main(quick: bool = False, forecasters: tuple[str, ...] = DEFAULT) -> list[dict]:
    """Print the table (and return its rows)."""
    import torch

    print()
    print(f"forecasters: {SERIES} twin series (paper_5x20 stores x SKUs) x {DAYS} days, fit on the first "
          f"{DAYS - HORIZON}, predict {HORIZON}; {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}")
    panel = twin_panel()
    rows = []
    for name in forecasters:
        if quick and name in ("arima", *NETWORKS):
            continue
        rows.append(run_one(name, panel))
        r = rows[-1]
        print(f"  {name}: fit {r['fit_s']:.1f} s, predict {r['predict_s']:.3f} s on {r['device']}", flush=True)
    oracle = next((r["mae"] for r in rows if r["forecaster"] == "oracle"), float("nan"))
    header = (f"{'forecaster':>18} {'fit s':>8} {'predict s':>10} {'again s':>8} {'MAE':>7} {'/ oracle':>9} "
              f"{'device':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['forecaster']:>18} {r['fit_s']:>8.2f} {r['predict_s']:>10.4f} {r['predict_again_s']:>8.4f} "
              f"{r['mae']:>7.3f} {r['mae'] / oracle:>9.3f} {r['device']:>7}")
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forecasters", default=",".join(DEFAULT))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    main(args.quick, tuple(args.forecasters.split(",")))
