"""The networks the scenario tests share, read once per test session from conf/network."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from twin.spec import network_from_dict

CONF = Path(__file__).resolve().parents[2] / "conf"


def conf_network(name: str):
    """conf/network/NAME.yaml as a NetworkSpec."""
    return network_from_dict(yaml.safe_load((CONF / "network" / f"{name}.yaml").read_text()))


@pytest.fixture(scope="session")
def paper():
    return conf_network("paper_5x20")


@pytest.fixture(scope="session")
def small():
    return conf_network("small")
