"""Tests of the numpy golden model ``models/macro.py`` against docs/ARCHITECTURE.md.

Expected numbers in the worked examples are derived by hand from the text of the
contract (the derivation is written next to each); the exhaustive and random tests
compare against ``ref_readout``/``ref_calibrate`` below, a second, scalar, pure-Python
transcription of sections 1 and 4 that shares no code with the model.
"""

import itertools

import numpy as np
import pytest

from models import macro
from models.macro import (
    MacroModel, binarize, calibrate, comp_value, ideal_matvec, readout, run_tile,
    shift_accumulate, thermometer, word_address,
)
from models.params import CSR, NONIDEALITIES, ErrCode, MacroParams, Op, Region, Status

ALL = NONIDEALITIES

# The parameter sets the brief asks for, by name (used in ids).
PARAM_SETS = {
    "2x3": MacroParams(rows=2, cols=3),
    "32x96": MacroParams(rows=32, cols=96),
    "64x10_all": MacroParams(rows=64, cols=10, nonideal=ALL),
    "16x12_P4": MacroParams(rows=16, cols=12, cols_per_cycle=4),
    "32x8_B8": MacroParams(rows=32, cols=8, input_bits=8),
    "8x5_K2": MacroParams(rows=8, cols=5, comp_rows=2, nonideal=ALL),
    "20x6_K16_P2": MacroParams(rows=20, cols=6, comp_rows=16, cols_per_cycle=2, nonideal=ALL),
    "3x4_none": MacroParams(rows=3, cols=4, nonideal=()),
}


@pytest.fixture(params=list(PARAM_SETS), ids=list(PARAM_SETS))
def p(request):
    return PARAM_SETS[request.param]


# --- an independent scalar transcription of the contract -------------------------------

def ref_readout(W, K, xs, ws, n, offset=0, gain=None, sat=None, qshift=0, table=None,
                mask=None, value=None):
    """Section 1 for one column, Python ints only."""
    M = 2 ** (W - 1) - 1
    if mask is not None:
        ws = [value[r] if mask[r] else ws[r] for r in range(len(ws))]
    s = sum(x * (2 * w - 1) for x, w in zip(xs, ws))
    a = s + (2 * n - K) + offset
    g = (a * gain + 32) // 64 if gain is not None else a
    L = sat if sat is not None else M
    k = max(-L, min(L, g))
    t = table[k % 2 ** W] if table is not None else k
    q = min(qshift, W - 1)
    return (t // 2 ** q) * 2 ** q


def ref_calibrate(W, K, **chain):
    """Section 4's pseudo-code for one column, reads through ref_readout with s = 0."""
    def read(n):
        return ref_readout(W, K, [], [], n, **chain)
    n = K // 2
    moves = []
    d = K // 4
    while d >= 1:
        moves.append(d)
        d //= 2
    moves.append(1)
    for d in moves:
        n = n - d if read(n) >= 0 else n + d
    v = read(n)
    return n, int((n == 0 and v >= 0) or (n == K and v < 0))


def identity_table(W):
    return np.array([i - 2 ** W if i >= 2 ** (W - 1) else i for i in range(2 ** W)])


# --- comp_value / thermometer -----------------------------------------------------------

def test_comp_value_and_thermometer_by_hand():
    p = MacroParams(rows=4, cols=3, comp_rows=4)
    # 0b0000: n = 0 -> -4; 0b1011: n = 3 -> 2; 0xFF: only bits 0..3 count, n = 4 -> 4.
    assert comp_value(p, [0b0000, 0b1011, 0xFF]).tolist() == [-4, 2, 4]
    assert thermometer(p, [0, 1, 3, 4]).tolist() == [0b0, 0b1, 0b111, 0b1111]
    p32 = MacroParams(rows=4, cols=1, comp_rows=32)
    assert thermometer(p32, 32).item() == 0xFFFF_FFFF
    assert comp_value(p32, 0xFFFF_FFFF).item() == 32


def test_thermometer_round_trip_every_n():
    for K in (2, 4, 8, 16, 32):
        p = MacroParams(rows=1, cols=1, comp_rows=K)
        n = np.arange(K + 1)
        assert (comp_value(p, thermometer(p, n)) == 2 * n - K).all()


# --- section 1: one worked example per step ------------------------------------------

P4 = MacroParams(rows=4, cols=2, comp_rows=4, nonideal=ALL)   # W = 5, M = 15


def test_p4_widths_are_what_the_examples_assume():
    # W = smallest signed width for +-(4 + 4) = 5 bits, M = 2^4 - 1.
    assert (P4.readout_bits, P4.readout_max) == (5, 15)


def test_step1_column_sum_by_hand():
    x = [1, 0, 1, 1]
    w = np.array([[1, 0], [1, 0], [0, 0], [1, 0]])
    # col 0: +1 (r0) + 0 (r1 off) - 1 (r2) + 1 (r3) = 1; col 1: -1 - 1 - 1 = -3.
    assert readout(P4, x, w, [0, 0]).tolist() == [1, -3]


def test_step1_stuck_cells_by_hand():
    x = [1, 0, 1, 1]
    w = np.array([[1, 0], [1, 0], [0, 0], [1, 0]])
    mask = np.array([[0, 0], [0, 1], [1, 0], [0, 1]])
    value = np.array([[0, 0], [0, 1], [1, 0], [0, 1]])
    # col 0: row 2 stuck at 1 -> w_eff = 1,1,1,1 -> s = 1 + 1 + 1 = 3.
    # col 1: rows 1 and 3 stuck at 1 -> w_eff = 0,1,0,1 -> s = -1 + 0 - 1 + 1 = -1
    # (row 1 is stuck but its input is 0, so only row 3 changes the sum).
    assert readout(P4, x, w, [0, 0], stuck_mask=mask, stuck_value=value).tolist() == [3, -1]
    # The stored weight is irrelevant where the mask is set.
    assert readout(P4, x, 1 - w * 0, [0, 0], stuck_mask=np.ones((4, 2), dtype=int),
                   stuck_value=np.zeros((4, 2), dtype=int)).tolist() == [-3, -3]


def test_step2_comp_and_offset_by_hand():
    x = [1, 1, 1, 1]
    w = np.array([[1, 0]] * 4)                     # s = 4 and -4
    comp = comp_value(P4, [0b0111, 0b0000])        # n = 3 -> 2, n = 0 -> -4
    # a = s + comp + offset: 4 + 2 - 5 = 1; -4 - 4 + 3 = -5.
    assert readout(P4, x, w, comp, offset=[-5, 3]).tolist() == [1, -5]


@pytest.mark.parametrize("a, gain, g", [
    (3, 96, 5),     # 3 * 1.5 = 4.5 -> half up -> 5: (288 + 32) / 64 = 5
    (-3, 96, -4),   # -4.5 -> half up -> -4: (-288 + 32) / 64 = -4
    (5, 70, 5),     # 5.47 -> 5: floor(382 / 64) = 5
    (-7, 70, -8),   # -7.66 -> -8: floor(-458 / 64) = floor(-7.16) = -8
    (7, 0, 0),      # gain 0: floor(32 / 64) = 0
    (-1, 32, 0),    # -0.5 -> half up -> 0: floor(0 / 64) = 0
    (-2, 48, -1),   # -1.5 -> -1: floor(-64 / 64) = -1
    (7, 255, 15),   # 27.9 rounds to 28 and then saturates at M = 15
])
def test_step3_gain_round_half_up_by_hand(a, gain, g):
    # s = 0 (no input), comp = 0, so a = offset.
    v = readout(P4, [0] * 4, np.zeros((4, 2), dtype=int), [0, 0], offset=[a, 0], gain=[gain, 64])
    assert v.tolist() == [g, 0]


def test_step4_saturation_by_hand():
    x = [0] * 4
    w = np.zeros((4, 2), dtype=int)
    # a = offset = 9 and -9; SAT = 6 -> 6 and -6.
    assert readout(P4, x, w, [0, 0], offset=[9, -9], sat=6).tolist() == [6, -6]
    # SAT = 0 pins everything to 0.
    assert readout(P4, x, w, [0, 0], offset=[9, -9], sat=0).tolist() == [0, 0]
    # readout not built: clamp to M = 15. a = 12 + 4 (comp) = 16 -> 15, -16 - 4 -> -15
    # (the clamp is symmetric, -2^(W-1) = -16 is not reached by the clamp).
    assert readout(P4, x, w, [4, -4], offset=[12, -16]).tolist() == [15, -15]


def test_step5_table_by_hand():
    table = identity_table(5)
    table[3] = -2           # k = 3 -> index 3
    table[29] = 7           # k = -3 -> index -3 mod 32 = 29
    table[15] = -16         # a negative entry at the most positive k
    v = readout(P4, [0] * 4, np.zeros((4, 2), dtype=int), [0, 0], offset=[3, -3], table=table)
    assert v.tolist() == [-2, 7]
    v = readout(P4, [0] * 4, np.zeros((4, 2), dtype=int), [0, 0], offset=[15, 1], table=table)
    assert v.tolist() == [-16, 1]


def test_step6_quantisation_by_hand():
    x = [0] * 4
    w = np.zeros((4, 2), dtype=int)
    # QSHIFT = 2: 7 -> floor(1.75) * 4 = 4; -3 -> floor(-0.75) * 4 = -4.
    assert readout(P4, x, w, [0, 0], offset=[7, -3], qshift=2).tolist() == [4, -4]
    # -4 and 5: -4 stays, 5 -> 4.
    assert readout(P4, x, w, [0, 0], offset=[-4, 5], qshift=2).tolist() == [-4, 4]
    # QSHIFT = 4 = W - 1: 15 -> 0, -1 -> -16.
    assert readout(P4, x, w, [0, 0], offset=[15, -1], qshift=4).tolist() == [0, -16]
    # QSHIFT = 9 >= W: the shift saturates at W - 1 = 4, same answer (model's reading).
    assert readout(P4, x, w, [0, 0], offset=[15, -1], qshift=9).tolist() == [0, -16]
    # None means no quantisation.
    assert readout(P4, x, w, [0, 0], offset=[7, -3], qshift=None).tolist() == [7, -3]


def test_all_steps_chained_by_hand():
    x = [1, 1, 1, 1]
    w = np.array([[1, 0], [1, 0], [1, 0], [0, 0]])
    mask = np.array([[0, 1], [0, 0], [0, 0], [0, 0]])
    value = np.array([[0, 1], [0, 0], [0, 0], [0, 0]])
    table = identity_table(5)
    table[10] = 12
    table[23] = -13         # -9 mod 32 = 23
    # 1. col 0: w = 1,1,1,0 -> s = 2;  col 1: w_eff = 1,0,0,0 -> s = -2.
    # 2. comp 0b0001 -> n = 1 -> -2;  0b1111 -> n = 4 -> 4.  offset 7, -9.
    #    a = 2 - 2 + 7 = 7;  -2 + 4 - 9 = -7.
    # 3. gain 100: floor((700 + 32) / 64) = floor(11.44) = 11;
    #    gain 80: floor((-560 + 32) / 64) = floor(-8.25) = -9.
    # 4. SAT 10: 11 -> 10; -9 stays.
    # 5. TABLE[10] = 12; TABLE[23] = -13.
    # 6. QSHIFT 2: 12 -> 12; -13 -> floor(-3.25) * 4 = -16.
    v = readout(P4, x, w, comp_value(P4, [0b0001, 0b1111]), offset=[7, -9], gain=[100, 80],
                sat=10, qshift=2, table=table, stuck_mask=mask, stuck_value=value)
    assert v.tolist() == [12, -16]


def test_ideal_readout_equals_s(p, rng):
    """Every non-ideality at its reset value, comp balanced: v = s exactly."""
    m = MacroModel(p)
    planes = rng.integers(0, 2, (50, p.rows))
    w = rng.integers(0, 2, (p.rows, p.cols))
    v = readout(p, planes, w, comp_value(p, m.comp_bits), **m.readout_kwargs())
    s = planes @ (2 * w - 1)
    assert (v == s).all()
    # Extreme inputs: every row on, all weights +1 or all -1, give s = +-R.
    ones = np.ones(p.rows, dtype=int)
    for bit in (0, 1):
        wall = np.full((p.rows, p.cols), bit)
        v = readout(p, ones, wall, comp_value(p, m.comp_bits), **m.readout_kwargs())
        assert (v == (2 * bit - 1) * p.rows).all()


def test_readout_exhaustive_R2_against_reference():
    """R = 2, K = 2: every plane, weight column, stuck mask/value, n and offset."""
    p = MacroParams(rows=2, cols=1, comp_rows=2, nonideal=ALL)
    W, K = p.readout_bits, p.comp_rows
    assert (W, p.readout_max) == (4, 7)
    combos = list(itertools.product(range(4), range(4), range(4), range(4), range(K + 1),
                                    range(-8, 8)))
    bits = lambda v: [(v >> r) & 1 for r in range(2)]
    xs = np.array([bits(c[0]) for c in combos])
    ws = np.array([bits(c[1]) for c in combos])[..., None]
    masks = np.array([bits(c[2]) for c in combos])[..., None]
    values = np.array([bits(c[3]) for c in combos])[..., None]
    comp = np.array([[2 * c[4] - K] for c in combos])
    offset = np.array([[c[5]] for c in combos])
    rng = np.random.default_rng(1)
    settings = [
        dict(gain=64, sat=7, qshift=0, table=identity_table(W)),
        dict(gain=100, sat=5, qshift=1, table=rng.integers(-8, 8, 16)),
        dict(gain=0, sat=0, qshift=3, table=identity_table(W)[::-1].copy()),
        dict(gain=255, sat=7, qshift=15, table=rng.integers(-8, 8, 16)),
        dict(gain=33, sat=3, qshift=2, table=rng.integers(-8, 8, 16)),
    ]
    for st in settings:
        v = readout(p, xs, ws, comp, offset=offset, gain=np.full((len(combos), 1), st["gain"]),
                    sat=st["sat"], qshift=st["qshift"], table=st["table"],
                    stuck_mask=masks, stuck_value=values)[:, 0]
        ref = [ref_readout(W, K, bits(c[0]), bits(c[1]), c[4], offset=c[5], gain=st["gain"],
                           sat=st["sat"], qshift=st["qshift"], table=list(st["table"]),
                           mask=bits(c[2]), value=bits(c[3])) for c in combos]
        assert v.tolist() == ref, st


def test_readout_random_against_reference(rng):
    p = PARAM_SETS["64x10_all"]
    W, K, M = p.readout_bits, p.comp_rows, p.readout_max
    for _ in range(20):
        x = rng.integers(0, 2, p.rows)
        w = rng.integers(0, 2, (p.rows, p.cols))
        mask = (rng.random((p.rows, p.cols)) < 0.1).astype(int)
        value = rng.integers(0, 2, (p.rows, p.cols))
        n = rng.integers(0, K + 1, p.cols)
        offset = rng.integers(-(M + 1), M + 1, p.cols)
        gain = rng.integers(0, 256, p.cols)
        sat = int(rng.integers(0, M + 1))
        qshift = int(rng.integers(0, 16))
        table = rng.integers(-(M + 1), M + 1, 2 ** W)
        v = readout(p, x, w, 2 * n - K, offset=offset, gain=gain, sat=sat, qshift=qshift,
                    table=table, stuck_mask=mask, stuck_value=value)
        ref = [ref_readout(W, K, list(x), list(w[:, c]), int(n[c]), int(offset[c]), int(gain[c]),
                           sat, qshift, list(table), list(mask[:, c]), list(value[:, c]))
               for c in range(p.cols)]
        assert v.tolist() == ref
        assert v.min() >= -(M + 1) and v.max() <= M


def test_readout_broadcasts_over_chips_and_images(rng):
    """(chips, images) batches give what a loop over chips gives."""
    p = PARAM_SETS["20x6_K16_P2"]
    W, M, K = p.readout_bits, p.readout_max, p.comp_rows
    chips, images = 3, 7
    planes = rng.integers(0, 2, (images, p.rows))
    w = rng.integers(0, 2, (chips, 1, p.rows, p.cols))
    comp = 2 * rng.integers(0, K + 1, (chips, 1, p.cols)) - K
    offset = rng.integers(-5, 6, (chips, 1, p.cols))
    gain = rng.integers(40, 90, (chips, 1, p.cols))
    sat = rng.integers(0, M + 1, (chips, 1))
    qshift = rng.integers(0, 4, (chips, 1))
    table = rng.integers(-(M + 1), M + 1, (chips, 1, 2 ** W))
    mask = rng.integers(0, 2, (chips, 1, p.rows, p.cols))
    value = rng.integers(0, 2, (chips, 1, p.rows, p.cols))
    v = readout(p, planes, w, comp, offset=offset, gain=gain, sat=sat, qshift=qshift,
                table=table, stuck_mask=mask, stuck_value=value)
    assert v.shape == (chips, images, p.cols)
    for c in range(chips):
        one = readout(p, planes, w[c, 0], comp[c, 0], offset=offset[c, 0], gain=gain[c, 0],
                      sat=int(sat[c, 0]), qshift=int(qshift[c, 0]), table=table[c, 0],
                      stuck_mask=mask[c, 0], stuck_value=value[c, 0])
        assert (v[c] == one).all()


def test_readout_rejects_bad_arguments():
    x, w = [0] * 4, np.zeros((4, 2), dtype=int)
    with pytest.raises(TypeError, match="integer array"):
        readout(P4, [0.5] * 4, w, [0, 0])
    with pytest.raises(ValueError, match="plane must be 0 or 1, not 2"):
        readout(P4, [2, 0, 0, 0], w, [0, 0])
    with pytest.raises(ValueError, match="4 rows"):
        readout(P4, [0] * 3, w, [0, 0])
    with pytest.raises(ValueError, match="comp must be"):
        readout(P4, x, w, [1, 0])
    with pytest.raises(ValueError, match="offset must be a signed 5-bit"):
        readout(P4, x, w, [0, 0], offset=[16, 0])
    with pytest.raises(ValueError, match="gain must be"):
        readout(P4, x, w, [0, 0], gain=[256, 0])
    with pytest.raises(ValueError, match="sat must be in"):
        readout(P4, x, w, [0, 0], sat=16)
    with pytest.raises(ValueError, match="qshift must be in"):
        readout(P4, x, w, [0, 0], qshift=16)
    with pytest.raises(ValueError, match="table must have 32"):
        readout(P4, x, w, [0, 0], table=np.zeros(16, dtype=int))
    with pytest.raises(ValueError, match="together"):
        readout(P4, x, w, [0, 0], stuck_mask=w)
    with pytest.raises(TypeError, match="MacroParams"):
        readout(None, x, w, [0, 0])


# --- section 2: shift-accumulate ------------------------------------------------------

def test_shift_accumulate_by_hand():
    p = MacroParams(rows=2, cols=1, input_bits=3)                 # W = 5, A = 12
    v = np.array([[3], [-2], [5]])                                # planes 0, 1, 2
    # tile = 3 + 2 * (-2) + 4 * 5 = 19
    acc, sat = shift_accumulate(p, v)
    assert acc.tolist() == [19] and sat.tolist() == [False]
    acc, sat = shift_accumulate(p, v, acc_prev=[100], accumulate=True)
    assert acc.tolist() == [119] and sat.tolist() == [False]
    # acc_prev is ignored without ACCUMULATE.
    acc, _ = shift_accumulate(p, v, acc_prev=[100], accumulate=False)
    assert acc.tolist() == [19]


def test_shift_accumulate_saturates_by_hand():
    p = MacroParams(rows=2, cols=4, input_bits=1, acc_bits=6)     # W = 5, A = 6: [-32, 31]
    assert (p.readout_bits, p.acc_bits) == (5, 6)
    v = np.array([[15, -16, 11, -2]])
    acc, sat = shift_accumulate(p, v, acc_prev=[20, -30, 20, -30], accumulate=True)
    # 35 -> 31, -46 -> -32, 31 stays (bound reached, not exceeded), -32 stays.
    assert acc.tolist() == [31, -32, 31, -32]
    assert sat.tolist() == [True, True, False, False]


def test_tile_never_saturates_at_minimum_acc_width():
    """With A = W + B, a single RUN cannot saturate (section 2: tile needs W+B bits)."""
    for B in (1, 5, 8):
        p = MacroParams(rows=8, cols=2, input_bits=B, acc_bits=None)
        p = MacroParams(rows=8, cols=2, input_bits=B, acc_bits=p.readout_bits + B)
        M = p.readout_max
        v = np.array([[M, -M - 1]] * B)
        acc, sat = shift_accumulate(p, v)
        assert acc.tolist() == [M * (2 ** B - 1), (-M - 1) * (2 ** B - 1)]
        assert not sat.any()


def test_shift_accumulate_random_against_python(rng):
    p = PARAM_SETS["32x8_B8"]
    lo, hi = -2 ** (p.acc_bits - 1), 2 ** (p.acc_bits - 1) - 1
    for planes in (1, 3, 8):
        v = rng.integers(-(p.readout_max + 1), p.readout_max + 1, (planes, 9, p.cols))
        prev = rng.integers(lo, hi + 1, (9, p.cols))
        prev[0] = hi
        prev[1] = lo
        acc, sat = shift_accumulate(p, v, acc_prev=prev, accumulate=True)
        for i in range(9):
            for c in range(p.cols):
                total = int(prev[i, c]) + sum(2 ** b * int(v[b, i, c]) for b in range(planes))
                assert acc[i, c] == max(lo, min(hi, total))
                assert sat[i, c] == (total != acc[i, c])
    with pytest.raises(ValueError, match="nplanes"):
        shift_accumulate(p, np.zeros((9, p.cols), dtype=int))
    with pytest.raises(ValueError, match="acc_prev is required"):
        shift_accumulate(p, np.zeros((1, p.cols), dtype=int), accumulate=True)


def test_run_tile_equals_multibit_dot_product(p, rng):
    m = MacroModel(p)
    x = rng.integers(0, 2 ** p.input_bits, (40, p.rows))
    w = rng.integers(0, 2, (p.rows, p.cols))
    acc, sat = run_tile(p, x, w, comp_value(p, m.comp_bits), **m.readout_kwargs())
    assert (acc == ideal_matvec(p, x, w)).all()
    assert (acc == x @ (2 * w - 1)).all()
    assert not sat.any()
    # Fewer planes: only the low bits take part.
    small = x % 4
    acc, _ = run_tile(p, small, w, comp_value(p, m.comp_bits), planes=2, **m.readout_kwargs())
    assert (acc == small @ (2 * w - 1)).all()


def test_run_tile_broadcasts_over_chips_and_images(rng):
    """Per-chip arrays of batch (chips, 1) and images (images, R) give (chips, images, C)."""
    p = PARAM_SETS["64x10_all"]
    M, W, K = p.readout_max, p.readout_bits, p.comp_rows
    chips, images = 3, 6
    x = rng.integers(0, 2 ** p.input_bits, (images, p.rows))
    w = rng.integers(0, 2, (chips, 1, p.rows, p.cols))
    comp = 2 * rng.integers(0, K + 1, (chips, 1, p.cols)) - K
    offset = rng.integers(-9, 10, (chips, 1, p.cols))
    gain = rng.integers(50, 80, (chips, 1, p.cols))
    sat = rng.integers(M // 2, M + 1, (chips, 1))
    table = rng.integers(-(M + 1), M + 1, (chips, 1, 2 ** W))
    mask = (rng.random((chips, 1, p.rows, p.cols)) < 0.2).astype(int)
    value = rng.integers(0, 2, (chips, 1, p.rows, p.cols))
    acc, sat_flags = run_tile(p, x, w, comp, offset=offset, gain=gain, sat=sat, qshift=1,
                              table=table, stuck_mask=mask, stuck_value=value)
    assert acc.shape == sat_flags.shape == (chips, images, p.cols)
    for c in range(chips):
        for i in range(images):
            one, _ = run_tile(p, x[i], w[c, 0], comp[c, 0], offset=offset[c, 0],
                              gain=gain[c, 0], sat=int(sat[c, 0]), qshift=1, table=table[c, 0],
                              stuck_mask=mask[c, 0], stuck_value=value[c, 0])
            assert (acc[c, i] == one).all()


# --- section 3: batchnorm-binarize ----------------------------------------------------

def test_binarize_tie_rule_and_flip():
    acc = np.array([5, 5, 4, 4, 6, -3, -3])
    theta = np.array([5, 5, 5, 5, 5, -3, -2])
    flip = np.array([0, 1, 0, 1, 0, 0, 1])
    # 5>=5 -> 1; flipped -> 0; 4>=5 -> 0; flipped 1; 6>=5 -> 1; -3>=-3 -> 1; -3>=-2 -> 0 ^ 1.
    y = binarize(acc, theta, flip)
    assert y.dtype == np.uint8
    assert y.tolist() == [1, 0, 0, 1, 1, 1, 1]


# --- section 4: calibration -----------------------------------------------------------

def test_calibration_moves():
    for K, moves in ((2, (1,)), (4, (1, 1)), (8, (2, 1, 1)), (16, (4, 2, 1, 1)),
                     (32, (8, 4, 2, 1, 1))):
        p = MacroParams(rows=1, cols=1, comp_rows=K)
        assert macro.calibration_moves(p) == moves
        assert len(moves) == p.comp_steps


def test_calibration_by_hand():
    p = MacroParams(rows=8, cols=4, comp_rows=8)                 # W = 6: offsets fit
    n, flags, reads = calibrate(p, offset=[3, -9, 8, 7], sat=p.readout_max)
    # o = 3: n=4 a=3 -> n=2 a=-1 -> n=3 a=1 -> n=2, verify a=-1: n=2, no flag.
    # o = -9: a=-9 -> 6: -5 -> 7: -3 -> 8: verify -1 < 0 with n = K: flag.
    # o = 8: a=8 -> 2: 4 -> 1: 2 -> 0: verify 0 >= 0 with n = 0: flag.
    # o = 7: a=7 -> 2: 3 -> 1: 1 -> 0: verify -1 < 0 with n = 0: no flag.
    assert n.tolist() == [2, 8, 0, 0]
    assert flags.tolist() == [0, 1, 1, 0]
    assert [r.tolist() for r in reads] == [[3, -9, 8, 7], [-1, -5, 4, 3], [1, -3, 2, 1],
                                           [-1, -1, 0, -1]]
    assert thermometer(p, n).tolist() == [0b11, 0xFF, 0, 0]


@pytest.mark.parametrize("K", [2, 4, 8, 16, 32])
@pytest.mark.parametrize("nonideal", [("offset", "readout"), ALL], ids=["default", "all"])
def test_calibration_residual_and_range(K, nonideal):
    offsets = np.arange(-K - 3, K + 4)
    p = MacroParams(rows=8, cols=len(offsets), comp_rows=K, readout_bits=8, nonideal=nonideal)
    for qshift in (0, 3, 15):
        kw = dict(offset=offsets, sat=p.readout_max, qshift=qshift)
        if "gain" in nonideal:
            kw.update(gain=np.full(len(offsets), 64), table=identity_table(8))
        n, flags, reads = calibrate(p, **kw)
        assert len(reads) == p.comp_steps + 1
        inside = (offsets >= -K) & (offsets <= K - 1)
        residual = offsets + 2 * n - K
        assert ((residual[inside] >= -2) & (residual[inside] <= 1)).all()
        assert (flags[inside] == 0).all()
        assert (flags[~inside] == 1).all()
        assert (n[offsets < -K] == K).all() and (n[offsets > K - 1] == 0).all()


def test_calibration_nonideal_chain_against_reference(rng):
    p = PARAM_SETS["20x6_K16_P2"]
    W, K, M = p.readout_bits, p.comp_rows, p.readout_max
    for _ in range(30):
        offset = rng.integers(-(M + 1), M + 1, p.cols)
        gain = rng.integers(0, 256, p.cols)
        sat = int(rng.integers(0, M + 1))
        qshift = int(rng.integers(0, 16))
        table = rng.integers(-(M + 1), M + 1, 2 ** W)
        n, flags, _ = calibrate(p, offset=offset, gain=gain, sat=sat, qshift=qshift, table=table)
        for c in range(p.cols):
            assert (n[c], flags[c]) == ref_calibrate(
                W, K, offset=int(offset[c]), gain=int(gain[c]), sat=sat, qshift=qshift,
                table=list(table))


def test_calibration_broadcasts_over_chips(rng):
    p = PARAM_SETS["8x5_K2"]
    offset = rng.integers(-6, 6, (4, p.cols))
    sat = np.array([0, 3, 7, p.readout_max])
    n, flags, reads = calibrate(p, offset=offset, sat=sat)
    assert n.shape == flags.shape == (4, p.cols)
    for i in range(4):
        n1, f1, _ = calibrate(p, offset=offset[i], sat=int(sat[i]))
        assert (n[i] == n1).all() and (flags[i] == f1).all()
    # Without arguments the shape is (C,) and the ideal offset 0 lands on n = K/2 or K/2 - 1.
    n, flags, _ = calibrate(p)
    assert n.shape == (p.cols,) and not flags.any()


# --- section 6: register level --------------------------------------------------------

def status(m):
    return m.read(word_address(m.p, "CSR", reg=CSR.STATUS))


def csr(p, reg):
    return word_address(p, "CSR", reg=reg)


def snapshot(m):
    """Every piece of state except the error registers."""
    keys = ("weights", "comp_bits", "thresh", "flip", "input_planes", "acc", "out", "calflag",
            "offset", "gain", "table", "stuck_mask", "stuck_value", "sat", "qshift", "cmd",
            "cycles")
    snap = {k: (None if getattr(m, k) is None else np.array(getattr(m, k)).copy()) for k in keys}
    snap["status_no_error"] = m.status & ~(1 << Status.ERROR)
    return snap


def same(a, b):
    return a.keys() == b.keys() and all(
        (a[k] is None and b[k] is None) or np.array_equal(a[k], b[k]) for k in a)


def test_word_address_by_hand():
    p = PARAM_SETS["2x3"]                      # region_shift 5: reg field of 5 bits
    assert p.region_shift == 5
    assert word_address(p, "WEIGHT", slot=2) == (1 << 5) | 2
    assert word_address(p, Region.INPUT, plane=4) == (5 << 5) | 4
    assert word_address(p, "CSR", reg=CSR.CMD) == 16
    p = PARAM_SETS["16x12_P4"]                 # group 2 bits, slot 2 bits
    assert word_address(p, "THRESH", group=1, slot=2) == (3 << 5) | (1 << 2) | 2
    p = PARAM_SETS["64x10_all"]                # slot 4 bits, chunk 1 bit, shift 8 (TABLE)
    assert p.region_shift == 8
    assert word_address(p, "WEIGHT", slot=3, chunk=1) == (1 << 8) | (3 << 1) | 1
    with pytest.raises(ValueError, match="slot must be in"):
        word_address(p, "WEIGHT", slot=10)
    with pytest.raises(ValueError, match="not built"):
        word_address(PARAM_SETS["2x3"], "GAIN")


def test_id_and_parameter_registers(p):
    m = MacroModel(p)
    expect = {
        CSR.ID: 0x43694D31, CSR.VERSION: 0x00010003, CSR.ROWS: p.rows, CSR.COLS: p.cols,
        CSR.INPUT_BITS: p.input_bits, CSR.COMP_ROWS: p.comp_rows,
        CSR.COLS_PER_CYCLE: p.cols_per_cycle, CSR.READOUT_BITS: p.readout_bits,
        CSR.ACC_BITS: p.acc_bits, CSR.REGION_SHIFT: p.region_shift,
        CSR.GAIN_FRAC: 6 if "gain" in p.nonideal else 0,
        CSR.PIPELINE: p.pipeline, CSR.CMD: 0, CSR.STATUS: 0, CSR.ERRCODE: 0, CSR.ERRADDR: 0,
        CSR.CYCLES: 0,
    }
    if "readout" in p.nonideal:
        expect.update({CSR.SAT: p.readout_max, CSR.QSHIFT: 0})
    for reg, value in expect.items():
        assert m.read(csr(p, reg)) == value, reg
    assert status(m) == 0


def test_register_values_by_hand():
    m = MacroModel(PARAM_SETS["32x96"])
    # ROWS 32, COLS 96, B 5, K 8, P 96, W = bits for +-40 = 7, A = 7 + 5 + 4 = 16,
    # FEATURES = offset (bit 0) | readout (bit 2) = 5, GAIN_FRAC 0, SAT = 2^6 - 1 = 63.
    regs = [CSR.ROWS, CSR.COLS, CSR.INPUT_BITS, CSR.COMP_ROWS, CSR.COLS_PER_CYCLE,
            CSR.READOUT_BITS, CSR.ACC_BITS, CSR.FEATURES, CSR.GAIN_FRAC, CSR.SAT]
    assert [m.read(r) for r in regs] == [32, 96, 5, 8, 96, 7, 16, 5, 0, 63]


@pytest.mark.parametrize("nonideal, features", [
    ((), 0), (("offset",), 1), (("gain",), 2), (("readout",), 4), (("table",), 8),
    (("stuck",), 16), (("offset", "readout"), 5), (ALL, 31)])
def test_features_per_build(nonideal, features):
    p = MacroParams(rows=4, cols=2, nonideal=nonideal)
    m = MacroModel(p)
    assert m.read(CSR.FEATURES) == features
    assert m.read(CSR.GAIN_FRAC) == (6 if "gain" in nonideal else 0)
    # Regions and CSRs of an absent non-ideality are unmapped.
    probes = {"offset": [Region.OFFSET << p.region_shift],
              "gain": [Region.GAIN << p.region_shift],
              "table": [Region.TABLE << p.region_shift],
              "stuck": [Region.STUCK_MASK << p.region_shift, Region.STUCK_VALUE << p.region_shift],
              "readout": [CSR.SAT, CSR.QSHIFT]}
    for name, addrs in probes.items():
        for a in addrs:
            m.write(CSR.STATUS, 1 << Status.ERROR)
            m.read(a)
            expected = 0 if name in nonideal else ErrCode.BAD_ADDRESS
            assert m.read(CSR.ERRCODE) == expected, (name, a)


def test_bad_address_cases():
    p = PARAM_SETS["2x3"]                      # slot 2 bits (3 used), plane 3 bits (5 used)
    m = MacroModel(p)
    before = snapshot(m)
    holes = [
        14 << 5, 15 << 5 | 3,                  # unmapped regions
        Region.GAIN << 5,                      # region not built
        (Region.COMP << 5) | 3,                # slot 3 >= P = 3
        (Region.WEIGHT << 5) | 4,              # offset bit above the region's fields
        (Region.INPUT << 5) | 5,               # plane 5 >= B = 5
        (Region.FLIP << 5) | 1,                # word 1 >= 1 packed word
        13, 15, 23, 31,                        # unmapped CSRs
    ]
    for a in holes:
        for op in ("read", "write"):
            m.write(CSR.STATUS, 1 << Status.ERROR)
            if op == "read":
                assert m.read(a) == 0
            else:
                m.write(a, 0xFFFF_FFFF)
            assert m.read(CSR.ERRCODE) == ErrCode.BAD_ADDRESS, (a, op)
            assert m.read(CSR.ERRADDR) == a
            assert status(m) >> Status.ERROR & 1
            assert same(snapshot(m), before)
    p = PARAM_SETS["32x96"]                    # 3 packed words in a 2-bit field
    m = MacroModel(p)
    m.read(word_address(p, "FLIP", word=2))
    assert m.read(CSR.ERRCODE) == 0
    m.read((Region.FLIP << p.region_shift) | 3)
    assert m.read(CSR.ERRCODE) == ErrCode.BAD_ADDRESS


def test_read_only_regions_and_csrs():
    p = PARAM_SETS["16x12_P4"]
    m = MacroModel(p)
    m.run(np.ones(p.rows, dtype=int))
    before = snapshot(m)
    targets = [word_address(p, "ACC", group=2, slot=3), word_address(p, "OUT"),
               word_address(p, "CALFLAG")]
    targets += [csr(p, r) for r in (CSR.ID, CSR.VERSION, CSR.ROWS, CSR.COLS, CSR.INPUT_BITS,
                                    CSR.COMP_ROWS, CSR.COLS_PER_CYCLE, CSR.READOUT_BITS,
                                    CSR.ACC_BITS, CSR.FEATURES, CSR.GAIN_FRAC,
                                    CSR.REGION_SHIFT, CSR.ERRCODE, CSR.ERRADDR, CSR.CYCLES)]
    for a in targets:
        m.write(CSR.STATUS, 1 << Status.ERROR)
        m.write(a, 0)
        assert m.read(CSR.ERRCODE) == ErrCode.READ_ONLY, a
        assert m.read(CSR.ERRADDR) == a
        assert same(snapshot(m), before)
    # Writing ERRCODE does not clear it (and is itself a READ_ONLY error, not recorded).
    m.write(CSR.STATUS, 1 << Status.ERROR)
    m.read(14 << p.region_shift)
    m.write(CSR.ERRCODE, 0)
    assert m.read(CSR.ERRCODE) == ErrCode.BAD_ADDRESS


def test_bad_sel_comes_first():
    p = PARAM_SETS["2x3"]
    m = MacroModel(p)
    before = snapshot(m)
    for sel in (0x0, 0x1, 0x7, 0xE, 0x8):
        for a in (csr(p, CSR.CMD), word_address(p, "WEIGHT"), 14 << 5, csr(p, CSR.ID),
                  word_address(p, "ACC")):
            m.write(CSR.STATUS, 1 << Status.ERROR)
            m.write(a, Op.CLEAR, sel=sel)
            assert m.read(CSR.ERRCODE) == ErrCode.BAD_SEL
            assert m.read(CSR.ERRADDR) == a
            assert same(snapshot(m), before)
    # A STATUS write with a bad sel does not clear anything either.
    m.write(CSR.STATUS, 1 << Status.ERROR, sel=0x3)
    assert status(m) >> Status.ERROR & 1
    # Reads ignore sel entirely (the model's read has none), and work.
    assert m.read(CSR.ID) == 0x43694D31


def test_check_order_address_before_read_only():
    p = PARAM_SETS["2x3"]
    m = MacroModel(p)
    m.write((Region.ACC << 5) | 3, 0)          # a hole in a read-only region
    assert m.read(CSR.ERRCODE) == ErrCode.BAD_ADDRESS


def test_first_error_wins_and_clear():
    p = PARAM_SETS["2x3"]
    m = MacroModel(p)
    m.write(word_address(p, "ACC"), 1)          # READ_ONLY first
    m.write(14 << 5, 1)                         # BAD_ADDRESS second
    m.write(csr(p, CSR.CMD), 0)                 # BAD_COMMAND third
    assert m.read(CSR.ERRCODE) == ErrCode.READ_ONLY
    assert m.read(CSR.ERRADDR) == word_address(p, "ACC")
    # Writing STATUS without bit 2 keeps the error.
    m.write(CSR.STATUS, 0b11011)
    assert status(m) >> Status.ERROR & 1
    assert m.read(CSR.ERRCODE) == ErrCode.READ_ONLY
    # With bit 2: error, ERRCODE and ERRADDR are 0.
    m.write(CSR.STATUS, 1 << Status.ERROR)
    assert status(m) == 0
    assert (m.read(CSR.ERRCODE), m.read(CSR.ERRADDR)) == (0, 0)
    # The next error is recorded again.
    m.write(csr(p, CSR.CMD), 7)
    assert (m.read(CSR.ERRCODE), m.read(CSR.ERRADDR)) == (ErrCode.BAD_COMMAND, 16)


def test_busy_never_observed():
    """Commands finish inside write(): BUSY reads 0 and ERRCODE 4 cannot happen."""
    p = PARAM_SETS["16x12_P4"]
    m = MacroModel(p)
    for cmd in (Op.RUN, Op.CALIBRATE, Op.CLEAR):
        m.write(CSR.CMD, cmd)
        m.write(CSR.CMD, cmd)                  # back to back: accepted again
        m.write(word_address(p, "WEIGHT", group=2, slot=3), 1)
        m.write(CSR.SAT, 3)
        assert status(m) & 1 == 0
        assert m.read(CSR.ERRCODE) == 0


@pytest.mark.parametrize("cmd", [
    0, 4, 5, 6, 7,                              # unknown opcodes
    Op.RUN | 1 << 3, Op.RUN | 1 << 5, Op.RUN | 1 << 12, Op.RUN | 1 << 31,   # reserved bits
    Op.RUN | 6 << 8, Op.RUN | 15 << 8,          # NPLANES > B = 5
    Op.CALIBRATE | 1 << 4, Op.CLEAR | 1 << 4,   # ACCUMULATE outside RUN
    Op.CALIBRATE | 1 << 8, Op.CLEAR | 5 << 8,   # NPLANES outside RUN
])
def test_bad_commands(cmd):
    p = PARAM_SETS["2x3"]
    m = MacroModel(p)
    m.load_inputs([3, 1])
    m.load_weights([[1, 0, 1], [1, 1, 0]])
    before = snapshot(m)
    m.write(CSR.CMD, cmd)
    assert m.read(CSR.ERRCODE) == ErrCode.BAD_COMMAND
    assert m.read(CSR.ERRADDR) == CSR.CMD
    assert m.read(CSR.CMD) == 0
    assert same(snapshot(m), before)
    assert status(m) == 1 << Status.ERROR       # no DONE: nothing ran


def test_good_commands_and_nplanes():
    p = PARAM_SETS["2x3"]                       # B = 5
    m = MacroModel(p)
    m.load_weights([[1, 0, 1], [1, 1, 0]])      # column sums: x0 + x1, x1 - x0, x0 - x1
    m.load_inputs([21, 10])                     # 0b10101, 0b01010
    m.write(CSR.CMD, Op.RUN)                    # NPLANES 0 = all 5 planes
    assert m.read(CSR.CMD) == Op.RUN
    assert m.acc.tolist() == [31, -11, 11]
    assert m.read(CSR.CYCLES) == 1 * (5 + 2)
    m.write(CSR.CMD, Op.RUN | 5 << 8)           # NPLANES = B explicitly
    assert m.acc.tolist() == [31, -11, 11]
    m.write(CSR.CMD, Op.RUN | 2 << 8)           # planes 1, 0: x = 1, 2
    assert m.acc.tolist() == [3, 1, -1]
    assert m.read(CSR.CYCLES) == 2 + 2
    m.write(CSR.CMD, Op.RUN | 1 << 8 | 1 << 4)  # plane 0 only (x = 1, 0), accumulated
    assert m.acc.tolist() == [4, 0, 0]
    assert m.read(CSR.CMD) == Op.RUN | 1 << 8 | 1 << 4
    assert m.read(CSR.ERRCODE) == 0


def test_cycles_by_hand():
    # 2x3: G = 1, S = 3. RUN 5 planes: 7; CALIBRATE: 1 * (3 + 3) = 6; CLEAR: 1.
    # 16x12 P4: G = 3. RUN 5 planes: 21; RUN 1 plane: 9; CALIBRATE: 18; CLEAR: 3.
    # 8x5 K2: G = 1, S = 1: CALIBRATE 4.  20x6 K16 P2: G = 3, S = 4: CALIBRATE 21.
    cases = [("2x3", Op.RUN, 7), ("2x3", Op.CALIBRATE, 6), ("2x3", Op.CLEAR, 1),
             ("16x12_P4", Op.RUN, 21), ("16x12_P4", Op.RUN | 1 << 8, 9),
             ("16x12_P4", Op.CALIBRATE, 18), ("16x12_P4", Op.CLEAR, 3),
             ("8x5_K2", Op.CALIBRATE, 4), ("20x6_K16_P2", Op.CALIBRATE, 21),
             ("32x8_B8", Op.RUN, 10)]
    for name, cmd, cycles in cases:
        m = MacroModel(PARAM_SETS[name])
        m.write(CSR.CMD, cmd)
        assert m.read(CSR.CYCLES) == cycles, (name, cmd)
        assert status(m) == 1 << Status.DONE


def test_done_and_acc_sat_are_w1c_cal_range_is_not():
    p = MacroParams(rows=2, cols=2, input_bits=1, acc_bits=6)   # ACC in [-32, 31]
    m = MacroModel(p)
    m.load_weights([[1, 1], [1, 1]])
    m.set_nonideal(offset=[15, 0])
    # RUN: v = 2 + 15 = 17 -> clamp M = 15; accumulate it three times: 15, 30, 45 -> 31.
    m.write(CSR.CMD, Op.RUN)
    m.load_inputs([1, 1])
    m.write(CSR.CMD, Op.RUN)
    assert status(m) == 1 << Status.DONE
    m.write(CSR.CMD, Op.RUN | 1 << 4)
    m.write(CSR.CMD, Op.RUN | 1 << 4)
    assert m.acc.tolist() == [31, 6]
    assert status(m) == (1 << Status.DONE) | (1 << Status.ACC_SAT)
    # acc_sat is sticky across a RUN that does not saturate.
    m.write(CSR.CMD, Op.RUN)
    assert status(m) >> Status.ACC_SAT & 1
    m.write(CSR.STATUS, 0)                      # writing 0s clears nothing
    m.write(CSR.STATUS, 1 << Status.BUSY | 1 << Status.CAL_RANGE)   # not W1C bits
    assert status(m) == (1 << Status.DONE) | (1 << Status.ACC_SAT)
    m.write(CSR.STATUS, 1 << Status.ACC_SAT)
    assert status(m) == 1 << Status.DONE
    m.write(CSR.STATUS, 1 << Status.DONE)
    assert status(m) == 0
    # cal_range: offset 15 on a K = 8 column is out of range; W1C does not clear it.
    m.write(CSR.CMD, Op.CALIBRATE)
    assert status(m) == (1 << Status.DONE) | (1 << Status.CAL_RANGE)
    assert m.read(word_address(p, "CALFLAG")) == 0b01
    m.write(CSR.STATUS, 0xFFFF_FFFF)
    assert status(m) == 1 << Status.CAL_RANGE
    # A new CALIBRATE clears it first; with the offset fixed it stays clear.
    m.write(word_address(p, "OFFSET", slot=0), 3)
    m.write(CSR.CMD, Op.CALIBRATE)
    assert status(m) == 1 << Status.DONE
    assert m.read(word_address(p, "CALFLAG")) == 0


def test_bad_value_bounds():
    p = P4                                      # W = 5, A = 14, M = 15, all built
    assert p.acc_bits == 14
    m = MacroModel(p)
    neg = lambda v: v & 0xFFFF_FFFF
    cases = [
        (word_address(p, "THRESH", slot=1), [8191, neg(-8192), neg(-1), 0],
         # 0x3FFF is -1 in 14 bits but not sign-extended; 0xFFFF_1FFF is -57345.
         [8192, neg(-8193), 0x8000_0000, 0x0000_3FFF, 0xFFFF_1FFF]),
        (word_address(p, "OFFSET", slot=1), [15, neg(-16), 0], [16, neg(-17), 0x8000_0000, 0xFFF0]),
        (word_address(p, "TABLE", index=31), [15, neg(-16)], [16, neg(-17), 0x7FFF_FFFF]),
        (word_address(p, "GAIN", slot=0), [0, 255], [256, neg(-1)]),
        (csr(p, CSR.SAT), [0, 15], [16, neg(-1)]),
        (csr(p, CSR.QSHIFT), [0, 15], [16, 0x8000_0000]),
    ]
    for a, good, bad in cases:
        for data in good:
            m.write(a, data)
            assert m.read(CSR.ERRCODE) == 0, (a, data)
            assert m.read(a) == data, (a, data)
        last = m.read(a)
        for data in bad:
            before = snapshot(m)
            m.write(a, data)
            assert m.read(CSR.ERRCODE) == ErrCode.BAD_VALUE, (a, hex(data))
            assert m.read(CSR.ERRADDR) == a
            assert m.read(a) == last
            assert same(snapshot(m), before)
            m.write(CSR.STATUS, 1 << Status.ERROR)
    # A signed value is stored as its value: THRESH -8192 reads back sign-extended.
    m.write(word_address(p, "THRESH", slot=0), neg(-8192))
    assert m.thresh[0] == -8192


def test_ignored_bits_and_packing():
    p = PARAM_SETS["2x3"]                       # R = 2, K = 8, C = 3
    m = MacroModel(p)
    m.write(word_address(p, "WEIGHT", slot=1), 0xFFFF_FFFE)   # rows 0..1 -> 0, 1
    assert m.weights[:, 1].tolist() == [0, 1]
    assert m.read(word_address(p, "WEIGHT", slot=1)) == 0b10
    m.write(word_address(p, "COMP", slot=2), 0xABCD_EF0F)     # only bits 0..7 kept
    assert m.read(word_address(p, "COMP", slot=2)) == 0x0F
    m.write(word_address(p, "FLIP"), 0xFFFF_FFFF)             # columns 0..2
    assert m.flip.tolist() == [1, 1, 1]
    assert m.read(word_address(p, "FLIP")) == 0b111
    m.write(word_address(p, "INPUT", plane=3), 0xFFFF_FFFD)   # rows 0, 1 -> 1, 0
    assert m.input_planes[3].tolist() == [1, 0]
    assert m.read(word_address(p, "INPUT", plane=3)) == 0b01
    assert m.read(CSR.ERRCODE) == 0
    # OUT after a RUN with no input and every FLIP set: ACC 0 >= THRESH 1 is 0, flipped 1.
    m.load_thresholds([1, 1, 1])
    m.load_inputs([0, 0])
    m.write(CSR.CMD, Op.RUN)
    assert m.read(word_address(p, "OUT")) == 0b111
    # Weight bit order inside a chunk, for R > 32: row 32*chunk + i is bit i.
    p = PARAM_SETS["64x10_all"]
    m = MacroModel(p)
    m.write(word_address(p, "WEIGHT", slot=3, chunk=1), 0x8000_0001)
    assert np.flatnonzero(m.weights[:, 3]).tolist() == [32, 63]
    m.write(word_address(p, "STUCK_VALUE", slot=9, chunk=0), 0x0000_0004)
    assert np.flatnonzero(m.stuck_value[:, 9]).tolist() == [2]
    assert m.weights.sum() == 2 and m.stuck_value.sum() == 1


def test_column_mapping_with_folding():
    p = PARAM_SETS["16x12_P4"]                  # column = 4 * group + slot
    m = MacroModel(p)
    m.write(word_address(p, "THRESH", group=1, slot=2), 77)
    assert np.flatnonzero(m.thresh).tolist() == [6]
    m.write(word_address(p, "COMP", group=2, slot=3), 0)
    assert m.comp_bits.tolist() == [0x0F] * 11 + [0]          # reset balanced, n = 4
    m.acc[:] = np.arange(12) - 6
    assert m.read(word_address(p, "ACC", group=0, slot=1)) == 0xFFFF_FFFB   # -5
    assert m.read(word_address(p, "ACC", group=2, slot=3)) == 5


def bus_load(m, weights=None, inputs=None, comp=None, thresh=None, flip=None, offset=None,
             gain=None, table=None, stuck_mask=None, stuck_value=None, sat=None, qshift=None):
    """Load arrays through write() only, like a host driver (words packed here, by hand)."""
    p = m.p
    P = p.cols_per_cycle

    def col(c):
        return dict(group=c // P, slot=c % P)

    def rowword(bits):
        return sum(int(b) << i for i, b in enumerate(bits))

    for region, arr in (("WEIGHT", weights), ("STUCK_MASK", stuck_mask),
                        ("STUCK_VALUE", stuck_value)):
        if arr is not None:
            for c in range(p.cols):
                for ch in range(p.chunks):
                    m.write(word_address(p, region, chunk=ch, **col(c)),
                            rowword(arr[32 * ch:32 * ch + p.chunk_rows, c]))
    if inputs is not None:
        for b in range(p.input_bits):
            for ch in range(p.chunks):
                bits = (np.asarray(inputs[32 * ch:32 * ch + p.chunk_rows]) >> b) & 1
                m.write(word_address(p, "INPUT", plane=b, chunk=ch), rowword(bits))
    for region, arr in (("COMP", comp), ("THRESH", thresh), ("OFFSET", offset), ("GAIN", gain)):
        if arr is not None:
            for c in range(p.cols):
                m.write(word_address(p, region, **col(c)), int(arr[c]) & 0xFFFF_FFFF)
    if flip is not None:
        for j in range(p.packed_words):
            m.write(word_address(p, "FLIP", word=j), rowword(flip[32 * j:32 * j + 32]))
    if table is not None:
        for i, t in enumerate(table):
            m.write(word_address(p, "TABLE", index=i), int(t) & 0xFFFF_FFFF)
    if sat is not None:
        m.write(CSR.SAT, sat)
    if qshift is not None:
        m.write(CSR.QSHIFT, qshift)
    assert m.read(CSR.ERRCODE) == 0


def bus_acc(m):
    p = m.p
    words = [m.read(word_address(p, "ACC", group=c // p.cols_per_cycle,
                                 slot=c % p.cols_per_cycle)) for c in range(p.cols)]
    return [w - (1 << 32) if w >> 31 else w for w in words]


@pytest.mark.parametrize("name", ["32x96", "64x10_all", "16x12_P4", "32x8_B8"])
def test_bus_run_with_accumulate_across_two_row_tiles(name, rng):
    """A layer with 2R inputs: tile 1 RUN, tile 2 RUN with ACCUMULATE = full dot product."""
    p = PARAM_SETS[name]
    m = MacroModel(p)
    x = rng.integers(0, 2 ** p.input_bits, 2 * p.rows)
    w = rng.integers(0, 2, (2 * p.rows, p.cols))
    theta = rng.integers(-50, 50, p.cols)
    flip = rng.integers(0, 2, p.cols)
    bus_load(m, weights=w[:p.rows], inputs=x[:p.rows], thresh=theta, flip=flip)
    m.write(CSR.CMD, Op.RUN)
    bus_load(m, weights=w[p.rows:], inputs=x[p.rows:])
    m.write(CSR.CMD, Op.RUN | 1 << 4)
    full = x @ (2 * w - 1)
    assert bus_acc(m) == full.tolist()
    y = (full >= theta).astype(int) ^ flip
    out = [m.read(word_address(p, "OUT", word=j)) for j in range(p.packed_words)]
    assert [(out[c // 32] >> (c % 32)) & 1 for c in range(p.cols)] == y.tolist()
    assert status(m) == 1 << Status.DONE
    # CLEAR zeroes ACC and OUT.
    m.write(CSR.CMD, Op.CLEAR)
    assert bus_acc(m) == [0] * p.cols
    assert all(m.read(word_address(p, "OUT", word=j)) == 0 for j in range(p.packed_words))


@pytest.mark.parametrize("name", ["64x10_all", "20x6_K16_P2", "8x5_K2"])
def test_bus_run_with_every_nonideality(name, rng):
    """Registers loaded over the bus give what run_tile gives on the same arrays."""
    p = PARAM_SETS[name]
    W, M, K = p.readout_bits, p.readout_max, p.comp_rows
    m = MacroModel(p)
    arrays = dict(
        weights=rng.integers(0, 2, (p.rows, p.cols)),
        inputs=rng.integers(0, 2 ** p.input_bits, p.rows),
        comp=rng.integers(0, 2 ** K, p.cols),
        offset=rng.integers(-(M + 1), M + 1, p.cols),
        gain=rng.integers(0, 256, p.cols),
        table=rng.integers(-(M + 1), M + 1, 2 ** W),
        stuck_mask=rng.integers(0, 2, (p.rows, p.cols)),
        stuck_value=rng.integers(0, 2, (p.rows, p.cols)),
        sat=int(rng.integers(0, M + 1)), qshift=int(rng.integers(0, 16)))
    bus_load(m, **arrays)
    m.write(CSR.CMD, Op.RUN)
    acc, sat = run_tile(p, arrays["inputs"], arrays["weights"], comp_value(p, arrays["comp"]),
                        offset=arrays["offset"], gain=arrays["gain"], sat=arrays["sat"],
                        qshift=arrays["qshift"], table=arrays["table"],
                        stuck_mask=arrays["stuck_mask"], stuck_value=arrays["stuck_value"])
    assert bus_acc(m) == acc.tolist()
    # CALIBRATE over the bus: COMP and CALFLAG follow the scalar reference.
    m.write(CSR.CMD, Op.CALIBRATE)
    for c in range(p.cols):
        n, flag = ref_calibrate(W, K, offset=int(arrays["offset"][c]), gain=int(arrays["gain"][c]),
                                sat=arrays["sat"], qshift=arrays["qshift"],
                                table=list(arrays["table"]))
        a = word_address(p, "COMP", group=c // p.cols_per_cycle, slot=c % p.cols_per_cycle)
        assert m.read(a) == 2 ** n - 1
        assert (m.read(word_address(p, "CALFLAG")) >> c) & 1 == flag
    assert m.read(CSR.ERRCODE) == 0


def test_reset_macro_is_ideal(p, rng):
    m = MacroModel(p)
    x = rng.integers(0, 2 ** p.input_bits, p.rows)
    w = rng.integers(0, 2, (p.rows, p.cols))
    m.load_weights(w)
    assert (m.run(x) == ideal_matvec(p, x, w)).all()
    assert m.read(CSR.ERRCODE) == 0
    # Calibration of an ideal column (offset 0): residual in [-2, 1] and no flag.
    flags = m.calibrate()
    assert not flags.any()
    r = comp_value(p, m.comp_bits)
    assert ((r >= -2) & (r <= 1)).all()


def test_convenience_methods_share_the_bus_state(rng):
    p = PARAM_SETS["64x10_all"]
    m = MacroModel(p)
    w = rng.integers(0, 2, (p.rows, p.cols))
    m.load_weights(w)
    word = m.read(word_address(p, "WEIGHT", slot=4, chunk=1))
    assert word == sum(int(b) << i for i, b in enumerate(w[32:, 4]))
    m.set_nonideal(offset=np.arange(p.cols) - 5, sat=9, qshift=1)
    assert m.read(word_address(p, "OFFSET", slot=0)) == 0xFFFF_FFFB
    assert (m.read(CSR.SAT), m.read(CSR.QSHIFT)) == (9, 1)
    acc = m.run(np.full(p.rows, 3), planes=2)
    assert m.read(CSR.CMD) == Op.RUN | 2 << 8
    assert m.read(CSR.CYCLES) == 4
    assert bus_acc(m) == acc.tolist()
    with pytest.raises(ValueError, match="x must be an unsigned 2-bit"):
        m.run(np.full(p.rows, 4), planes=2)
    with pytest.raises(ValueError, match="planes must be in"):
        m.run(planes=6)
    with pytest.raises(ValueError, match="not built"):
        MacroModel(PARAM_SETS["2x3"]).set_nonideal(gain=[64, 64, 64])
    with pytest.raises(ValueError, match="shape"):
        m.load_weights(w[:32])
    m.clear()
    assert not m.acc.any() and m.read(CSR.CYCLES) == 1


def test_bus_argument_checks():
    m = MacroModel(PARAM_SETS["2x3"])           # addr_bits = 9
    with pytest.raises(ValueError, match="addr"):
        m.write(1 << 9, 0)
    with pytest.raises(ValueError, match="data"):
        m.write(CSR.STATUS, 1 << 32)
    with pytest.raises(ValueError, match="sel"):
        m.write(CSR.STATUS, 0, sel=16)
    with pytest.raises(TypeError):
        m.read(1.5)


def test_model_imports_no_rtl_or_amaranth():
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(macro))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    # energy: the event counts (numpy and the standard library only, tests/test_energy.py)
    assert names <= {"__future__", "operator", "numpy", "params", "energy"}, names
