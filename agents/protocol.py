"""The one policy interface (DESIGN.md section 7).

A policy maps the network's state at a review epoch to order quantities per
node and SKU. Baselines implement it now; RL policies, exported ONNX bundles
and the HTTP service will implement the same protocol.
"""

from twin.engine import OrderPolicy as Policy
from twin.state import NetworkState

__all__ = ["Policy", "NetworkState"]
