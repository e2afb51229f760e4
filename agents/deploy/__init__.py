"""Serving decisions outside the twin: the state an ERP system sends, and its conversion to the twin's terms.

- erp_state.py: the ERP state as pydantic models (`ErpState`) and its JSON Schema (`erp_state_schema`);
- conversion.py: `state_to_twin` (a Snapshot, forecasts over the protection period, demand history) and its
  inverse `snapshot_to_state`.

Nothing here imports torch or ray, directly or through what it imports (tests/test_layers.py checks it): the
serving side runs without them.
"""
