"""Baseline replenishment policies (base-stock, echelon base-stock, (s,S), static ROP + EOQ) and their tuner."""

from agents.baselines.policies import SS, BaseStock, EchelonBaseStock, ReorderPointEOQ, economic_order_quantity
from agents.baselines.tuner import TuningResult, evaluate, tune

__all__ = ["SS", "BaseStock", "EchelonBaseStock", "ReorderPointEOQ", "TuningResult",
           "economic_order_quantity", "evaluate", "tune"]
