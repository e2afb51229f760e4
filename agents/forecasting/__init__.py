"""Demand forecasters (docs/architecture.md, Forecasting): fit on a panel of history, predict a mean and quantiles.

- base.py: the protocol (`SeriesPanel`, `Forecast`, `Forecaster`); data.py: panels from files and the twin;
- classical.py (seasonal naive, moving average, ETS and ARIMA via statsforecast), tree.py (gradient
  boosting), lstm.py (a global LSTM in torch), transformer.py (a global patch Transformer on the LSTM's
  inputs and training), ensemble.py, oracle.py (the twin's true mean);
- registry.py: forecasters by name from config; metrics.py and backtest.py: rolling-origin backtests;
- live.py: forecasts during a twin run (the oracle, or any forecaster refitted on a schedule) for the
  forecast-driven base-stock policy and the agents' observations; sums of a forecast over protection periods;
- saved.py: fitted forecasters saved with a manifest and loaded to forecast from a request's history (the LSTM
  and the Transformer as ONNX, without torch); lstm_inputs.py: the LSTM's inputs in numpy.
"""

from agents.forecasting.base import Forecast, Forecaster, SeriesPanel
from agents.forecasting.live import LiveForecaster, OracleForecaster, Refitting, forecaster_from_name

__all__ = ["Forecast", "Forecaster", "LiveForecaster", "OracleForecaster", "Refitting", "SeriesPanel",
           "forecaster_from_name"]
