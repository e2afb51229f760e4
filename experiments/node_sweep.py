"""Node sweep of a stress test: time to survive against time to recover, node by node (Simchi-Levi's stress test).

    python -m experiments.stress mode=node_sweep 'closure_days=[7,14,28]' replications=50 'policies=[base_stock]'

Every DC and every supplier of the network is disrupted in turn, for each closure length: a DC by a DcClosure
(its stores starved, or with `reroute=true` ordering from their backup DC), a supplier by a SupplierOutage. Every
disruption starts on the same day (`sweep_start`; default the first day after warm-up) from the same starting
state (the default start or `start=FILE`). Each (node, length) is a scenario of the stress test, labelled
`<node>:<length>d`, next to the undisrupted `baseline`, all on the same seeds (common random numbers) and with one
policy (`reference_policy`, or the first of `policies`): the replication machinery of experiments/stress_runs.py
runs, keeps and resumes them as for any scenario.

Per node and closure length (`NodeRow`), over the replications:

- time to survive (TTS): days from the disruption's start until the customer fill rate of the stores the node
  serves first drops below `service_target` (twin/resilience.time_to_survive on those stores' daily demand and
  filled, rolling over `recovery.window` days, to the end of the run; inf: never). The stores a DC serves are
  those whose home DC (nearest DC above) is it or a DC below it; a supplier serves every store below it. Given
  per replication, then the median (inf when most never dropped), the mean over the replications that dropped
  and the share that never dropped; and the same measured on the undisrupted baseline (same seeds, same
  stores, same day) for comparison: a policy that falls below the target without any disruption has a short
  "TTS" there too;
- time to recover (TTR): the closure length, as given;
- TTS < TTR: the median TTS is below the closure length (the stores run short before the node is back); with
  the share of replications where it is;
- lost sales and penalty cost: the paired increase over the baseline on the same seeds, network-wide over the
  KPI days: customer lost sales (units) and the penalty cost, backorder + lost-sale cost (twin.costs
  COST_KINDS); the total cost increase too.

Rows are ranked by impact: the mean penalty cost increase, largest first. `write_node_sweep` writes
node_sweep.csv (every row with its CIs), node_sweep.md (the ranked table) and risk_matrix.png: likelihood per
node (`likelihood: {node: probability per year}`, else `default_likelihood`) against the penalty cost increase,
a marker per closure length.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from experiments.stress_runs import NodeGroups, Replication
from experiments.summary import summarize, summarize_paired
from scenarios import Scenario
from twin import resilience
from twin.config import ConfigReader, SpecError, check_number
from twin.shocks import DcClosure, Shock, SupplierOutage
from twin.spec import NetworkSpec

MODES = ("scenarios", "node_sweep")
BASELINE = "baseline"
DEFAULT_LENGTHS = (7, 14, 28)
DEFAULT_LIKELIHOOD = 0.1


# ---------------------------------------------------------------------------
# Configuration: which nodes, how long, from when
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepNode:
    """A node the sweep disrupts, and the stores it serves."""

    name: str
    kind: str                        # "dc" or "supplier"
    dc_columns: tuple[int, ...]      # a DC: the columns of Replication.stores_by_dc it serves (itself and below)
    supplier_column: int             # a supplier: its column of Replication.stores_by_supplier (-1 for a DC)
    stores: int                      # how many stores it serves
    likelihood: float                # probability per year of a disruption (the risk matrix's x)


@dataclass(frozen=True)
class NodeSweep:
    """mode=node_sweep of conf/stress.yaml, validated."""

    nodes: tuple[SweepNode, ...]
    lengths: tuple[int, ...]         # closure days (the time to recover)
    start: int                       # the twin day every disruption starts
    reroute: bool                    # a closed DC's stores order from their backup DC

    @staticmethod
    def label(node: str, length: int) -> str:
        return f"{node}:{length}d"

    @property
    def cells(self) -> dict[str, tuple[SweepNode, int]]:
        """Scenario label -> (node, closure days), node-major."""
        return {self.label(n.name, length): (n, length) for n in self.nodes for length in self.lengths}


def read_node_sweep(r: ConfigReader, network: NetworkSpec, horizon: int, first_day: int,
                    active: bool) -> NodeSweep | None:
    """The node-sweep keys of the config (closure_days, sweep_start, reroute, likelihood, default_likelihood):
    marked read always, checked and built only when `active` (mode=node_sweep). SpecError naming the key."""
    raw = {k: r.raw(k) for k in ("closure_days", "sweep_start", "reroute", "likelihood", "default_likelihood")}
    if not active:
        return None
    lengths = _lengths(raw["closure_days"])
    start = raw["sweep_start"]
    last = horizon - max(lengths)  # the last day a disruption may start: the longest closure ends by the horizon
    if first_day > last:
        raise SpecError(f"closure_days: the longest closure ({max(lengths)} days) from the first day after warm-up "
                        f"(day {first_day}) ends after the horizon ({horizon} days); allowed: closures of at most "
                        f"{max(horizon - first_day, 0)} days, or a longer horizon")
    if start is None:
        start = first_day
    elif isinstance(start, bool) or not isinstance(start, int):
        raise SpecError(f"sweep_start: expected a whole day, got {start!r}; allowed: null (the first day after "
                        f"warm-up) or a day in [{first_day}, {last}]")
    if not first_day <= start <= last:
        raise SpecError(f"sweep_start: {start} is not allowed: the KPI days begin on day {first_day} (after warm-up, "
                        f"or the start state's day) and the longest closure ({max(lengths)} days) must end by the "
                        f"horizon ({horizon}); allowed: null (day {first_day}) or a day in [{first_day}, {last}]")
    reroute = raw["reroute"] if raw["reroute"] is not None else False
    if not isinstance(reroute, bool):
        raise SpecError(f"reroute: expected true or false, got {reroute!r}")
    default = check_number("default_likelihood", DEFAULT_LIKELIHOOD if raw["default_likelihood"] is None
                           else raw["default_likelihood"], low=0.0, high=1.0)
    kinds = {n.name: n.kind for n in network.nodes if n.kind in ("dc", "supplier")}
    likelihood = raw["likelihood"] or {}
    if not isinstance(likelihood, Mapping):
        raise SpecError(f"likelihood: expected a mapping {{node: probability per year}}, got {likelihood!r}")
    for name, value in likelihood.items():
        if name not in kinds:
            raise SpecError(f"likelihood: {name!r} is not a DC or supplier of network {network.name!r}; allowed: "
                            f"{', '.join(kinds)}")
        check_number(f"likelihood.{name}", value, low=0.0, high=1.0)
    nodes = _nodes(network, {name: float(likelihood.get(name, default)) for name in kinds})
    sweep = NodeSweep(nodes=nodes, lengths=lengths, start=start, reroute=reroute)
    for node in nodes:  # a closure with reroute needs a backup for every customer of the DC
        try:
            _shock(sweep, node, lengths[0]).validate(network, "shock")
        except SpecError as error:
            raise SpecError(f"reroute: {str(error).removeprefix('shock.reroute: ')}") from None
    return sweep


def _lengths(value) -> tuple[int, ...]:
    allowed = "allowed: a non-empty list of distinct closure lengths in whole days >= 1, e.g. [7, 14, 28]"
    if value is None:
        return DEFAULT_LENGTHS
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise SpecError(f"closure_days: expected a list, got {value!r}; {allowed}")
    if not value:
        raise SpecError(f"closure_days: empty; {allowed}")
    for i, days in enumerate(value):
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise SpecError(f"closure_days[{i}]: {days!r} is not allowed; {allowed}")
    if len(set(value)) != len(value):
        raise SpecError(f"closure_days: {list(value)} repeats a length; {allowed}")
    return tuple(int(v) for v in value)


def _nodes(network: NetworkSpec, likelihood: Mapping[str, float]) -> tuple[SweepNode, ...]:
    """Every DC and supplier in network order, with the stores it serves."""
    groups = NodeGroups.of(network)
    parent = {n.name: n.parent for n in network.nodes}

    def below(name: str, node: str) -> bool:  # `name` is `node` or under it
        while name is not None:
            if name == node:
                return True
            name = parent[name]
        return False

    nodes = []
    for n in network.nodes:
        if n.kind == "dc":
            columns = tuple(c for c, dc in enumerate(groups.dc_names) if below(dc, n.name))
            stores = int(np.isin(groups.store_dc, columns).sum())
            nodes.append(SweepNode(n.name, "dc", columns, -1, stores, likelihood[n.name]))
        elif n.kind == "supplier":
            column = groups.supplier_names.index(n.name)
            nodes.append(SweepNode(n.name, "supplier", (), column, int((groups.store_supplier == column).sum()),
                                   likelihood[n.name]))
    return tuple(nodes)


def _shock(sweep: NodeSweep, node: SweepNode, length: int) -> Shock:
    end = sweep.start + length
    if node.kind == "dc":
        return DcClosure(start=sweep.start, end=end, dc=node.name, reroute=sweep.reroute)
    return SupplierOutage(start=sweep.start, end=end, supplier=node.name)


def sweep_scenarios(sweep: NodeSweep, later_shocks: tuple[Shock, ...] = ()) -> dict[str, Scenario]:
    """The baseline and one scenario per (node, closure length), each with `later_shocks` (an ERP start's)."""
    scenarios = {BASELINE: Scenario(BASELINE, "node sweep: no disruption", later_shocks)}
    for label, (node, length) in sweep.cells.items():
        what = (f"DC {node.name} closed" + (" (its stores re-routed)" if sweep.reroute else "")
                if node.kind == "dc" else f"supplier {node.name} ships nothing")
        scenarios[label] = Scenario(label, f"node sweep: {what} for {length} days from day {sweep.start}",
                                    (_shock(sweep, node, length), *later_shocks))
    return scenarios


# ---------------------------------------------------------------------------
# Figures: per replication, then per (node, length)
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """What the sweep needs of one replication: the time to survive of every node's stores, and the costs."""

    tts: np.ndarray        # (nodes,) days from sweep.start until the node's stores' fill rate drops (inf: never)
    penalty_cost: float    # backorder + lost-sale cost over the KPI days
    lost_sales: float
    cost: float


def served(rep: Replication, node: SweepNode) -> tuple[np.ndarray, np.ndarray]:
    """The daily customer demand and filled of the stores `node` serves, from rep.first_day."""
    if node.kind == "dc":
        return tuple(rep.stores_by_dc[f][:, list(node.dc_columns)].sum(axis=1) for f in ("demand", "filled"))
    return tuple(rep.stores_by_supplier[f][:, node.supplier_column] for f in ("demand", "filled"))


def sample(rep: Replication, sweep: NodeSweep, target: float, window: int) -> Sample:
    """The time to survive of every node's stores (twin/resilience.time_to_survive) and the replication's costs."""
    tts = [resilience.time_to_survive(*served(rep, node), sweep.start - rep.first_day, target, window=window)
           for node in sweep.nodes]
    return Sample(tts=np.array(tts, dtype=float), penalty_cost=rep.penalty_cost, lost_sales=rep.lost_sales,
                  cost=rep.cost)


@dataclass(frozen=True)
class NodeRow:
    """One (node, closure length): a row of node_sweep.csv."""

    rank: int
    node: str
    kind: str
    closure_days: int                  # TTR
    scenario: str
    stores: int
    likelihood: float
    n: int
    tts_median: float                  # inf: most replications never dropped
    tts_mean: float | None             # over the replications that dropped (None: none did)
    tts_mean_ci95: float | None
    never_dropped_share: float
    tts_below_ttr: bool                # tts_median < closure_days
    tts_below_ttr_share: float         # share of replications with TTS < TTR
    baseline_tts_median: float         # the same stores undisrupted (same seeds, same day)
    baseline_never_dropped_share: float
    lost_sales_increase: float
    lost_sales_increase_ci95: float | None
    penalty_cost_increase: float
    penalty_cost_increase_ci95: float | None
    penalty_cost_relative: float       # over the baseline's penalty cost (NaN: none there)
    cost_increase: float
    cost_increase_ci95: float | None


def node_rows(samples: Mapping[str, Sequence[Sample]], sweep: NodeSweep) -> list[NodeRow]:
    """Every (node, length), ranked by the mean penalty cost increase over the baseline (largest first); every
    scenario holds the same replications (seeds) in the same order as the baseline."""
    base = samples[BASELINE]
    base_penalty = np.array([s.penalty_cost for s in base])
    unranked = []
    for label, (node, length) in sweep.cells.items():
        j = sweep.nodes.index(node)
        mine = samples[label]
        tts = np.array([s.tts[j] for s in mine])
        base_tts = np.array([s.tts[j] for s in base])
        dropped = summarize([float(t) for t in tts if math.isfinite(t)])
        median = float(np.median(tts))
        penalty = summarize_paired(np.array([s.penalty_cost for s in mine]), base_penalty)
        lost = summarize_paired(np.array([s.lost_sales for s in mine]), np.array([s.lost_sales for s in base]))
        cost = summarize_paired(np.array([s.cost for s in mine]), np.array([s.cost for s in base]))
        unranked.append(dict(
            node=node.name, kind=node.kind, closure_days=length, scenario=label, stores=node.stores,
            likelihood=node.likelihood, n=len(mine), tts_median=median, tts_mean=dropped["mean"],
            tts_mean_ci95=dropped["ci95"], never_dropped_share=float(np.mean(np.isinf(tts))),
            tts_below_ttr=bool(median < length), tts_below_ttr_share=float(np.mean(tts < length)),
            baseline_tts_median=float(np.median(base_tts)),
            baseline_never_dropped_share=float(np.mean(np.isinf(base_tts))),
            lost_sales_increase=lost["mean"], lost_sales_increase_ci95=lost["ci95"],
            penalty_cost_increase=penalty["mean"], penalty_cost_increase_ci95=penalty["ci95"],
            penalty_cost_relative=penalty["relative"], cost_increase=cost["mean"],
            cost_increase_ci95=cost["ci95"]))
    # the order of sweep.cells breaks ties (stable sort)
    ranked = sorted(unranked, key=lambda row: -row["penalty_cost_increase"])
    return [NodeRow(rank=i + 1, **row) for i, row in enumerate(ranked)]


# ---------------------------------------------------------------------------
# Files: node_sweep.csv, node_sweep.md, risk_matrix.png
# ---------------------------------------------------------------------------

COLUMNS = tuple(NodeRow.__dataclass_fields__)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return f"{value:.10g}"


def write_node_sweep_csv(path: Path, rows: Sequence[NodeRow]) -> None:
    """node_sweep.csv: one row per node x closure length, ranked, every figure with its 95% CI."""
    with Path(path).open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_cell(getattr(row, c)) for c in COLUMNS])


def _days(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:g}"


def _pm(mean: float | None, ci: float | None, fmt: str = "{:,.0f}") -> str:
    if mean is None:
        return "-"
    return fmt.format(mean) + (f" ± {fmt.format(ci)}" if ci is not None else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def node_sweep_markdown(rows: Sequence[NodeRow], sweep: NodeSweep, title: str, target: float, window: int) -> str:
    """node_sweep.md: the ranked table and what its columns mean."""
    closure = "closed, its stores re-routed to their backup DC" if sweep.reroute else "closed, its stores starved"
    lines = [f"# Node sweep: {title}", "",
             f"Each DC ({closure}) and each supplier (shipping nothing) disrupted in turn for "
             f"{', '.join(map(str, sweep.lengths))} days from day {sweep.start}, on the same seeds as the undisrupted "
             f"baseline. TTS (time to survive): days from the disruption's start until the {window}-day fill rate "
             f"of the stores the node serves first drops below {target:g}: the median over the replications "
             f"(never: most never dropped), the mean over those that dropped and the share that never did; "
             f"baseline TTS: the same stores from the same day without a disruption. TTR (time to recover): the "
             f"closure length. TTS < TTR: the median TTS is below the TTR (share of replications in brackets). "
             f"Lost sales and penalty cost (backorder + lost-sale cost): the paired increase over the baseline, "
             f"network-wide over the KPI days, mean ± 95% CI half-width. Ranked by the penalty cost increase.", ""]
    lines += _table(
        ["rank", "node", "stores", "TTR (days)", "TTS median", "TTS mean (dropped)", "never dropped", "TTS < TTR",
         "baseline TTS", "lost sales +", "penalty cost +", "total cost +", "likelihood / year"],
        [[str(r.rank), f"{r.node} ({r.kind})", str(r.stores), str(r.closure_days), _days(r.tts_median),
          _pm(r.tts_mean, r.tts_mean_ci95, "{:.1f}"), f"{r.never_dropped_share:.0%}",
          f"{'yes' if r.tts_below_ttr else 'no'} ({r.tts_below_ttr_share:.0%})", _days(r.baseline_tts_median),
          _pm(r.lost_sales_increase, r.lost_sales_increase_ci95),
          _pm(r.penalty_cost_increase, r.penalty_cost_increase_ci95)
          + (f" ({r.penalty_cost_relative:+.0%})" if math.isfinite(r.penalty_cost_relative) else ""),
          _pm(r.cost_increase, r.cost_increase_ci95), f"{r.likelihood:g}"] for r in rows])
    return "\n".join(lines) + "\n"


def short_table(rows: Sequence[NodeRow], top: int | None = None) -> str:
    """The ranked table printed at the end."""
    header = ("rank", "node", "TTR", "TTS median", "TTS<TTR", "baseline TTS", "penalty cost +", "lost sales +")
    body = [(str(r.rank), r.node, str(r.closure_days), _days(r.tts_median),
             f"{'yes' if r.tts_below_ttr else 'no'} {r.tts_below_ttr_share:.0%}", _days(r.baseline_tts_median),
             _pm(r.penalty_cost_increase, r.penalty_cost_increase_ci95),
             _pm(r.lost_sales_increase, r.lost_sales_increase_ci95)) for r in rows[:top]]
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in (header, *body))


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
COLOURS = ("tab:blue", "tab:orange", "tab:red", "tab:purple", "tab:green", "tab:brown", "tab:pink", "tab:olive")


def plot_risk_matrix(path: Path, rows: Sequence[NodeRow], title: str) -> Path:
    """Likelihood per node (x) against impact, the mean penalty cost increase with its 95% CI (y): a marker
    per closure length, a node's closures joined by a thin line and labelled once (at its longest closure),
    nodes of the same likelihood drawn side by side, quadrant lines at the median likelihood and the median
    impact of the longest closure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    lengths = sorted({r.closure_days for r in rows})
    likelihood = {r.node: r.likelihood for r in rows}
    x = np.array(list(likelihood.values()))
    x_low, x_high = (0.0, max(2 * x.max(), 0.01)) if np.ptp(x) == 0 else (x.min(), x.max())
    pad = 0.08 * (x_high - x_low)
    drawn = _side_by_side(likelihood, 0.012 * (x_high - x_low + 3.5 * pad))
    fig = Figure(figsize=(9.5, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for node in likelihood:  # a node's closures joined, shortest to longest
        mine = sorted((r for r in rows if r.node == node), key=lambda r: r.closure_days)
        ax.plot([drawn[node]] * len(mine), [r.penalty_cost_increase for r in mine], color="0.7", lw=0.8, zorder=1)
    for k, length in enumerate(lengths):
        mine = [r for r in rows if r.closure_days == length]
        ax.errorbar([drawn[r.node] for r in mine], [r.penalty_cost_increase for r in mine],
                    yerr=[r.penalty_cost_increase_ci95 or 0.0 for r in mine], fmt=MARKERS[k % len(MARKERS)],
                    color=COLOURS[k % len(COLOURS)], ms=8, capsize=3, lw=1, alpha=0.85,
                    label=f"closed {length} days")
    ax.set_xlim(min(max(0.0, x_low - pad), min(drawn.values()) - 0.5 * pad), x_high + 2.5 * pad)  # labels right
    ci = np.array([r.penalty_cost_increase_ci95 or 0.0 for r in rows])
    y_all = np.array([r.penalty_cost_increase for r in rows])
    y_low, y_high = min(0.0, (y_all - ci).min()), max((y_all + ci).max(), 1.0)
    y_pad = 0.1 * (y_high - y_low)
    ax.set_ylim(y_low - y_pad, y_high + y_pad)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    longest = {r.node: r for r in rows if r.closure_days == lengths[-1]}
    ax.axvline(float(np.median(x)), color="0.4", ls="--", lw=0.9)
    ax.axhline(float(np.median([r.penalty_cost_increase for r in longest.values()])), color="0.4", ls="--", lw=0.9)
    for text, (hx, hy, ha, va) in {"rare, severe": (0.01, 0.99, "left", "top"),
                                   "likely, severe": (0.99, 0.99, "right", "top"),
                                   "rare, mild": (0.01, 0.01, "left", "bottom"),
                                   "likely, mild": (0.99, 0.01, "right", "bottom")}.items():
        ax.text(hx, hy, text, transform=ax.transAxes, ha=ha, va=va, fontsize=9, color="0.45", style="italic")
    _labels(ax, [(drawn[r.node], r.penalty_cost_increase, r.node) for r in longest.values()])
    ax.set_xlabel("likelihood of a disruption (probability per year)")
    ax.set_ylabel("impact: penalty cost increase over the baseline (mean, 95% CI)")
    ax.set_title(f"Risk matrix: {title}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=110)
    return path


def _side_by_side(likelihood: Mapping[str, float], step: float) -> dict[str, float]:
    """Where each node is drawn: at its likelihood, nodes sharing one spread `step` apart around it."""
    drawn = {}
    for value in set(likelihood.values()):
        same = [n for n, v in likelihood.items() if v == value]
        for i, node in enumerate(same):
            drawn[node] = value + (i - (len(same) - 1) / 2) * step
    return drawn


def _labels(ax, points: Sequence[tuple[float, float, str]]) -> None:
    """A label per point to its right, moved up where points sit close together (in the points' order from the
    bottom, so that the leader lines do not cross)."""
    x_span = np.subtract(*ax.get_xlim()[::-1])
    y_span = np.subtract(*ax.get_ylim()[::-1])
    gap = 0.045 * y_span
    placed: list[tuple[float, float]] = []
    for x, y, text in sorted(points, key=lambda p: (p[1], p[0])):
        ty = y
        near = [py for px, py in placed if abs(px - x) < 0.12 * x_span and py > ty - gap]
        if near:
            ty = max(ty, max(near) + gap)
        placed.append((x, ty))
        ax.annotate(text, (x, y), xytext=(x + 0.03 * x_span, ty), fontsize=9, va="center",
                    arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6} if ty != y else None)


def write_node_sweep(out: Path, rows: Sequence[NodeRow], sweep: NodeSweep, title: str, target: float, window: int,
                     plots: bool) -> list[Path]:
    """node_sweep.csv, node_sweep.md and (with plots) risk_matrix.png in `out`."""
    written = [out / "node_sweep.csv", out / "node_sweep.md"]
    write_node_sweep_csv(written[0], rows)
    written[1].write_text(node_sweep_markdown(rows, sweep, title, target, window))
    if plots:
        written.append(plot_risk_matrix(out / "risk_matrix.png", rows, title))
    return written
