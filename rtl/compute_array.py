"""Behavioural compute array: one bit-plane's readout for the P columns of a group.

Implements section 1 of ``docs/ARCHITECTURE.md`` (golden model:
``models/macro.py: readout``): the column sum of one input bit-plane against the stored
weights, plus the compensation bias and the built non-idealities (offset, gain,
saturation, transfer table, quantisation, stuck cells), read out as a signed W-bit
integer. The readout path is combinational; only the bus port of the transfer table is
clocked.

Verilator ``-Wall`` cleanliness
    Amaranth's RTLIL backend trims sign and zero extensions off the operands of
    arithmetic and comparison cells, and Verilator reports every operand narrower than
    its operator as a WIDTH warning. So every operator here gets operands of one width:
    sums are formed modulo ``2^N`` on equal-width unsigned views (exact, because each
    result is sized to hold its true range), sign extensions that feed an operator are
    made by :func:`sign_extend` from a multiplexer the backend cannot trim, constants
    are only ever 1-bit operands, and range checks against powers of two are bitwise.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from models.params import GAIN_BITS, GAIN_FRAC_BITS, QSHIFT_BITS, MacroParams

__all__ = ["ComputeArray", "popcount", "sign_extend", "add_same_width"]


def _comb_signal(m, shape, name, value):
    """A signal of ``shape`` named ``name``, driven combinationally by ``value``.

    Besides naming intermediates in the Verilog, a signal stops Amaranth from lowering a
    shared expression once per use (it lowers an unnamed expression at every slice).
    """
    signal = Signal(shape, name=name)
    m.d.comb += signal.eq(value)
    return signal


def _bits_for_range(lo, hi):
    """Width of the smallest signed shape holding every integer in ``[lo, hi]``."""
    return Shape.cast(range(min(lo, -1), max(hi, 0) + 1)).width


def sign_extend(m, value, width, name):
    """``value`` (signed or unsigned) extended to a ``signed(width)`` signal.

    The extension bits come from a multiplexer on the sign bit rather than from copies of
    it, so the RTLIL backend cannot trim them off an operator's operand (it trims
    repeated sign nets and constant zeros), and Verilator sees equal operand widths.
    An unsigned ``value`` is first given one zero sign bit, which is never trimmed
    because it differs from the bit below it.

    Parameters
    ----------
    m : Module
    value : value-like
    width : int
        At least the width of ``value`` (plus one when it is unsigned).
    name : str
        Name of the returned signal.

    Returns
    -------
    Signal
        ``signed(width)``, the same integer as ``value``.
    """
    value = Value.cast(value)
    if not value.shape().signed:
        value = Cat(value, Const(0, 1)).as_signed()
    extra = width - len(value)
    if extra < 0:
        raise ValueError(f"width must be >= {len(value)} to hold {value!r}, not {width}")
    if extra == 0:
        return _comb_signal(m, signed(width), name, value)
    fill = Mux(value[-1], Const((1 << extra) - 1, extra), Const(0, extra))
    return _comb_signal(m, signed(width), name, Cat(value, fill))


def add_same_width(*terms):
    """Sum of equal-width two's-complement ``terms``, modulo ``2^width``, as signed.

    Exact whenever the true sum fits the terms' width; the caller sizes the terms so.
    Each adder sees two operands of one width (unsigned views, carry dropped).
    """
    width = len(terms[0])
    if any(len(t) != width for t in terms):
        raise ValueError(f"terms must all be {width} bits wide, not {[len(t) for t in terms]}")
    total = terms[0].as_unsigned()
    for term in terms[1:]:
        total = (total + term.as_unsigned())[:width]
    return total.as_signed()


def popcount(m, value, name):
    """Number of ones in ``value``, as a balanced adder tree.

    ``value`` is padded with zeros to a power of two, so that every adder of the tree
    adds two operands of one width. The first level is formed on whole vectors (bit j
    of the lower half against bit j of the upper half: sum ``^``, carry ``&``), which
    halves the number of cells Amaranth has to build for wide arrays.

    Parameters
    ----------
    m : Module
    value : value-like
        The bits to count; a signal, or an expression used only here.
    name : str
        Prefix of the intermediate signals.

    Returns
    -------
    Value
        Unsigned, ``log2(P2) + 1`` bits wide for ``P2`` the padded width (1 bit when
        ``value`` has one bit).
    """
    value = Value.cast(value)
    n = len(value)
    if n == 1:
        return value
    padded = 1 << (n - 1).bit_length()
    half = padded // 2
    vector = _comb_signal(m, unsigned(padded), f"{name}_bits", value)
    low, high = vector[:half], vector[half:]
    ones = _comb_signal(m, unsigned(half), f"{name}_sum1", low ^ high)
    twos = _comb_signal(m, unsigned(half), f"{name}_carry1", low & high)
    terms = [Cat(ones[j], twos[j]) for j in range(half)]
    while len(terms) > 1:
        terms = [terms[j] + terms[j + 1] for j in range(0, len(terms), 2)]
    return terms[0]


class ComputeArray(wiring.Component):
    """Combinational readout of one bit-plane for the ``P`` columns of a column group.

    Per lane ``i`` (slot ``i`` of the current group), in exact integer arithmetic:

    1. ``s = 2 * popcount(plane & w_eff) - popcount(plane)``, with ``w_eff`` the weights
       with stuck cells replaced by their stuck value (``stuck`` built);
    2. ``a = s + comp + offset`` (``offset`` built);
    3. ``g = floor((a * gain + 32) / 64)`` (``gain`` built; round half up);
    4. ``k = clamp(g, -L, L)``, ``L = sat`` (``readout`` built) or ``readout_max``;
    5. ``t = TABLE[k mod 2^W]`` (``table`` built);
    6. ``v = floor(t / 2^q) * 2^q`` with ``q = min(qshift, W - 1)`` (``readout`` built):
       the low ``q`` bits of ``t`` cleared. The shift saturates at ``W - 1`` as in the
       golden model, so that ``v`` stays a signed W-bit value of the sign of ``t``.

    Every intermediate is sized for the full range of its inputs' port types, not only
    for legal values, so no input pattern can overflow one.

    Parameters
    ----------
    p : MacroParams
        Macro parameters: ``rows`` R, ``cols_per_cycle`` P, ``readout_bits`` W,
        ``comp_rows`` K and the built non-idealities.

    Members
    -------
    plane : In(unsigned(R))
        Bit ``b`` of every input row (row ``r`` is bit ``r``).
    weights : In(ArrayLayout(unsigned(R), P))
        Stored weight bits of each lane's column (row ``r`` is bit ``r``); 1 is +1,
        0 is -1.
    stuck_mask, stuck_value : In(ArrayLayout(unsigned(R), P))
        ``stuck`` only: a cell whose mask bit is 1 reads as its value bit.
    comp : In(ArrayLayout(signed(comp_bits), P))
        Compensation bias ``2n - K`` of each lane.
    offset : In(ArrayLayout(signed(W), P))
        ``offset`` only: column offset in cell units.
    gain : In(ArrayLayout(unsigned(8), P))
        ``gain`` only: column gain, 64 = 1.0.
    sat : In(unsigned(W - 1))
        ``readout`` only: saturation limit, 0..``readout_max``.
    qshift : In(unsigned(4))
        ``readout`` only: quantisation shift.
    table_addr : In(unsigned(W))
        ``table`` only: bus address of a transfer-table entry.
    table_wdata : In(signed(W))
        ``table`` only: entry written at ``table_addr`` on the clock edge that ends a
        cycle with ``table_we`` high.
    table_we : In(1)
        ``table`` only: write enable.
    table_rdata : Out(signed(W))
        ``table`` only: the entry at the previous cycle's ``table_addr``, as it was
        before a write in that same cycle.
    readout : Out(ArrayLayout(signed(W), P))
        Readout ``v`` of each lane.
    """

    def __init__(self, p):
        if not isinstance(p, MacroParams):
            raise TypeError(f"p must be a MacroParams, not {p!r}")
        self._p = p
        R, P, W = p.rows, p.cols_per_cycle, p.readout_bits

        def lanes(shape):
            return data.ArrayLayout(shape, P)

        members = {
            "plane": In(unsigned(R)),
            "weights": In(lanes(unsigned(R))),
        }
        if p.has("stuck"):
            members["stuck_mask"] = In(lanes(unsigned(R)))
            members["stuck_value"] = In(lanes(unsigned(R)))
        members["comp"] = In(lanes(signed(p.comp_bits)))
        if p.has("offset"):
            members["offset"] = In(lanes(signed(W)))
        if p.has("gain"):
            members["gain"] = In(lanes(unsigned(GAIN_BITS)))
        if p.has("readout"):
            members["sat"] = In(unsigned(W - 1))
            members["qshift"] = In(unsigned(QSHIFT_BITS))
        if p.has("table"):
            members["table_addr"] = In(unsigned(W))
            members["table_wdata"] = In(signed(W))
            members["table_we"] = In(1)
            members["table_rdata"] = Out(signed(W))
        members["readout"] = Out(lanes(signed(W)))
        super().__init__(members)

    @property
    def params(self):
        """The :class:`MacroParams` this array was built from."""
        return self._p

    def elaborate(self, platform):
        p = self._p
        R, P, W, M = p.rows, p.cols_per_cycle, p.readout_bits, p.readout_max
        m = Module()

        if p.has("table"):
            depth = 1 << W
            identity = [i - depth if i >> (W - 1) else i for i in range(depth)]
            m.submodules.table = table = Memory(shape=signed(W), depth=depth, init=identity)
            bus_read = table.read_port()
            bus_write = table.write_port()
            m.d.comb += [
                bus_read.addr.eq(self.table_addr),
                self.table_rdata.eq(bus_read.data),
                bus_write.addr.eq(self.table_addr),
                bus_write.data.eq(self.table_wdata),
                bus_write.en.eq(self.table_we),
            ]
            lane_reads = [table.read_port(domain="comb") for _ in range(P)]

        # Widths, from the full ranges of the port types.
        count_bits = 1 if R == 1 else (R - 1).bit_length() + 1   # as popcount() returns
        comp_lo, comp_hi = -(1 << (p.comp_bits - 1)), (1 << (p.comp_bits - 1)) - 1
        off_lo, off_hi = (-(1 << (W - 1)), M) if p.has("offset") else (0, 0)
        a_lo, a_hi = -R + comp_lo + off_lo, R + comp_hi + off_hi
        # at least one bit wider than the popcount, so sign_extend(s) always widens
        a_bits = max(_bits_for_range(a_lo, a_hi), count_bits + 1)
        gain_max = (1 << GAIN_BITS) - 1
        if p.has("gain"):
            product_bits = a_bits + GAIN_BITS + 1
            rounded_bits = product_bits - (GAIN_FRAC_BITS - 1)
            half = 1 << (GAIN_FRAC_BITS - 1)
            g_bits = _bits_for_range((a_lo * gain_max + half) >> GAIN_FRAC_BITS,
                                     (a_hi * gain_max + half) >> GAIN_FRAC_BITS)
        else:
            g_bits = a_bits

        # Shared by every lane: popcount of the plane, the clamp limits, the quantiser mask.
        plane_ones = _comb_signal(m, unsigned(count_bits), "plane_ones",
                                  popcount(m, self.plane, "plane_ones"))
        if p.has("readout"):
            # A zero sign bit on top of sat: never trimmed (it differs from sat's MSB).
            limit = _comb_signal(m, signed(W), "limit", Cat(self.sat, Const(0, 1)))
            # -limit as ~limit + 1: both operands of the adder keep their width.
            neg_limit = _comb_signal(m, signed(W), "neg_limit",
                                     ((~limit).as_unsigned() + Const(1, 1))[:W])
            # Bits kept by the quantiser, one full-width constant per qshift value (every
            # value of the 4-bit register has its case, so the case statement is complete).
            keep = Signal(W, name="quantise_keep")
            with m.Switch(self.qshift):
                for q in range(1 << QSHIFT_BITS):
                    with m.Case(q):
                        m.d.comb += keep.eq(((1 << W) - 1) & ~((1 << min(q, W - 1)) - 1))
        else:
            limit = Const(M, signed(W))
            neg_limit = Const(-M, signed(W))

        for i in range(P):
            w_eff = self.weights[i]
            if p.has("stuck"):
                mask = self.stuck_mask[i]
                w_eff = (w_eff & ~mask) | (self.stuck_value[i] & mask)
            agree = _comb_signal(m, unsigned(count_bits), f"agree_{i}",
                                 popcount(m, self.plane & w_eff, f"agree_{i}"))
            # s = 2*agree - ones = agree - (ones - agree); ones >= agree, so the inner
            # difference is exact in count_bits bits.
            disagree = _comb_signal(m, unsigned(count_bits), f"disagree_{i}",
                                    (plane_ones - agree)[:count_bits])
            s = _comb_signal(m, signed(count_bits + 1), f"s_{i}", agree - disagree)

            terms = [sign_extend(m, s, a_bits, f"s_ext_{i}"),
                     sign_extend(m, self.comp[i], a_bits, f"comp_ext_{i}")]
            if p.has("offset"):
                terms.append(sign_extend(m, self.offset[i], a_bits, f"offset_ext_{i}"))
            a = _comb_signal(m, signed(a_bits), f"a_{i}", add_same_width(*terms))

            if p.has("gain"):
                product = _comb_signal(m, signed(product_bits), f"gain_product_{i}",
                                       a * self.gain[i])
                # floor((x + 32) / 64) == floor((floor(x / 32) + 1) / 2): the rounding
                # constant becomes a 1-bit operand.
                halves = product[GAIN_FRAC_BITS - 1:]
                rounded = _comb_signal(m, signed(rounded_bits), f"gain_rounded_{i}",
                                       (halves + Const(1, 1))[:rounded_bits])
                g = _comb_signal(m, signed(g_bits), f"g_{i}", rounded[1:].as_signed())
            else:
                g = a

            # Clamp: out of the W-bit range is decided bitwise, the rest by W-bit compares.
            if g_bits > W:
                above = ~g[-1] & g[W - 1:-1].any()      # g >= 2^(W-1) > L
                below = g[-1] & ~g[W - 1:-1].all()      # g < -2^(W-1) <= -L
                g_w = g[:W].as_signed()
            else:
                above = below = Const(0, 1)
                g_w = sign_extend(m, g, W, f"g_ext_{i}")
            over = above | (~below & (g_w > limit))
            under = below | (~above & (g_w < neg_limit))
            k = _comb_signal(m, signed(W), f"k_{i}",
                             Mux(over, limit, Mux(under, neg_limit, g_w)))

            if p.has("table"):
                # k mod 2^W is k's own W-bit two's-complement pattern.
                m.d.comb += lane_reads[i].addr.eq(k.as_unsigned())
                t = lane_reads[i].data
            else:
                t = k

            if p.has("readout"):
                v = (t.as_unsigned() & keep).as_signed()
            else:
                v = t
            m.d.comb += self.readout[i].eq(v)

        return m
