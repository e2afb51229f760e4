"""Demand forecasters the twin's policies and agents read (DESIGN.md section 8).

For now the live interface that the RL observation uses: a forecaster is attached
to a running engine and answers "expected demand of each node over the next P
days". The oracle reads the twin's true demand model; learned forecasters join it
through the same interface.
"""

from agents.forecasting.live import LiveForecaster, OracleForecaster, forecaster_from_name

__all__ = ["LiveForecaster", "OracleForecaster", "forecaster_from_name"]
