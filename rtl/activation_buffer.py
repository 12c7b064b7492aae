"""The engine's activation buffers and the inputs of each RUN (docs/ENGINE.md section 3).

Two buffers of ``max_width`` bits: a hidden layer's column tiles capture OUT into one
while its RUNs read the other (the previous layer's outputs); ``swap`` between layers
copies the one written into the one read. The inputs of a RUN are the R rows of its row
tile, from the image buffer's tile (the first layer, every plane) or from the
activations (plane 0), with every row at or past the layer's ``n_in`` masked to 0, in
the cycle that issues the RUN (the register file's INPUT takes them at its edge).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .engine_front_end import COUNT_BITS
from .logic import clog2, eq_const, lt_const, select_packed

__all__ = ["ActivationBuffer"]


class ActivationBuffer(wiring.Component):
    """Two activation buffers and the input planes of the current RUN.

    Parameters
    ----------
    ep : EngineParams

    Members
    -------
    capture : In(1)
        OUT of column group ``group`` of column tile ``col_tile`` (``out_bits``) is
        written into the buffer not read, at outputs ``(col_tile G + group) P ..``
        (within max_width).
    col_tile : In(max(1, ceil(log2 ceil(max_width / C))))
    group : In(max(1, ceil(log2 G)))
    out_bits : In(P)
    swap : In(1)
        The buffer written is copied into the one read at the clock edge; in this cycle
        ``inputs`` already reads it (row tile 0).
    source : In(1)
        The RUN reads the activations (1) or the image's tile (0).
    inputs_n : In(17)
        The layer's inputs n_in: rows at or past it are 0.
    row_base : In(17)
        The row tile's first input, ``row_tile * R``: below max_width in every RUN of a
        program that passes CLASSIFY's check, as ``inputs_n`` is at most max_width; the
        bits from ``max_width.bit_length()`` up are not read.
    row_tile : In(max(1, ceil(log2 ceil(max_width / R))))
    image_rows : In(B * R)
        The image buffer's tile.
    inputs : Out(B * R)
        The input planes of the RUN issued in this cycle (plane b in bits
        ``[b R, (b + 1) R)``).
    """

    def __init__(self, ep):
        self._ep = ep
        p = ep.macro
        self.col_tiles = -(-ep.max_width // p.cols)
        self.row_tiles = -(-ep.max_width // p.rows)
        super().__init__({
            "capture": In(1),
            "col_tile": In(max(1, clog2(self.col_tiles))),
            "group": In(max(1, p.group_addr_bits)),
            "out_bits": In(p.cols_per_cycle),
            "swap": In(1),
            "source": In(1),
            "inputs_n": In(COUNT_BITS),
            "row_base": In(COUNT_BITS),
            "row_tile": In(max(1, clog2(self.row_tiles))),
            "image_rows": In(p.input_bits * p.rows),
            "inputs": Out(p.input_bits * p.rows),
        })

    def elaborate(self, platform):
        ep, p = self._ep, self._ep.macro
        R, P, G, B, width = p.rows, p.cols_per_cycle, p.groups, p.input_bits, ep.max_width
        m = Module()
        # Captures go into ``written``; the swap copies it into ``read`` (a capture and a
        # swap never share a cycle: captures happen in RUN, the swap in CAPTURE). Bits of
        # ``written`` a layer leaves alone are at or past its n_out, which the next layer
        # masks off as rows at or past its n_in.
        written = Signal(width, name="activations_written")
        read = Signal(width, name="activations_read")
        with m.If(self.swap):
            m.d.sync += read.eq(written)
        for u in range(-(-width // P)):
            lo, hi = u * P, min(width, (u + 1) * P)
            with m.If(self.capture & eq_const(self.col_tile, u // G)
                      & eq_const(self.group[:p.group_addr_bits], u % G)):
                m.d.sync += written[lo:hi].eq(self.out_bits[:hi - lo])

        # The row tile of the buffer read, and the mask of rows before n_in. The swap's
        # cycle issues the next layer's first RUN, whose row tile 0 comes from ``written``.
        padded = Cat(read, Const(0, self.row_tiles * R - width))
        act_rows = Mux(self.swap, Cat(written, Const(0, max(0, R - width)))[:R],
                       select_packed(m, self.row_tile[:clog2(self.row_tiles)], padded,
                                     self.row_tiles, R, "activation_rows"))
        # n_in <= max_width, and a RUN of a program that passes CLASSIFY's check has its
        # row tile below ceil(max_width / R), so its row base is below max_width: both
        # fit in w bits, and the subtraction (on the path to INPUT) is no wider.
        w = ep.max_width.bit_length()
        remaining = Signal(w + 1, name="rows_remaining")            # n_in - row_base
        m.d.comb += remaining.eq(self.inputs_n[:w] - self.row_base[:w])
        live = Signal(R, name="rows_live")
        m.d.comb += live.eq(Cat(*(~remaining[-1] & ~lt_const(remaining[:-1], i + 1)
                                  for i in range(R))))
        m.d.comb += self.inputs.eq(Mux(self.source, Cat(act_rows & live, Const(0, (B - 1) * R)),
                                       self.image_rows & live.replicate(B)))
        return m
