"""Behavioural compute array: one bit-plane's readout for the P columns of a group.

Implements section 1 of ``docs/ARCHITECTURE.md`` (golden model:
``models/macro.py: readout``): the column sum of one input bit-plane against the stored
weights, plus the compensation bias and the built non-idealities (offset, gain,
saturation, transfer table, quantisation, stuck cells), read out as a signed W-bit
integer. The readout path is combinational; only the bus port of the transfer table is
clocked.

Generation speed
    The P lanes make up most of a macro's logic, and Amaranth's conversion time grows
    with the number of signals, assignments, cells and bits it handles (and copies an
    unnamed expression at each use). So each step of the readout is one signal holding
    every lane's result (lane-major), driven by one assignment whose per-lane parts are
    plain expressions; whatever can be shared by all lanes is one wide cell (the first
    levels of the popcount, see :func:`lane_popcounts`, and the sign extensions, see
    :func:`lane_sign_fills`); values shared by all lanes (the popcount of the plane,
    the clamp limits, the quantiser mask) are computed once.

Verilator ``-Wall`` cleanliness
    Amaranth's RTLIL backend trims sign and zero extensions off the operands of
    arithmetic and comparison cells, and Verilator reports every operand narrower than
    its operator as a WIDTH warning. So every operator here gets operands of one width:
    sums are formed modulo ``2^N`` on equal-width unsigned views (exact, because each
    result is sized to hold its true range), sign extensions that feed an operator are
    made by :func:`sign_extend` or :func:`lane_sign_fills` from cells the backend cannot
    trim, constants are only ever 1-bit operands, and range checks against powers of two
    are bitwise.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from models.params import GAIN_BITS, GAIN_FRAC_BITS, QSHIFT_BITS, MacroParams

from .replicas import LANE_BLOCK, lane_blocks, replicated

__all__ = ["ComputeArray", "count_bits", "popcount", "sign_extend", "add_same_width", "lane_popcount_planes",
           "lane_popcounts", "lane_popcounts_from_planes", "lane_sign_fills"]


def _comb_signal(m, shape, name, value):
    """A signal of ``shape`` named ``name``, driven combinationally by ``value``.

    Besides naming intermediates in the Verilog, a signal stops Amaranth from lowering a
    shared expression once per use (it lowers an unnamed expression at every slice).
    """
    signal = Signal(shape, name=name)
    m.d.comb += signal.eq(value)
    return signal


def _count_bits(count):
    """Width of a count of ``count`` bits, as :func:`popcount` returns it."""
    return 1 if count == 1 else (count - 1).bit_length() + 1


def count_bits(count):
    """Width of the ones count of ``count`` bits (the L = 4 array's ``plane_ones`` lanes)."""
    return _count_bits(count)


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


def lane_popcount_planes(m, value, lanes, count, name, *, max_terms=1):
    """Bit-sliced partial popcounts of the ``count`` bits of each lane of ``value``.

    ``value`` is lane-major: lane i is bits ``[i * count, (i + 1) * count)``. Each lane's
    bits, padded with zeros to a power of two, are summed by the levels of a balanced
    adder tree formed bit-sliced for every lane at once: a few wide cells per level
    instead of an adder per pair of numbers and lane (cells and signals are what the
    conversion spends its time on). Each lane is cut into ``2^L`` blocks; level 1 adds
    bit j of the first half of the blocks to bit j of the second half (sum ``^``, carry
    ``&``), and each further level adds the first half of the previous level's numbers
    to the second half with a ripple of full adders, one cell per operation for all
    lanes. The levels stop when every lane has at most ``max_terms`` numbers left.

    Returns
    -------
    (list of Signal, int)
        The planes (plane k holds bit k of every number, lane-major) and the count of
        numbers left per lane, ``block``: number j of lane i is
        ``Cat(plane[i * block + j] for plane in planes)``. For ``count == 1``, the value
        itself and 1.
    """
    value = Value.cast(value)
    if count == 1:
        return [value], 1
    padded = 1 << (count - 1).bit_length()
    levels = 1
    while padded >> levels > max_terms:
        levels += 1
    block = padded >> levels        # bits of a lane in one block; numbers left per lane

    def gather(b):
        """Block b of every lane, lane-major, padded with zeros beyond ``count``."""
        lo, hi = b * block, min((b + 1) * block, count)
        parts = []
        for i in range(lanes):
            if hi > lo:
                parts.append(value[i * count + lo:i * count + hi])
            if hi - lo < block:
                parts.append(Const(0, block - max(0, hi - lo)))
        return Cat(*parts)

    serial = [0]

    def net(hint, expr):
        serial[0] += 1
        expr = Value.cast(expr)
        return _comb_signal(m, unsigned(len(expr)), f"{name}_{hint}{serial[0]}", expr)

    # Level 1: the bits of blocks [0, half) against those of blocks [half, 2 half).
    half = 1 << (levels - 1)
    low = Cat(*(gather(b) for b in range(half)))
    high = Cat(*(gather(b) for b in range(half, 2 * half)))
    planes = [net("sum", low ^ high), net("carry", low & high)]
    # Levels 2..L: a level adds the numbers of the first half of each plane to those of
    # the second half.
    for _ in range(levels - 1):
        width = len(planes[0]) // 2
        xs = [plane[:width] for plane in planes]
        ys = [plane[width:] for plane in planes]
        total = [net("sum", xs[0] ^ ys[0])]
        carry = net("carry", xs[0] & ys[0])
        for x, y in zip(xs[1:], ys[1:]):
            t = net("half", x ^ y)
            total.append(net("sum", t ^ carry))
            carry = net("carry", (x & y) | (t & carry))
        planes = total + [carry]
    return planes, block


def lane_popcounts(m, value, lanes, count, name, *, max_terms=8):
    """Number of ones among the ``count`` bits of each lane of a lane-major ``value``.

    The first levels of the adder tree are bit-sliced (see :func:`lane_popcount_planes`)
    until a lane has at most ``max_terms`` numbers left; those are summed per lane by a
    balanced tree of adders whose operands have one width.

    Returns
    -------
    list of Value
        Per lane, unsigned, ``log2(padded count) + 1`` bits (1 bit for ``count == 1``);
        expressions, each meant for one use.
    """
    planes, block = lane_popcount_planes(m, value, lanes, count, name, max_terms=max_terms)
    return lane_popcounts_from_planes(planes, block, lanes)


def lane_popcounts_from_planes(planes, block, lanes):
    """The per-lane adder trees of :func:`lane_popcounts` on the output of
    :func:`lane_popcount_planes` (a pipelined array registers the planes in between)."""
    counts = []
    for i in range(lanes):
        terms = [Cat(*(plane[i * block + j] for plane in planes)) for j in range(block)]
        while len(terms) > 1:
            terms = [terms[j] + terms[j + 1] for j in range(0, len(terms), 2)]
        counts.append(terms[0])
    return counts


def lane_sign_fills(m, lanes, terms, name):
    """Sign-extension bits for lane-major values, for all of their lanes at once.

    ``terms`` lists ``(value, width, extra)``: ``value`` holds ``lanes`` signed lanes of
    ``width`` bits (lane i is bits ``[i * width, (i + 1) * width)``), each to be widened
    by ``extra`` bits. The extension bits are ``extra`` copies of each lane's sign bit
    out of one AND with all ones, rather than the sign bit itself, so that the RTLIL
    backend does not trim them off an operator's operand (it trims repeated sign nets)
    and Verilator sees operands of one width; one cell serves every lane and term.

    Returns
    -------
    function
        ``fill(t, i)``: the ``extra`` extension bits of lane ``i`` of term ``t``.
    """
    parts, offsets, pos = [], [], 0
    for value, width, extra in terms:
        if extra < 0:
            raise ValueError(f"extra must be >= 0, not {extra}")
        offsets.append(pos)
        if extra:
            parts += [value[(i + 1) * width - 1].replicate(extra) for i in range(lanes)]
        pos += lanes * extra
    if not pos:
        return lambda t, i: Const(0, 0)
    fills = _comb_signal(m, unsigned(pos), name, Cat(*parts) & Const((1 << pos) - 1, pos))

    def fill(t, i):
        extra = terms[t][2]
        return fills[offsets[t] + i * extra:offsets[t] + (i + 1) * extra]
    return fill


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

    With ``p.pipeline`` = L > 0 the readout path is cut by L register stages, and
    ``readout`` in cycle t + L is the readout of the inputs of cycle t (every input that
    a later stage uses travels along with the data, so the answer is that of one
    cycle's inputs even when they change every cycle; the transfer-table entries are
    read by the stage before cut 3 as they are then). L = 1 registers ``a`` (after the
    popcount and the bias sum); L = 2 also registers the popcount ``agree`` and the
    plane's ones count before the bias sum; L = 3 also registers the readout itself;
    L = 4 also cuts the popcount, after its bit-sliced levels (eight partial counts per
    lane for 32 rows), and counts the plane's ones once per block of lanes in the same
    stages; its pipeline registers have no reset. Without ``gain``, L = 4 also decides
    the clamp in the bias stage (``_bias_and_compare``), so that cut 1 holds ``a > L``,
    ``a < -L`` and a's low W bits.

    Parameters
    ----------
    p : MacroParams
        Macro parameters: ``rows`` R, ``cols_per_cycle`` P, ``readout_bits`` W,
        ``comp_rows`` K and the built non-idealities.

    Members
    -------
    plane : In(ArrayLayout(unsigned(R), lane_blocks(P)))
        Bit ``b`` of every input row (row ``r`` is bit ``r``), one identical copy per
        block of 8 lanes (``rtl/replicas.py``): lane ``i`` reads copy ``i // 8``, so
        that the macro can drive each block from a register of its own.
    plane_ones : In(ArrayLayout(unsigned(count_bits), lane_blocks(P)))
        ``pipeline`` = 4 only: the number of ones of each block's copy of ``plane``
        (``count_bits`` as :func:`popcount` returns for R bits), with the plane. The
        macro knows its planes in advance and counts them off the readout path; any
        other value gives the readout of ``s = 2 * agree - plane_ones``.
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
        Readout ``v`` of each lane, ``p.pipeline`` cycles after its inputs.
    """

    def __init__(self, p):
        if not isinstance(p, MacroParams):
            raise TypeError(f"p must be a MacroParams, not {p!r}")
        self._p = p
        R, P, W = p.rows, p.cols_per_cycle, p.readout_bits

        def lanes(shape):
            return data.ArrayLayout(shape, P)

        members = {
            "plane": In(data.ArrayLayout(unsigned(R), lane_blocks(P))),
            "weights": In(lanes(unsigned(R))),
        }
        if p.pipeline >= 4:
            members["plane_ones"] = In(data.ArrayLayout(unsigned(_count_bits(R)),
                                                        lane_blocks(P)))
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

    def _bias_and_compare(self, m, agree, ones_cut4, limit_cut4, stage, all_lanes, lane):
        """The bias sum and the clamp's comparisons of the L = 4 build without gain.

        ``agree`` is each lane's agreement count registered at cut 2 with a zero sign bit
        on top (lane-major, ``count_bits + 1`` per lane), ``ones_cut4`` the plane's ones
        count per block at cut 4 (``count_bits + 1``, zero sign bit), ``limit_cut4`` the
        clamp limit L per lane from its cut-4 copies. Between cuts 4 and 2 each lane
        forms ``comp + offset - ones`` and the same with ``- L - 1`` and ``+ L`` added
        (``comp + offset`` in parallel with the block's ``-ones``, ``~L - ones`` and
        ``L - ones``, then their sums); the bias stage adds ``2 * agree`` to each: one
        adder.

        Returns
        -------
        (Value, Value, Value)
            Registered at cut 1, per lane: ``a > L``, ``a < -L`` (one bit each) and the
            low W bits of ``a``.
        """
        p = self._p
        R, P, W = p.rows, p.cols_per_cycle, p.readout_bits
        c_bits = _count_bits(R) + 1              # a count with its zero sign bit
        count_max = (1 << (c_bits - 1)) - 1      # of the port type, not only R
        comp_lo, comp_hi = -(1 << (p.comp_bits - 1)), (1 << (p.comp_bits - 1)) - 1
        off_lo, off_hi = (-(1 << (W - 1)), (1 << (W - 1)) - 1) if p.has("offset") else (0, 0)
        limit_hi = (1 << (W - 1)) - 1
        # One width for every sum, from the extremes of 2 agree - ones + bias - L - 1 and
        # 2 agree - ones + bias + L.
        e_bits = max(c_bits + 1, _bits_for_range(
            -count_max + comp_lo + off_lo - limit_hi - 1,
            2 * count_max + comp_hi + off_hi + limit_hi))
        blocks = lane_blocks(P)

        # Between cuts 4 and 2: per lane comp + offset; per block -ones, ~L - ones, L - ones.
        terms = [(stage(self.comp.as_value(), "comp", 4), p.comp_bits)]
        if p.has("offset"):
            terms.append((stage(self.offset.as_value(), "offset", 4), W))
        fill = lane_sign_fills(m, P, [(v, w, e_bits - w) for v, w in terms], "bias_terms_sign")
        bias = all_lanes("bias_sum", e_bits, [
            add_same_width(*(Cat(lane(v, w, i), fill(t, i)) for t, (v, w) in enumerate(terms)))
            .as_unsigned() for i in range(P)])
        # A block's limit is that of its first lane (its lanes share one copy register).
        limits = _comb_signal(m, unsigned(blocks * W), "block_limit", Cat(*(
            lane(limit_cut4, W, b * LANE_BLOCK) for b in range(blocks))))
        not_limits = _comb_signal(m, unsigned(blocks * W), "block_not_limit", ~limits)
        bfill = lane_sign_fills(m, blocks, [(ones_cut4, c_bits, e_bits - c_bits),
                                            (limits, W, e_bits - W),
                                            (not_limits, W, e_bits - W)], "block_terms_sign")
        ones = [Cat(lane(ones_cut4, c_bits, b), bfill(0, b)) for b in range(blocks)]
        # -ones as ~ones + 1 (a 1-bit constant operand).
        minus_ones = _comb_signal(m, unsigned(blocks * e_bits), "minus_ones", Cat(*(
            ((~ones[b]).as_unsigned() + Const(1, 1))[:e_bits] for b in range(blocks))))
        upper_ones = _comb_signal(m, unsigned(blocks * e_bits), "upper_ones", Cat(*(
            (Cat(lane(not_limits, W, b), bfill(2, b)) - ones[b])[:e_bits]
            for b in range(blocks))))
        lower_ones = _comb_signal(m, unsigned(blocks * e_bits), "lower_ones", Cat(*(
            (Cat(lane(limits, W, b), bfill(1, b)) - ones[b])[:e_bits] for b in range(blocks))))
        addends = []
        for name, block_term in (("bias", minus_ones), ("bias_upper", upper_ones),
                                 ("bias_lower", lower_ones)):
            total = all_lanes(name, e_bits, [
                add_same_width(lane(bias, e_bits, i), lane(block_term, e_bits, i // LANE_BLOCK))
                .as_unsigned() for i in range(P)])
            addends.append(stage(total, name, 2))

        # The bias stage: 2 * agree + each.
        afill = lane_sign_fills(m, P, [(agree, c_bits, e_bits - c_bits - 1)], "agree_sign")
        doubled = [Cat(Const(0, 1), lane(agree, c_bits, i), afill(0, i)) for i in range(P)]
        a, a_upper, a_lower = (all_lanes(name, e_bits, [
            add_same_width(doubled[i], lane(v, e_bits, i)).as_unsigned() for i in range(P)])
            for name, v in zip(("a", "a_upper", "a_lower"), addends))
        top = e_bits - 1
        # a > L: a - L - 1 >= 0; a < -L: a + L < 0.
        over = all_lanes("over", 1, [~a_upper[i * e_bits + top] for i in range(P)])
        under = all_lanes("under", 1, [a_lower[i * e_bits + top] for i in range(P)])
        a_low = all_lanes("a_low", W, [lane(a, e_bits, i)[:W] for i in range(P)])
        return stage(over, "over", 1), stage(under, "under", 1), stage(a_low, "a_low", 1)

    def elaborate(self, platform):
        p = self._p
        m = Module()
        lane_reads = self._table(m) if p.has("table") else None
        w = self._widths()
        b = _Stages(m, p)
        gain_in = b.late(self.gain.as_value(), "gain") if p.has("gain") else None
        # The L = 4 build (without gain) compares with the clamp limits in the bias stage,
        # a stage before the clamp: a > L and a < -L are the signs of s + (comp + offset
        # - L - 1) and s + (comp + offset + L), whose second terms are formed between
        # cuts 4 and 2 (comp, offset and SAT are stable while the planes run, but travel
        # with the data all the same). The clamp stage is then only its multiplexers: a
        # carry chain, the limit's copies and the multiplexers in one cycle were the
        # longest path of the fully parallel ECP5 build.
        w.precompare = b.L >= 4 and p.has("readout") and not p.has("gain")
        shared = self._shared(b, w)
        agree = self._agree(b, w)
        if b.L < 4:
            shared.minus_ones = b.for_lanes(shared.minus_ones, "minus_plane_ones", 2)
        # 2. s = 2 * agree - ones, in s_bits (|s| <= R); a = s + comp + offset.
        if w.precompare:
            over_lanes, under_lanes, a = self._bias_and_compare(
                m, agree, shared.ones_cut4, shared.limit_cut4, b.stage, b.all_lanes, b.lane)
        else:
            over_lanes = under_lanes = None
            a = self._bias(b, w, agree, shared)
        g = self._gain(b, w, a, gain_in) if p.has("gain") else a
        k_lanes = self._clamp(b, w, g, shared, over_lanes, under_lanes)
        # 5. Transfer table, per lane: a read port each.
        if p.has("table"):
            k = b.all_lanes("k", p.readout_bits, k_lanes)
            for i in range(p.cols_per_cycle):
                # k mod 2^W is k's own W-bit two's-complement pattern.
                m.d.comb += lane_reads[i].addr.eq(b.lane(k, p.readout_bits, i))
            t = Cat(*(read.data for read in lane_reads))
        else:
            t = Cat(*k_lanes)
        # 6. Quantise: the low q bits cleared; q <= W - 1 never clears the sign bit.
        v = t & shared.keep if p.has("readout") else t
        m.d.comb += self.readout.eq(b.stage(v, "readout", 3))
        return m

    def _table(self, m):
        """The transfer table's memory, its bus ports and a read port per lane."""
        p = self._p
        W, P = p.readout_bits, p.cols_per_cycle
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
        return [table.read_port(domain="comb") for _ in range(P)]

    def _widths(self):
        """Widths, from the full ranges of the port types (a namespace)."""
        p = self._p
        R, W, M = p.rows, p.readout_bits, p.readout_max
        w = _Widths()
        w.count_bits = _count_bits(R)
        w.s_bits = w.count_bits + 1
        comp_lo, comp_hi = -(1 << (p.comp_bits - 1)), (1 << (p.comp_bits - 1)) - 1
        off_lo, off_hi = (-(1 << (W - 1)), M) if p.has("offset") else (0, 0)
        a_lo, a_hi = -R + comp_lo + off_lo, R + comp_hi + off_hi
        w.a_bits = max(_bits_for_range(a_lo, a_hi), w.s_bits, p.comp_bits,
                       W if p.has("offset") else 0)
        gain_max = (1 << GAIN_BITS) - 1
        if p.has("gain"):
            w.product_bits = w.a_bits + GAIN_BITS + 1
            w.rounded_bits = w.product_bits - (GAIN_FRAC_BITS - 1)
            half = 1 << (GAIN_FRAC_BITS - 1)
            w.g_bits = _bits_for_range((a_lo * gain_max + half) >> GAIN_FRAC_BITS,
                                       (a_hi * gain_max + half) >> GAIN_FRAC_BITS)
        else:
            w.g_bits = w.a_bits
        w.clamp_bits = max(w.g_bits, W)
        return w

    def _shared(self, b, w):
        """What every lane shares: the plane's ones count (negated, or per block at
        L = 4), the clamp limits and the quantiser mask, each through its stages (a
        namespace)."""
        m, p = b.m, self._p
        R, W = p.rows, p.readout_bits
        count_bits, s_bits = w.count_bits, w.s_bits
        x = _Shared()
        # Shared by every lane: the popcount of the plane, the clamp limits, the quantiser
        # mask.
        planes_in = self.plane.as_value()       # one copy per block of lanes
        x.planes_in = planes_in

        def minus_plane_ones(plane, name):
            ones = _comb_signal(m, unsigned(count_bits), f"{name}_ones",
                                popcount(m, plane, f"{name}_ones"))
            # -ones in s_bits bits, as ~ones + 1 on one width with a 1-bit constant operand.
            return _comb_signal(m, unsigned(s_bits), f"minus_{name}_ones",
                                ((~Cat(ones, Const(0, 1))).as_unsigned() + Const(1, 1))[:s_bits])

        if b.L >= 4:
            # The plane's ones count comes in per block with the plane (the macro counts
            # its planes in advance), with a zero sign bit: a constant top bit of a
            # register output is not trimmed off an adder's operand (Verilator -Wall),
            # where that of an expression would be.
            blocks = lane_blocks(p.cols_per_cycle)
            ones_in = self.plane_ones.as_value()
            ones_ext = _comb_signal(m, unsigned(blocks * s_bits), "plane_ones", Cat(*(
                Cat(ones_in[k * count_bits:(k + 1) * count_bits], Const(0, 1))
                for k in range(blocks))))
            x.ones_cut4 = b.stage(ones_ext, "plane_ones", 4)
            if not w.precompare:
                x.ones_blocks = b.stage(x.ones_cut4, "plane_ones", 2)
        else:
            x.minus_ones = minus_plane_ones(b.stage(planes_in[:R], "plane", 4), "plane")
        if p.has("readout"):
            # A zero sign bit on top of sat: never trimmed (it differs from sat's MSB).
            # The limits and the mask are derived from SAT and QSHIFT before they travel
            # through the stages: their adders then stay out of the clamp's stage.
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
            if w.precompare:
                # The limit's copies per block at cut 4, for the bias stage's comparisons.
                x.limit_cut4 = b.for_lanes(limit, "limit_cmp", 4)
            # The clamp stage's copies of the limits and the mask, per lane.
            limit_ext_src, neg_limit_ext_src = limit, neg_limit
            x.limit = b.for_lanes(b.mid(limit, "limit"), "limit", 1)
            x.neg_limit = b.for_lanes(b.mid(neg_limit, "neg_limit"), "neg_limit", 1)
            if not w.precompare:
                # The limits at the clamp's comparison width.
                x.limit_cmp = b.for_lanes(b.mid(sign_extend(m, limit_ext_src, w.clamp_bits,
                                                            "limit_ext"), "limit_ext"),
                                          "limit_ext", 1)
                x.neg_limit_cmp = b.for_lanes(b.mid(sign_extend(m, neg_limit_ext_src,
                                                                w.clamp_bits, "neg_limit_ext"),
                                                    "neg_limit_ext"), "neg_limit_ext", 1)
            x.keep = b.for_lanes(b.mid(keep, "quantise_keep"), "quantise_keep", 1)
        return x

    def _agree(self, b, w):
        """1. agree = popcount(plane & w_eff) per lane, registered at cut 2."""
        m, p = b.m, self._p
        R, P = p.rows, p.cols_per_cycle
        planes_in = self.plane.as_value()
        w_eff = self.weights.as_value()
        if p.has("stuck"):
            w_eff = w_eff ^ ((w_eff ^ self.stuck_value.as_value()) & self.stuck_mask.as_value())
        agree_bits = _comb_signal(m, unsigned(P * R), "agree_bits", w_eff & Cat(*(
            planes_in[(i // LANE_BLOCK) * R:(i // LANE_BLOCK + 1) * R] for i in range(P))))
        planes, block = lane_popcount_planes(m, agree_bits, P, R, "agree", max_terms=8)
        planes = [b.stage(plane, f"agree_plane{j}", 4) for j, plane in enumerate(planes)]
        if w.precompare:
            # With a zero sign bit, for the bias stage's adders (see plane_ones above).
            return b.stage(b.all_lanes("agree", w.count_bits + 1, [
                Cat(count, Const(0, 1)) for count in lane_popcounts_from_planes(planes, block, P)]),
                "agree", 2)
        agree = b.all_lanes("agree", w.count_bits, lane_popcounts_from_planes(planes, block, P))
        return b.stage(agree, "agree", 2)

    def _bias(self, b, w, agree, x):
        """2. s = 2 * agree - ones; a = s + comp + offset, registered at cut 1."""
        m, p = b.m, self._p
        P, W = p.cols_per_cycle, p.readout_bits
        count_bits, s_bits, a_bits, lane = w.count_bits, w.s_bits, w.a_bits, b.lane
        if b.L >= 4:
            s = b.all_lanes("s", s_bits, [
                (Cat(Const(0, 1), lane(agree, count_bits, i))
                 - lane(x.ones_blocks, s_bits, i // LANE_BLOCK))[:s_bits]
                for i in range(P)])
        else:
            s = b.all_lanes("s", s_bits, [
                (Cat(Const(0, 1), lane(agree, count_bits, i))
                 + lane(x.minus_ones, s_bits, i))[:s_bits]
                for i in range(P)])
        comp = b.mid(self.comp.as_value(), "comp")
        terms = [(s, s_bits), (comp, p.comp_bits)]
        if p.has("offset"):
            terms.append((b.mid(self.offset.as_value(), "offset"), W))
        fill = lane_sign_fills(m, P, [(v, n, a_bits - n) for v, n in terms], "a_terms_sign")
        per_lane = []
        for i in range(P):
            ext = [Cat(lane(v, n, i), fill(t, i)) for t, (v, n) in enumerate(terms)]
            per_lane.append(add_same_width(*ext).as_unsigned())
        return b.stage(b.all_lanes("a", a_bits, per_lane), "a", 1)

    def _gain(self, b, w, a, gain_in):
        """3. g = round(a * gain / 64) per lane."""
        m, P = b.m, self._p.cols_per_cycle
        g_lanes = []
        for i in range(P):
            product = b.lane(a, w.a_bits, i).as_signed() * gain_in[i * GAIN_BITS:(i + 1) * GAIN_BITS]
            # floor((x + 32) / 64) == floor((floor(x / 32) + 1) / 2): the rounding
            # constant becomes a 1-bit operand. The product is a signal (one per
            # lane) because the rounding slices it.
            product = _comb_signal(m, signed(w.product_bits), f"gain_product_{i}", product)
            rounded = (product[GAIN_FRAC_BITS - 1:] + Const(1, 1))[:w.rounded_bits]
            # rounded / 2 has redundant sign bits above g_bits
            g_lanes.append(rounded[1:1 + w.g_bits])
        return b.all_lanes("g", w.g_bits, g_lanes)

    def _clamp(self, b, w, g, x, over_lanes, under_lanes):
        """4. Clamp to [-L, L], compared at clamp_bits >= W (or in the bias stage): the
        lanes' values k."""
        m, p = b.m, self._p
        P, W, M = p.cols_per_cycle, p.readout_bits, p.readout_max
        g_bits, clamp_bits, lane = w.g_bits, w.clamp_bits, b.lane
        if not w.precompare:
            g_fill = lane_sign_fills(m, P, [(g, g_bits, clamp_bits - g_bits)], "g_sign")
        k_lanes = []
        for i in range(P):
            if w.precompare:
                # g is a's low W bits, which are a itself whenever it is within the limits.
                g_i = lane(g, W, i).as_signed()
                over, under = over_lanes[i], under_lanes[i]
            elif p.has("readout"):
                g_i = Cat(lane(g, g_bits, i), g_fill(0, i)).as_signed()
                over = g_i > lane(x.limit_cmp, clamp_bits, i).as_signed()
                under = g_i < lane(x.neg_limit_cmp, clamp_bits, i).as_signed()
            else:
                # L = M = 2^(W-1) - 1: out of range is decided bitwise.
                g_i = Cat(lane(g, g_bits, i), g_fill(0, i)).as_signed()
                high = g_i[W - 1:-1]
                over = ~g_i[-1] & high.any()                        # g >= 2^(W-1)
                under = g_i[-1] & ~(high.all() & g_i[:W - 1].any())  # g <= -2^(W-1)
            if p.has("readout"):
                limit_i = lane(x.limit, W, i).as_signed()
                neg_limit_i = lane(x.neg_limit, W, i).as_signed()
            else:
                limit_i, neg_limit_i = Const(M, signed(W)), Const(-M, signed(W))
            k_lanes.append(Mux(over, limit_i, Mux(under, neg_limit_i, g_i[:W].as_signed())))
        return k_lanes


class _Widths:
    """Widths of :class:`ComputeArray`'s steps (attributes set by ``_widths``)."""


class _Shared:
    """What :class:`ComputeArray`'s lanes share (attributes set by ``_shared``)."""


class _Stages:
    """The pipeline cuts of a :class:`ComputeArray` and its lane-major values.

    Every lane's logic is one expression inside one assignment per step, to a signal
    holding that step's result for all lanes (lane-major; see "Generation speed" in the
    module docstring). Inputs travel with the data through the cuts before the stage that
    uses them. Path order: cut 4 (inside the popcount), cut 2 (after it), cut 1 (after
    the bias sum), cut 3 (the readout); L = 1 builds cut 1 only, L = 2 cuts 1-2, ...
    """

    def __init__(self, m, p):
        self.m, self.P, self.L = m, p.cols_per_cycle, p.pipeline
        # The FPGA-clock build (L = 4) has no reset on its pipeline registers: what
        # they hold after a reset is never used (the sequencer steps and clears from
        # its own registers), and each lane's registers on the reset net made that net
        # reach every lane of the die.
        self.reset_less = self.L >= 4

    def all_lanes(self, name, width, per_lane):
        """One signal of every lane's ``width``-bit value (lane-major)."""
        per_lane = [Value.cast(v) for v in per_lane]
        assert all(len(v) == width for v in per_lane), (name, width)
        return _comb_signal(self.m, unsigned(self.P * width), name, Cat(*per_lane))

    @staticmethod
    def lane(value, width, i):
        """Lane ``i``'s ``width`` bits of a lane-major value."""
        return value[i * width:(i + 1) * width]

    def stage(self, value, name, cut):
        """``value``, or its copy one cycle later when pipeline cut ``cut`` is built."""
        if self.L < cut:
            return value
        value = Value.cast(value)
        reg = Signal(value.shape(), name=f"{name}_q{cut}", reset_less=self.reset_less)
        self.m.d.sync += reg.eq(value)
        return reg

    def mid(self, value, name):
        """``value`` through cuts 4 and 2 (to the bias stage)."""
        return self.stage(self.stage(value, name, 4), name, 2)

    def late(self, value, name):
        """``value`` through cuts 4, 2 and 1 (to the gain and clamp stage)."""
        return self.stage(self.mid(value, name), name, 1)

    def for_lanes(self, value, name, cut):
        """``value``, shared by every lane, once per lane (lane-major); its cut-``cut``
        register, when built, is built once per block of lanes (``rtl/replicas.py``)."""
        value = Value.cast(value)
        if self.L < cut:
            return value.replicate(self.P)
        return replicated(self.m, value, self.P, name, suffix=f"_q{cut}",
                          reset_less=self.reset_less)
