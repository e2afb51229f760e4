"""Speed and memory benchmark of the SimPy engine, against the targets TARGET_* below (README, Speed).

    python -m experiments.bench              # full table, best of 3 runs per case
    python -m experiments.bench --quick      # one run per case, no tracemalloc, no per-SKU-series line
    python -m experiments.bench --repeat 5 --json bench.json
    python -m experiments.bench --rl         # ... then RL sampling throughput (experiments/bench_rl.py)
    python -m experiments.bench --learner-only   # PPO's learner update on the CPU and the GPU
                                             # (experiments/bench_learner.py)
    python -m experiments.bench --serve-only --bundle PATH --dc-bundle PATH   # the decision service over HTTP
                                             # (experiments/bench_serve.py)

What is measured, per case (a year of a generated network, `bench_config`, under
installation base-stock, invariant mode 'warn'):

- engine build time (Engine(...): demand matrices, lead-time draws, processes),
  and run time (Engine.run(policy)), wall clock and CPU, best of --repeat;
  building the policy (DemandStats + BaseStock) is not timed;
- throughput: simulated node-SKU-days per second, counting DCs and stores
  (suppliers are outside the network) x SKUs x days / run seconds;
- peak memory of the process that ran the case: peak RSS (ru_maxrss, includes
  the interpreter and numpy, about 40 MB) and, unless --quick, the tracemalloc
  peak of one extra engine build + run (the engine's own allocations);
- unless --quick, the big case again with per_sku_series=True, to show what
  keeping daily series per node and SKU costs.

Every case runs in a fresh subprocess with OMP_NUM_THREADS and friends set to 1
and pinned to one CPU (unless --no-pin), so the numbers are single-core and one
case's memory does not leak into the next. On a shared machine the CPU column is
steadier than the wall clock. This is a benchmark, not a test: it prints
PASS/MISS per target and never fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

YEAR = 365
BIG = (5, 50, 1000)            # (DCs, stores, SKUs) of the targets
SMALL = (5, 20, 50)
SCALING_SKUS = (1, 10, 100, 1000)  # on 5 DCs x 50 stores

TARGET_SECONDS = 5.0           # a year of 5 x 50 x 1,000 on one core
TARGET_RATIO = 5.0             # ... at most 5x the same year with 1 SKU
TARGET_MEMORY_MB = 1024.0      # ... in less than 1 GB

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
               "NUMEXPR_NUM_THREADS")


def bench_config(dcs: int, stores: int, skus: int, seed: int = 0) -> dict:
    """A realistic generated network as a plain mapping (for twin.spec.network_from_dict).

    Two suppliers, `dcs` DCs with gamma lead times, `stores` stores with an
    empirical 1-3 day lead time and a backup DC; fast (negative binomial), slow
    (Poisson) and intermittent (zero-inflated Poisson) movers; weekly and yearly
    seasonality, a trend, promotions, two holidays and regional weather.
    """
    return {
        "name": f"bench_{dcs}x{stores}x{skus}",
        "layout": {
            "suppliers": 2,
            "dcs": dcs,
            "stores": stores,
            "dc": {"lead_time": {"dist": "gamma", "mean": 5, "cv": 0.3}},
            "store": {"lead_time": {"dist": "empirical", "values": [1, 2, 3], "probs": [0.2, 0.6, 0.2]}},
        },
        "skus": {
            "count": skus,
            "seed": seed,
            "profiles": {
                "fast": {"share": 0.2, "dist": "negative_binomial", "mean": [8, 30], "dispersion": [2, 10],
                         "holding_cost": [0.02, 0.1], "backorder_cost": [0.5, 2.0], "price": [2, 20],
                         "weather_sensitivity": [-0.2, 0.2]},
                "slow": {"share": 0.5, "dist": "poisson", "mean": [0.5, 4], "holding_cost": [0.05, 0.3],
                         "backorder_cost": [1.0, 4.0], "price": [5, 50]},
                "intermittent": {"share": 0.3, "dist": "zero_inflated_poisson", "mean": [0.05, 0.5],
                                 "zero_prob": [0.3, 0.8], "holding_cost": [0.1, 0.5],
                                 "backorder_cost": [2.0, 8.0], "price": [20, 200]},
            },
        },
        "demand": {
            "weekly": [0.9, 0.85, 0.9, 1.0, 1.15, 1.35, 0.85],
            "yearly_amplitude": 0.25,
            "yearly_peak_day": 355,
            "trend_per_year": 0.03,
            "promotion": {"weekly_probability": 0.05, "duration_days": 7, "discount": 0.2, "extra_lift": 1.3},
            "holidays": [{"name": "black_friday", "day": 329, "lift": 2.0, "duration_days": 3},
                         {"name": "christmas", "day": 350, "lift": 1.5, "duration_days": 10}],
            "weather_sd": 0.3,
        },
    }


def bench_network(dcs: int, stores: int, skus: int, seed: int = 0):
    from twin.spec import network_from_dict

    return network_from_dict(bench_config(dcs, stores, skus, seed))


# ---------------------------------------------------------------------------- worker (one case, one process)

def measure(dcs: int, stores: int, skus: int, *, repeat: int, days: int, seed: int, per_sku_series: bool,
            trace: bool) -> dict:
    """Build the policy once, then time `repeat` engine builds and runs; report the best and peak memory."""
    import gc
    import resource
    import tracemalloc

    from agents.baselines.policies import BaseStock
    from twin.engine import Engine
    from twin.stats import DemandStats

    network = bench_network(dcs, stores, skus, seed)
    started = time.perf_counter()
    policy = BaseStock.from_stats(DemandStats.of(network, days, seed))
    policy_s = time.perf_counter() - started

    def once():
        t0 = time.perf_counter()
        engine = Engine(network, horizon=days, seed=seed, invariants="warn", per_sku_series=per_sku_series)
        t1, c1 = time.perf_counter(), time.process_time()
        result = engine.run(policy)
        t2, c2 = time.perf_counter(), time.process_time()
        return t1 - t0, t2 - t1, c2 - c1, result

    builds, runs, cpus = [], [], []
    for _ in range(max(1, repeat)):
        build_s, run_s, cpu_s, result = once()
        builds.append(build_s)
        runs.append(run_s)
        cpus.append(cpu_s)
        del result
        gc.collect()  # an engine holds reference cycles (its SimPy processes): free it before the next run
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    out = {
        "dcs": dcs, "stores": stores, "skus": skus, "days": days, "per_sku_series": per_sku_series,
        "policy_s": policy_s, "build_s": min(builds), "run_s": min(runs), "runs_s": runs, "cpu_s": min(cpus),
        "node_sku_days_per_s": (dcs + stores) * skus * days / min(runs),
        "peak_rss_mb": rss_kb / 1024, "tracemalloc_peak_mb": None,
    }
    if trace:  # one more build + run under tracemalloc (slower, so it is not timed)
        tracemalloc.start()
        once()
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return out


def run_case(dcs: int, stores: int, skus: int, *, repeat: int, days: int, seed: int, per_sku_series: bool = False,
             trace: bool = True, pin: bool = True) -> dict:
    """`measure` in a fresh single-threaded Python process (pinned to one CPU unless `pin` is False)."""
    env = dict(os.environ, **{v: "1" for v in THREAD_VARS})
    args = [sys.executable, "-m", "experiments.bench", "--worker",
            json.dumps({"dcs": dcs, "stores": stores, "skus": skus, "repeat": repeat, "days": days, "seed": seed,
                        "per_sku_series": per_sku_series, "trace": trace, "pin": pin})]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {dcs}x{stores}x{skus} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _worker(spec: str) -> None:
    kwargs = json.loads(spec)
    if kwargs.pop("pin") and hasattr(os, "sched_setaffinity"):  # one core: the first CPU this process may use
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(json.dumps(measure(**kwargs)))


# ---------------------------------------------------------------------------- report

def _mb(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f} MB"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _row(label: str, c: dict, note: str = "") -> str:
    return (f"{label:>20} {c['build_s']:>7.2f}s {c['run_s']:>7.2f}s {c['cpu_s']:>7.2f}s "
            f"{c['node_sku_days_per_s']:>16,.0f} {_mb(c['peak_rss_mb']):>10} {_mb(c['tracemalloc_peak_mb']):>12}"
            f"{note}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best time is kept (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="one run per case, no tracemalloc and no per-SKU-series memory line")
    parser.add_argument("--days", type=int, default=YEAR, help="simulated days per run (default 365)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the measurements to PATH as JSON")
    parser.add_argument("--no-pin", action="store_true", help="do not pin each case to one CPU (still one thread)")
    parser.add_argument("--rl", action="store_true", help="then the RL section (experiments/bench_rl.py)")
    parser.add_argument("--rl-only", action="store_true", help="only the RL section")
    parser.add_argument("--learner", action="store_true",
                        help="then PPO's learner on the CPU and the GPU (experiments/bench_learner.py)")
    parser.add_argument("--learner-only", action="store_true", help="only the learner section")
    parser.add_argument("--learner-overrides", help="train overrides of that section, space-separated (default: "
                        "+experiment=ppo_network_sku sku_batched=true scenario=baseline)")
    parser.add_argument("--forecast", action="store_true",
                        help="then the forecaster section (experiments/bench_forecast.py)")
    parser.add_argument("--forecast-only", action="store_true", help="only the forecaster section")
    parser.add_argument("--forecasters", help="forecasters of that section, comma-separated (default: all)")
    parser.add_argument("--serve", action="store_true",
                        help="then the decision service section (experiments/bench_serve.py)")
    parser.add_argument("--serve-only", action="store_true", help="only the decision service section")
    from experiments import bench_serve
    bench_serve.add_arguments(parser.add_argument_group("decision service (--serve, --serve-only)"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker)
        return {}
    learner_config = _learner_config(args) if args.learner or args.learner_only else None  # before any work
    if args.forecast or args.forecast_only:
        _check_forecasters(args)
    if args.rl_only:
        from experiments import bench_rl
        return {"rl": bench_rl.main(quick=args.quick)}
    if args.learner_only:
        results = {"learner": _learner_section(args, learner_config)}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        return results
    if args.forecast_only:
        return {"forecast": _forecast_section(args)}
    if args.serve_only:
        results = {"serve": bench_serve.run_from_args(args)}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        return results
    repeat = 1 if args.quick else max(1, args.repeat)
    trace = not args.quick
    common = {"repeat": repeat, "days": args.days, "seed": args.seed, "trace": trace, "pin": not args.no_pin}

    import numpy
    import simpy

    print(f"engine benchmark: {args.days} days, base-stock, invariants 'warn', best of {repeat} run(s), one thread "
          f"{'' if args.no_pin else 'pinned to one CPU '}per case, a fresh process each")
    print(f"python {platform.python_version()}, numpy {numpy.__version__}, simpy {simpy.__version__}, "
          f"{os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    cases = {}
    for shape in (SMALL, *[(5, 50, k) for k in SCALING_SKUS]):
        if shape not in cases:
            cases[shape] = run_case(*shape, **common)
    sku_series = None if args.quick else run_case(*BIG, **common, per_sku_series=True)

    print()
    print("build: Engine(...); run: Engine.run(policy), wall (best) and CPU seconds; node-SKU-days/s: DCs and stores")
    header = (f"{'DCs x stores x SKUs':>20} {'build':>8} {'run':>8} {'cpu':>8} {'node-SKU-days/s':>16} "
              f"{'peak RSS':>10} {'tracemalloc':>12}")
    print(header)
    print("-" * len(header))
    for dcs, stores, skus in (SMALL, BIG):
        print(_row(f"{dcs} x {stores} x {skus:,}", cases[(dcs, stores, skus)]))
    if sku_series is not None:
        print(_row("+ per_sku_series", sku_series, "   (daily series per node and SKU kept as well)"))

    print()
    print("time per simulated year vs SKUs, 5 DCs x 50 stores")
    header = f"{'SKUs':>6} {'run':>8} {'x time(1 SKU)':>14} {'node-SKU-days/s':>16} {'peak RSS':>10}"
    print(header)
    print("-" * len(header))
    base = cases[(5, 50, 1)]["run_s"]
    for k in SCALING_SKUS:
        c = cases[(5, 50, k)]
        print(f"{k:>6,} {c['run_s']:>7.2f}s {c['run_s'] / base:>14.2f} {c['node_sku_days_per_s']:>16,.0f} "
              f"{_mb(c['peak_rss_mb']):>10}")

    big = cases[BIG]
    scale = args.days / YEAR
    memory = big["peak_rss_mb"]  # the default run (per-node series only); the per-SKU line shows the extra cost
    targets = [
        (f"5x50x1000 year <= {TARGET_SECONDS:g} s on one core", f"{big['run_s'] / scale:.2f} s",
         big["run_s"] / scale <= TARGET_SECONDS),
        (f"5x50x1000 <= {TARGET_RATIO:g}x the 1-SKU year", f"{big['run_s'] / base:.2f}x",
         big["run_s"] / base <= TARGET_RATIO),
        (f"5x50x1000 peak memory < {TARGET_MEMORY_MB / 1024:g} GB", _mb(memory), memory < TARGET_MEMORY_MB),
    ]
    print()
    print("targets")
    for label, value, ok in targets:
        print(f"  {_verdict(ok)}  {label:<42} {value:>10}")
    if args.days != YEAR:
        print(f"  (seconds scaled to a year from {args.days} days)")

    results = {"cases": list(cases.values()), "per_sku_series": sku_series,
               "targets": [{"target": label, "value": value, "pass": ok} for label, value, ok in targets]}
    if args.rl:
        from experiments import bench_rl
        results["rl"] = bench_rl.main(quick=args.quick)
    if args.learner:
        results["learner"] = _learner_section(args, learner_config)
    if args.forecast:
        results["forecast"] = _forecast_section(args)
    if args.serve:
        print()
        results["serve"] = bench_serve.run_from_args(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


def _learner_overrides(args) -> tuple[str, ...]:
    from experiments import bench_learner
    return tuple(args.learner_overrides.split()) if args.learner_overrides else bench_learner.DEFAULT_OVERRIDES


def _learner_config(args):
    """The learner section's train config, checked: a bad override stops with one `config error:` line."""
    from experiments import bench_learner
    from experiments.startup import config_errors
    with config_errors():
        return bench_learner.compose(_learner_overrides(args))


def _learner_section(args, config) -> dict:
    from experiments import bench_learner
    return bench_learner.main(quick=args.quick, overrides=_learner_overrides(args), config=config)


def _forecasters(args) -> tuple[str, ...]:
    from experiments import bench_forecast
    return tuple(args.forecasters.split(",")) if args.forecasters else bench_forecast.DEFAULT


def _check_forecasters(args) -> None:
    """An unknown name in --forecasters stops with one `config error:` line, before any work."""
    from agents.forecasting.factory import FORECASTERS
    from experiments.startup import config_errors
    with config_errors():
        for name in _forecasters(args):
            FORECASTERS.check(name, "--forecasters")


def _forecast_section(args) -> list[dict]:
    from experiments import bench_forecast
    return bench_forecast.main(quick=args.quick, forecasters=_forecasters(args))


if __name__ == "__main__":
    main()
