"""The planners' dashboard: stress runs side by side in a browser, on loopback.

    python -m experiments.dashboard port=8050                       # the stress runs under outputs/
    python -m experiments.dashboard runs=multirun/2026-11-26/10-00-00 port=8050
    python -m experiments.dashboard bundle=outputs/export/RUN/bundle state=erp_state.json   # + recommended orders

Pick a run (experiments.stress writes them; a Hydra multirun of them is a folder of runs), tick the scenarios and
policies to compare, and read: a figure (fill rate, cost, cost at risk, time to recover ...) per scenario and
policy with its 95% CI; fan charts (p5-p95 and p25-p75 bands, the median) of the 7-day fill rate, on hand or
backorders, network-wide or per DC; lost sales by DC and by region; the worst stores (lost sales, fill rate);
alerts (the scenarios' demand spikes, supply
delays and closures, and where the median fill rate falls below the service target); the re-planning decisions
of a run that has them; and, with a bundle (experiments.export) and a state file, the orders it recommends today
with their reason codes (agents.deploy.decide).

A FastAPI app: the page and its script are files of this package (experiments/dashboard_page/), plotly.js is
served from the installed plotly package: nothing is fetched from the internet. The JSON API under /api/ reads
the runs' files (experiments/run_catalog.py) and nothing else: a run is named by its id among those found, never
by a path. It binds 127.0.0.1 unless `host` says otherwise.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from experiments.run_catalog import FAN_METRICS, FIGURES, RUN_FILES, RunError, StressRun, find_runs
from experiments.startup import config_errors, plain, run_checked
from twin.config import SpecError

log = logging.getLogger("experiments.dashboard")

PAGE_DIR = Path(__file__).with_name("dashboard_page")
PAGE_FILES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


class Catalog:
    """The runs under one folder, found again when the list is asked for (new runs appear without a restart). A
    run's files are read once and kept while they stay unchanged (a rerun or a resume rewrites them: read again),
    for at most KEEP_LOADED runs (the least recently used are dropped)."""

    KEEP_LOADED = 16

    def __init__(self, root: Path) -> None:
        self.root = root
        self._runs: dict[str, StressRun] = {}
        self._loaded: OrderedDict[tuple[str, tuple[int, ...]], StressRun] = OrderedDict()
        self.refresh()

    def refresh(self) -> list[StressRun]:
        self._runs = {run.run_id: run for run in find_runs(self.root)}
        return list(self._runs.values())

    def get(self, run_id: str) -> StressRun | None:
        found = self._runs.get(run_id)
        if found is None:
            return None
        key = (run_id, _stamp(found.path))
        run = self._loaded.pop(key, None) or StressRun(run_id=run_id, path=found.path)
        self._loaded[key] = run
        while len(self._loaded) > self.KEEP_LOADED:
            self._loaded.popitem(last=False)
        return run


def _stamp(path: Path) -> tuple[int, ...]:
    """When the run's files last changed (a rewritten run is read again)."""
    return tuple((path / name).stat().st_mtime_ns if (path / name).exists() else 0
                 for name in (*RUN_FILES, "stores.csv", "replan_decisions.csv"))


def recommended_orders(bundle_path: str, state_path: str) -> dict[str, Any]:
    """The bundle's decisions for the ERP state file, as rows with reason codes (agents.deploy.decide)."""
    from agents.deploy.bundle import load_bundle
    from agents.deploy.decide import decide
    from agents.deploy.erp_state import ErpState

    bundle = load_bundle(bundle_path)
    state = ErpState.model_validate_json(Path(state_path).read_text())
    response = decide(bundle, state)
    rows = [{"location": d.location, "sku": d.sku, "order_quantity": d.order_quantity,
             "order_up_to_level": d.order_up_to_level, "inventory_position": d.inventory_position,
             "document": d.document.erp_document_type if d.document else "",
             "supplying_location": d.document.supplying_location if d.document else "",
             "need_by_date": d.document.need_by_date.isoformat() if d.document else "",
             "reasons": [{"code": r.code, "message": r.message} for r in d.reasons]} for d in response.decisions]
    return {"bundle": bundle.name, "bundle_sha256": bundle.sha256, "as_of": state.as_of.isoformat(), "orders": rows}


def create_app(runs: Path, *, target: float = 0.95, orders: dict[str, Any] | None = None):
    """The dashboard's ASGI app over the stress runs under `runs`; `orders`: recommended_orders' result."""
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

    catalog = Catalog(runs)
    app = FastAPI(title="Stress-test dashboard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RunError)
    async def _unreadable(_request, error: RunError) -> JSONResponse:
        # a run whose files cannot be read (damaged, half written, not ours): the request names it, never a 500
        return JSONResponse({"detail": str(error)}, status_code=422)

    def run_of(run_id: str) -> StressRun:
        run = catalog.get(run_id)
        if run is None:
            raise HTTPException(404, f"run {run_id!r} is not among the runs under {catalog.root}")
        return run

    def among(value: str | None, allowed: list[str], field: str) -> str | None:
        if value is not None and value not in allowed:
            raise HTTPException(422, f"{field}: {value!r} is not allowed; allowed: {', '.join(allowed)}")
        return value

    @app.get("/", response_class=HTMLResponse)
    def index() -> Response:
        return FileResponse(PAGE_DIR / "index.html", media_type="text/html")

    @app.get("/assets/{name}")
    def asset(name: str) -> Response:
        if name == "plotly.min.js":
            import plotly

            return FileResponse(Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
                                media_type="text/javascript")
        if name not in PAGE_FILES:
            raise HTTPException(404, f"no asset {name!r}")
        return FileResponse(PAGE_DIR / name, media_type=PAGE_FILES[name])

    @app.get("/api/runs")
    def list_runs() -> list[dict[str, Any]]:
        described = []
        for r in catalog.refresh():
            try:
                described.append({"id": r.run_id, "network": r.network, "scenarios": r.scenarios,
                                  "policies": r.policies, "replications": r.replications, "created": r.created})
            except (RunError, OSError, KeyError) as error:  # one damaged run does not hide the others
                log.warning("run %s left out of the list: %s", r.run_id, error)
        return described

    @app.get("/api/runs/{run_id:path}/overview")
    def overview(run_id: str) -> dict[str, Any]:
        run = run_of(run_id)
        return {"id": run.run_id, "network": run.network, "scenarios": run.scenarios, "policies": run.policies,
                "dcs": run.dcs, "replications": run.replications, "warmup": run.warmup, "target": target,
                "figures": [{"name": f, "label": FIGURES[f][0], "higher_is_better": FIGURES[f][1]}
                            for f in run.figures],
                "fan_metrics": [{"name": k, "label": v} for k, v in FAN_METRICS.items()],
                "alerts": [asdict(a) for a in run.alerts(target)],
                "replan_decisions": run.replan_decisions(), "orders": orders is not None}

    @app.get("/api/runs/{run_id:path}/summary")
    def summary(run_id: str, figure: str = Query("fill_rate")) -> list[dict[str, Any]]:
        run = run_of(run_id)
        among(figure, run.figures, "figure")
        return [{"scenario": s, "policy": p, **asdict(cell)} for (s, p), cell in run.summary(figure).items()]

    @app.get("/api/runs/{run_id:path}/fan")
    def fan(run_id: str, scenario: str, policy: str, metric: str = "fill_rate_7d",
            dc: str | None = None) -> dict[str, Any]:
        run = run_of(run_id)
        among(scenario, run.scenarios, "scenario")
        among(policy, run.policies, "policy")
        among(metric, list(FAN_METRICS), "metric")
        among(dc, run.dcs, "dc")
        return asdict(run.fan(metric, scenario, policy, dc))

    @app.get("/api/runs/{run_id:path}/lost")
    def lost(run_id: str, by: str = "dc") -> list[dict[str, Any]]:
        run = run_of(run_id)
        among(by, ["dc", "region"], "by")
        return [{"scenario": s, "policy": p, "name": name, "mean": cell.mean, "ci95": cell.ci95}
                for (s, p), cells in run.lost_sales(by).items() for name, cell in cells.items()]

    @app.get("/api/runs/{run_id:path}/stores")
    def stores(run_id: str, scenario: list[str] | None = Query(None),  # noqa: B008 (FastAPI's way)
               policy: list[str] | None = Query(None),  # noqa: B008
               limit: int = Query(20, ge=1, le=10_000)) -> list[dict[str, Any]]:
        """Per store of the given scenarios and policies (repeat the parameter; none: all), worst first."""
        run = run_of(run_id)
        for s in scenario or ():
            among(s, run.scenarios, "scenario")
        for p in policy or ():
            among(p, run.policies, "policy")
        try:
            return [asdict(r) for r in run.stores(scenario, policy, limit)]
        except (RunError, KeyError, ValueError) as error:
            raise HTTPException(422, f"{run.path / 'stores.csv'}: {error}") from error

    @app.get("/api/orders")
    def recommended() -> dict[str, Any]:
        if orders is None:
            raise HTTPException(404, "no bundle loaded: start the dashboard with bundle=DIR state=FILE.json")
        return orders

    return app


def _check(cfg: dict) -> tuple[Path, dict[str, Any] | None]:
    runs = Path(hydra.utils.to_absolute_path(str(cfg["runs"])))
    if not runs.is_dir():
        raise RunError(f"runs: {runs} is not a directory; allowed: a folder of stress runs (e.g. outputs)")
    if not (0 < float(cfg["target"]) <= 1):
        raise RunError(f"target: {cfg['target']!r} is not allowed; allowed: a fill rate in (0, 1]")
    port = cfg["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise RunError(f"port: {port!r} is not allowed; allowed: 0..65535")
    if (cfg.get("bundle") is None) != (cfg.get("state") is None):
        raise RunError("bundle, state: give both (a bundle and the ERP state file it decides for) or neither")
    orders = None
    if cfg.get("bundle") is not None:
        from pydantic import ValidationError

        from agents.deploy.bundle import BundleError

        try:
            orders = recommended_orders(hydra.utils.to_absolute_path(str(cfg["bundle"])),
                                        hydra.utils.to_absolute_path(str(cfg["state"])))
        except (BundleError, ValidationError, OSError, SpecError) as error:
            raise RunError(f"bundle, state: the bundle cannot decide for the state file: {error}") from error
    return runs, orders


@hydra.main(version_base=None, config_path="../conf", config_name="dashboard")
def main(cfg: DictConfig) -> None:
    import uvicorn

    settings = plain(cfg)
    with config_errors():
        runs, orders = _check(settings)
    app = create_app(runs, target=float(settings["target"]), orders=orders)
    log.info("dashboard of the stress runs under %s on http://%s:%s/", runs, settings["host"], settings["port"])
    uvicorn.run(app, host=str(settings["host"]), port=int(settings["port"]), log_level="warning")


if __name__ == "__main__":
    run_checked(main)
