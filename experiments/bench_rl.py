"""RL sampling throughput on the twin: the env alone, then RLlib env runners (0, 1, 2) sampling with a PPO module,
and the SKU-batched sampler (`sku_batched=true`: every (node, SKU) pair of a twin as one sub-environment of a vector
env, sampled in batch by agents/rl/sku_runner.py).

    python -m experiments.bench --rl          # the engine benchmark, then this section
    python -m experiments.bench --rl-only

Agent-steps per second = env steps x agents per env step / seconds. The network
is the paper's 5 DCs x 20 stores x 50 SKUs: 25 agents with one agent per node
(the SKU-shared module), 1,250 with one agent per (node, SKU). With 0 env runners
the driver samples; with N > 0 the N runners sample in parallel (one CPU each).
A benchmark, not a test: it prints figures and never fails.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def paper_network():
    from twin.spec import network_from_dict
    return network_from_dict(yaml.safe_load((ROOT / "conf/network/paper_5x20.yaml").read_text()))


def env_only(granularity: str, env_steps: int) -> dict:
    """The PettingZoo env stepped with fixed actions, no RLlib: the floor under any sampler."""
    from agents.envs import EnvConfig, SupplyChainParallelEnv

    env = SupplyChainParallelEnv(EnvConfig(network=paper_network(), granularity=granularity, episode_days=365))
    obs, _ = env.reset(seed=0)
    actions = {a: env.action_space(a).sample() for a in env.possible_agents}
    steps, started = 0, time.perf_counter()
    while steps < env_steps:
        if not env.agents:
            env.reset()
        env.step(actions)
        steps += 1
    seconds = time.perf_counter() - started
    agents = len(env.possible_agents)
    return {"agents": agents, "env_steps": steps, "seconds": seconds, "agent_steps_per_s": steps * agents / seconds}


def rllib_sampling(granularity: str, runners: int, env_steps: int, sku_batched: bool = False) -> dict:
    """Env steps sampled by `runners` env runners (0: the driver) with PPO's module, after one warm-up sample;
    `sku_batched`: the SKU-batched sampler (env steps are then twin steps, each a step of every pair)."""
    import ray

    from agents.envs import EnvConfig
    from agents.rl.algorithms import PPOAgent, Resources, TrainingSetup

    env = EnvConfig(network=paper_network(), granularity=granularity, episode_days=365, cooperative_weight=0.5)
    setup = TrainingSetup.network(env, sku_batched=sku_batched)
    # in twin steps; the SKU-batched config turns them into steps of its sub-environments
    config = PPOAgent(train_batch_size=env_steps, minibatch_size=min(500, env_steps)).algorithm_config(
        setup, Resources(num_env_runners=runners, num_envs_per_env_runner=1), seed=0)
    import torch
    torch.set_num_threads(1)
    algo = config.build_algo()
    per_runner = max(env_steps // max(runners, 1), 1) * setup.steps_per_env_step

    def sample(runner):
        episodes = runner.sample(num_timesteps=per_runner)
        return sum(ep.env_steps() for ep in episodes), sum(ep.agent_steps() for ep in episodes)

    group = algo.env_runner_group
    local = runners == 0
    group.foreach_env_runner(sample, local_env_runner=local)  # warm-up: module built, first episode started
    started = time.perf_counter()
    counts = group.foreach_env_runner(sample, local_env_runner=local)
    seconds = time.perf_counter() - started
    algo.stop()
    ray.shutdown()
    steps, agent_steps = (sum(c[i] for c in counts) for i in (0, 1))
    return {"agents": len(setup.roles), "env_steps": steps // setup.steps_per_env_step, "seconds": seconds,
            "agent_steps_per_s": agent_steps / seconds}


def main(quick: bool = False) -> dict:
    """Print the RL section and return its figures."""
    import ray

    steps = 200 if quick else 730
    print(f"\nRL sampling throughput, paper_5x20 (5 DCs x 20 stores x 50 SKUs), {os.cpu_count()} CPUs")
    print(f"{'sampler':<34}{'agents':>8}{'env steps':>11}{'seconds':>9}{'agent-steps/s':>15}")
    print("-" * 77)
    out = {}
    for granularity in ("node", "node_sku"):
        r = env_only(granularity, steps)
        out[f"env_only_{granularity}"] = r
        print(f"{'env alone, ' + granularity:<34}{r['agents']:>8}{r['env_steps']:>11}{r['seconds']:>9.2f}"
              f"{r['agent_steps_per_s']:>15,.0f}")
    for granularity, runner_counts in (("node", (0, 1, 2)), ("node_sku", (0,))):
        for runners in runner_counts:
            ray.init(num_cpus=max(os.cpu_count() or 1, runners + 1), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            r = rllib_sampling(granularity, runners, steps if granularity == "node" else steps // 4)
            out[f"rllib_{granularity}_{runners}"] = r
            label = f"RLlib, {granularity}, {runners} env runner(s)"
            print(f"{label:<34}{r['agents']:>8}{r['env_steps']:>11}{r['seconds']:>9.2f}"
                  f"{r['agent_steps_per_s']:>15,.0f}")
    for runners in (0, 1, 2):
        ray.init(num_cpus=max(os.cpu_count() or 1, runners + 1), include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        r = rllib_sampling("node_sku", runners, steps, sku_batched=True)
        out[f"rllib_sku_batched_{runners}"] = r
        label = f"SKU-batched, {runners} env runner(s)"
        print(f"{label:<34}{r['agents']:>8}{r['env_steps']:>11}{r['seconds']:>9.2f}"
              f"{r['agent_steps_per_s']:>15,.0f}")
    base = out["rllib_node_0"]["agent_steps_per_s"]
    print("ratios to 0 env runners (node): " + ", ".join(
        f"{n} runner(s) {out[f'rllib_node_{n}']['agent_steps_per_s'] / base:.2f}x" for n in (1, 2)))
    per_agent = out["rllib_node_sku_0"]["agent_steps_per_s"]
    print("SKU-batched against one RLlib agent per (node, SKU), 0 env runners: " + ", ".join(
        f"{n} runner(s) {out[f'rllib_sku_batched_{n}']['agent_steps_per_s'] / per_agent:.1f}x" for n in (0, 1, 2)))
    print(f"RLlib share of the sampling time (node, 0 runners): "
          f"{1 - out['rllib_node_0']['agent_steps_per_s'] / out['env_only_node']['agent_steps_per_s']:.0%}")
    return out


if __name__ == "__main__":
    main()
