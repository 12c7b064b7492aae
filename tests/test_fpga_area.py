"""fpga/area.py and ``python -m fpga area``: the cells of each part of a build."""

import json

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Elaboratable, Module, Signal

from fpga import __main__ as fpga_cli
from fpga.area import LUT_MAPPING, AreaError, Part, part_cells, parts, yosys_script
from fpga.build import tool_environment

FLOW = """# Automatically generated
read_rtlil top.il
proc
    synth_ecp5 -run :map_luts -top top
techmap -map +/lattice/latches_map.v
abc -lut 4 -dress
clean
synth_ecp5 -run map_cells:
write_json top.json"""


def test_script_keeps_the_hierarchy_and_writes_the_statistics():
    lines = yosys_script(FLOW, "p.json").splitlines()
    assert lines[3].split() == ["synth_ecp5", "-noflatten", "-run", ":map_luts", "-top", "top"]
    assert lines[7] == "synth_ecp5 -noflatten -run map_cells:"
    assert "write_json top.json" not in lines and lines[-1] == "tee -q -o p.json stat -json"
    with pytest.raises(AreaError, match="no synth_"):
        yosys_script("read_rtlil top.il\nwrite_json top.json")


def test_a_pass_that_maps_its_own_luts_is_split_around_classic_abc():
    lines = yosys_script("read_rtlil top.il\nsynth_ice40 -dsp -top top\nwrite_json x").splitlines()
    assert lines[1] == "synth_ice40 -noflatten -dsp -top top -run :map_luts"
    assert lines[2:-2] == LUT_MAPPING["synth_ice40"] and "abc -lut 4 -dress" in lines
    assert lines[-2] == "synth_ice40 -noflatten -dsp -top top -run map_cells:"
    with pytest.raises(AreaError, match="synth_xilinx; known: synth_ecp5, synth_ice40"):
        yosys_script("synth_xilinx -top top")


def test_parts_sum_their_submodules():
    stat = {"modules": {
        "\\top": {"num_cells_by_type": {"LUT4": 1, "top.a": 1, "top.b": 1}},
        "\\top.a": {"num_cells_by_type": {"LUT4": 2, "CCU2C": 3, "top.a.c": 1}},
        "\\top.a.c": {"num_cells_by_type": {"TRELLIS_FF": 4}},
        "\\top.b": {"num_cells_by_type": {"DP16KD": 1, "SB_DFFE": 5}},
    }}
    cells = part_cells(stat)
    assert cells["top.a"] == {"LUT4": 2, "CCU2C": 3, "TRELLIS_FF": 4}
    assert cells["top"] == {"LUT4": 3, "CCU2C": 3, "TRELLIS_FF": 4, "DP16KD": 1, "SB_DFFE": 5}
    top = Part("top", 0, cells["top"])
    assert (top.count("ecp5", "logic"), top.count("ecp5", "ffs"),
            top.count("ecp5", "block_ram")) == (9, 4, 1)
    assert top.count("ice40", "ffs") == 5


class _Adder(Elaboratable):
    def __init__(self):
        self.a, self.b, self.y = Signal(8), Signal(8), Signal(9)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.a + self.b)
        return m


class _Top(Elaboratable):
    def __init__(self):
        self.a, self.b, self.q = Signal(8), Signal(8), Signal(9)

    def elaborate(self, platform):
        m = Module()
        m.submodules.adder = adder = _Adder()
        m.d.comb += [adder.a.eq(self.a), adder.b.eq(self.b)]
        m.d.sync += self.q.eq(adder.y)
        return m


def _build_dir(tmp_path, il_text, family="ecp5"):
    (tmp_path / "work").mkdir(parents=True)
    (tmp_path / "work" / "top.ys").write_text(FLOW)
    (tmp_path / "work" / "top.il").write_text(il_text)
    (tmp_path / "report.json").write_text(json.dumps({"family": family}))
    return tmp_path


def test_a_design_splits_into_its_parts(tmp_path):
    top = _Top()
    d = _build_dir(tmp_path, rtlil.convert(top, name="top", ports=[top.a, top.b, top.q]))
    before = sorted(p.name for p in d.rglob("*"))
    family, found = parts(d, env=tool_environment())
    by_name = {p.name: p for p in found}
    assert family == "ecp5" and set(by_name) == {"top", "top.adder"}
    # The adder's carry chain is its own; the register is the top's.
    assert by_name["top.adder"].count("ecp5", "logic") > 0
    assert by_name["top.adder"].count("ecp5", "ffs") == 0
    assert by_name["top"].count("ecp5", "ffs") == 9
    assert sorted(p.name for p in d.rglob("*")) == before


def test_command_prints_a_table_and_json(tmp_path, capsys):
    top = _Top()
    d = _build_dir(tmp_path, rtlil.convert(top, name="top", ports=[top.a, top.b, top.q]))
    assert fpga_cli.main(["area", str(d), "--depth", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| part | logic | ffs |")
    assert [l.split("|")[1].strip() for l in lines[2:-1]] == ["top"]
    result = json.loads(lines[-1])
    assert result["family"] == "ecp5" and result["parts"]["top"]["ffs"] == 9
    assert result["parts"]["top.adder"]["logic"] > 0


ICE40_FLOW = """read_rtlil top.il
proc
synth_ice40 -top top -dsp -device u
write_json top.json"""


def test_ice40_build_counts_its_cells(tmp_path):
    top = _Top()
    d = _build_dir(tmp_path, rtlil.convert(top, name="top", ports=[top.a, top.b, top.q]),
                   family="ice40")
    (d / "work" / "top.ys").write_text(ICE40_FLOW)
    family, found = parts(d, env=tool_environment())
    by_name = {p.name: p for p in found}
    assert family == "ice40"
    # The 9-bit register: SB_DFF cells of the top; the adder: LUTs (its carry beside them).
    assert by_name["top"].count("ice40", "ffs") == 9
    assert by_name["top.adder"].count("ice40", "logic") > 0
    assert by_name["top.adder"].count("ice40", "ffs") == 0
