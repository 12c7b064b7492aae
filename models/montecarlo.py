"""Chip Monte Carlo near the matrix-product floor: the fast evaluation of a chip stack.

:meth:`models.chip_readout.ChipReadout.predict` runs here; the straightforward
evaluation (:meth:`~models.chip_readout.ChipReadout.predict_reference`: the
:data:`models.export.Readout` callback through :func:`models.export.infer_folded`, one
plane of one tile at a time) is the specification it is tested against
(``tests/test_montecarlo.py``). Both use the same sampled chips, the same calibration and
trim and the same read-noise draws (:mod:`models.sampler`).

The work is blocked by images (``max_elements`` bounds one block's ``N x m x C``
intermediates so that they stay in cache); each block runs through every layer. Per tile
``(l, t, j)`` of the folded network, one of two evaluations applies:

**Integer column sums** (``LutTile``): the bit-true macro model, and the analog model of
chips whose cells are ideal (no per-cell spread) with no read noise. The column sum
``s = sum_r x_b[r] (2 w_eff[r, c] - 1)`` is then an integer in ``[-R, R]`` and the whole
readout chain of a column is a table ``v = T[n, c, s]``, built once by evaluating the
specification's own chain (:func:`models.macro.readout`'s arithmetic, or the analog
model's float32 operations in their order) on every ``s``; the trim residual is folded
in; only the sums the column's weights can reach (``rows + 1`` of them) are evaluated.
The results are therefore bit-identical to the straightforward evaluation. Where a
column's table is affine over the sums its weights can reach (``T = s + beta``: no
saturation, gain 64, identity curve, no quantisation, as after calibration), the
planes' shift-accumulation collapses: ``tile = x @ W + (2^P - 1) beta``, one product of
the multi-bit inputs for all planes, and for a layer whose tiles are all affine one
product over all its inputs. Other columns read their table per plane; in the first
layer, whose inputs and weights every chip shares, the table reads of all planes and
row tiles become one product per column (:class:`_OneHot`): the plane-weighted one-hot
counts of the column sums ``(m, K)`` times the tables ``(K, N)``, exact in float32.

**Float column values** (``FloatTile``): the analog model with cell spread or read
noise. The column gain (and the curve's ``1 / vmax``) are folded into each chip's
weight matrix and the compensation and offset into an extra row of it, so one product
gives the scaled column value; the noise is the bucket midpoint of each read's draw
(``docs/DEVICE_MODELS.md`` section 5) times ``read_noise * gain``; then clamp, curve and
the ADC. Reads whose ADC input lies within the bucket's reach of a rounding boundary, and
reads in a tail bucket, are recomputed with their exact draw (in one batch per column
tile), so every read gets the readout of the same draw as the straightforward
evaluation. The float operations are in another order than there (gain folded into the
product), so a readout can differ where the float32 value lies within rounding of a
boundary: ``tests/test_montecarlo.py`` counts the differing predictions.

Clamps are skipped where bounds prove them inactive: the readout clamp when no column
value can leave ``[-SAT, SAT]`` with the largest bucket midpoint, the accumulator clamp
when no sum of tiles can leave the ACC range.

ReRAM stacks use the straightforward evaluation.
"""

from __future__ import annotations

import numpy as np

from . import fused_readout, macro
from .devices import _adc, _SramArray, discharge_curve
from .sampler import GAMMA, bucket_midpoints, central_half_width, mix64, normal_from_bits

__all__ = ["DEFAULT_MAX_ELEMENTS", "predict"]

#: Bound on one block's ``N x m x C`` intermediate (elements): 1 MiB of float32.
DEFAULT_MAX_ELEMENTS = 1 << 18

#: ``None``, or ``callable(stage)`` that :func:`predict` calls after the plan, each layer
#: and each layer's thresholds with the stage's name (``None``: a stage begins):
#: ``bench.model_speed --stages``.
layer_clock = None

#: Whether noisy column-mode tiles use the compiled pass (:mod:`models.fused_readout`)
#: where numba is installed; False runs the numpy pass (``bench.model_speed --readout
#: numpy``, the tests that compare the two).
use_fused = True

#: The stage name of the compiled pass in ``FloatTile.stage_clock``'s records.
FUSED_STAGE = "hash, draw, chain, ADC, boundary test (compiled)"



def _compiled_passes() -> bool:
    """Whether the compiled passes run: asked for (:data:`use_fused`) and available."""
    return use_fused and fused_readout.available()


_MID = bucket_midpoints()
# Largest |midpoint| a read is resolved with, without its exact draw: a central bucket's
# (the numpy pass recomputes the tail buckets' reads), or a tail bucket's but the end
# buckets' (the compiled pass).
_MID_MAX = max(float(np.nanmax(np.abs(_MID))), fused_readout.MID_MAX)


def _signed(bits) -> np.ndarray:
    return np.where(np.asarray(bits) != 0, np.float32(1), np.float32(-1))


class _Tile:
    """What every tile evaluation shares: the tile's chips, rows and columns in use."""

    def __init__(self, cr, key, rows_real, cols_real):
        self.key = key
        self.chips = cr.chips[key]
        self.n = cr.n
        self.rows, self.cols = rows_real, cols_real
        l, t, j = key
        self.weight_bits = cr.net.layers[l].weights[t, j][:rows_real, :cols_real]
        stuck = self.chips.stuck_mask
        self.stuck = stuck is not None and bool(np.any(stuck[:, :rows_real, :cols_real]))
        if self.stuck:
            self.w_eff = np.where(stuck[:, :rows_real, :cols_real],
                                  self.chips.stuck_value[:, :rows_real, :cols_real],
                                  self.weight_bits[None].astype(bool))
        else:
            self.w_eff = self.weight_bits[None].astype(bool)
        residual = cr.residual.get(key)
        self.residual = None if residual is None else residual[:, :cols_real]


# --- integer column sums: one table per column ---------------------------------------------

class LutTile(_Tile):
    """A tile whose column sums are integers: readout tables, affine columns collapsed."""

    def __init__(self, cr, key, rows_real, cols_real, planes):
        super().__init__(cr, key, rows_real, cols_real)
        self.macro_rows = cr.params.rows                       # the row stride of the inputs
        # Sums the weights can reach: every integer in [-(cells at -1), cells at +1], the
        # tile's rows + 1 of them. The table holds the chain on those only, at index
        # k = s + neg[n, c] (K = rows + 1 entries per column).
        pos = self.w_eff.sum(axis=1)                           # (N or 1, C)
        neg = self.rows - pos
        self.neg = np.ascontiguousarray(np.broadcast_to(neg, (self.n, cols_real)))   # (N, C)
        K = rows_real + 1
        sums = np.arange(K)[:, None, None] - neg[None]         # (K, N or 1, C)
        sums = np.broadcast_to(sums, (K, self.n, cols_real))
        reached = self._tables(cr, key, sums)                  # (K, N, C)
        if self.residual is not None:
            # Noiseless reads all agree, so the trim's mean is an integer here.
            if not np.issubdtype(self.residual.dtype, np.integer):
                raise ValueError("a tile of integer column sums needs an integer trim residual")
            reached = reached - self.residual[None]
        reached = reached.astype(np.int32)
        self.table = np.ascontiguousarray(reached.transpose(1, 2, 0))           # (N, C, K)
        beta = np.take_along_axis(self.table, self.neg[:, :, None], axis=2)[:, :, 0]
        # Affine: T[s] = s + beta on every reachable sum.
        self.affine = np.all(reached - sums == beta[None], axis=0)             # (N, C)
        self.beta = beta.astype(np.int64)                      # the readout of s = 0
        self.pairs = np.nonzero(~self.affine)
        self.planes = planes
        self.flat_index = self.flat_table = None                 # of _all_tabled, when used
        # _all_tabled forms table indices in float32: exact below 2^24.
        self.float_index = self.n * cols_real * K < 1 << 24
        self.signed = _signed(self.w_eff)                      # (N or 1, r, C)
        self.shared_weights = self.signed.shape[0] == 1
        flat = self.signed.transpose(1, 0, 2).reshape(rows_real, -1)
        self.flat = np.ascontiguousarray(flat)                 # (r, N*C) or (r, C)
        self.bias = ((1 << planes) - 1) * self.beta.astype(np.float32)     # (N, C)
        vmax = np.abs(reached).max(initial=0)
        self.max_abs_tile = ((1 << planes) - 1) * int(vmax)
        # Most columns tabled and every chip with the same weights: one column sum per
        # image serves all chips, so gather whole rows T[c, s, :] of N readouts.
        self.by_rows = self.shared_weights and 2 * len(self.pairs[0]) > self.n * cols_real
        self.rows_table = None                                 # of _by_rows, when used

    def _tables(self, cr, key, s3):
        """Readout of every column for the column sums ``s3`` (K, N, C): ``(K, N, C)``."""
        C = self.cols
        if cr.backend == "macro":
            # The registers of every chip, as ChipReadout passes them to macro.readout.
            regs = cr.regs[key]
            column = {k: regs[k][:, :C] for k in ("offset", "gain") if k in regs}
            table = regs.get("table")
            if table is not None and np.all(table == table[:1]):
                table = table[0]                  # one curve for every chip: a plain lookup
            sat, qshift = regs.get("sat"), regs.get("qshift", 0)
            comp = cr.comp[key][:, :C]
            one = [r is None or np.ndim(r) == 0 or bool(np.all(r == np.reshape(r, -1)[0]))
                   for r in (sat, qshift)]
            if not (all(one) and (table is None or table.ndim == 1)):
                return macro._readout_chain(cr.params, s3, comp, column.get("offset"),
                                            column.get("gain"), sat, qshift, table)
            # SAT, QSHIFT and TABLE shared by every chip: after the column offset the chain
            # depends on a = s + comp + offset and the column's GAIN only, so it is
            # evaluated once per (a, distinct GAIN) and gathered.
            a = s3 + comp
            if "offset" in column:
                a = a + column["offset"]
            gain = column.get("gain")
            gains, g_idx = (None, np.zeros(comp.shape, np.intp)) if gain is None else np.unique(
                gain, return_inverse=True)
            lo = int(a.min())
            grid = np.arange(lo, int(a.max()) + 1)[:, None]
            K = cr.params.comp_rows                # comp = K: a = s + K, a valid 2n - K
            scalar = [None if r is None else np.reshape(r, -1)[0] for r in (sat, qshift)]
            f = macro._readout_chain(cr.params, grid - K, np.int64(K), None, gains, *scalar,
                                     table)                                         # (A, G)
            index = a - lo
            if gains is not None:
                index *= len(gains)
                index += np.reshape(g_idx, comp.shape)
            return np.take(f.reshape(-1), index)
        # The analog model's float32 operations, in its order (models.devices._SramArray).
        arr = _SramArray(self.chips, cr.net.layers[key[0]].weights[key[1], key[2]], cr.comp[key],
                         cr.params.readout_bits, None, None)
        cfg = arr.cfg
        a = s3.astype(np.float32)
        a += (arr.comp_pos - arr.comp_neg)[:, :C]
        a += arr.offset[:, :C]
        a *= arr.gain[:, :C]
        np.clip(a, -arr.sat, arr.sat, out=a)
        if np.isfinite(cfg.bl_vmax):
            a = discharge_curve(a, cfg.bl_vmax, cfg.bl_shape)
        return _adc(a, arr.readout_bits, arr.qshift)

    def values(self, x, shared):
        """Tile values ``sum_b 2^b v_b`` (float32): ``x`` (m, r) shared by every chip gives
        ``(m, N, C)``, ``x`` (N, m, r) gives ``(N, m, C)``."""
        N, C = self.n, self.cols
        if shared and self.by_rows:
            return self._by_rows(x)
        if not shared and self.float_index and 2 * len(self.pairs[0]) > N * C:
            # Most columns tabled: read every column from its table (affine ones too).
            return self._all_tabled(x)
        xf = x.astype(np.float32)
        if shared:
            out = (xf @ self.flat).reshape(len(x), -1, C)
            layout = (1, N, C)
        else:
            m = x.shape[1]
            if self.shared_weights:
                out = (xf.reshape(-1, x.shape[2]) @ self.flat).reshape(N, m, C)
            else:
                out = np.matmul(xf, self.signed)
            layout = (N, 1, C)
        if out.shape[-2] == N:
            out += self.bias.reshape(layout)
        else:
            out = out + self.bias.reshape(layout)
        if len(self.pairs[0]):
            self._tabled(x, shared, out)
        return out

    def _by_rows(self, x):
        """Every column from its table, for shared inputs and weights: ``(m, N, C)``."""
        K = self.table.shape[2]
        if self.rows_table is None:
            self.rows_table = np.ascontiguousarray(
                self.table.transpose(1, 2, 0).reshape(self.cols * K, self.n))
        base = np.arange(self.cols) * K + self.neg[0]          # shared weights: one neg
        tile = None
        for b in range(self.planes - 1, -1, -1):
            s = ((x >> b) & 1).astype(np.float32) @ self.flat             # (m, C)
            idx = s.astype(np.intp)
            idx += base
            v = np.take(self.rows_table, idx, axis=0).astype(np.float32)  # (m, C, N)
            if tile is None:
                tile = v
            else:
                tile *= np.float32(2)
                tile += v
        return tile.transpose(0, 2, 1)

    def _sums(self, xb, shared):
        """Column sums of one plane: ``(m, N, C)`` or ``(N, m, C)`` (float32, integers)."""
        N, C = self.n, self.cols
        if shared:
            return (xb @ self.flat).reshape(len(xb), -1, C)
        if self.shared_weights:
            return (xb.reshape(-1, xb.shape[2]) @ self.flat).reshape(N, xb.shape[1], C)
        return np.matmul(xb, self.signed)

    def _all_tabled(self, x):
        """Every column of per-chip inputs ``x`` (N, m, r) from its table: ``(N, m, C)``.
        The table index ``(n C + c) K + neg[n, c] + s`` is formed in float32 (exact: it is
        below 2^24) and the float32 table read directly."""
        if self.flat_index is None:
            K = self.table.shape[2]
            self.flat_index = (np.arange(self.n * self.cols) * K + self.neg.reshape(-1)).astype(
                np.float32).reshape(self.n, 1, self.cols)
            self.flat_table = self.table.reshape(-1).astype(np.float32)
        fused = _compiled_passes()
        tile = None
        for b in range(self.planes - 1, -1, -1):
            s = self._sums(((x >> b) & 1).astype(np.float32), False)
            if fused:
                # Index, table read and accumulation in one compiled pass.
                if tile is None:
                    tile = np.empty(s.shape, np.float32)
                fused_readout.table_plane(s, self.flat_index[:, 0], self.flat_table,
                                          b == self.planes - 1, tile)
                continue
            s += self.flat_index
            v = np.take(self.flat_table, s.astype(np.intp))
            if tile is None:
                tile = v
            else:
                tile *= np.float32(2)
                tile += v
        return tile

    def _tabled(self, x, shared, out):
        """Columns whose table is not affine: read their table plane by plane."""
        n_idx, c_idx = self.pairs
        K = self.table.shape[2]
        base = (n_idx * self.cols + c_idx) * K + self.neg[n_idx, c_idx]
        flat_table = self.table.reshape(-1)
        tile = None
        for b in range(self.planes - 1, -1, -1):
            s = self._sums(((x >> b) & 1).astype(np.float32), shared)
            if shared:
                s = s[:, 0, c_idx] if s.shape[1] == 1 else s[:, n_idx, c_idx]
                v = np.take(flat_table, s.astype(np.intp) + base[None])          # (m, P)
            else:
                s = s[n_idx, :, c_idx]                                           # (P, m)
                v = np.take(flat_table, s.astype(np.intp) + base[:, None])
            v = v.astype(np.float32)
            tile = v if tile is None else 2 * tile + v
        if shared:
            out[:, n_idx, c_idx] = tile
        else:
            out[n_idx, :, c_idx] = tile


# --- float column values -------------------------------------------------------------------

class FloatTile(_Tile):
    """A tile of the analog model with float column values (cell spread or read noise)."""

    #: ``None``, or ``callable(stage)`` called after each stage of the noisy readout with
    #: the stage's name (``None``: a stage begins): ``bench.model_speed --stages``.
    stage_clock = None
    #: Reads the compiled pass gave their exact draw, over every FloatTile (int64 array of
    #: one; ``bench.model_speed --stages`` sets it to 0 and reads it).
    exact_draws = np.zeros(1, np.int64)

    def __init__(self, cr, key, rows_real, cols_real, planes):
        super().__init__(cr, key, rows_real, cols_real)
        arr = _SramArray(self.chips, cr.net.layers[key[0]].weights[key[1], key[2]], cr.comp[key],
                         cr.params.readout_bits, None, None)
        cfg = arr.cfg
        self.cfg, self.planes = cfg, planes
        C = cols_real
        self.bitline = arr.bitline
        curve = np.isfinite(cfg.bl_vmax)
        self.vmax = float(cfg.bl_vmax) if curve else None
        gain = arr.gain[:, :C]
        self.readout_bits, self.qshift = arr.readout_bits, arr.qshift
        self.sat = arr.sat
        W = arr.readout_bits
        self.lo, self.hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
        sigma = float(cfg.read_noise)
        self.sigma = sigma
        rows = slice(0, rows_real)
        if self.bitline:
            # Both bit lines from one product: columns [0, C) BLB, [C, 2C) BL, then one
            # row of compensation currents.
            pos = arr.mat[:, rows, :arr.cols][:, :, :C]
            neg = arr.mat[:, rows, arr.cols:][:, :, :C]
            top = np.concatenate([arr.comp_pos[:, :C], arr.comp_neg[:, :C]], axis=1)[:, None]
            mat = np.concatenate([np.concatenate([pos, neg], axis=2), top], axis=1)
            self.gain = gain
            self.offset = arr.offset[:, :C]
            # The noise is added before the gain here.
            self.noise_scale = np.full(gain.shape, sigma, np.float32)
            self.clip_limit = np.float32(self.sat)
            self.need_clip = True
        else:
            scale = np.float32(1 / self.vmax) if curve else np.float32(1)
            k = (gain * scale).astype(np.float32)                      # (N, C)
            bias = (arr.comp_pos - arr.comp_neg)[:, :C] + arr.offset[:, :C]
            mat = np.concatenate([arr.mat[:, rows, :C] * k[:, None, :], (bias * k)[:, None, :]], axis=1)
            self.noise_scale = (np.float32(sigma) * k).astype(np.float32)
            self.clip_limit = np.float32(self.sat * scale)
            # Bound on |column value| with the largest central bucket midpoint.
            bound = (np.abs(mat[:, :-1]).sum(axis=1) + np.abs(mat[:, -1])
                     + np.abs(self.noise_scale) * _MID_MAX) * (1 + 1e-5)
            self.need_clip = bool(np.any(bound >= self.clip_limit))
        self.mat = np.ascontiguousarray(mat.astype(np.float32))              # (N, r+1, C or 2C)
        self.flat = np.ascontiguousarray(self.mat.transpose(1, 0, 2).reshape(self.mat.shape[1], -1))
        # Margin of the ADC input around a rounding boundary within which a read needs its
        # exact draw: |dt/dZ| <= read_noise * gain (curve and clamp have slope <= 1).
        self.margin = np.float32(sigma * float(np.max(gain, initial=0)) * central_half_width()
                                 * (1 + 1e-3) + 1e-4)
        self.residual_f = None if self.residual is None else self.residual.astype(np.float32)
        # Tiles whose kept reads one batch can refine: the same chain after the noise.
        self.chain_key = (self.bitline, float(self.clip_limit), self.vmax, cfg.bl_shape,
                          self.qshift, self.readout_bits)
        self.max_abs_tile = ((1 << planes) - 1) * (max(-self.lo, self.hi) + (
            0 if self.residual is None else int(np.ceil(np.abs(self.residual).max(initial=0)))))
        # The compiled pass of a noisy plane (models.fused_readout), where it applies: its
        # boundary test widens the margin by the curve's approximation error and rounding.
        curve = fused_readout.curve_code(self.vmax, cfg.bl_shape)
        self.fused = sigma > 0 and not self.bitline and curve is not None and _compiled_passes()
        if self.fused:
            self.curve = curve
            top = float(1 << (W - 1))
            self.exact_margin = ((self.vmax or 0) * fused_readout.TANH_ERROR + 8 * top * 2.0 ** -23
                                 + sigma * float(np.max(gain, initial=0)) * fused_readout.DRAW_ERROR
                                 * (1 + 1e-3))
            # One margin per tier of buckets: the narrower the buckets, the fewer reads
            # need their exact draw.
            self.fused_margins = fused_readout.tier_margins(
                sigma * float(np.max(gain, initial=0)), 1e-4 + self.exact_margin)

    # The readout chain after the product: u (scaled column value with noise) -> v.
    def _chain(self, u, clip, half=np.float32(0.5)):
        """ADC input ``t + half`` (float32, in place on ``u``) of column values ``u``."""
        if clip:
            np.clip(u, -self.clip_limit, self.clip_limit, out=u)
        if self.vmax is not None:
            if self.cfg.bl_shape == "tanh":
                np.tanh(u, out=u)
                u *= np.float32(self.vmax)
            else:
                a = np.abs(u)
                np.negative(a, out=a)
                np.expm1(a, out=a)
                a *= np.float32(-self.vmax)
                np.copysign(a, u, out=u)
        u += half
        return u

    def _chain_bitline(self, y, z, layout, half=np.float32(0.5)):
        """ADC input ``t + half`` of bit-line tiles: ``y`` (.., 2C) products incl.
        compensation."""
        C = self.cols
        f = lambda n: discharge_curve(n, self.cfg.bl_vmax, self.cfg.bl_shape)  # noqa: E731
        u = f(y[..., :C]) - f(y[..., C:])
        u += self.offset.reshape(layout)
        if z is not None:
            u += z
        u *= self.gain.reshape(layout)
        np.clip(u, -self.clip_limit, self.clip_limit, out=u)
        u += half
        return u

    def _adc(self, r):
        """Readout (float32) from the ADC input ``r = t + 1/2``. The clamp to ``[-SAT,
        SAT]`` (applied or proven) and a curve with ``|f(k)| <= |k|`` keep ``floor(r)``
        within the signed ``W`` bits, so the ADC's clip never acts here."""
        return self._quantize(np.floor(r))

    def _quantize(self, v):
        """Floor the readouts ``v`` to multiples of ``2^qshift``, in place."""
        if self.qshift:
            q = min(self.qshift, self.readout_bits - 1)
            v *= np.float32(2.0 ** -q)
            np.floor(v, out=v)
            v *= np.float32(2.0 ** q)
        return v

    def values(self, x, shared, noise=None, images=None, pending=None):
        """Tile values (float32) of inputs ``x``: (m, r) shared -> (m, N, C); (N, m, r) ->
        (N, m, C). ``noise`` (a models.sampler.ReadNoise) and ``images`` key the reads.
        With a list ``pending``, the reads that need their exact draw are appended to it
        (``(tile, entries)``) for :meth:`refine`, with readout 0 in the values; otherwise
        they are refined here.

        With read noise the bulk adds ``1/2 + margin`` before the floor: a read is near a
        rounding boundary of ``t + 1/2`` (within the margin) exactly when the fraction of
        ``t + 1/2 + margin`` is below ``2 margin``, and every other read's floor is that
        of ``t + 1/2``. The planes reuse one set of buffers."""
        N, C = self.n, self.cols
        m = x.shape[0] if shared else x.shape[1]
        layout = (1, N, C) if shared else (N, 1, C)
        width = self.mat.shape[2]
        noisy = self.sigma > 0
        lead = (m, N) if shared else (N, m)
        xb = np.ones(x.shape[:-1] + (x.shape[-1] + 1,), np.float32)   # last column: ones
        y = np.empty(lead + (width,), np.float32)
        tile = np.empty(lead + (C,), np.float32)
        if noisy and self.fused:
            return self._fused_values(x, xb, y, tile, shared, noise, images, pending)
        if noisy:
            half = np.float32(0.5) + self.margin
            work = np.empty(lead + (C,), np.float32)
            plane_v = np.empty(lead + (C,), np.float32)
            mask = np.empty(lead + (C,), bool)
            quads = (C + 3) // 4
            words = np.empty(lead + (quads,), np.uint64)
            scratch = np.empty(lead + (quads,), np.uint64)
            scale = self.noise_scale.reshape(layout)
        kept = []
        tick = FloatTile.stage_clock if noisy else None
        for b in range(self.planes - 1, -1, -1):
            first = b == self.planes - 1
            if tick:
                tick(None)
            self._products(x, b, xb, y, shared)
            v = tile if first else (plane_v if noisy else None)
            if not noisy:
                r = self._chain_bitline(y, None, layout) if self.bitline else self._chain(
                    y, self.need_clip)
                v = np.floor(r, out=tile if first else r)
                self._quantize(v)
                if not first:
                    tile *= np.float32(2)
                    tile += v
                continue
            if tick:
                tick("product")
            bucket = noise.buckets(self.key, b, images, C, chip_major=not shared, out=words,
                                   scratch=scratch)
            if tick:
                tick("hash (bucket bits)")
            z = np.take(_MID, bucket, mode="wrap", out=work)
            if tick:
                tick("bucket midpoint lookup")
            z *= scale
            if self.bitline:
                r = self._chain_bitline(y, z, layout, half)
            else:
                z += y
                r = self._chain(z, self.need_clip, half)
            if tick:
                tick("noise scale and add, clamp, curve")
            np.floor(r, out=v)
            near = self._near(r, v, mask)
            if tick:
                tick("ADC floor, boundary check")
            if len(near):
                kept.append(self._keep(near, y, v, bucket, b))
            self._quantize(v)
            if not first:
                tile *= np.float32(2)
                tile += v
            if tick:
                tick("exact reads kept, planes accumulated")
        return self._finish(tile, kept, shared, noise, images, pending)

    def _fused_values(self, x, xb, y, tile, shared, noise, images, pending):
        """:meth:`values` of a noisy column-mode tile with the compiled pass
        (:func:`models.fused_readout.noisy_plane`) after each plane's product."""
        C = self.cols
        counter = (np.asarray(images, np.uint64) + np.uint64(1)) * np.uint64(GAMMA)
        near_idx = np.empty(tile.size, np.int64)
        near_bucket = np.empty(tile.size, np.uint16)
        kept, count = [], 0
        yflat = y.reshape(-1)
        tick = FloatTile.stage_clock
        for b in range(self.planes - 1, -1, -1):
            if tick:
                tick(None)
            self._products(x, b, xb, y, shared)
            if tick:
                tick("product")
            start = count
            count = fused_readout.noisy_plane(
                y, noise.stream_keys(self.key, b, C, 0), noise.stream_keys(self.key, b, C, 1),
                counter, shared, self.noise_scale, self.curve, np.float32(self.vmax or 1),
                self.need_clip, np.float32(self.clip_limit),
                min(self.qshift, self.readout_bits - 1), self.fused_margins, self.exact_margin,
                b == self.planes - 1, tile, near_idx, near_bucket, count, FloatTile.exact_draws)
            if count > start:
                near = near_idx[start:count].copy()
                kept.append((near, np.unravel_index(near, tile.shape), yflat[near],
                             near_bucket[start:count].copy(), b))
            if tick:
                tick(FUSED_STAGE)
        return self._finish(tile, kept, shared, noise, images, pending)

    def _products(self, x, b, xb, y, shared):
        """The products of plane ``b`` of ``x`` into ``y`` (``xb``: the bits, with the
        last column of ones for the compensation and offset row)."""
        np.bitwise_and(np.right_shift(x, b), 1, out=xb[..., :-1], casting="unsafe")
        if shared:
            np.matmul(xb, self.flat, out=y.reshape(len(x), -1))
        else:
            np.matmul(xb, self.mat, out=y)

    def _finish(self, tile, kept, shared, noise, images, pending):
        """The trim's residual subtracted, the kept reads refined (or left in
        ``pending``): the tile's values."""
        if self.residual_f is not None:
            tile -= np.float32((1 << self.planes) - 1) * self.residual_f.reshape(
                (1, self.n, self.cols) if shared else (self.n, 1, self.cols))
        if kept:
            if pending is None:
                self.refine(tile, [(self, kept)], noise, images, shared)
            else:
                pending.append((self, kept))
        return tile

    def _near(self, r, v, mask) -> np.ndarray:
        """Flat indices of the reads whose ADC input ``r = t + 1/2 + margin`` (floor
        ``v``) lies within the margin of a rounding boundary of ``t + 1/2``, or is NaN
        (tail buckets); ``r`` is overwritten, ``mask`` (bool) is work space."""
        d = np.subtract(r, v, out=r)
        safe = np.greater_equal(d, np.float32(2) * self.margin, out=mask)
        np.logical_not(safe, out=safe)
        return np.flatnonzero(safe)

    def _keep(self, near, y, v, bucket, plane):
        """What the refinement of reads ``near`` needs (their products, bucket bits and
        plane); their readouts are set to 0 until it adds the exact ones."""
        i0, i1, c = np.unravel_index(near, v.shape)
        if self.bitline:
            y_e = np.stack([y[i0, i1, c], y[i0, i1, self.cols + c]])
        else:
            y_e = y[i0, i1, c]
        v.reshape(-1)[near] = 0
        return near, (i0, i1, c), y_e, bucket[i0, i1, c], plane

    @staticmethod
    def refine(values, pending, noise, images, shared):
        """Recompute the kept reads of ``pending`` (``(tile, entries)`` pairs whose
        values were summed into ``values``) with their exact draws and add their
        readouts: a read of plane ``b`` enters with weight ``2^b``."""
        tick = FloatTile.stage_clock
        if tick:
            tick(None)
        flat = values.reshape(-1)
        batches = {}
        for tile, kept in pending:
            if tile.bitline:
                for near, v, plane in tile._exact(kept, noise, images, shared):
                    flat[near] += v * np.float32(1 << plane)
            else:
                batches.setdefault(tile.chain_key, []).append((tile, kept))
        for batch in batches.values():
            near, v = FloatTile._exact_batch(batch, noise, images, shared)
            np.add.at(flat, near, v)
        if tick:
            tick("exact draws of the kept reads")

    @staticmethod
    def _exact_batch(batch, noise, images, shared):
        """The kept reads of column-mode tiles with one readout chain (``chain_key``), in
        one batch: their flat positions and exact readouts times ``2^plane``. The fine
        bits are :meth:`models.sampler.ReadNoise.bits_at`'s, hashed for all at once."""
        counter = (images.astype(np.uint64) + np.uint64(1)) * np.uint64(GAMMA)
        nears, hashes, lanes, ys, buckets, scales, weights = [], [], [], [], [], [], []
        for tile, kept in batch:
            for near, (i0, i1, c), y_e, bucket_e, plane in kept:
                chip, img = (i1, i0) if shared else (i0, i1)
                keys = noise.stream_keys(tile.key, plane, tile.cols, 1)
                hashes.append(keys[chip, c // 4] + counter[img])
                lanes.append(c % 4)
                nears.append(near)
                ys.append(y_e)
                buckets.append(bucket_e)
                scales.append(tile.noise_scale[chip, c])
                weights.append(np.full(len(near), 1 << plane, np.float32))
        h = mix64(np.concatenate(hashes))
        h >>= np.uint64(16) * np.concatenate(lanes).astype(np.uint64)
        fine = (h & np.uint64(0xFFFF)).astype(np.uint16)
        z = normal_from_bits(np.concatenate(buckets), fine)
        z *= np.concatenate(scales)
        tile = batch[0][0]
        # Tail draws may exceed the bound that let the bulk skip the clamp.
        v = tile._adc(tile._chain(np.concatenate(ys) + z, True))
        v *= np.concatenate(weights)
        return np.concatenate(nears), v

    def _exact(self, kept, noise, images, shared):
        """Readouts of the kept reads with their exact draws, per kept entry."""
        chips, cols, ys, buckets, fines = [], [], [], [], []
        for near, (i0, i1, c), y_e, bucket_e, plane in kept:
            chip, img = (i1, i0) if shared else (i0, i1)
            chips.append(chip)
            cols.append(c)
            ys.append(y_e)
            buckets.append(bucket_e)
            fines.append(noise.bits_at(self.key, plane, chip, images[img], c, 1))
        chip, c = np.concatenate(chips), np.concatenate(cols)
        z = normal_from_bits(np.concatenate(buckets), np.concatenate(fines))
        z *= self.noise_scale[chip, c]
        if self.bitline:
            y_e = np.concatenate(ys, axis=1)
            f = lambda n: discharge_curve(n, self.cfg.bl_vmax, self.cfg.bl_shape)  # noqa: E731
            u = f(y_e[0]) - f(y_e[1])
            u += self.offset[chip, c]
            u += z
            u *= self.gain[chip, c]
            np.clip(u, -self.clip_limit, self.clip_limit, out=u)
            r = u + np.float32(0.5)
        else:
            # Tail draws may exceed the bound that let the bulk skip the clamp.
            r = self._chain(np.concatenate(ys) + z, True)
        v = self._adc(r)
        k = 0
        for near, *_, plane in kept:
            yield near, v[k:k + len(near)], plane
            k += len(near)


# --- the network ---------------------------------------------------------------------------

def _tile_kind(cr, key) -> type:
    cfg = cr.config
    if cr.backend == "macro":
        return LutTile
    chips = cr.chips[key]
    ideal_cells = bool(np.all(chips.cell_current == 1))
    if cfg.read_noise == 0 and ideal_cells and cfg.bl_mode == "column":
        return LutTile
    return FloatTile


class _Collapsed:
    """A layer whose every column is affine in its column sums, with no accumulator
    clamp: ``acc = x @ W + beta`` for all its tiles and planes at once."""

    def __init__(self, tiles, layer, cols):
        first = next(iter(tiles.values()))
        self.n = first.n
        rt, ct = layer.row_tiles, layer.col_tiles
        own = [not t.shared_weights for t in tiles.values()]
        self.shared_weights = not any(own)
        blocks = []
        for t in range(rt):
            row = [np.broadcast_to(tiles[t, j].signed, (1 if self.shared_weights else self.n,)
                                   + tiles[t, j].signed.shape[1:]) for j in range(ct)]
            blocks.append(np.concatenate(row, axis=2))
        w = np.concatenate(blocks, axis=1)                      # (1 or N, n_in, n_out)
        self.weights = np.ascontiguousarray(w[0] if self.shared_weights else w)
        bias = [sum(tiles[t, j].bias for t in range(rt)) for j in range(ct)]
        self.bias = np.concatenate(bias, axis=1).astype(np.float32)   # (N, n_out)

    def products(self, x, shared):
        """``x @ W`` (float32): (m, n_out) for shared ``x`` (m, n_in) and weights,
        (m, N, n_out) for shared ``x`` and per-chip weights, (N, m, n_out) otherwise."""
        xf = x.astype(np.float32)
        if shared:
            if self.shared_weights:
                return xf @ self.weights
            return np.einsum("mr,nro->mno", xf, self.weights, optimize=True)
        if self.shared_weights:
            N, m, k = xf.shape
            return (xf.reshape(N * m, k) @ self.weights).reshape(N, m, -1)
        return np.matmul(xf, self.weights)


class _OneHot:
    """A layer of integer column sums with inputs and weights shared by every chip and
    no accumulator clamp, but tabled (non-affine) columns: the tables' sum over planes
    and row tiles as one product per column.

    ``acc[n, m, c] = sum_t sum_b 2^b T_t[n, c, s_tb[m, c]]`` is ``H_c[m] . U_c[:, n]`` with
    ``H_c[m, k] = sum_b 2^b [s_tb[m, c] = k]`` over the sums ``k`` each tile's column can
    reach and ``U_c`` those table entries: one float32 product ``(m, K) @ (K, N)`` per
    column (``K`` the reachable sums of all row tiles, ``rows + 1`` per tile) instead of a
    table read per chip, plane and tile. Every term and partial sum is an integer below
    2^24 (checked), so the products are exact in any order."""

    #: Float32 represents every integer up to this exactly.
    EXACT = 1 << 24

    @staticmethod
    def applies(tiles, layer, clamp) -> bool:
        lut = all(isinstance(t, LutTile) and t.shared_weights for t in tiles.values())
        if clamp or not lut:
            return False
        weight = (1 << layer.planes) - 1
        bound = max(sum(weight * int(np.abs(tiles[t, j].table).max(initial=0))
                        for t in range(layer.row_tiles)) for j in range(layer.col_tiles))
        return bound < _OneHot.EXACT

    def __init__(self, tiles, layer):
        first = next(iter(tiles.values()))
        self.n = first.n
        self.planes = layer.planes
        self.row_tiles, self.col_tiles = layer.row_tiles, layer.col_tiles
        self.tiles = tiles
        # Per column tile j: row tile t's sums s of column c are row start[t] + neg[c] + s
        # of H.
        self.shift, self.tables, self.width = {}, {}, {}
        for j in range(self.col_tiles):
            start, blocks = 0, []
            for t in range(self.row_tiles):
                tile = tiles[t, j]
                # U[c, k, n] = T[n, c, k]: the table at k = s + neg[c] (shared weights:
                # one neg for every chip).
                blocks.append(tile.table.transpose(1, 2, 0))
                self.shift[t, j] = start + tile.neg[0]
                start += tile.rows + 1
            self.tables[j] = np.ascontiguousarray(np.concatenate(blocks, axis=1).astype(np.float32))
            self.width[j] = start

    def accumulators(self, x):
        """``(N, m, outputs)`` accumulators (a view) of shared inputs ``x`` (m, inputs)."""
        m = len(x)
        P = self.planes
        # Every plane's bits as rows of one product per tile: (P * m, inputs).
        bits = ((x[None] >> np.arange(P)[:, None, None]) & 1).astype(np.float32).reshape(P * m, -1)
        outs = []
        for j in range(self.col_tiles):
            C, K = self.tiles[0, j].cols, self.width[j]
            R = self.tiles[0, j].macro_rows
            # H in (m, C, K) order, so that each plane's scatter walks it forwards.
            H = np.zeros((m, C, K), np.float32)
            flat = H.reshape(-1)
            base = np.arange(m)[:, None] * (C * K) + np.arange(C) * K          # (m, C)
            fused = _compiled_passes()
            for t in range(self.row_tiles):
                tile = self.tiles[t, j]
                s = (bits[:, t * R:t * R + tile.rows] @ tile.flat).reshape(P, m, C)
                base_t = base + self.shift[t, j]
                for b in range(P):
                    if fused:
                        fused_readout.count_sums(s[b], base_t, 1 << b, flat)
                        continue
                    idx = s[b].astype(np.intp)
                    idx += base_t
                    np.add.at(flat, idx.reshape(-1), np.float32(1 << b))
            outs.append(np.matmul(H.transpose(1, 0, 2), self.tables[j]))     # (C, m, N)
        acc = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)
        return acc.transpose(2, 1, 0)


class _Plan:
    """The tiles of every layer of a ChipReadout, prepared once."""

    def __init__(self, cr):
        self.cr = cr
        self.layers = []
        R = cr.params.rows
        C = cr.params.cols
        A = cr.params.acc_bits
        self.acc_lo, self.acc_hi = -(1 << (A - 1)), (1 << (A - 1)) - 1
        for l, layer in enumerate(cr.net.layers):
            tiles = {}
            for t in range(layer.row_tiles):
                rows_real = min(R, layer.inputs - t * R)
                for j in range(layer.col_tiles):
                    cols_real = min(C, layer.outputs - j * C)
                    kind = _tile_kind(cr, (l, t, j))
                    tiles[t, j] = kind(cr, (l, t, j), rows_real, cols_real, layer.planes)
            bound = max(sum(tiles[t, j].max_abs_tile for t in range(layer.row_tiles))
                        for j in range(layer.col_tiles))
            fractional = any(not np.issubdtype(cr.residual[l, t, j].dtype, np.integer)
                             for (t, j) in tiles if (l, t, j) in cr.residual)
            if fractional and bound * cr.trim_reads >= _OneHot.EXACT:
                # The float32 tiles carry log2(T) fractional bits of the trim's mean.
                most = 1 << (max(1, (_OneHot.EXACT - 1) // bound).bit_length() - 1)
                raise ValueError(f"layer {l}: accumulators up to {bound} with a trim of "
                                 f"{cr.trim_reads} reads are not exact in float32; trim "
                                 f"with at most {most} reads")
            clamp = bound > self.acc_hi
            collapsed = onehot = None
            if not clamp and all(isinstance(t, LutTile) and t.affine.all() for t in tiles.values()):
                collapsed = _Collapsed(tiles, layer, C)
            elif l == 0 and _OneHot.applies(tiles, layer, clamp):
                # Only the first layer's inputs are shared by every chip.
                onehot = _OneHot(tiles, layer)
            self.layers.append((layer, tiles, clamp, collapsed, onehot))


def _layer(plan, l, x, shared, images):
    """Accumulators of layer ``l``, a per-chip bias still to add (or None) and whether
    they are still shared: ``(m, N, outputs)`` for shared inputs ``x`` (m, inputs),
    ``(N, m, outputs)`` for ``x`` (N, m, inputs) and for the one-hot product; a
    collapsed layer with shared weights returns ``(m, outputs)`` products for shared
    inputs, and its bias ``(N, outputs)``."""
    layer, tiles, clamp, collapsed, onehot = plan.layers[l]
    if collapsed is not None:
        return collapsed.products(x, shared), collapsed.bias, shared
    if onehot is not None and shared:
        return onehot.accumulators(x), None, False
    cr = plan.cr
    R = cr.params.rows
    outs = []
    for j in range(layer.col_tiles):
        acc = None
        # Without the clamp the tiles' sum is linear: refine every exact read of the
        # column tile in one go at the end.
        pending = None if clamp else []
        for t in range(layer.row_tiles):
            tile = tiles[t, j]
            xt = x[..., t * R:t * R + tile.rows]
            if isinstance(tile, FloatTile):
                v = tile.values(xt, shared, cr.noise, images, pending)
            else:
                v = tile.values(xt, shared)
            if acc is None:
                acc = v if v.flags.writeable and v.base is None else v.copy()
            else:
                acc += v
            if clamp:
                np.clip(acc, plan.acc_lo, plan.acc_hi, out=acc)
        if pending:
            FloatTile.refine(acc, pending, cr.noise, images, shared)
        outs.append(acc)
    return (outs[0] if len(outs) == 1 else np.concatenate(outs, axis=-1)), None, shared


def predict(cr, x, images, *, max_elements: int = DEFAULT_MAX_ELEMENTS) -> np.ndarray:
    """Predictions ``(N, M)`` of the chip stack ``cr`` (a ChipReadout) for images ``x``
    (M, inputs) with image indices ``images`` (M,), in blocks of images of at most
    ``max_elements`` readouts per chip stack and column tile."""
    tick = layer_clock
    if tick:
        tick(None)
    plan = getattr(cr, "_plan", None)
    if plan is None:
        plan = cr._plan = _Plan(cr)
    if tick:
        tick("readout tables and plan")
    x = np.asarray(x)
    M = len(x)
    N = cr.n
    width = max(min(l.outputs, cr.params.cols) for l in cr.net.layers)
    step = max(1, int(max_elements) // (N * width))
    preds = np.empty((N, M), np.int64)
    for m0 in range(0, M, step):
        a = x[m0:m0 + step]
        img = images[m0:m0 + step]
        shared = True
        for l, (layer, *_) in enumerate(plan.layers):
            if tick:
                tick(None)
            acc, bias, shared = _layer(plan, l, a, shared, img)
            if tick:
                tick(f"layer {l}: products and readouts")
            if shared:
                # Chip-major from here: (m, 1 or N, outputs) as a (1 or N, m, outputs) view;
                # the comparison below writes (N, m, outputs) in order.
                acc = (acc[:, None, :] if acc.ndim == 2 else acc).transpose(1, 0, 2)
                shared = False
            if bias is not None:
                bias = bias.reshape(N, 1, -1)
            if layer.binarized:
                thresh = layer.thresh.reshape(-1)[:layer.outputs].astype(np.float32)
                if bias is not None:
                    thresh = thresh - bias
                y = np.empty((N, acc.shape[1], layer.outputs), bool)
                np.greater_equal(acc, thresh, out=y)
                flip = layer.flip.reshape(-1)[:layer.outputs].astype(bool)
                if flip.any():
                    y ^= flip
                a = y.view(np.uint8)
            else:
                if bias is not None:
                    acc = acc + bias
                preds[:, m0:m0 + step] = np.argmax(acc, axis=2)
            if tick:
                tick("thresholds and scores")
    return preds
