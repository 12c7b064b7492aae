"""cocotb testbench of the whole macro (``verif/cocotb/tb_cim_macro.py``) on Icarus and Verilator.

Every cocotb test of the testbench runs in a fresh simulator (the memories power up at
their reset values; ``rst`` resets registers only), against the register-level golden
model: reset state, random bus traffic with accesses during commands, every bus error,
the calibration sweep over every offset, and random chip instances with every built
non-ideality through the host driver. The default run covers both simulators on a
representative subset (32x96 and 64x7 with K = 16 on Verilator; the tiny all-feature
macro, a folded B = 1, K = 2 one and a folded B = 8 all-feature one on Icarus); the full matrix (every parameter set on
both simulators) is marked ``slow``. A failure prints the seed, the parameter set and
the command that re-runs it (add ``WAVES=1`` for an FST waveform).
"""

import pytest

from verif import runner

MODULE = "verif.cocotb.tb_cim_macro"
TESTS = ["reset_state", "random_traffic", "bus_errors", "calibration_sweep", "chip_instances",
         "accumulator_saturation"]
DEFAULT = [("verilator", "32x96"), ("verilator", "64x7-K16-all"), ("verilator", "16x12-P4-all-L2"),
           ("verilator", "32x96-L1"),
           ("icarus", "2x3-all"), ("icarus", "16x12-P4-B1-K2"), ("icarus", "24x10-P5-B8-all")]
FULL = [(sim, ps) for sim in runner.SIMULATORS for ps in runner.PARAM_SETS
        if (sim, ps) not in DEFAULT]


def _run(sim, paramset, test, seed, args=None):
    result = runner.collect(runner.design("cim_macro", paramset), sim, MODULE, testcase=test,
                            seed=seed, args=args, label=test)
    assert result.tests == 1
    print(f"{test} on {sim} {paramset}: passed in {result.seconds:.1f} s")


@pytest.mark.parametrize("test", TESTS)
@pytest.mark.parametrize("sim,paramset", DEFAULT, ids=[f"{s}-{p}" for s, p in DEFAULT])
def test_macro(sim, paramset, test, seed):
    _run(sim, paramset, test, seed)


@pytest.mark.slow
@pytest.mark.parametrize("test", TESTS)
@pytest.mark.parametrize("sim,paramset", FULL, ids=[f"{s}-{p}" for s, p in FULL])
def test_macro_matrix(sim, paramset, test, seed):
    _run(sim, paramset, test, seed, args=dict(accesses=3000, chips=4, runs=8))


def test_default_runs_both_simulators():
    assert {sim for sim, _ in DEFAULT} == set(runner.SIMULATORS)
    assert any(ps == "32x96" for _, ps in DEFAULT)


def test_harness_is_lint_clean(tmp_path):
    """The generated harness and the burst engine pass the project's Verilator lint policy."""
    import subprocess

    from verif.cocotb import harness
    from verif.toolchain import require_tool, tool_env

    d = runner.design("cim_macro", "2x3-all")
    text = runner.verilog_of(d)
    ports = harness.parse_ports(text, d.kind)
    assert {p.name for p in ports} >= {"clk", "rst", "wb__adr", "wb__ack", "busy"}
    probes = harness.find_probes(text, d.kind, runner._MACRO_PROBES)
    assert set(probes) == {"phase", "cal_state"}, "the coverage probes lost their registers"
    (tmp_path / "design.v").write_text(text)
    (tmp_path / "tb_top.v").write_text(harness.wrapper(d.kind, ports, engine_addr_bits=d.params.addr_bits,
                                                      probes=probes))
    env = tool_env()
    flags = ["--lint-only", "-Wall", "-Wno-UNUSEDSIGNAL", "-Wno-UNUSEDPARAM", "-Wno-DECLFILENAME",
             "-Wno-PROCASSINIT", "--timing", "--top-module", "tb_top"]
    result = subprocess.run([require_tool("verilator", env), *flags, str(tmp_path / "design.v"),
                             str(tmp_path / "tb_top.v"), str(harness.ENGINE_SOURCE)],
                            env=env, capture_output=True, text=True, timeout=120)
    report = result.stdout + result.stderr
    assert result.returncode == 0 and "%Warning" not in report and "%Error" not in report, report
