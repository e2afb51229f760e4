"""The one policy interface (docs/architecture.md, Policies).

A policy maps the network's state at a review epoch to order quantities per
node and SKU. The baselines (agents.baselines) and trained RL policies
(agents.rl.policy.TrainedPolicy) implement it, so the twin runs and scores
them alike.
"""

from twin.engine import OrderPolicy as Policy
from twin.state import NetworkState

__all__ = ["Policy", "NetworkState"]
