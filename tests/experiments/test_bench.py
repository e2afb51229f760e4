"""experiments.bench's command line: a bad section argument is one `config error:` line before any work."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("section", ["--forecast", "--forecast-only"])
def test_an_unknown_forecaster_is_one_line_before_any_work(section, monkeypatch, capsys):
    from experiments import bench, bench_forecast

    def started(*args, **kwargs):
        raise AssertionError("the benchmark started before --forecasters was checked")
    monkeypatch.setattr(bench, "run_case", started)
    monkeypatch.setattr(bench_forecast, "main", started)
    with pytest.raises(SystemExit) as stopped:
        bench.main([section, "--quick", "--forecasters", "lstm,lstmx"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"config error: --forecasters: 'lstmx' is not allowed; allowed: .*\btransformer\b.*", err), err
