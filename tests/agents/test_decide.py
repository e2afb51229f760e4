"""agents.deploy.decide's pure parts (decisions end to end are tested in tests/experiments)."""

from __future__ import annotations

import hashlib
import uuid

from agents.deploy.decide import recommendation_id


def test_recommendation_ids_are_the_rfc_4122_name_based_uuids_of_their_inputs():
    for n in range(500):
        rid = recommendation_id("bundle", "request", f"store_{n}", "rice")
        digest = hashlib.sha256(f"bundle|request|store_{n}|rice".encode()).hexdigest()
        assert rid == str(uuid.UUID(hex=digest[:32], version=5))
        parsed = uuid.UUID(rid)
        assert parsed.version == 5 and parsed.variant == uuid.RFC_4122
    assert recommendation_id("bundle", "request", "store_0", "rice") != recommendation_id("bundle", "request",
                                                                                          "store_0", "milk")
