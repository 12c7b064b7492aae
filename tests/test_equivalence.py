"""The macro's emitted netlist is sequentially equivalent to the committed reference.

``tests/data/reference_netlists/KEY.v.gz`` holds the Verilog that ``python -m gen`` emitted
for each parameter set below at the commit named in that folder's README. Each test generates the
same set from the current code and proves the two equivalent with Yosys
(:func:`verif.equivalence.prove_equivalent`: every same-named wire and every output
paired and proven by ``equiv_simple``/``equiv_induct``). A change that alters what the
macro computes, at any cycle, fails here; a change that only moves logic between
components or renames it passes.

The sets are those of ``tests/test_lint.py`` (every pipeline depth L = 0..4, folded and
fully parallel, every non-ideality and none) and, behind ``slow``, the two FPGA targets.
"""

import gzip
import time

import pytest

from amaranth.hdl import Fragment

from gen import emit
from models.params import CONTRACT_VERSION, MacroParams
from rtl.cim_macro import CimMacro
from rtl.replicas import REPLICA_ATTR
from verif.equivalence import pairing_renames, prove_equivalent
from tests.conftest import ROOT
from tests.param_sets import REFERENCE_SETS

REFERENCES = ROOT / "tests" / "data" / "reference_netlists"

#: Parameter sets of the reference netlists.
SETS = REFERENCE_SETS
#: The FPGA targets: the fully parallel ECP5 build and the folded iCE40 build.
FPGA_SETS = {
    "32x96-P96-L4": dict(rows=32, cols=96, pipeline=4),
    "32x96-P4-L2": dict(rows=32, cols=96, cols_per_cycle=4, pipeline=2),
}
#: Register bits (memories apart) and cim_replica copies of each set at the reference
#: commit, from the elaborated design (``registers_and_replicas``).
REFERENCE_REGISTERS = {
    "32x96": (2503, 36), "2x3-ideal": (153, 0), "16x10-folded-all": (310, 0),
    "8x4-B8-K2": (244, 0), "32x8-K16-all": (461, 0), "64x12-P4-gain-table": (588, 0),
    "5x7-B1-P1-stuck-wide": (144, 0), "64x33-K32-offset": (861, 6),
    "32x12-P4-all-L2": (961, 0), "8x6-L1": (595, 0), "16x6-all-L3": (1003, 0),
    "64x9-P9-L4": (4433, 73), "32x96-P96-L4": (22438, 406), "32x96-P4-L2": (1099, 0),
}
#: In the default run: one set per pipeline depth, the small ones.
DEFAULT_RUN = {"2x3-ideal", "8x6-L1", "32x12-P4-all-L2", "16x6-all-L3", "64x9-P9-L4"}


def _params():
    for key in sorted(SETS):
        marks = () if key in DEFAULT_RUN else (pytest.mark.slow,)
        yield pytest.param(key, SETS[key], marks=marks, id=key)
    for key in sorted(FPGA_SETS):
        yield pytest.param(key, FPGA_SETS[key], marks=(pytest.mark.slow,), id=key)


def test_references_cover_every_pipeline_depth():
    depths = {MacroParams(**kw).pipeline for kw in SETS.values()}
    assert depths == {0, 1, 2, 3, 4}
    assert {MacroParams(**SETS[k]).pipeline for k in DEFAULT_RUN} == depths
    for key in [*SETS, *FPGA_SETS]:
        assert (REFERENCES / f"{key}.v.gz").is_file(), key


def registers_and_replicas(p):
    """Register bits (every signal a clocked statement assigns) and registers marked as
    copies (``rtl.replicas.REPLICA_ATTR``) of ``CimMacro(p)``."""
    def walk(fragment):
        yield fragment
        for sub, _, _ in fragment.subfragments:
            yield from walk(sub)

    registers = {}
    for fragment in walk(Fragment.get(CimMacro(p), None)):
        for statement in fragment.statements.get("sync", ()):
            for signal in statement._lhs_signals():
                registers[id(signal)] = signal
    return (sum(len(s) for s in registers.values()),
            sum(REPLICA_ATTR in s.attrs for s in registers.values()))


@pytest.mark.parametrize("key", [pytest.param(k, marks=(pytest.mark.slow,) if k in FPGA_SETS else ())
                                 for k in sorted(REFERENCE_REGISTERS)])
def test_register_bits_and_copies_unchanged(key):
    assert registers_and_replicas(MacroParams(**{**SETS, **FPGA_SETS}[key])) == \
        REFERENCE_REGISTERS[key]


def test_pairing_prefers_declared_registers_and_moves_others_out_of_the_way():
    renames, unpaired = pairing_renames(
        ["error", "array.a_q1", "n", "plane", "busy"],
        ["front.error", "lanes.array.a_q1", "calibration.n", "x.n", "sequencer.plane", "new_reg",
         "sequencer.busy"],
        ["plane", "lanes.flags", "busy"], {"busy", "wb__adr"},
        {"plane", "$8", "busy", "wb__adr", "lanes.flags"}, {"$8", "busy", "wb__adr", "plane"})
    assert renames == {"front.error": "error", "lanes.array.a_q1": "array.a_q1",
                       "calibration.n": "n", "sequencer.plane": "plane",
                       "plane": "plane__other", "$8": "$8__other"}
    assert unpaired == ["x.n", "new_reg", "sequencer.busy"]


@pytest.mark.parametrize("key, kw", list(_params()))
def test_netlist_equivalent_to_reference(key, kw, tmp_path):
    reference = tmp_path / "reference.v"
    reference.write_bytes(gzip.decompress((REFERENCES / f"{key}.v.gz").read_bytes()))
    candidate = tmp_path / "candidate.v"
    candidate.write_text(emit.generate(MacroParams(**kw)).verilog)
    start = time.monotonic()
    result = prove_equivalent(reference, candidate, "cim_macro", workdir=tmp_path / "work")
    print(f"{key}: {result.pairs} pairs, {result.renamed} registers renamed, "
          f"{len(result.unpaired)} unpaired, {result.unproven} unproven, "
          f"{time.monotonic() - start:.1f} s")
    assert result.equivalent, (f"{result.unproven} of {result.pairs} pairs unproven; "
                               f"unpaired registers: {result.unpaired[:20]}\n"
                               + "\n".join(line for line in result.log.splitlines()
                                           if "Unproven" in line)[:4000])


def test_a_changed_netlist_fails(tmp_path):
    """The proof can fail: the 2x3 macro with another VERSION register value."""
    reference = tmp_path / "reference.v"
    reference.write_bytes(gzip.decompress((REFERENCES / "2x3-ideal.v.gz").read_bytes()))
    text = emit.generate(MacroParams(**SETS["2x3-ideal"])).verilog
    version = CONTRACT_VERSION[0] << 16 | CONTRACT_VERSION[1]
    changed = text.replace(f"32'd{version};", f"32'd{version ^ 1};")
    assert changed != text
    candidate = tmp_path / "candidate.v"
    candidate.write_text(changed)
    result = prove_equivalent(reference, candidate, "cim_macro", workdir=tmp_path / "work")
    assert not result.equivalent and result.unproven >= 1
