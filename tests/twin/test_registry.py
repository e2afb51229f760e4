"""twin.registry.Registry: names to classes, unknown names named in one SpecError, lazy imports."""

from __future__ import annotations

import sys

import pytest

from twin.config import SpecError
from twin.registry import Registry


class Alpha:
    name = "alpha"


class Beta:
    name = "beta"


def test_a_registry_maps_names_in_order_and_reads_like_a_mapping():
    reg = Registry.of("thing.name", Alpha, Beta)
    assert reg.resolve("beta") is Beta and reg["alpha"] is Alpha
    assert list(reg) == ["alpha", "beta"] and reg.names == ("alpha", "beta") and len(reg) == 2
    assert "alpha" in reg and "gamma" not in reg and reg.get("gamma") is None


@pytest.mark.parametrize("name", ["gamma", None, 3])
def test_an_unknown_name_is_one_error_naming_the_key_and_the_allowed_names(name):
    reg = Registry.of("thing.name", Alpha, Beta)
    with pytest.raises(SpecError) as info:
        reg.resolve(name)
    assert str(info.value) == f"thing.name: {name!r} is not allowed; allowed: alpha, beta"
    with pytest.raises(SpecError, match=r"^other\[2\]\.name: 'gamma' is not allowed"):
        reg.resolve("gamma", "other[2].name")


def test_lazy_entries_are_imported_on_first_use_only():
    reg = Registry("codec.name", {"json": "json.decoder:JSONDecoder", "never": "no_such_module_xyz:Nothing"},
                   lazy=True)
    assert "no_such_module_xyz" not in sys.modules
    from json.decoder import JSONDecoder

    assert reg.resolve("json") is JSONDecoder and reg.check("never") == "never"
