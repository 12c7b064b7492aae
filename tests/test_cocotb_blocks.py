"""cocotb testbenches of the four RTL blocks (``verif/cocotb/tb_*.py``) on Icarus and Verilator.

Each block is converted on its own with Amaranth (its ports become the Verilog top's
ports), wrapped in the harness of ``verif/cocotb/harness.py`` and compared with the
golden model under seeded constrained-random stimulus. The default run covers every
block on Icarus (which compiles in about a second) with two parameter sets each; the
full matrix (every block, every parameter set of ``verif.runner.PARAM_SETS``, both
simulators) is marked ``slow`` (``make test-all``). A failure prints the seed, the
parameter set and the command that re-runs it.
"""

import pytest

from verif import runner

MODULES = {
    "compute_array": "verif.cocotb.tb_compute_array",
    "shift_accumulate": "verif.cocotb.tb_shift_accumulate",
    "batchnorm_binarize": "verif.cocotb.tb_batchnorm_binarize",
    "calibration_fsm": "verif.cocotb.tb_calibration_fsm",
}

#: The default subset: two parameter sets per block, together covering folded and
#: unfolded lanes, non-power-of-two columns, B = 1 and 8, K = 2 and 16, one row and 64,
#: and every non-ideality.
DEFAULT = [
    ("compute_array", "24x10-P5-B8-all"),
    ("compute_array", "64x7-K16-all"),
    ("shift_accumulate", "24x10-P5-B8-all"),
    ("shift_accumulate", "16x12-P4-B1-K2"),
    ("batchnorm_binarize", "24x10-P5-B8-all"),
    ("batchnorm_binarize", "1x1-B1-K2-all"),
    ("calibration_fsm", "16x12-P4-B1-K2"),
    ("calibration_fsm", "64x7-K16-all"),
]
FULL = [(kind, ps, sim) for sim in runner.SIMULATORS for kind in MODULES
        for ps in runner.PARAM_SETS
        if (kind, ps, sim) not in {(k, p, "icarus") for k, p in DEFAULT}
        and not runner.PARAM_SETS[ps].get("pipeline")]


def _run(kind, paramset, sim, seed):
    result = runner.collect(runner.design(kind, paramset), sim, MODULES[kind], seed=seed)
    assert result.tests >= 1
    print(f"{kind} {paramset} on {sim}: {result.tests} cocotb tests passed in {result.seconds:.1f} s")


@pytest.mark.parametrize("kind,paramset", DEFAULT, ids=[f"{k}-{p}" for k, p in DEFAULT])
def test_block_icarus(kind, paramset, seed):
    _run(kind, paramset, "icarus", seed)


@pytest.mark.slow
@pytest.mark.parametrize("kind,paramset,sim", FULL, ids=[f"{k}-{p}-{s}" for k, p, s in FULL])
def test_block_matrix(kind, paramset, sim, seed):
    _run(kind, paramset, sim, seed)


def test_default_subset_covers_the_plan():
    """The default parameter sets hit the corners the verification plan names."""
    from models.params import MacroParams
    ps = {name: MacroParams(**runner.PARAM_SETS[name]) for _, name in DEFAULT}
    assert {p.input_bits for p in ps.values()} >= {1, 8}
    assert {p.comp_rows for p in ps.values()} >= {2, 16}
    assert any(p.cols_per_cycle < p.cols for p in ps.values())
    assert any(p.cols & (p.cols - 1) for p in ps.values())
    assert any(len(p.nonideal) == 5 for p in ps.values())
    everything = {MacroParams(**kw) for kw in runner.PARAM_SETS.values()}
    assert any((p.rows, p.cols) == (32, 96) for p in everything)
    assert len(everything) >= 6
