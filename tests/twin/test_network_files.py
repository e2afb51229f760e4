"""A planner's own network from files (twin/network_files.py): a folder of CSV files or one YAML file.

The CSV folder and the YAML file of one network build the same spec (equal network hashes); a file network runs
with a balanced ledger; every network written by `write_network_files` reads back equal; and bad files give one
`NetworkFileError` listing every problem, each naming the file, the spreadsheet row and the column.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from twin import DcClosure, LeadTimeShock, SpecError, network_from_dict
from twin.network_files import (
    LANES,
    LOCATIONS,
    SKUS,
    NetworkFileError,
    expand_network_path,
    network_data_from_files,
    read_network_files,
    write_network_files,
)
from twin.snapshot import network_hash
from twin.spec import NetworkSpec
from twin.testing import OrderUpTo, run_with_invariants, two_dc_network

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
CSV_DIR = DATA / "network_csv"
YAML_FILE = DATA / "network.yaml"


def conf_network(name: str) -> NetworkSpec:
    return network_from_dict(yaml.safe_load((ROOT / "conf" / "network" / f"{name}.yaml").read_text()))


def copy_fixture(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    shutil.copytree(CSV_DIR, folder)
    return folder


def set_row(folder: Path, file: str, row: int, text: str | None) -> None:
    """Replace spreadsheet row `row` (the header is row 1) of `file` with `text`; None deletes it, and a row past
    the end is appended."""
    path = folder / file
    lines = path.read_text().splitlines()
    if row > len(lines):
        lines.append(text)
    elif text is None:
        del lines[row - 1]
    else:
        lines[row - 1] = text
    path.write_text("\n".join(lines) + "\n")


def problems_of(path: Path) -> tuple[str, ...]:
    with pytest.raises(NetworkFileError) as info:
        read_network_files(path)
    error = info.value
    assert isinstance(error, SpecError)
    lines = str(error).splitlines()
    assert lines[0].startswith(f"network.path: {len(error.problems)} problem")
    assert lines[1:] == [f"  {p}" for p in error.problems], "one line per problem"
    return error.problems


# ---------------------------------------------------------------- the same network, two ways


def test_the_csv_folder_and_the_yaml_file_build_the_same_network():
    from_csv = read_network_files(CSV_DIR)
    from_yaml = read_network_files(YAML_FILE)
    direct = network_from_dict(yaml.safe_load(YAML_FILE.read_text()))
    assert network_hash(from_csv) == network_hash(from_yaml) == network_hash(direct)
    assert from_csv.name == "planner_demo" and from_csv.rationing == "priority"
    assert from_csv.node_names == ("acme", "beta", "dc_north", "dc_south", "s1", "s2", "s3", "s4")
    node = {n.name: n for n in from_csv.nodes}
    # what the columns map onto, defaults included
    assert node["acme"].supply_capacity == 400 and node["acme"].holding_factor == 0  # suppliers cost nothing
    assert node["dc_north"].lead_time.dist == "gamma"  # a spread and no dist: gamma
    assert (node["dc_north"].lead_time.mean, node["dc_north"].lead_time.cv) == (4, 0.25)
    assert node["dc_south"].lead_time.values == (3, 4, 5)  # the history 3 4 3 5 3 4 3 3, by frequency
    assert node["dc_south"].lead_time.probs == (0.625, 0.25, 0.125)
    assert node["dc_south"].backorder_factor == 0 and node["s4"].backorder_factor == 1  # a dc's default is 0
    assert node["s1"].lead_time.dist == "deterministic" and node["s1"].lead_time.mean == 1  # no lead-time cells
    assert (node["s2"].unmet, node["s2"].lane_capacity, node["s2"].storage_capacity) == ("lost", 120, 300)
    assert node["s3"].in_transit_holding == 0.5 and node["s3"].backup_parent == "dc_north"
    skus = from_csv.skus
    assert skus.name == ("rice", "milk", "kettle", "soap")
    assert skus.dist == ("poisson", "negative_binomial", "zero_inflated_poisson", "normal")
    assert skus.lost_sale_cost[0] == 2.0 and skus.unit_cost[2] == 12 and skus.cv[3] == 0.25


def test_a_file_network_runs_with_a_balanced_ledger():
    network = read_network_files(CSV_DIR)
    levels = np.where(np.array([n.kind == "dc" for n in network.nodes])[:, None], 200.0, 40.0) \
        * np.ones(network.skus.n)
    shocks = (DcClosure(start=20, end=30, dc="dc_north", reroute=False), LeadTimeShock(start=35, end=45, multiplier=2))
    result = run_with_invariants(network, OrderUpTo(levels), horizon=80, seed=3, shocks=shocks, warmup=10)
    kpis = result.kpis
    assert kpis["network"]["demand"] > 0 and kpis["nodes"]["s2"]["lost_units"] >= 0
    assert set(kpis["nodes"]) == {n.name for n in network.nodes if n.kind != "supplier"}


def test_rows_may_come_in_any_order_and_keep_it_where_the_tree_allows(tmp_path):
    folder = copy_fixture(tmp_path)
    lines = (folder / LOCATIONS).read_text().splitlines()
    (folder / LOCATIONS).write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    network = read_network_files(folder)
    position = {name: i for i, name in enumerate(network.node_names)}
    for node in network.nodes:  # parents and backups first
        for ref in (node.parent, node.backup_parent):
            assert ref is None or position[ref] < position[node.name]
    assert network.node_names == ("beta", "acme", "dc_north", "s2", "dc_south", "s4", "s3", "s1")
    for parent in ("dc_north", "dc_south"):  # each location's customers in the file's order: priority serves so
        customers = [n.name for n in network.nodes if n.parent == parent]
        assert customers == sorted(customers, reverse=True)


def test_a_spreadsheet_export_reads_the_same(tmp_path):
    """A byte-order mark, Windows line ends, blank rows and padded cells change nothing (blank rows still count)."""
    folder = copy_fixture(tmp_path)
    for file in (LOCATIONS, LANES, SKUS):
        lines = (folder / file).read_text().splitlines()
        lines.insert(2, ",,,")
        text = "\r\n".join(line.replace(",", " , ") if i == 3 else line for i, line in enumerate(lines))
        (folder / file).write_bytes(b"\xef\xbb\xbf" + text.encode() + b"\r\n")
    assert network_hash(read_network_files(folder)) == network_hash(read_network_files(CSV_DIR))
    set_row(folder, SKUS, 5, "kettle,general,zero_inflated_poisson,0.8,,,0.6,-1,2,20,1,12,30")
    assert problems_of(folder) == ("skus.csv, row 5, column holding_cost (H): -1 is out of range; allowed: [0, inf]",)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["small", "serial_3", "paper_5x20", "two_dc", "planner_demo"])
def test_a_network_written_to_files_reads_back_equal(tmp_path, name):
    if name == "two_dc":
        network = network_from_dict(two_dc_network())
    elif name == "planner_demo":
        network = read_network_files(CSV_DIR)
    else:
        network = conf_network(name)
    out = write_network_files(network, tmp_path / "export")
    assert sorted(p.name for p in out.iterdir()) == ["lanes.csv", "locations.csv", "network.yaml", "skus.csv"]
    back = read_network_files(out)
    assert network_hash(back) == network_hash(network)
    again = write_network_files(back, tmp_path / "again")
    for file in ("lanes.csv", "locations.csv", "network.yaml", "skus.csv"):
        assert (again / file).read_text() == (out / file).read_text()


def test_the_written_files_are_what_a_planner_edits(tmp_path):
    out = write_network_files(conf_network("small"), tmp_path / "small")
    rows = (out / LOCATIONS).read_text().splitlines()
    assert rows[0] == ("id,kind,parent,backup_parent,region,unmet,storage_capacity,supply_capacity,holding_factor,"
                       "backorder_factor,lost_sale_factor,demand_scale")
    assert rows[1:3] == ["supplier_0,supplier,,,all,,,,,,,", "dc_0,dc,supplier_0,,north,backorder,,,0.5,0,,"]
    lanes = (out / LANES).read_text().splitlines()
    assert lanes[1] == "supplier_0,dc_0,gamma,5,0.3,,,,0"
    assert (out / SKUS).read_text().splitlines()[1] == "rice,staples,poisson,20,,,,0.01,0.5,2,1,0,3,1.5,0"


def test_values_the_files_cannot_hold_are_refused_when_written(tmp_path):
    data = two_dc_network()
    data["skus"]["items"][0]["dist"] = "normal"
    data["skus"]["items"][0]["cv"] = 0.7
    network = network_from_dict(data)
    network = dataclasses.replace(network, skus=dataclasses.replace(network.skus, dist=("poisson",
                                                                                        *network.skus.dist[1:])))
    with pytest.raises(SpecError, match=r"network.skus\[0\].cv: 0.7 on a poisson SKU cannot be written"):
        write_network_files(network, tmp_path / "x")


# ---------------------------------------------------------------- bad files: every problem, named

CASES = {
    "unknown kind": (LOCATIONS, 4, "dc_north,warehouse,north,acme,,,5000,,0.5,,,",
                     "locations.csv, row 4, column kind (B): 'warehouse' is not allowed; allowed: supplier, dc, store"),
    "unknown parent": (LOCATIONS, 6, "s1,store,north,dc_nort,dc_south,,,,,,,1.2",
                       "locations.csv, row 6, column parent (D): 'dc_nort' is not a location of locations.csv; "
                       "allowed: a supplier or dc (acme, beta, dc_north, dc_south)"),
    "a store without a dc": (LOCATIONS, 9, "s4,store,south,,,,,,,,,",
                             "locations.csv, row 9, column parent (D): empty: a store needs the supplier or dc that "
                             "supplies it (a store without a dc); allowed: a supplier or dc (acme, beta, dc_north, "
                             "dc_south)"),
    "a store as parent": (LOCATIONS, 9, "s4,store,south,s3,,,,,,,,",
                          "locations.csv, row 9, column parent (D): 's3' is a store, and stores supply no location; "
                          "allowed: a supplier or dc (acme, beta, dc_north, dc_south)"),
    "backup is the parent": (LOCATIONS, 6, "s1,store,north,dc_north,dc_north,,,,,,,1.2",
                             "locations.csv, row 6, column backup_parent (E): 'dc_north' is already its parent; "
                             "allowed: another supplier or dc, or empty"),
    "a cycle of backups": (LOCATIONS, 4, "dc_north,dc,north,acme,dc_south,,5000,,0.5,,,",
                           "locations.csv, row 4, column backup_parent (E): a cycle: 'dc_north' is supplied by "
                           "'dc_south' (backup_parent), 'dc_south' by 'dc_north' (backup_parent), so no supplier is "
                           "at its root; allowed: chains of parents and backups that end at a supplier"),
    "duplicate location id": (LOCATIONS, 9, "s3,store,south,dc_south,,,,,,,,",
                              "locations.csv, row 9, column id (A): 's3' is used twice (also locations.csv, row 8, "
                              "column id (A)); allowed: a unique id"),
    "negative factor": (LOCATIONS, 8, "s3,store,south,dc_south,dc_north,,,,-1.5,2,,0.8",
                        "locations.csv, row 8, column holding_factor (I): -1.5 is out of range; allowed: [0, inf]"),
    "a supplier with storage": (LOCATIONS, 3, "beta,supplier,south,,,,1000,,,,,",
                                "locations.csv, row 3, column storage_capacity (G): '1000' does nothing on a supplier: "
                                "a supplier is outside the network (no parent, lane, storage limit or costs); allowed "
                                "on a supplier: empty"),
    "a dc that supplies nothing": (LOCATIONS, 10, "dc_east,dc,east,acme,,,,,,,,",
                                   "locations.csv, row 10, column kind (B): dc 'dc_east' supplies no location; "
                                   "allowed: a dc that some dc or store names as its parent (or kind store)"),
    "lane from an unknown location": (LANES, 7, "mars,s4,deterministic,2,,,,",
                                      "lanes.csv, row 7, column from (A): 'mars' is not a location of locations.csv; "
                                      "allowed: acme, beta, dc_north, dc_south, s1, s2, s3, s4"),
    "lane not from the parent": (LANES, 7, "dc_north,s4,deterministic,2,,,,",
                                 "lanes.csv, row 7, column from (A): 'dc_north' does not supply 's4': locations.csv "
                                 "row 9 names 'dc_south' as its parent (a re-routed location keeps this lane's lead "
                                 "time); allowed: 'dc_south'"),
    "no lane": (LANES, 7, None,
                "locations.csv, row 9, column id (A): no lane into 's4' in lanes.csv; allowed: a row of lanes.csv "
                "with to 's4' and from its parent 'dc_south'"),
    "a spread on a deterministic lane": (LANES, 7, "dc_south,s4,deterministic,2,0.3,,,",
                                         "lanes.csv, row 7, column lead_time_cv (E): 0.3 has no effect on a "
                                         "deterministic lead time; allowed: empty or 0, or lead_time_dist gamma or "
                                         "lognormal"),
    "a history of fractions": (LANES, 3, "beta,dc_south,,,,3 4.5 3,,",
                               "lanes.csv, row 3, column lead_time_history (F): 4.5 not allowed in '3 4.5 3'; allowed: "
                               "whole days >= 0"),
    "non-numeric capacity": (LANES, 5, "dc_north,s2,poisson,1.5,,,lots,",
                             "lanes.csv, row 5, column lane_capacity (G): 'lots' is not a number; allowed: a number "
                             "such as 2.5 (a decimal point, no thousands separator or unit)"),
    "negative cost": (SKUS, 4, "kettle,general,zero_inflated_poisson,0.8,,,0.6,0.05,-2,20,1,12,30",
                      "skus.csv, row 4, column backorder_cost (I): -2 is out of range; allowed: [0, inf]"),
    "non-numeric cost": (SKUS, 2, "rice,staples,poisson,12,,,,cheap,0.5,,1,,3",
                         "skus.csv, row 2, column holding_cost (H): 'cheap' is not a number; allowed: a number such "
                         "as 2.5 (a decimal point, no thousands separator or unit)"),
    "a decimal comma": (SKUS, 2, "rice,staples,poisson,12,,,,0,01,0.5,,1,,3",
                        "skus.csv, row 2, column N: a value beyond the last column; allowed: values under the "
                        "header's 13 columns"),
    "unknown demand law": (SKUS, 3, "milk,fresh,negbin,6,,8,,0.03,1,4,1,0.8,2",
                           "skus.csv, row 3, column dist (C): 'negbin' is not allowed; allowed: poisson, "
                           "negative_binomial, normal, zero_inflated_poisson"),
    "a parameter of another law": (SKUS, 2, "rice,staples,poisson,12,0.3,,,0.01,0.5,,1,,3",
                                   "skus.csv, row 2, column cv (E): only the normal demand law uses cv, this SKU's "
                                   "dist is poisson; allowed: empty (or dist normal)"),
    "duplicate sku": (SKUS, 5, "rice,general,normal,4,0.25,,,0.02,0.7,,0.5,,5",
                      "skus.csv, row 5, column id (A): 'rice' is used twice (also row 2); allowed: a unique SKU id"),
    "no mean": (SKUS, 5, "soap,general,normal,,0.25,,,0.02,0.7,,0.5,,5",
                "skus.csv, row 5, column mean (D): empty; allowed: the mean demand per store-day, a number >= 0"),
    "a price of zero": (SKUS, 5, "soap,general,normal,4,0.25,,,0.02,0.7,,0.5,,0",
                        "skus.csv, row 5, column price (M): 0 is out of range; allowed: [1e-09, inf]"),
    "unknown column": (SKUS, 1, "id,group,dist,mean,cv,dispersion,zero_prob,holding_cost,backorder_cost,"
                                "lost_sale_cost,fixed_order_cost,unit_cost,pack_size",
                       "skus.csv, row 1, column pack_size (M): unknown column; allowed: id, group, dist, mean, cv, "
                       "dispersion, zero_prob, holding_cost, backorder_cost, lost_sale_cost, fixed_order_cost, "
                       "unit_cost, price, price_elasticity, weather_sensitivity"),
    "missing required column": (LOCATIONS, 1, "ID,Kind,Region,Supplied_By,Backup_Parent,Unmet,Storage_Capacity,"
                                              "Supply_Capacity,Holding_Factor,Backorder_Factor,Lost_Sale_Factor,"
                                              "Demand_Scale",
                                "locations.csv, row 1: missing required column parent; required: id, kind, parent"),
    "a column twice": (LANES, 1, "from,to,lead_time_dist,lead_time_mean,lead_time_cv,lead_time_history,"
                                 "lane_capacity,to",
                       "lanes.csv, row 1, column to (H): given twice (columns B and H); allowed: each column once"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_file_names_its_file_row_and_column(tmp_path, case):
    file, row, text, expected = CASES[case]
    folder = copy_fixture(tmp_path)
    set_row(folder, file, row, text)
    found = problems_of(folder)
    assert expected in found, "\n".join(found)


def test_every_problem_is_reported_at_once_in_file_and_row_order(tmp_path):
    folder = copy_fixture(tmp_path)
    set_row(folder, SKUS, 4, "kettle,general,zero_inflated_poisson,0.8,,,0.6,-0.05,2,20,1,12,30")
    set_row(folder, SKUS, 2, "rice,staples,poisson,twelve,,,,0.01,0.5,,1,,3")
    set_row(folder, LANES, 8, "dc_south,nowhere,,,,,,")
    set_row(folder, LOCATIONS, 8, "s3,store,south,dc_south,dc_north,,,,,2,,-0.8")
    set_row(folder, LOCATIONS, 4, "dc_north,hub,north,acme,,,5000,,0.5,,,")
    found = problems_of(folder)
    assert [p.split(":")[0] for p in found] == [  # a location of a bad kind is not blamed on its customers again
        "locations.csv, row 4, column kind (B)",
        "locations.csv, row 8, column demand_scale (L)",
        "lanes.csv, row 8, column to (B)",
        "skus.csv, row 2, column mean (D)",
        "skus.csv, row 4, column holding_cost (H)",
    ]
    assert "'hub' is not allowed" in found[0] and "'twelve' is not a number" in found[3]


def test_missing_files_and_a_bad_settings_file_are_reported_together(tmp_path):
    folder = copy_fixture(tmp_path)
    (folder / LANES).unlink()
    (folder / "network.yaml").write_text("name: demo\nrationing: random\nnodes: []\n")
    assert problems_of(folder) == (
        "lanes.csv: missing; allowed: a CSV file with a header row naming at least from, to",
        "network.yaml: unknown key 'nodes' (locations, lanes and SKUs are the CSV files); allowed: name, rationing, "
        "backlog_first, demand",
        "network.yaml: rationing: 'random' is not allowed; allowed: proportional, priority, fcfs",
    )
    with pytest.raises(NetworkFileError, match="no such folder or file"):
        read_network_files(tmp_path / "nowhere")


def test_the_network_wide_settings_are_checked_as_the_yaml_is(tmp_path):
    folder = copy_fixture(tmp_path)
    settings = "rationing: fcfs\nbacklog_first: false\ndemand: {weekly: [0, 0, 0, 0, 0, 0, 0]}\n"
    (folder / "network.yaml").write_text(settings)
    assert problems_of(folder) == (
        "network.yaml: demand.weekly: all zero; allowed: non-negative numbers with a positive sum",
        "network.yaml: backlog_first: false has no effect with rationing fcfs (first-come-first-served always serves "
        "the oldest orders first); allowed: true, or rationing proportional or priority",
    )
    (folder / "network.yaml").write_text("")  # empty: the defaults, named after the folder
    network = read_network_files(folder)
    assert (network.name, network.rationing, network.demand.weekly) == ("mine", "proportional", (1.0,) * 7)


def test_kinds_and_laws_may_be_written_in_any_case(tmp_path):
    folder = copy_fixture(tmp_path)
    set_row(folder, LOCATIONS, 4, "dc_north,DC,north,acme,,,5000,,0.5,,,")
    set_row(folder, LANES, 7, "dc_south,s4,Deterministic,2,,,,")
    set_row(folder, SKUS, 2, "rice,staples,Poisson,12,,,,0.01,0.5,,1,,3")
    assert network_hash(read_network_files(folder)) == network_hash(read_network_files(CSV_DIR))


def test_a_semicolon_separated_file_is_named_as_such(tmp_path):
    folder = copy_fixture(tmp_path)
    text = (folder / SKUS).read_text().replace(",", ";")
    (folder / SKUS).write_text(text)
    (problem,) = problems_of(folder)
    assert problem.startswith("skus.csv, row 1: one column named 'id;group;dist;") and "separated by semicolons" \
        in problem


def test_a_yaml_file_reports_every_problem_by_key(tmp_path):
    data = yaml.safe_load(YAML_FILE.read_text())
    data["nodes"][2]["kind"] = "warehouse"
    data["nodes"][4]["parent"] = "nowhere"
    data["nodes"][5]["lead_time"]["mean"] = -1
    data["nodes"].append({"name": "s4", "kind": "store", "parent": "dc_south"})
    data["skus"]["items"][0]["mean"] = "x"
    data["rationing"] = "random"
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    assert problems_of(path) == (
        "mine.yaml: nodes[2].kind: 'warehouse' is not allowed; allowed: supplier, dc, store",
        "mine.yaml: nodes[5].lead_time.mean: -1 is out of range; allowed: [0, inf]",
        "mine.yaml: nodes[8].name: 's4' is used twice (also mine.yaml: nodes[7].name); allowed: a unique id",
        "mine.yaml: nodes[4].parent: 'nowhere' is not a location of mine.yaml; allowed: a supplier or dc (acme, "
        "beta, dc_south)",
        "mine.yaml: skus.items[0].mean: expected a number, got 'x'",
        "mine.yaml: rationing: 'random' is not allowed; allowed: proportional, priority, fcfs",
    )


def test_a_yaml_file_may_be_a_generated_layout_and_list_nodes_in_any_order(tmp_path):
    small = tmp_path / "small.yaml"
    shutil.copy(ROOT / "conf" / "network" / "small.yaml", small)
    assert network_hash(read_network_files(small)) == network_hash(conf_network("small"))
    data = yaml.safe_load(YAML_FILE.read_text())
    data["nodes"] = data["nodes"][::-1]
    path = tmp_path / "reversed.yaml"
    path.write_text(yaml.safe_dump(data))
    names = read_network_files(path).node_names
    assert names.index("dc_south") < names.index("s4") and names.index("acme") < names.index("dc_north")


# ---------------------------------------------------------------- configs


def test_a_config_naming_a_path_gets_the_network_itself():
    config = {"horizon": 30, "network": {"path": str(CSV_DIR)}}
    expanded = expand_network_path(config)
    assert expanded["horizon"] == 30 and expanded["network"] == network_data_from_files(CSV_DIR)
    assert network_hash(network_from_dict(expanded["network"])) == network_hash(read_network_files(CSV_DIR))
    assert expand_network_path({"network": {"name": "x", "nodes": []}}) == {"network": {"name": "x", "nodes": []}}
    with pytest.raises(SpecError, match=r"^network.path: required with network=file"):
        expand_network_path({"network": {"path": None}})
    with pytest.raises(SpecError, match=r"^network: unknown key 'layout'"):
        expand_network_path({"network": {"path": str(CSV_DIR), "layout": {}}})
