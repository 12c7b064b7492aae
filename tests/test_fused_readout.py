"""The compiled noisy readout (models/fused_readout.py) against the numpy pass.

* the rational tanh keeps within ``TANH_ERROR`` of numpy's float32 tanh (every 1024th
  float32 of [-9, 9]);
* the pass's draws of central buckets keep within ``DRAW_ERROR`` of the exact ones;
* every read the compiled pass does not keep has the readout of numpy's chain of its
  exact draw; the kept ones lie near a rounding boundary;
* the accumulators of every layer equal the numpy pass's exactly (shared first-layer
  inputs and per-chip inputs; curves, clamps, quantisation, trims);
* the tiles the pass does not cover (bit-line mode, the exponential curve) keep the
  numpy pass.
"""

import numpy as np
import pytest

from models import fused_readout, montecarlo
from models.chip import ChipConfig
from models.chip_readout import ChipReadout
from models.sampler import BUCKETS, GAMMA, TAIL_BUCKETS, ReadNoise, normal_from_bits
from tests.test_montecarlo import nets  # noqa: F401 (the fixture: the same random nets)

pytestmark = pytest.mark.skipif(not fused_readout.available(), reason="numba is not installed")

#: Column-mode noisy configurations: the compiled pass's every branch.
COVERED = {
    "typical, noise 0.3": ChipConfig.typical("sram"),
    "typical, noise 0.5, sat, qshift": ChipConfig.typical("sram", read_noise=0.5, sat=24, qshift=1),
    "no curve, noise 0.6": ChipConfig(offset_sigma=3.0, read_noise=0.6),
    "tanh, sat (clamp)": ChipConfig(offset_sigma=2.0, cell_sigma=0.1, bl_vmax=40.0, sat=12,
                                    read_noise=0.8),
}


def test_tanh_approximation_is_within_its_bound():
    bits = np.arange(0, np.float32(9).view(np.int32), 1024, dtype=np.int32)
    u = np.concatenate([bits.view(np.float32), -bits.view(np.float32)])
    out = fused_readout.tanh_approx(u)
    err = np.abs(out.astype(np.float64) - np.tanh(u).astype(np.float64))
    print(f"{len(u)} float32 values: largest error {err.max():.3g} (bound {fused_readout.TANH_ERROR:g})")
    assert err.max() <= fused_readout.TANH_ERROR


def test_tier_half_widths_bound_every_draw_of_their_buckets(rng):
    """Every bucket's draws (fine bits at both ends and random) lie within the half width
    of its tier of its midpoint; the end buckets alone have none (always exact)."""
    k = np.arange(BUCKETS)
    t = np.minimum(k, BUCKETS - 1 - k)
    tier = np.full(BUCKETS, -1)
    for i, start in reversed(list(enumerate(fused_readout.TIER_STARTS))):
        tier[t >= start] = i
    assert np.all(tier[t == 0] == -1) and np.all(tier[t > 0] >= 0)
    bound = np.array(fused_readout.TIER_HALF_WIDTHS)
    mid = fused_readout.MIDPOINTS.astype(np.float64)
    k16 = k.astype(np.uint16)
    for fine in (np.zeros(BUCKETS, np.uint16), np.full(BUCKETS, BUCKETS - 1, np.uint16),
                 rng.integers(0, BUCKETS, BUCKETS).astype(np.uint16)):
        reach = np.abs(normal_from_bits(k16, fine).astype(np.float64) - mid)
        assert np.all(reach[t > 0] <= bound[tier[t > 0]])
    assert bound[0] < 2e-4 and bound[-1] < 0.1            # 1.1e-4 and 0.08 (printed)
    print("tier half widths", ", ".join(f"{b:.3g}" for b in bound))
    assert fused_readout.MID_MAX == float(np.max(np.abs(mid)))


def test_central_draws_are_within_their_bound(rng):
    """The pass's draws of central buckets (midpoints and their neighbours) against the
    exact ones: every bucket at both ends of its fine bits, and random fine bits."""
    k = np.arange(TAIL_BUCKETS, BUCKETS - TAIL_BUCKETS).astype(np.uint16)
    worst = 0.0
    for fine in (np.zeros_like(k), np.full_like(k, BUCKETS - 1),
                 rng.integers(0, BUCKETS, k.size).astype(np.uint16)):
        err = np.abs(fused_readout.central_draws(k, fine).astype(np.float64)
                     - normal_from_bits(k, fine))
        worst = max(worst, float(err.max()))
    print(f"largest error {worst:.3g} (bound {fused_readout.DRAW_ERROR:.3g})")
    assert worst <= fused_readout.DRAW_ERROR
    with pytest.raises(ValueError, match="central buckets only"):
        fused_readout.central_draws([3], [0])


@pytest.mark.parametrize("curve, clip, qshift", [(1, False, 0), (1, True, 1), (0, False, 0),
                                                 (0, True, 2)])
def test_every_read_gets_the_readout_of_its_exact_draw(curve, clip, qshift, rng):
    """The kernel alone against numpy's chain of every read's exact draw: a read the pass
    does not keep has that readout (plane accumulated: 2 x before + readout); a kept read
    enters as 0, is listed with its bucket and lies near a rounding boundary."""
    N, m, C, vmax = 3, 400, 13, np.float32(40)
    limit = np.float32((0.4 if curve else 25) if clip else 1e30)
    noise = ReadNoise([4, 9, 30])
    keys, fine_keys = (noise.stream_keys((0, 0, 0), 2, C, w) for w in (0, 1))
    images = rng.integers(0, 5000, m).astype(np.uint64)
    counter = (images + np.uint64(1)) * np.uint64(GAMMA)
    # large noise scales: many reads near a boundary and in the tails' reach
    scale = rng.uniform(0.002, 0.03, (N, C)).astype(np.float32)
    spread = 0.6 if curve else 30
    y = rng.uniform(-spread, spread, (N, m, C)).astype(np.float32)
    exact_margin = 2e-4
    # The ADC input moves by at most vmax (tanh's slope <= 1) times the noise scale per
    # unit of the draw.
    margins = fused_readout.tier_margins(float(scale.max()) * (float(vmax) if curve else 1.0),
                                         exact_margin + 1e-4)
    tile = rng.integers(-5, 5, (N, m, C)).astype(np.float32)
    before = tile.copy()
    idx, bkt = np.empty(N * m * C, np.int64), np.empty(N * m * C, np.uint16)
    n = fused_readout.noisy_plane(y, keys, fine_keys, counter, False, scale, curve, vmax,
                                  clip, limit, qshift, margins, exact_margin, False, tile, idx,
                                  bkt, 0)
    buckets = noise.buckets((0, 0, 0), 2, images, C)
    z = noise.standard_normal((0, 0, 0), 2, images, C)
    u = np.clip(y + z * scale[:, None, :], -limit, limit)      # FloatTile's exact chain
    t = (np.tanh(u) * vmax if curve else u) + np.float32(0.5)
    v = np.floor(t)
    frac = (t - v).astype(np.float64)
    if qshift:
        v = np.floor(v * np.float32(2.0 ** -qshift)) * np.float32(2.0 ** qshift)
    kept = np.zeros(tile.size, bool)
    kept[idx[:n]] = True
    kept = kept.reshape(tile.shape)
    tail = (buckets < TAIL_BUCKETS) | (buckets >= BUCKETS - TAIL_BUCKETS)
    print(f"{n} of {tile.size} reads kept; {int(tail.sum())} in a tail bucket")
    np.testing.assert_array_equal(bkt[:n], buckets.reshape(-1)[idx[:n]])
    np.testing.assert_array_equal(tile, np.where(kept, 0, v) + 2 * before)
    boundary = np.minimum(frac, 1 - frac)
    assert np.all(boundary[kept] < exact_margin + 1e-4)
    assert np.any(tail & ~kept), "tail reads resolved in the pass"


def _layer_accumulators(net, cfg, seeds, x, hidden, fused, monkeypatch, cal, trim):
    monkeypatch.setattr(montecarlo, "use_fused", fused)
    cr = ChipReadout(net, cfg, seeds, backend="analog", calibrate=cal, trim=trim)
    plan = montecarlo._Plan(cr)
    kinds = {t.fused for _, tiles, *_ in plan.layers for t in tiles.values()
             if isinstance(t, montecarlo.FloatTile)}
    assert kinds == {fused}
    images = np.arange(len(x)) + 700
    first, _, _ = montecarlo._layer(plan, 0, x, True, images)
    second, _, _ = montecarlo._layer(plan, 1, hidden, False, images)
    return first, second


@pytest.mark.parametrize("net_name", ["32x16, 2x2 tiles", "16x12, 3 planes"])
def test_accumulators_equal_the_numpy_pass(nets, net_name, rng, monkeypatch):
    net = nets[net_name]
    x = rng.integers(0, 1 << net.layers[0].planes, (150, net.layers[0].inputs))
    for name, cfg in COVERED.items():
        seeds = [int(s) for s in rng.integers(0, 10_000, 4)]
        cal = bool(rng.integers(2))
        trim = cal and (0, 1, 4, 16)[int(rng.integers(4))]
        hidden = rng.integers(0, 2, (len(seeds), len(x), net.layers[1].inputs)).astype(np.uint8)
        fused = _layer_accumulators(net, cfg, seeds, x, hidden, True, monkeypatch, cal, trim)
        numpy_pass = _layer_accumulators(net, cfg, seeds, x, hidden, False, monkeypatch, cal, trim)
        print(f"{name}: chips {seeds}, calibrate={cal}, trim={trim}")
        for a, b in zip(fused, numpy_pass):
            np.testing.assert_array_equal(a, b)


def test_tiles_outside_the_pass_keep_the_numpy_pass(nets):
    net = nets["16x12, 3 planes"]
    for cfg, fused in ((ChipConfig.typical("sram"), True),
                       (ChipConfig.typical("sram", bl_mode="bitline"), False),
                       (ChipConfig.typical("sram", bl_shape="exp"), False),
                       (ChipConfig(cell_sigma=0.1), False)):
        plan = montecarlo._Plan(ChipReadout(net, cfg, [1, 2], backend="analog"))
        tiles = [t for _, ts, *_ in plan.layers for t in ts.values()]
        assert {t.fused for t in tiles} == {fused}, cfg


@pytest.mark.parametrize("net_name", ["32x16, 2x2 tiles", "16x12, 3 planes"])
def test_table_reads_and_one_hot_counts_equal_the_numpy_pass(nets, net_name, rng, monkeypatch):
    """Integer column sums (typical bit-true chip: tabled columns): the compiled table
    reads and one-hot counts give the numpy pass's accumulators, every layer."""
    net = nets[net_name]
    x = rng.integers(0, 1 << net.layers[0].planes, (120, net.layers[0].inputs))
    seeds = [int(s) for s in rng.integers(0, 10_000, 5)]
    print(f"chips {seeds}")
    cfg = ChipConfig.typical("sram", read_noise=0.0)
    hidden = rng.integers(0, 2, (len(seeds), len(x), net.layers[1].inputs)).astype(np.uint8)
    results = []
    for fused in (True, False):
        monkeypatch.setattr(montecarlo, "use_fused", fused)
        cr = ChipReadout(net, cfg, seeds, backend="macro", calibrate=True, trim=True)
        plan = montecarlo._Plan(cr)
        assert plan.layers[0][4] is not None             # the one-hot first layer
        first, _, _ = montecarlo._layer(plan, 0, x, True, np.arange(len(x)))
        second, _, _ = montecarlo._layer(plan, 1, hidden, False, np.arange(len(x)))
        results.append((first, second, cr.predict(x)))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
