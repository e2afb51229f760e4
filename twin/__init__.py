"""The digital twin: network specs, demand, lead times, shocks, the SimPy engine, ledger and KPIs.

Only numpy and simpy are needed here; nothing in twin/ imports torch, ray or hydra.
"""

from twin.config import SpecError
from twin.engine import TWIN_VERSION, Engine, OrderPolicy, RunResult
from twin.ledger import InvariantError
from twin.shocks import CapacityCut, DcClosure, DemandShock, LeadTimeShock, Shock, SupplierOutage
from twin.snapshot import Snapshot
from twin.spec import LeadTimeSpec, NetworkSpec, NodeSpec, network_from_dict
from twin.state import NetworkState, Topology

__all__ = [
    "TWIN_VERSION", "CapacityCut", "DcClosure", "DemandShock", "Engine", "InvariantError", "LeadTimeShock",
    "LeadTimeSpec", "NetworkSpec", "NetworkState", "NodeSpec", "OrderPolicy", "RunResult", "Shock", "Snapshot",
    "SpecError", "SupplierOutage", "Topology", "network_from_dict",
]
