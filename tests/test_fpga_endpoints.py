"""fpga/endpoints.py and ``python -m fpga endpoints``: failing flip-flops by register."""

import json

import pytest

from fpga.__main__ import main
from fpga.endpoints import EndpointsError, group_endpoints, load_report


def _report(**extra):
    """A small report in nextpnr's --detailed-timing-report form."""
    def end(cell, port, hi):
        return {"cell": cell, "port": port, "delay": [hi / 3, hi], "event": "posedge clk"}
    nets = [
        {"net": "a", "driver": "x", "port": "F", "endpoints": [
            end("core.macro.input_0_1_TRELLIS_FF_Q_7", "CE", 12.5),
            end("core.macro.input_0_1_TRELLIS_FF_Q", "CE", 9.0),
            end("core.macro.plane_value_b3", "M", 11.0)]},
        # The same endpoint through a second net: the later arrival counts.
        {"net": "b", "driver": "y", "port": "F", "endpoints": [
            end("core.macro.input_0_1_TRELLIS_FF_Q", "CE", 10.5),
            end("core.macro.busy_TRELLIS_FF_Q", "DI", 4.0)]},
        {"net": "c", "driver": "z", "port": "F", "endpoints": []},
    ]
    return {"fmax": {"clk": {"achieved": 80.0, "constraint": 100}},
            "detailed_net_timings": nets, **extra}


def test_groups_by_register_with_the_worst_arrival():
    groups = group_endpoints(_report(), 10.0)
    table = {g.name: (g.failing, g.total, g.worst_ns) for g in groups}
    assert table == {"core.macro.input_#_#.CE": (2, 2, 12.5),
                     "core.macro.plane_value_b#.M": (1, 1, 11.0),
                     "core.macro.busy.DI": (0, 1, 4.0)}
    assert [g.name for g in groups][0] == "core.macro.input_#_#.CE"
    # A longer period: nothing fails.
    assert sum(g.failing for g in group_endpoints(_report(), 13.0)) == 0


@pytest.mark.parametrize("period", [0, -1.0, float("nan"), "10"])
def test_rejects_bad_periods(period):
    with pytest.raises(EndpointsError, match="period must be a positive number of ns"):
        group_endpoints(_report(), period)


def test_load_report_errors(tmp_path):
    with pytest.raises(EndpointsError, match="no report at"):
        load_report(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(EndpointsError, match="is not a JSON report"):
        load_report(bad)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"fmax": {}}))
    with pytest.raises(EndpointsError, match="no per-net timing .* --detailed-timing"):
        load_report(plain)


def test_cli(tmp_path, capsys):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_report()))
    assert main(["endpoints", str(path)]) == 1          # period from the 100 MHz constraint
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "3 of 4 flip-flop endpoints arrive later than 10 ns (100.0 MHz)"
    assert len(out) == 3 and "input_#_#.CE" in out[1] and "busy" not in "".join(out)
    assert main(["endpoints", str(path), "--period", "20", "--all"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("0 of 4") and len(out) == 4
    assert main(["endpoints", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fpga: error: argument REPORT: ") and "nope.json: no such file" in err
    assert err.count("\n") == 1
    path.write_text(json.dumps(_report(fmax={})))
    assert main(["endpoints", str(path)]) == 2
    assert "names no clock constraint; pass --period NS" in capsys.readouterr().err
