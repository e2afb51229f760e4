"""A lead-time shock scales lead times with halves rounded up, and never makes a lane instantaneous."""

from __future__ import annotations

import numpy as np
import pytest

from twin import Engine, LeadTimeShock, network_from_dict


def arrival_delay(lead: int, multiplier: float) -> int:
    network = network_from_dict({
        "name": "lane",
        "skus": {"items": [{"name": "a", "mean": 1}]},
        "nodes": [{"name": "sup", "kind": "supplier"},
                  {"name": "shop", "kind": "store", "parent": "sup", "lead_time": {"mean": lead}}],
    })
    engine = Engine(network, horizon=20, seed=0, shocks=(LeadTimeShock(start=0, end=20, multiplier=multiplier),))
    engine.step(np.array([[0.0], [100.0]]))  # one order on day 0, nothing after
    while not engine.done:
        engine.step(np.zeros((2, 1)))
    received = engine.result().series["received"][:, 1]
    return int(np.flatnonzero(received)[0])


@pytest.mark.parametrize(("lead", "multiplier", "delay"), [
    (1, 2.5, 3), (3, 2.5, 8), (2, 1.5, 3), (4, 0.5, 2), (2, 0.25, 1), (1, 0.0, 1), (3, 1.0, 3),
])
def test_lead_time_multiplier(lead, multiplier, delay):
    assert arrival_delay(lead, multiplier) == delay
