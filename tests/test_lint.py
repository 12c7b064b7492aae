"""Generated Verilog is lint-clean in Verilator, and its manifest describes it.

A grid of parameter sets covering the corners of the generator (tiny, the paper's 32x96,
non-power-of-two and folded columns, 8 input bits, K = 2 and 16, two row chunks, every
non-ideality and none) is generated with the same function the command line uses,
linted with ``verilator --lint-only -Wall``, and its manifest is checked against
``models.params`` and against the Verilog's own port declarations.
"""

import functools
import hashlib
import json
import re
import subprocess

import pytest

from gen import emit
from models.params import NONIDEALITIES, MacroParams
from verif.toolchain import require_tool, tool_env
from tests.param_sets import REFERENCE_SETS

GRID = {
    **REFERENCE_SETS,
    "12x18-B3-L4-counters": dict(rows=12, cols=18, input_bits=3, pipeline=4, counters=True),
    "6x5-all-counters": dict(rows=6, cols=5, nonideal=NONIDEALITIES, counters=True),
}

# PROCASSINIT: Amaranth gives every register its reset value as a declaration initialiser
# (the FPGA power-on value) and also assigns it in the clocked process; that is by design,
# so this one -Wall warning is off besides the three the project always allows.
LINT_FLAGS = ["--lint-only", "-Wall", "-Wno-UNUSEDSIGNAL", "-Wno-UNUSEDPARAM",
              "-Wno-DECLFILENAME", "-Wno-PROCASSINIT"]


@functools.cache
def generated(key):
    return emit.generate(MacroParams(**GRID[key]))


@pytest.fixture(params=sorted(GRID), scope="module")
def build(request, tmp_path_factory):
    g = generated(request.param)
    out = tmp_path_factory.mktemp(request.param)
    emit.write_outputs(out, {f"{g.params.name}.v": g.verilog, f"{g.params.name}.json": g.manifest_text})
    return g, out


def test_grid_covers_the_corners():
    ps = [MacroParams(**kw) for kw in GRID.values()]
    assert any((p.rows, p.cols) == (32, 96) and p.cols_per_cycle == 96 for p in ps)
    assert any((p.rows, p.cols) == (2, 3) for p in ps)
    assert any(p.cols & (p.cols - 1) for p in ps)              # non-power-of-two columns
    assert any(p.cols_per_cycle < p.cols for p in ps)          # folded
    assert any(p.input_bits == 8 for p in ps)
    assert {2, 16, 32} <= {p.comp_rows for p in ps}
    assert any(p.rows == 64 for p in ps)
    assert any(p.nonideal == set(NONIDEALITIES) for p in ps)
    assert any(not p.nonideal for p in ps)
    assert len(ps) >= 8


def test_verilator_lint_is_clean(build):
    g, out = build
    env = tool_env()
    verilator = require_tool("verilator", env)
    result = subprocess.run([verilator, *LINT_FLAGS, "--top-module", g.params.name,
                             str(out / f"{g.params.name}.v")],
                            env=env, capture_output=True, text=True, timeout=600)
    report = result.stdout + result.stderr
    assert "%Warning" not in report and "%Error" not in report, report
    assert result.returncode == 0, report


# The top's ports by the contract (ARCHITECTURE.md section 7): the flipped Wishbone
# signature, three LED outputs, and the sync domain's clock and reset Amaranth adds.
def contract_ports(p):
    return {
        "clk": ("input", 1), "rst": ("input", 1),
        "wb__adr": ("input", p.addr_bits), "wb__dat_w": ("input", 32), "wb__sel": ("input", 4),
        "wb__cyc": ("input", 1), "wb__stb": ("input", 1), "wb__we": ("input", 1),
        "wb__dat_r": ("output", 32), "wb__ack": ("output", 1),
        "busy": ("output", 1), "done": ("output", 1), "error": ("output", 1),
    }


def declared_ports(verilog, module):
    """Ports of ``module`` as Yosys declares them: name -> (direction, width)."""
    header = re.search(rf"^module {re.escape(module)}\(([^)]*)\);\n(.*?)^endmodule",
                       verilog, re.M | re.S)
    assert header, f"module {module} not found"
    names = [n.strip() for n in header.group(1).split(",")]
    ports = {}
    for direction, msb, lsb, name in re.findall(
            r"^\s*(input|output)\s+(?:\[(\d+):(\d+)\]\s+)?(\S+);", header.group(2), re.M):
        ports[name] = (direction, int(msb) - int(lsb) + 1 if msb else 1)
    assert sorted(ports) == sorted(names), (names, ports)
    return ports


def test_manifest_describes_the_verilog(build):
    g, out = build
    p = g.params
    m = json.loads((out / f"{p.name}.json").read_text())
    verilog = (out / f"{p.name}.v").read_text()

    for key in ("format", "manifest_version", "generator", "contract_version", "top", "command",
                "params", "ports", "register_map", "cycles", "verilog"):
        assert key in m, key
    assert m["generator"]["version"] and m["contract_version"] == "1.3"
    assert m["params"] == json.loads(json.dumps(p.to_dict()))
    assert MacroParams.from_dict(m["params"]) == p
    assert m["verilog"]["file"] == f"{p.name}.v"
    assert m["verilog"]["sha256"] == hashlib.sha256(verilog.encode()).hexdigest()

    # Ports: listed ones are exactly the Verilog's, and are the contract's.
    declared = declared_ports(verilog, p.name)
    listed = {port["name"]: (port["direction"], port["width"]) for port in m["ports"]}
    assert listed == declared
    assert listed == contract_ports(p)

    # Register map: addresses agree with models.params.
    regmap = m["register_map"]
    assert regmap["region_shift"] == p.region_shift and regmap["addr_bits"] == p.addr_bits
    expected = {r["name"]: r for r in p.regions()}
    assert [r["name"] for r in regmap["regions"]] == sorted(expected, key=lambda n: expected[n]["region"])
    for r in regmap["regions"]:
        assert r["base"] == expected[r["name"]]["region"] << p.region_shift
        assert [(f["name"], f["bits"]) for f in r["fields"]] == [tuple(f) for f in expected[r["name"]]["fields"]]
    assert [(c["name"], c["address"]) for c in regmap["csrs"]] == [(c["name"], c["offset"]) for c in p.csrs()]
    assert m["cycles"]["calibrate"]["cycles"] == p.calibrate_cycles()
    assert m["cycles"]["run"]["planes"][str(p.input_bits)] == p.run_cycles(p.input_bits)
