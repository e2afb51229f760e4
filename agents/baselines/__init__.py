"""Baseline replenishment policies (base-stock, echelon base-stock, (s,S), static ROP + EOQ), their catalog by
name, a reference case's optimal policy, and their tuner."""

from agents.baselines.catalog import POLICIES, PolicySpec, optimal_policy
from agents.baselines.policies import SS, BaseStock, EchelonBaseStock, ReorderPointEOQ, economic_order_quantity
from agents.baselines.tuner import TuningResult, evaluate, tune

__all__ = ["POLICIES", "SS", "BaseStock", "EchelonBaseStock", "PolicySpec", "ReorderPointEOQ",
           "TuningResult", "economic_order_quantity", "evaluate", "optimal_policy", "tune"]
