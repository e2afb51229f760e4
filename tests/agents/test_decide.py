"""agents.deploy.decide's pure parts (decisions end to end are tested in tests/experiments)."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from agents.deploy.decide import _capped, recommendation_id
from agents.deploy.erp_state import Item


def test_recommendation_ids_are_the_rfc_4122_name_based_uuids_of_their_inputs():
    for n in range(500):
        rid = recommendation_id("bundle", "request", f"store_{n}", "rice")
        digest = hashlib.sha256(f"bundle|request|store_{n}|rice".encode()).hexdigest()
        assert rid == str(uuid.UUID(hex=digest[:32], version=5))
        parsed = uuid.UUID(rid)
        assert parsed.version == 5 and parsed.variant == uuid.RFC_4122
    assert recommendation_id("bundle", "request", "store_0", "rice") != recommendation_id("bundle", "request",
                                                                                          "store_0", "milk")


@pytest.mark.parametrize(("fields", "quantity", "position", "whole", "expected", "capacity"), [
    ({}, 50.0, 0.0, True, 50.0, None),                                              # no fields: unchanged
    ({"max_order_quantity": 60}, 50.0, 0.0, True, 50.0, None),                      # under the cap
    ({"max_order_quantity": 30}, 50.0, 0.0, True, 30.0, "max_order_quantity"),
    ({"storage_capacity": 100}, 50.0, 80.0, True, 20.0, "storage_capacity"),        # 100 - position 80
    ({"storage_capacity": 100}, 50.0, 120.0, True, 0.0, "storage_capacity"),        # over capacity: never below 0
    ({"storage_capacity": 100.5}, 50.0, 80.0, True, 20.0, "storage_capacity"),      # whole units
    ({"storage_capacity": 100.5}, 50.0, 80.0, False, 20.5, "storage_capacity"),
    ({"max_order_quantity": 30, "pack_size": 12}, 48.0, 0.0, True, 24.0, "max_order_quantity"),  # down to packs
    ({"max_order_quantity": 0.3, "pack_size": 0.1}, 0.5, 0.0, False, 0.3, "max_order_quantity"),
    ({"max_order_quantity": 30, "pack_size": 12, "min_order_quantity": 25}, 48.0, 0.0, True, 0.0,
     "max_order_quantity"),                                                          # 2 packs < MOQ 25: no order
    ({"max_order_quantity": 30, "storage_capacity": 50}, 48.0, 10.0, True, 30.0, "max_order_quantity"),
    ({"max_order_quantity": 30, "storage_capacity": 35}, 48.0, 10.0, True, 25.0, "storage_capacity"),
    ({"max_order_quantity": 0}, 0.0, 0.0, True, 0.0, None),                          # nothing ordered: no reason
])
def test_an_order_is_capped_by_the_tighter_capacity_down_to_whole_packs(fields, quantity, position, whole,
                                                                         expected, capacity):
    item = Item(sku="rice", **fields)
    got, reason = _capped(quantity, item, position, 100.0, whole)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got <= quantity and (capacity is None) == (reason is None)
    if reason is not None:
        assert reason.code == "CAPPED_BY_CAPACITY" and reason.values["capacity"] == capacity
        assert reason.values["wanted"] == quantity and reason.values["order_quantity"] == got
        assert got <= reason.values["cap"]  # never above it, float noise included
        assert reason.values["position_after_order"] == position + got
        assert capacity in reason.message
