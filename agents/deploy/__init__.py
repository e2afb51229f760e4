"""Serving decisions outside the twin (docs/architecture.md, Serving): from the state an ERP system sends to the
documents it takes back.

- erp_state.py, conversion.py: the ERP state (pydantic, JSON Schema) and its conversion to a Snapshot and back;
- bundle.py, policies.py, onnx_head.py: exported policies (rules as parameters, learned ones as ONNX heads);
- decide.py: decisions as purchase requisitions / stock transport orders with reason codes;
- service.py (+ settings, auth, ratelimit, audit, reload, metrics, bodylimit): the FastAPI service;
- client.py: its client, and the service as a twin policy; adapters.py: webhook and drop-folder adapters.

Nothing here imports torch or ray, directly or through what it imports (tests/test_layers.py checks it): the
serving side runs without them (`pip install .[serve]`).
"""
