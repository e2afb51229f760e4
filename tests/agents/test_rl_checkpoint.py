"""A checkpoint's env setup as versioned plain data (agents.rl.checkpoint), without training: no Ray, no modules."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import yaml

from agents.rl.algorithms import TrainingSetup
from agents.rl.checkpoint import SETUP_FILE, first_difference, main, read_setup, write_setup
from scenarios.reference import read_case_data
from twin import SpecError

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "tests" / "reference_cases" / "case_base_stock_SS_example_4_4_L4.json"


def conf(name: str) -> dict:
    return yaml.safe_load((ROOT / "conf" / f"{name}.yaml").read_text())


def network_data(**env) -> dict:
    return {"network": conf("network/small"), "scenario": conf("scenario/holiday_peak"),
            "env": {**conf("train")["env"], **env}, "shared_policy": False}


def case_data() -> dict:
    return {"case": read_case_data(CASE), "env": conf("train")["single_node_env"]}


@pytest.mark.parametrize("data, discrete_only", [(network_data(), False), (network_data(), True),
                                                 (case_data(), False)], ids=["network", "network_dqn", "case"])
def test_the_setup_round_trips_through_plain_data(data, discrete_only, tmp_path):
    setup = TrainingSetup.from_plain(data, discrete_only=discrete_only)
    path = write_setup(tmp_path, setup)
    text = path.read_text()
    assert "!!python" not in text  # plain YAML: no project class is named in the file
    document = yaml.safe_load(text)
    assert document["format_version"] == 1 and document["policy_ids"] == setup.policy_ids
    assert document["setup"]["env"]["granularity"] == setup.env.granularity  # `auto` resolved when written
    loaded = read_setup(tmp_path)
    assert first_difference(loaded, setup) is None
    assert loaded.plain == setup.plain and loaded.policy_ids == setup.policy_ids
    assert dict(loaded.roles) == dict(setup.roles) and loaded.single_node == setup.single_node
    if not setup.single_node:
        assert setup.env.granularity == ("node_sku" if discrete_only else "node")


def test_a_difference_is_named_by_its_key_path():
    a = TrainingSetup.from_plain(network_data())
    b = TrainingSetup.from_plain(network_data(episode_days=100))
    assert first_difference(a, b) == "setup.env.episode_days"
    assert first_difference(a, TrainingSetup.from_plain(case_data())).startswith("setup.env.network")


def test_only_setups_built_from_plain_data_are_saved(tmp_path):
    typed = TrainingSetup.network(TrainingSetup.from_plain(network_data()).env)
    with pytest.raises(ValueError, match="from_plain"):
        write_setup(tmp_path, typed)


def test_bad_plain_data_names_the_key():
    with pytest.raises(SpecError, match="unknown key 'network'"):
        TrainingSetup.from_plain({**case_data(), "network": conf("network/small")})
    with pytest.raises(SpecError, match="env.episode_days"):
        TrainingSetup.from_plain(network_data(episode_days=0))
    with pytest.raises(SpecError, match=r"setup.env.action: object is not allowed; allowed: plain data"):
        TrainingSetup.from_plain(network_data(action=object()))


def test_a_checkpoint_with_only_the_old_pickle_gives_one_clear_error(tmp_path):
    (tmp_path / "twin_setup.pkl").write_bytes(pickle.dumps({"an": "old setup"}))
    with pytest.raises(SpecError) as error:
        read_setup(tmp_path)
    message = str(error.value)
    assert "written by an older version of experiments.train (twin_setup.pkl" in message
    assert f"python -m agents.rl.checkpoint upgrade {tmp_path}" in message and "retrain" in message


def test_a_directory_without_a_setup_is_not_a_checkpoint(tmp_path):
    with pytest.raises(SpecError, match="is not a checkpoint of experiments.train"):
        read_setup(tmp_path)


@pytest.mark.parametrize("version", [2, None, "1"])
def test_an_unknown_format_version_is_refused(version, tmp_path):
    write_setup(tmp_path, TrainingSetup.from_plain(case_data()))
    document = yaml.safe_load((tmp_path / SETUP_FILE).read_text())
    document["format_version"] = version
    (tmp_path / SETUP_FILE).write_text(yaml.safe_dump(document))
    with pytest.raises(SpecError, match=f"format_version {version!r}, which this version of the project cannot "
                                        f"read; allowed: 1"):
        read_setup(tmp_path)


def test_a_setup_that_now_derives_other_policies_is_refused(tmp_path):
    write_setup(tmp_path, TrainingSetup.from_plain(network_data()))
    document = yaml.safe_load((tmp_path / SETUP_FILE).read_text())
    document["policy_ids"] = ["shared"]
    (tmp_path / SETUP_FILE).write_text(yaml.safe_dump(document))
    with pytest.raises(SpecError, match=r"says policy_ids \['shared'\], but its setup now gives \['dc', 'store'\]"):
        read_setup(tmp_path)


# ---------------------------------------------------------------- converting checkpoints of older versions

def legacy_run(root: Path, pickled: object, case: bool = False) -> Path:
    """A run directory as older versions of experiments.train left it: Hydra's config and a pickled setup."""
    config = conf("train")
    config.update(network=conf("network/small"), scenario=conf("scenario/holiday_peak"), agent={"name": "ppo"})
    if case:
        config["case"] = str(CASE.relative_to(ROOT))
    (root / ".hydra").mkdir(parents=True)
    (root / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (root / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"cwd": str(ROOT)}}}))
    checkpoint = root / "checkpoints" / "iter_000002"
    checkpoint.mkdir(parents=True)
    (checkpoint / "twin_setup.pkl").write_bytes(pickle.dumps(pickled))
    return checkpoint


@pytest.mark.parametrize("case", [False, True], ids=["network", "case"])
def test_an_old_checkpoint_is_converted_from_its_runs_config(case, tmp_path, capsys):
    setup = TrainingSetup.from_plain(case_data() if case else network_data())
    old = TrainingSetup.single_node_env(setup.env) if case else TrainingSetup.network(setup.env)  # no plain data
    checkpoint = legacy_run(tmp_path, old, case=case)
    assert main(["upgrade", str(tmp_path)]) == 0
    assert f"wrote {checkpoint / SETUP_FILE}" in capsys.readouterr().out
    assert first_difference(read_setup(checkpoint), setup) is None
    assert main(["upgrade", str(checkpoint)]) == 0 and "nothing to convert" in capsys.readouterr().out


def test_an_old_checkpoint_whose_pickle_differs_from_the_config_is_not_converted(tmp_path, capsys):
    other = TrainingSetup.network(TrainingSetup.from_plain(network_data(episode_days=100)).env)
    checkpoint = legacy_run(tmp_path, other)
    assert main(["upgrade", str(checkpoint)]) == 2
    assert "differs from the pickled one at setup.env.episode_days" in capsys.readouterr().err
    assert not (checkpoint / SETUP_FILE).exists()


def test_an_old_checkpoint_whose_pickle_no_longer_loads_is_not_converted(tmp_path, capsys):
    checkpoint = legacy_run(tmp_path, None)
    (checkpoint / "twin_setup.pkl").write_bytes(b"\x80\x04\x95 not a pickle of current classes")
    assert main(["upgrade", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "no longer loads with the current classes" in err and "retrain" in err
