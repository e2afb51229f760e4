"""The experiments/ helper layer: seed ranges kept apart, the one-line config error, the KPI summary."""

from __future__ import annotations

import pytest

from experiments.seeds import HELD_OUT_FIRST_SEED, VALIDATION_FIRST_SEED, SeedRange, check_apart
from experiments.startup import config_errors, stop
from twin.config import ConfigReader, SpecError


def test_seed_ranges_read_from_config_and_kept_apart():
    held_out = SeedRange.read(ConfigReader({"seeds": 3}, "evaluation"), count=5, first=HELD_OUT_FIRST_SEED)
    assert held_out.seeds == (HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + 1, HELD_OUT_FIRST_SEED + 2)
    assert str(held_out) == f"{HELD_OUT_FIRST_SEED}..{HELD_OUT_FIRST_SEED + 2}"
    check_apart(SeedRange(VALIDATION_FIRST_SEED, 2), held_out)  # the defaults never overlap
    check_apart(SeedRange(HELD_OUT_FIRST_SEED - 2, 2), held_out)  # adjacent is apart
    with pytest.raises(SpecError, match=r"^validation.first_seed: seeds 999999..1000000 overlap the evaluation's"):
        check_apart(SeedRange(HELD_OUT_FIRST_SEED - 1, 2), held_out)
    with pytest.raises(SpecError, match=r"^evaluation.seeds: 0 is out of range"):
        SeedRange.read(ConfigReader({"seeds": 0}, "evaluation"), count=5, first=0)


def test_a_config_error_is_one_line_and_exit_status_2(capsys):
    with pytest.raises(SystemExit) as info, config_errors():
        raise SpecError("horizon: 0 is out of range; allowed: [1, 36500]")
    assert info.value.code == 2
    assert capsys.readouterr().err == "config error: horizon: 0 is out of range; allowed: [1, 36500]\n"
    with pytest.raises(SystemExit) as info:
        stop("row 3: bad value", "data")
    assert info.value.code == 2 and capsys.readouterr().err == "data error: row 3: bad value\n"
    with config_errors():  # nothing raised: nothing printed
        pass
    assert capsys.readouterr().err == ""


def test_other_errors_pass_through_config_errors():
    with pytest.raises(ValueError, match="not a config error"), config_errors():
        raise ValueError("not a config error")


def test_a_bare_policy_name_means_its_conf_file():
    """`shock_aware_base_stock` in a list of policies is conf/policy/shock_aware_base_stock.yaml (z 3 / 2, z 6 / 10
    while disrupted), not the default z for both, which would make it a plain base-stock; an unknown name is one
    error naming the key."""
    import yaml

    from agents.baselines.catalog import PolicySpec
    from experiments.policy_entries import named_policy_spec
    from experiments.startup import CONF_DIR

    spec = named_policy_spec("shock_aware_base_stock", "policies[0]")
    conf = yaml.safe_load((CONF_DIR / "policy" / "shock_aware_base_stock.yaml").read_text())
    assert spec == PolicySpec.from_dict(conf)
    assert spec.z != spec.z_disrupted
    assert named_policy_spec("rop", "policies[0]") == PolicySpec.from_dict({"name": "rop"})
    with pytest.raises(SpecError, match=r"^policies\[1\]: 'nope' is not allowed; allowed: base_stock"):
        named_policy_spec("nope", "policies[1]")
