"""The replications of a stress test: one twin run each, run as Ray tasks or in this process, kept as files.

    setup = StressSetup(network, horizon, warmup, first_seed, shocks={...}, policies={...})
    store = ReplicationStore(run_dir / "replications", cell_dirs, fingerprints)
    missing = store.missing(jobs)                        # what an interrupted run left to do
    run_jobs(setup, missing, store.save, RayOptions())   # Ray tasks; RayOptions(enabled=False): this process

Replication r of every (scenario, policy) cell runs on seed first_seed + r (common random numbers: every
policy and every scenario meets the same demand draws and lead times outside the shocks). A replication's
numbers depend on its job only: the policy is a fresh copy of the configured one for every replication, so
neither the batching of replications into Ray tasks nor the number of workers nor Ray itself changes them.

What a replication keeps (`Replication`) is compact: daily series network-wide, per DC and per group of stores,
from the day the run starts on (0, or the start state's day), and the KPIs of the days after warm-up.

- network-wide: `demand`, `filled` (served from stock on the day asked), `backorders` and `lost` at the stores
  (what customers see: the twin's network fill rate), `on_hand` in DCs and stores, `cost` of every node;
- per DC (a column each): the DC's own `demand` (its stores' orders), `filled`, `on_hand`, `backorders` (owed
  to stores), `lost` (orders cancelled at a lost-sales DC) and `cost`;
- the stores' customer `demand` and `filled` summed by home DC (`stores_by_dc`, a column per DC: the stores
  whose nearest DC above them is that DC; a re-routed store still counts for its home DC) and by supplier
  (`stores_by_supplier`, a column per supplier: the stores below it);
- over the KPI days: the stores' lost sales by home DC and by region, each store's lost sales and fill rate,
  and the network's cost by kind (twin.costs.COST_KINDS: the penalty cost is backorder + lost sale).

The file format is versioned (`FILE_FORMAT`, stored in every file): a file of another format is refused with
an error naming it, never misread.

Each replication is written to `<root>/<scenario>/<policy>/r<NNNN>.npz` (a temporary file renamed into place,
so a file is whole or absent) with the fingerprint of its cell's configuration: a run started again in the same
directory reuses the files whose fingerprint matches and refuses a directory written by another configuration.
Results come back to the driver, which writes them (on a cluster the workers need not see the run directory).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from experiments.ray_cluster import join_cluster
from twin import SpecError
from twin.costs import COST_KINDS
from twin.demand_history import DemandSource
from twin.engine import Engine
from twin.shocks import Shock
from twin.snapshot import Snapshot
from twin.spec import NetworkSpec

log = logging.getLogger("experiments.stress")

SERIES = ("demand", "filled", "on_hand", "backorders", "lost", "cost")
STORE_SERIES = ("demand", "filled")           # the stores' customer series kept per home DC and per supplier
PENALTY_KINDS = ("backorder", "lost_sale")    # the costs of not serving customers on time
UNREPEATABLE = ("seconds",)  # decision fields that differ between identical runs: not kept (files stay identical)
FILE_FORMAT = "stress.replication/2"          # 2: stores by DC and supplier, per-store figures, costs by kind


# ---------------------------------------------------------------------------
# What runs: the setup shared by all replications, and one job
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StressSetup:
    """Everything a replication needs but its job: sent to the Ray workers once."""

    network: NetworkSpec
    horizon: int
    warmup: int
    first_seed: int
    shocks: Mapping[str, tuple[Shock, ...]]   # scenario label -> its shocks
    policies: Mapping[str, object]            # policy label -> the configured policy, never run itself
    initial_on_hand: np.ndarray | None = None
    start: Snapshot | None = None
    demand: DemandSource | None = None       # a planner's sales history (None: the network's demand model)


@dataclass(frozen=True, order=True)
class Job:
    """Replication `replication` (seed first_seed + replication) of one (scenario, policy) cell."""

    scenario: str
    policy: str
    replication: int


@dataclass(frozen=True)
class NodeGroups:
    """Which columns of the twin's per-node series make up the compact series of a replication."""

    stores: np.ndarray          # node indices of the stores
    dcs: np.ndarray             # node indices of the DCs
    held: np.ndarray            # node indices of DCs and stores (stock held in the network)
    store_dc: np.ndarray        # (stores,) column in `dcs` of each store's home DC (-1: none)
    store_region: np.ndarray    # (stores,) index in `regions` of each store's region
    dc_names: tuple[str, ...]
    regions: tuple[str, ...]
    suppliers: np.ndarray       # node indices of the suppliers
    store_supplier: np.ndarray  # (stores,) column in `suppliers` of the supplier above each store (-1: none)
    supplier_names: tuple[str, ...]
    store_names: tuple[str, ...]

    @classmethod
    def of(cls, network: NetworkSpec) -> NodeGroups:
        kinds = np.array([n.kind for n in network.nodes])
        stores, dcs = np.flatnonzero(kinds == "store"), np.flatnonzero(kinds == "dc")
        suppliers = np.flatnonzero(kinds == "supplier")

        def above(i: int, kind: str, nodes: np.ndarray) -> int:
            """Column in `nodes` of the nearest node of `kind` above node i (-1: none)."""
            column = {int(j): c for c, j in enumerate(nodes)}
            up = network.nodes[i].parent
            while up is not None and network.nodes[network.index(up)].kind != kind:
                up = network.nodes[network.index(up)].parent
            return -1 if up is None else column[network.index(up)]

        regions = tuple(sorted({network.nodes[i].region for i in stores}))
        return cls(stores=stores, dcs=dcs, held=np.flatnonzero(kinds != "supplier"),
                   store_dc=np.array([above(i, "dc", dcs) for i in stores], dtype=int),
                   store_region=np.array([regions.index(network.nodes[i].region) for i in stores], dtype=int),
                   dc_names=tuple(network.nodes[i].name for i in dcs), regions=regions, suppliers=suppliers,
                   store_supplier=np.array([above(i, "supplier", suppliers) for i in stores], dtype=int),
                   supplier_names=tuple(network.nodes[i].name for i in suppliers),
                   store_names=tuple(network.nodes[i].name for i in stores))

    def by(self, columns: np.ndarray, count: int) -> np.ndarray:
        """(stores, count) 0/1 matrix: store s belongs to column columns[s] (-1: to none)."""
        matrix = np.zeros((len(self.stores), count))
        inside = columns >= 0
        matrix[np.flatnonzero(inside), columns[inside]] = 1.0
        return matrix


@dataclass(frozen=True)
class Replication:
    """One replication's compact series (from `first_day`) and KPIs (from `kpi_start`); see the module docstring."""

    scenario: str
    policy: str
    replication: int
    seed: int
    first_day: int                     # the twin day of the series' first row
    kpi_start: int                     # the first KPI day (after warm-up, and not before first_day)
    network: dict[str, np.ndarray]     # SERIES field -> (days,)
    dcs: dict[str, np.ndarray]         # SERIES field -> (days, DCs)
    fill_rate: float                   # the network KPIs over the KPI days (NaN: no demand)
    cost: float
    cost_per_day: float
    lost_sales: float
    lost_by_dc: np.ndarray             # (DCs,) stores' lost sales over the KPI days by home DC
    lost_by_region: np.ndarray         # (regions,) the same by store region
    stores_by_dc: dict[str, np.ndarray]        # STORE_SERIES field -> (days, DCs): the stores of each home DC
    stores_by_supplier: dict[str, np.ndarray]  # STORE_SERIES field -> (days, suppliers): the stores below each
    store_lost: np.ndarray             # (stores,) each store's lost sales over the KPI days
    store_fill_rate: np.ndarray        # (stores,) each store's fill rate over the KPI days (NaN: no demand)
    costs: np.ndarray                  # (len(COST_KINDS),) the network's cost by kind over the KPI days
    decisions: tuple[dict, ...] = ()   # a re-planning policy's review decisions in this run (its `decisions`)

    @property
    def penalty_cost(self) -> float:
        """Backorder and lost-sale cost over the KPI days (the cost of customers not served on time)."""
        return float(sum(self.costs[COST_KINDS.index(k)] for k in PENALTY_KINDS))

    @property
    def days(self) -> np.ndarray:
        """The twin days of the series' rows."""
        return self.first_day + np.arange(len(self.network["demand"]))

    def kpi_days(self, values: np.ndarray) -> np.ndarray:
        """The rows of a series that fall on KPI days."""
        return values[self.kpi_start - self.first_day:]


def run_replication(setup: StressSetup, job: Job, groups: NodeGroups | None = None) -> Replication:
    """Run one replication: a fresh copy of the policy, the scenario's shocks, seed first_seed + replication."""
    groups = groups or NodeGroups.of(setup.network)
    policy = copy.deepcopy(setup.policies[job.policy])
    seed = setup.first_seed + job.replication
    engine = Engine(setup.network, horizon=setup.horizon, seed=seed, shocks=setup.shocks[job.scenario],
                    warmup=setup.warmup, invariants="warn", initial_on_hand=setup.initial_on_hand, start=setup.start,
                    demand=setup.demand)
    if hasattr(policy, "attach"):
        policy.attach(engine)
    result = engine.run(policy)
    if result.violations:
        log.warning("%s / %s seed %d: %d ledger invariant violations, first: %s", job.scenario, job.policy, seed,
                    len(result.violations), result.violations[0])
    series = dict(result.series)
    series["cost"] = sum(v for k, v in result.series.items() if k.startswith("cost_"))
    network = {f: series[f][:, groups.held if f in ("on_hand", "cost") else groups.stores].sum(axis=1)
               for f in SERIES}
    first_day = result.meta["first_day"]
    kpi_start = max(setup.warmup, first_day)
    kpi_rows = slice(kpi_start - first_day, None)
    store_lost = series["lost"][kpi_rows, groups.stores].sum(axis=0)
    store_demand = series["demand"][kpi_rows, groups.stores].sum(axis=0)
    store_filled = series["filled"][kpi_rows, groups.stores].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        store_fill = np.where(store_demand > 0, store_filled / store_demand, np.nan)
    home = groups.store_dc >= 0
    to_dc = groups.by(groups.store_dc, len(groups.dcs))
    to_supplier = groups.by(groups.store_supplier, len(groups.suppliers))
    kpis = result.kpis["network"]
    return Replication(
        scenario=job.scenario, policy=job.policy, replication=job.replication, seed=seed, first_day=first_day,
        kpi_start=kpi_start, network=network, dcs={f: series[f][:, groups.dcs] for f in SERIES},
        fill_rate=math.nan if kpis["fill_rate"] is None else float(kpis["fill_rate"]),
        cost=float(kpis["cost_total"]), cost_per_day=float(kpis["cost_per_day"]),
        lost_sales=float(kpis["lost_units"]),
        lost_by_dc=np.bincount(groups.store_dc[home], weights=store_lost[home], minlength=len(groups.dcs)),
        lost_by_region=np.bincount(groups.store_region, weights=store_lost, minlength=len(groups.regions)),
        stores_by_dc={f: series[f][:, groups.stores] @ to_dc for f in STORE_SERIES},
        stores_by_supplier={f: series[f][:, groups.stores] @ to_supplier for f in STORE_SERIES},
        store_lost=store_lost, store_fill_rate=store_fill,
        costs=np.array([float(kpis[f"cost_{c}"]) for c in COST_KINDS]),
        decisions=tuple({k: v for k, v in d.items() if k not in UNREPEATABLE}
                        for d in getattr(policy, "decisions", ())))


def run_batch(setup: StressSetup, jobs: Sequence[Job]) -> list[Replication]:
    """Several replications in one call (one Ray task): the same numbers as one call each."""
    groups = NodeGroups.of(setup.network)
    return [run_replication(setup, job, groups) for job in jobs]


# ---------------------------------------------------------------------------
# Files: one per replication, written atomically; resume
# ---------------------------------------------------------------------------

def fingerprint(document: Mapping) -> str:
    """sha256 of a plain mapping as canonical JSON: what identifies a cell's configuration."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def safe_names(labels: Sequence[str]) -> dict[str, str]:
    """A directory name for each label: characters other than letters, digits, '.', '-', '_' as '_', made
    unique in order ('a:b' and 'a_b' -> 'a_b', 'a_b-2')."""
    names: dict[str, str] = {}
    for label in labels:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", label).strip(".") or "_"
        name, n = base, 1
        while name in names.values():
            n += 1
            name = f"{base}-{n}"
        names[label] = name
    return names


@dataclass
class ReplicationStore:
    """The replication files of a run directory: `<root>/<scenario dir>/<policy dir>/r<NNNN>.npz`."""

    root: Path
    scenario_dirs: Mapping[str, str]
    policy_dirs: Mapping[str, str]
    fingerprints: Mapping[tuple[str, str], str]   # (scenario, policy) -> fingerprint of its configuration
    first_seed: int

    def path(self, job: Job) -> Path:
        return (self.root / self.scenario_dirs[job.scenario] / self.policy_dirs[job.policy]
                / f"r{job.replication:04d}.npz")

    def missing(self, jobs: Iterable[Job]) -> list[Job]:
        """The jobs without a finished file; SpecError naming the run directory if a file there belongs to
        another configuration (another network, scenario, policy, horizon, seeds or start)."""
        todo = []
        for job in jobs:
            path = self.path(job)
            if not path.is_file():
                todo.append(job)
                continue
            try:
                with np.load(path) as data:
                    kind = str(data["format"]) if "format" in data.files else "?"
                    stored, seed = str(data["fingerprint"]), int(data["seed"])
            except Exception as error:  # a damaged file (not one of ours: ours are renamed into place whole)
                log.warning("%s: unreadable (%s); running it again", path, error)
                todo.append(job)
                continue
            if kind != FILE_FORMAT:
                raise SpecError(_format_error(path, kind))
            if stored != self.fingerprints[job.scenario, job.policy] or seed != self.first_seed + job.replication:
                raise SpecError(f"hydra.run.dir: {path.parent} holds replications of another configuration "
                                f"(network, scenario, policy, horizon, warm-up, seeds or start differ); allowed: "
                                f"the same configuration to resume that run, or a new run directory")
        return todo

    def save(self, rep: Replication) -> Path:
        """Write one replication: a temporary file in the same folder, renamed into place."""
        path = self.path(Job(rep.scenario, rep.policy, rep.replication))
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"network_{f}": v for f, v in rep.network.items()}
        arrays.update({f"dc_{f}": v for f, v in rep.dcs.items()})
        arrays.update(format=np.array(FILE_FORMAT), fingerprint=np.array(self.fingerprints[rep.scenario, rep.policy]),
                      scenario=np.array(rep.scenario), policy=np.array(rep.policy),
                      replication=np.array(rep.replication), seed=np.array(rep.seed),
                      first_day=np.array(rep.first_day), kpi_start=np.array(rep.kpi_start),
                      kpis=np.array([rep.fill_rate, rep.cost, rep.cost_per_day, rep.lost_sales]),
                      lost_by_dc=rep.lost_by_dc, lost_by_region=rep.lost_by_region, store_lost=rep.store_lost,
                      store_fill_rate=rep.store_fill_rate, costs=rep.costs,
                      decisions=np.array(json.dumps(list(rep.decisions))))
        arrays.update({f"stores_dc_{f}": v for f, v in rep.stores_by_dc.items()})
        arrays.update({f"stores_supplier_{f}": v for f, v in rep.stores_by_supplier.items()})
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with temporary.open("wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(temporary, path)
        return path

    def load(self, job: Job) -> Replication:
        path = self.path(job)
        with np.load(path) as data:
            kind = str(data["format"]) if "format" in data.files else "?"
            if kind != FILE_FORMAT:
                raise SpecError(_format_error(path, kind))
            fill_rate, cost, cost_per_day, lost_sales = data["kpis"].tolist()
            return Replication(
                scenario=job.scenario, policy=job.policy, replication=job.replication, seed=int(data["seed"]),
                first_day=int(data["first_day"]), kpi_start=int(data["kpi_start"]),
                network={f: data[f"network_{f}"] for f in SERIES}, dcs={f: data[f"dc_{f}"] for f in SERIES},
                fill_rate=fill_rate, cost=cost, cost_per_day=cost_per_day, lost_sales=lost_sales,
                lost_by_dc=data["lost_by_dc"], lost_by_region=data["lost_by_region"],
                stores_by_dc={f: data[f"stores_dc_{f}"] for f in STORE_SERIES},
                stores_by_supplier={f: data[f"stores_supplier_{f}"] for f in STORE_SERIES},
                store_lost=data["store_lost"], store_fill_rate=data["store_fill_rate"], costs=data["costs"],
                decisions=tuple(json.loads(str(data["decisions"]))) if "decisions" in data.files else ())


def _format_error(path: Path, kind: str) -> str:
    return (f"hydra.run.dir: {path} is a replication file of format {kind!r}, and this version reads and writes "
            f"{FILE_FORMAT!r}; allowed: a new run directory (the old files are kept as they are, never misread)")


# ---------------------------------------------------------------------------
# Running the jobs: Ray tasks or this process; progress
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RayOptions:
    """`ray.*` of conf/stress.yaml: where the replications run."""

    enabled: bool = True
    address: str | None = None   # None: start Ray here (num_cpus); "auto" or host:port: join that cluster
    num_cpus: int | None = None  # CPUs of a Ray started here (None: all cores)
    batch: int = 4               # replications per Ray task


@dataclass
class Progress:
    """A progress line through logging: done/total, rate, ETA; at most one every `every` seconds."""

    total: int
    reused: int
    every: float = 10.0
    done: int = field(init=False)
    started: float = field(init=False, default_factory=time.perf_counter)
    last: float = field(init=False, default=-math.inf)

    def __post_init__(self) -> None:
        self.done = self.reused

    def add(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every or self.done == self.total:
            self.last = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.perf_counter()) - self.started
        ran = self.done - self.reused
        rate = ran / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        return (f"{self.done}/{self.total} replications ({self.reused} reused), {rate:.2f}/s, "
                f"elapsed {_clock(elapsed)}, ETA {_clock(eta)}")


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}"


def run_jobs(setup: StressSetup, jobs: Sequence[Job], on_done: Callable[[Replication], object], options: RayOptions,
             progress: Progress | None = None) -> None:
    """Run every job, handing each finished replication to `on_done` (in the driver, as it comes)."""
    if not jobs:
        return
    if not options.enabled:
        groups = NodeGroups.of(setup.network)
        for job in jobs:
            on_done(run_replication(setup, job, groups))
            if progress is not None:
                progress.add()
        return
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if options.address:
            join_cluster(options.address, key="ray.address")
        else:
            ray.init(address="local", num_cpus=options.num_cpus or os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
    try:
        log.info("Ray: %s CPUs, %d task(s) of up to %d replication(s)", ray.cluster_resources().get("CPU", "?"),
                 math.ceil(len(jobs) / options.batch), options.batch)
        task = ray.remote(num_cpus=1, max_retries=1)(run_batch)
        shared = ray.put(setup)
        pending = [task.remote(shared, list(jobs[i:i + options.batch])) for i in range(0, len(jobs), options.batch)]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            batch = ray.get(ready[0])
            for rep in batch:
                on_done(rep)
            if progress is not None:
                progress.add(len(batch))
    finally:
        if started_here:
            ray.shutdown()
