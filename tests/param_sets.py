"""Parameter sets shared by the lint grid and the equivalence check.

``REFERENCE_SETS`` are the sets of the reference netlists in tests/data/reference_netlists
(tests/test_equivalence.py proves each build equivalent to its netlist; tests/test_lint.py
lints them, and more): adding a set here needs its reference netlist.
"""

from models.params import NONIDEALITIES

REFERENCE_SETS = {
    "32x96": dict(rows=32, cols=96),
    "2x3-ideal": dict(rows=2, cols=3, nonideal=()),
    "16x10-folded-all": dict(rows=16, cols=10, cols_per_cycle=5, nonideal=NONIDEALITIES),
    "8x4-B8-K2": dict(rows=8, cols=4, input_bits=8, comp_rows=2),
    "32x8-K16-all": dict(rows=32, cols=8, comp_rows=16, nonideal=NONIDEALITIES),
    "64x12-P4-gain-table": dict(rows=64, cols=12, cols_per_cycle=4, nonideal=("gain", "table")),
    "5x7-B1-P1-stuck-wide": dict(rows=5, cols=7, input_bits=1, cols_per_cycle=1,
                                 readout_bits=12, acc_bits=32, nonideal=("stuck",)),
    "64x33-K32-offset": dict(rows=64, cols=33, comp_rows=32, cols_per_cycle=11, nonideal=("offset",)),
    "32x12-P4-all-L2": dict(rows=32, cols=12, cols_per_cycle=4, nonideal=NONIDEALITIES, pipeline=2),
    "8x6-L1": dict(rows=8, cols=6, pipeline=1),
    "16x6-all-L3": dict(rows=16, cols=6, nonideal=NONIDEALITIES, pipeline=3),
    "64x9-P9-L4": dict(rows=64, cols=9, pipeline=4),
}
